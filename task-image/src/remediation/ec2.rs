//! The `aws.ec2.*` actions, with the AWS SDK for Rust: snapshot every EBS volume of an instance
//! (CreateSnapshots with the instance specification, then DescribeSnapshots until each is
//! `completed`, its progress in the log), reboot it (RebootInstances), and replace its root volume
//! (CreateReplaceRootVolumeTask, then DescribeReplaceRootVolumeTasks until `succeeded`).
//!
//! - Opt-in first: the instance must carry the opt-in tag (`EC2_OPT_IN_TAG_KEY` =
//!   `EC2_OPT_IN_TAG_VALUE`, default `orchestrator:remediate=true`). The task role's policy grants
//!   these calls only on such instances; the task checks too, so a refusal names the tag instead
//!   of an opaque `UnauthorizedOperation`, and a policy mistake does not widen what it touches.
//! - Tags: snapshots carry the instance's tags (not `aws:` ones, which no caller may set) and
//!   `orchestrator:record-id`; the root volume replacement task carries the record id.
//! - Every step has a time limit (the calls and the wait); a failure names the instance and
//!   AWS's reason (its error code and message, or the snapshot's / task's state).
//!
//! Depends on [`failure`](super::failure) only; the client comes from the caller (built from the
//! task's environment, or a test's).

use std::time::Duration;

use aws_sdk_ec2::Client;
use aws_sdk_ec2::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_ec2::types::{
    Instance, InstanceSpecification, ReplaceRootVolumeTaskState, ResourceType, SnapshotState, Tag,
    TagSpecification,
};
use orchestrator_core::RecordId;
use serde_json::{Value, json};
use tokio::time::Instant;

use super::failure::StepFailure;

/// The tag key snapshots and replacement tasks get, with the record id.
pub const RECORD_TAG: &str = "orchestrator:record-id";
/// The opt-in tag key unless `EC2_OPT_IN_TAG_KEY` says otherwise.
pub const DEFAULT_OPT_IN_KEY: &str = "orchestrator:remediate";

/// The tag an instance must carry to be acted on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OptInTag {
    pub key: String,
    pub value: String,
}

impl std::fmt::Display for OptInTag {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}={}", self.key, self.value)
    }
}

/// The EC2 actions, over one client.
#[derive(Debug, Clone)]
pub struct Ec2 {
    client: Client,
    opt_in: OptInTag,
    /// Time between two status reads while waiting.
    poll: Duration,
}

/// `i-` and 8 or 17 hexadecimal digits.
pub fn is_instance_id(s: &str) -> bool {
    s.strip_prefix("i-").is_some_and(|h| {
        matches!(h.len(), 8 | 17)
            && h.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    })
}

/// The longest AWS error message kept in a step's error (the rest is in the log).
const MAX_MESSAGE: usize = 300;

/// A failed EC2 call in one line a person can read: AWS's error code and message, or what kind of
/// failure it was (a timeout, EC2 unreachable, an unreadable answer). The SDK's whole error, with
/// the raw response, goes to the task's log only.
fn reason<E, R>(e: &SdkError<E, R>) -> String
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    tracing::warn!(error = %DisplayErrorContext(e), "EC2 call failed");
    let why = match e {
        SdkError::TimeoutError(_) => "timed out".to_owned(),
        SdkError::DispatchFailure(_) => "could not reach EC2".to_owned(),
        SdkError::ResponseError(_) => "EC2's answer could not be read".to_owned(),
        SdkError::ConstructionFailure(_) => "the request could not be built".to_owned(),
        _ => match (e.code(), e.message()) {
            (Some(c), Some(m)) => format!("{c}: {m}"),
            (Some(c), None) => c.to_owned(),
            _ => "EC2 refused the call without an error code".to_owned(),
        },
    };
    if why.chars().count() > MAX_MESSAGE {
        why.chars().take(MAX_MESSAGE).collect::<String>() + "…"
    } else {
        why
    }
}

/// Runs `call` unless `deadline` has passed, and no longer than until it.
async fn before<T>(
    deadline: Instant,
    what: impl FnOnce() -> String,
    call: impl std::future::Future<Output = Result<T, StepFailure>>,
) -> Result<T, StepFailure> {
    match tokio::time::timeout_at(deadline, call).await {
        Ok(r) => r,
        Err(_) => Err(StepFailure::new(what())),
    }
}

