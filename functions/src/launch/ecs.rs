//! `RunTask` on Fargate.
//!
//! - Overrides carry the [`LaunchContract`] only (identifiers; no secret, no payload).
//! - `clientToken` is `<record id>-<attempt>`: a repeated call for one attempt starts one task,
//!   and a new attempt is never answered with an earlier attempt's (possibly stopped) task.
//! - `startedBy` is the record id, so `ListTasks --started-by <id>` finds a record's tasks (the
//!   recovery sweeper adopts a live one instead of launching again).
//! - A 200 answer with `failures` and no task is a failure, not a success.

use async_trait::async_trait;
use aws_sdk_ecs::Client;
use aws_sdk_ecs::error::{DisplayErrorContext, SdkError};
use aws_sdk_ecs::types::{
    AssignPublicIp, AwsVpcConfiguration, ContainerOverride, KeyValuePair, LaunchType,
    NetworkConfiguration, TaskOverride,
};
use orchestrator_core::contract::vars;
use orchestrator_core::{LaunchContract, RecordId};

use super::{LaunchError, Launched, LiveTask, TaskInspector, TaskLauncher, TaskState};

/// The `startedBy` of tasks started before it became the record id; still recognised.
pub const STARTED_BY: &str = "gitops-orchestrator";

/// The `startedBy` of a record's tasks: its id (36 characters, the most ECS allows).
pub fn started_by(record: RecordId) -> String {
    record.to_string()
}

/// The `clientToken` of one launch attempt.
pub fn client_token(contract: &LaunchContract) -> String {
    format!("{}-{}", contract.record_id, contract.attempt)
}

/// Where and how tasks run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EcsSettings {
    pub cluster: String,
    pub task_definition: String,
    pub subnets: Vec<String>,
    pub security_groups: Vec<String>,
    pub assign_public_ip: bool,
    pub container_name: String,
}

#[derive(Debug, Clone)]
pub struct EcsLauncher {
    client: Client,
    settings: EcsSettings,
}

impl EcsLauncher {
    pub fn new(client: Client, settings: EcsSettings) -> Self {
        Self { client, settings }
    }
}

/// Failures worth retrying: capacity and throttling. Everything else (parameters, permissions,
/// missing resources) will fail the same way again.
fn is_retryable_reason(reason: &str) -> bool {
    let r = reason.to_ascii_lowercase();
    ["capacity", "throttl", "rate exceeded", "resource:"]
        .iter()
        .any(|k| r.contains(k))
}

/// The longest AWS error message kept in a reason (the rest is in the log).
const MAX_MESSAGE: usize = 300;

/// A failed ECS call as a [`LaunchError`]: a reason a person can read in one line (the operation,
/// AWS's error code and message), retryable or not. The SDK's whole error, with the raw response,
/// goes to the log only, with the record it was for.
fn classify_call<E, R>(op: &str, record: Option<RecordId>, e: SdkError<E, R>) -> LaunchError
where
    E: std::error::Error + aws_sdk_ecs::error::ProvideErrorMetadata + 'static,
    R: std::fmt::Debug,
{
    let record_id = record.map(|r| r.to_string()).unwrap_or_default();
    tracing::warn!(op, record_id, error = %DisplayErrorContext(&e), "ECS call failed");
    let (retryable, why) = match &e {
        SdkError::TimeoutError(_) => (true, "timed out".to_owned()),
        SdkError::DispatchFailure(_) => (true, "could not reach ECS".to_owned()),
        SdkError::ResponseError(_) => (true, "ECS's answer could not be read".to_owned()),
        SdkError::ServiceError(se) => {
            let code = se.err().code().unwrap_or_default();
            let retryable = code.contains("Throttl")
                || code == "ServerException"
                || code == "ServiceUnavailable";
            // The code and message AWS sent; an error without them says what it is itself.
            let why = match se.err().message() {
                Some(m) if !code.is_empty() => format!("{code}: {m}"),
                _ => se.err().to_string(),
            };
            let why = if why.chars().count() > MAX_MESSAGE {
                why.chars().take(MAX_MESSAGE).collect::<String>() + "…"
            } else {
                why
            };
            (retryable, why)
        }
        other => (false, other.to_string()),
    };
    LaunchError {
        retryable,
        reason: format!("{op} failed: {why}"),
    }
}