impl Ec2 {
    pub fn new(client: Client, opt_in: OptInTag, poll: Duration) -> Self {
        Self {
            client,
            opt_in,
            poll,
        }
    }

    /// The instance, if it carries the opt-in tag; otherwise why not.
    async fn opted_in(&self, instance_id: &str) -> Result<Instance, StepFailure> {
        if !is_instance_id(instance_id) {
            return Err(StepFailure::new(format!(
                "`{instance_id}` is not an instance id (i-...)"
            )));
        }
        let out = self
            .client
            .describe_instances()
            .instance_ids(instance_id)
            .send()
            .await
            .map_err(|e| {
                StepFailure::new(format!(
                    "instance {instance_id}: DescribeInstances failed: {}",
                    reason(&e)
                ))
            })?;
        let instance = out
            .reservations()
            .iter()
            .flat_map(|r| r.instances())
            .find(|i| i.instance_id() == Some(instance_id))
            .cloned()
            .ok_or_else(|| StepFailure::new(format!("instance {instance_id}: not found")))?;
        let tagged = instance
            .tags()
            .iter()
            .any(|t| t.key() == Some(&self.opt_in.key) && t.value() == Some(&self.opt_in.value));
        if !tagged {
            return Err(StepFailure::with_detail(
                format!(
                    "instance {instance_id} does not carry the opt-in tag {}: refused (the task \
                     role may act only on instances with it)",
                    self.opt_in
                ),
                json!({ "instance_id": instance_id, "opt_in_tag": self.opt_in.to_string() }),
            ));
        }
        Ok(instance)
    }

    /// `aws.ec2.snapshot_instance`: one snapshot per attached EBS volume, waited for.
    pub async fn snapshot_instance(
        &self,
        record_id: RecordId,
        instance_id: &str,
        exclude_boot_volume: bool,
        description: &str,
        limit: Duration,
    ) -> Result<Value, StepFailure> {
        let deadline = Instant::now() + limit;
        let late = |what: &str| {
            format!(
                "instance {instance_id}: {what} did not finish within the step's {} s",
                limit.as_secs()
            )
        };
        let instance = before(
            deadline,
            || late("DescribeInstances"),
            self.opted_in(instance_id),
        )
        .await?;
        let mut tags: Vec<Tag> = instance
            .tags()
            .iter()
            .filter(|t| {
                t.key()
                    .is_some_and(|k| !k.starts_with("aws:") && k != RECORD_TAG)
            })
            .cloned()
            .collect();
        tags.push(
            Tag::builder()
                .key(RECORD_TAG)
                .value(record_id.to_string())
                .build(),
        );
        let created = before(deadline, || late("CreateSnapshots"), async {
            self.client
                .create_snapshots()
                .instance_specification(
                    InstanceSpecification::builder()
                        .instance_id(instance_id)
                        .exclude_boot_volume(exclude_boot_volume)
                        .build(),
                )
                .description(description)
                .tag_specifications(
                    TagSpecification::builder()
                        .resource_type(ResourceType::Snapshot)
                        .set_tags(Some(tags.clone()))
                        .build(),
                )
                .send()
                .await
                .map_err(|e| {
                    StepFailure::new(format!(
                        "instance {instance_id}: CreateSnapshots failed: {}",
                        reason(&e)
                    ))
                })
        })
        .await?;
        let snapshots: Vec<(String, String)> = created
            .snapshots()
            .iter()
            .filter_map(|s| {
                Some((
                    s.snapshot_id()?.to_owned(),
                    s.volume_id().unwrap_or_default().to_owned(),
                ))
            })
            .collect();
        let ids: Vec<String> = snapshots.iter().map(|(s, _)| s.clone()).collect();
        let detail = |states: Value| {
            json!({
                "instance_id": instance_id,
                "snapshot_ids": ids,
                "snapshots": snapshots
                    .iter()
                    .map(|(s, v)| json!({"snapshot_id": s, "volume_id": v}))
                    .collect::<Vec<_>>(),
                "states": states,
            })
        };
        if ids.is_empty() {
            return Err(StepFailure::with_detail(
                format!(
                    "instance {instance_id}: CreateSnapshots created no snapshot (no EBS volume attached?)"
                ),
                detail(Value::Null),
            ));
        }
        tracing::info!(instance_id, snapshots = ?ids, "snapshots started");
        loop {
            let out = before(deadline, || late("DescribeSnapshots"), async {
                self.client
                    .describe_snapshots()
                    .set_snapshot_ids(Some(ids.clone()))
                    .send()
                    .await
                    .map_err(|e| {
                        StepFailure::with_detail(
                            format!(
                                "instance {instance_id}: DescribeSnapshots failed: {}",
                                reason(&e)
                            ),
                            detail(Value::Null),
                        )
                    })
            })
            .await?;
            let mut states = serde_json::Map::new();
            let mut done = 0;
            for s in out.snapshots() {
                let id = s.snapshot_id().unwrap_or_default();
                let state = s.state().map(|x| x.as_str().to_owned()).unwrap_or_default();
                let progress = s.progress().unwrap_or("");
                tracing::info!(instance_id, snapshot_id = id, volume_id = s.volume_id().unwrap_or(""), %state, progress, "snapshot progress");
                states.insert(id.to_owned(), json!({"state": state, "progress": progress}));
                match s.state() {
                    Some(SnapshotState::Completed) => done += 1,
                    Some(SnapshotState::Error) => {
                        return Err(StepFailure::with_detail(
                            format!(
                                "instance {instance_id}: snapshot {id} failed: {}",
                                s.state_message().unwrap_or("no reason given")
                            ),
                            detail(Value::Object(states)),
                        ));
                    }
                    _ => {}
                }
            }
            if done == ids.len() {
                tracing::info!(instance_id, snapshots = ?ids, "snapshots completed");
                return Ok(detail(Value::Object(states)));
            }
            if Instant::now() + self.poll > deadline {
                return Err(StepFailure::with_detail(
                    format!(
                        "instance {instance_id}: {done} of {} snapshot(s) completed within the step's {} s",
                        ids.len(),
                        limit.as_secs()
                    ),
                    detail(Value::Object(states)),
                ));
            }
            tokio::time::sleep(self.poll).await;
        }
    }

    /// `aws.ec2.reboot_instance`.
    pub async fn reboot_instance(
        &self,
        instance_id: &str,
        limit: Duration,
    ) -> Result<Value, StepFailure> {
        let deadline = Instant::now() + limit;
        let late = || {
            format!(
                "instance {instance_id}: the reboot did not finish within the step's {} s",
                limit.as_secs()
            )
        };
        before(deadline, late, async {
            self.opted_in(instance_id).await?;
            self.client
                .reboot_instances()
                .instance_ids(instance_id)
                .send()
                .await
                .map_err(|e| {
                    StepFailure::new(format!(
                        "instance {instance_id}: RebootInstances failed: {}",
                        reason(&e)
                    ))
                })?;
            tracing::info!(instance_id, "reboot requested");
            Ok(json!({ "instance_id": instance_id, "rebooted": true }))
        })
        .await
    }

    /// `aws.ec2.reset_instance`: a root volume replacement task, waited for.
    #[allow(clippy::too_many_arguments)]
    pub async fn reset_instance(
        &self,
        record_id: RecordId,
        instance_id: &str,
        snapshot_id: Option<&str>,
        image_id: Option<&str>,
        delete_replaced_root_volume: bool,
        limit: Duration,
    ) -> Result<Value, StepFailure> {
        let deadline = Instant::now() + limit;
        let late = |what: &str| {
            format!(
                "instance {instance_id}: {what} did not finish within the step's {} s",
                limit.as_secs()
            )
        };
        before(
            deadline,
            || late("DescribeInstances"),
            self.opted_in(instance_id),
        )
        .await?;
        let from = match (snapshot_id, image_id) {
            (Some(s), _) => format!("snapshot {s}"),
            (None, Some(i)) => format!("image {i}"),
            (None, None) => "its launch state".to_owned(),
        };
        let created = before(deadline, || late("CreateReplaceRootVolumeTask"), async {
            self.client
                .create_replace_root_volume_task()
                .instance_id(instance_id)
                .set_snapshot_id(snapshot_id.map(str::to_owned))
                .set_image_id(image_id.map(str::to_owned))
                .delete_replaced_root_volume(delete_replaced_root_volume)
                // The same record asks once, even when the step runs again.
                .client_token(record_id.to_string())
                .tag_specifications(
                    TagSpecification::builder()
                        .resource_type(ResourceType::ReplaceRootVolumeTask)
                        .tags(
                            Tag::builder()
                                .key(RECORD_TAG)
                                .value(record_id.to_string())
                                .build(),
                        )
                        .build(),
                )
                .send()
                .await
                .map_err(|e| {
                    StepFailure::new(format!(
                        "instance {instance_id}: CreateReplaceRootVolumeTask failed: {}",
                        reason(&e)
                    ))
                })
        })
        .await?;
        let task_id = created
            .replace_root_volume_task()
            .and_then(|t| t.replace_root_volume_task_id())
            .map(str::to_owned)
            .ok_or_else(|| {
                StepFailure::new(format!(
                    "instance {instance_id}: CreateReplaceRootVolumeTask returned no task id"
                ))
            })?;
        tracing::info!(
            instance_id,
            task_id,
            from,
            "root volume replacement started"
        );
        let detail = |state: &str| {
            json!({
                "instance_id": instance_id,
                "replace_root_volume_task_id": task_id,
                "state": state,
                "restored_from": from,
            })
        };
        loop {
            let out = before(deadline, || late("DescribeReplaceRootVolumeTasks"), async {
                self.client
                    .describe_replace_root_volume_tasks()
                    .replace_root_volume_task_ids(&task_id)
                    .send()
                    .await
                    .map_err(|e| {
                        StepFailure::with_detail(
                            format!(
                                "instance {instance_id}: DescribeReplaceRootVolumeTasks failed: {}",
                                reason(&e)
                            ),
                            detail("unknown"),
                        )
                    })
            })
            .await?;
            let state = out
                .replace_root_volume_tasks()
                .iter()
                .find(|t| t.replace_root_volume_task_id() == Some(task_id.as_str()))
                .and_then(|t| t.task_state().cloned());
            let name = state.as_ref().map_or("unknown", |s| s.as_str()).to_owned();
            tracing::info!(instance_id, task_id, state = %name, "root volume replacement progress");
            match state {
                Some(ReplaceRootVolumeTaskState::Succeeded) => return Ok(detail(&name)),
                Some(
                    ReplaceRootVolumeTaskState::Failed | ReplaceRootVolumeTaskState::FailedDetached,
                ) => {
                    return Err(StepFailure::with_detail(
                        format!(
                            "instance {instance_id}: root volume replacement {task_id} ended `{name}`"
                        ),
                        detail(&name),
                    ));
                }
                _ => {}
            }
            if Instant::now() + self.poll > deadline {
                return Err(StepFailure::with_detail(
                    format!(
                        "instance {instance_id}: root volume replacement {task_id} still `{name}` after the step's {} s",
                        limit.as_secs()
                    ),
                    detail(&name),
                ));
            }
            tokio::time::sleep(self.poll).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_call_reads_as_one_short_line_never_the_error_dump() {
        use aws_sdk_ec2::operation::reboot_instances::RebootInstancesError;
        type E = SdkError<RebootInstancesError, ()>;
        let dump = format!("connection reset {}", "x".repeat(2000));
        let timeout: E = SdkError::timeout_error(dump.clone());
        assert_eq!(reason(&timeout), "timed out");
        let unbuilt: E = SdkError::construction_failure(dump);
        assert_eq!(reason(&unbuilt), "the request could not be built");
    }

    #[test]
    fn instance_ids() {
        for ok in ["i-1234567890abcdef0", "i-0abc1234"] {
            assert!(is_instance_id(ok), "{ok}");
        }
        for bad in [
            "",
            "i-",
            "i-XYZ12345",
            "vol-12345678",
            "i-1234567890abcdef",
            "i-../../x",
        ] {
            assert!(!is_instance_id(bad), "{bad}");
        }
    }
}