#[async_trait]
impl TaskLauncher for EcsLauncher {
    async fn launch(&self, contract: &LaunchContract) -> Result<Launched, LaunchError> {
        let s = &self.settings;
        let env = contract
            .to_env()
            .into_iter()
            .map(|(k, v)| KeyValuePair::builder().name(k).value(v).build())
            .collect::<Vec<_>>();
        let vpc = AwsVpcConfiguration::builder()
            .set_subnets(Some(s.subnets.clone()))
            .set_security_groups(Some(s.security_groups.clone()))
            .assign_public_ip(if s.assign_public_ip {
                AssignPublicIp::Enabled
            } else {
                AssignPublicIp::Disabled
            })
            .build()
            .map_err(|e| LaunchError::permanent(format!("network configuration: {e}")))?;
        let out = self
            .client
            .run_task()
            .cluster(&s.cluster)
            .task_definition(&s.task_definition)
            .launch_type(LaunchType::Fargate)
            .count(1)
            .network_configuration(
                NetworkConfiguration::builder()
                    .awsvpc_configuration(vpc)
                    .build(),
            )
            .overrides(
                TaskOverride::builder()
                    .container_overrides(
                        ContainerOverride::builder()
                            .name(&s.container_name)
                            .set_environment(Some(env))
                            .build(),
                    )
                    .build(),
            )
            .client_token(client_token(contract))
            .started_by(started_by(contract.record_id))
            .send()
            .await
            .map_err(|e| classify_call("RunTask", Some(contract.record_id), e))?;
        if let Some(arn) = out.tasks().iter().find_map(|t| t.task_arn()) {
            return Ok(Launched {
                task_arn: arn.to_owned(),
            });
        }
        let reasons: Vec<String> = out
            .failures()
            .iter()
            .map(|f| {
                let mut s = f.reason().unwrap_or("unknown reason").to_owned();
                if let Some(d) = f.detail() {
                    s.push_str(&format!(" ({d})"));
                }
                if let Some(a) = f.arn() {
                    s.push_str(&format!(" [{a}]"));
                }
                s
            })
            .collect();
        if reasons.is_empty() {
            return Err(LaunchError::permanent(
                "RunTask started no task and reported no failure",
            ));
        }
        let retryable = out
            .failures()
            .iter()
            .all(|f| is_retryable_reason(f.reason().unwrap_or_default()));
        Err(LaunchError {
            retryable,
            reason: format!("RunTask started no task: {}", reasons.join("; ")),
        })
    }
}

/// The attempt a task was started for, from its container overrides.
fn attempt_of(task: &aws_sdk_ecs::types::Task) -> Option<u32> {
    task.overrides()?
        .container_overrides()
        .iter()
        .flat_map(|c| c.environment())
        .find(|kv| kv.name() == Some(vars::ATTEMPT))
        .and_then(|kv| kv.value()?.parse().ok())
}

#[async_trait]
impl TaskInspector for EcsLauncher {
    async fn live_tasks(&self, record: RecordId) -> Result<Vec<LiveTask>, LaunchError> {
        // ListTasks lists tasks whose desired status is RUNNING unless told otherwise: exactly
        // the ones that may still do the work.
        let arns = self
            .client
            .list_tasks()
            .cluster(&self.settings.cluster)
            .started_by(started_by(record))
            .send()
            .await
            .map_err(|e| classify_call("ListTasks", Some(record), e))?
            .task_arns
            .unwrap_or_default();
        if arns.is_empty() {
            return Ok(Vec::new());
        }
        let out = self
            .client
            .describe_tasks()
            .cluster(&self.settings.cluster)
            .set_tasks(Some(arns))
            .send()
            .await
            .map_err(|e| classify_call("DescribeTasks", Some(record), e))?;
        Ok(out
            .tasks()
            .iter()
            .filter(|t| t.last_status() != Some("STOPPED"))
            .filter_map(|t| {
                Some(LiveTask {
                    task_arn: t.task_arn()?.to_owned(),
                    attempt: attempt_of(t),
                })
            })
            .collect())
    }

    async fn describe(&self, task_arn: &str) -> Result<TaskState, LaunchError> {
        let out = self
            .client
            .describe_tasks()
            .cluster(&self.settings.cluster)
            .tasks(task_arn)
            .send()
            .await
            .map_err(|e| classify_call("DescribeTasks", None, e))?;
        if let Some(t) = out.tasks().first() {
            let last = t.last_status().unwrap_or("UNKNOWN");
            if last != "STOPPED" {
                return Ok(TaskState::Live(last.to_owned()));
            }
            let exit = t
                .containers()
                .iter()
                .find_map(|c| c.exit_code())
                .map_or_else(|| "unknown".to_owned(), |c| c.to_string());
            return Ok(TaskState::Stopped(format!(
                "{} ({}), exit code {exit}",
                t.stop_code().map_or("unknown stop code", |c| c.as_str()),
                t.stopped_reason().unwrap_or("no reason given"),
            )));
        }
        let why = out
            .failures()
            .iter()
            .map(|f| f.reason().unwrap_or("unknown reason").to_owned())
            .collect::<Vec<_>>()
            .join("; ");
        Ok(TaskState::Gone(if why.is_empty() {
            "DescribeTasks returned neither the task nor a failure".to_owned()
        } else {
            format!("ECS does not know the task ({why})")
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capacity_is_retryable_and_missing_resources_are_not() {
        assert!(is_retryable_reason("Capacity is unavailable at this time."));
        assert!(is_retryable_reason("RESOURCE:MEMORY"));
        assert!(!is_retryable_reason("MISSING"));
        assert!(!is_retryable_reason("AccessDeniedException"));
    }
}
