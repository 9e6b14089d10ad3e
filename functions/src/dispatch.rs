//! The application layer: record first, then launch, then record the launch. The one path every
//! intake source takes (the webhook handlers and the Kafka batch loop), with no HTTP in it: it
//! returns [`DispatchError`], which `api` maps to status codes and the Kafka function to its
//! per-record report ([`process_batch`]).
//!
//! - The record is written before anything starts (conditionally on its dedupe key: a redelivery
//!   gets the existing record back and launches nothing).
//! - Launch failures that may pass (capacity, throttling) are retried with exponential backoff
//!   within a total time budget; others (parameters, permissions, missing resources) are not.
//! - Every accepted record ends `dispatched`, `dispatch_failed` or `ignored`. If the process dies
//!   between the write and the launch, the record stays `received` and [`redispatch`] launches it
//!   later with the same ECS `clientToken` (the record id), so it still starts at most one task.

use std::time::{Duration, Instant};

use orchestrator_core::store::{Created, RecordStore, StoreError, Transition};
use orchestrator_core::{LaunchContract, Record, RecordId, Status};
use serde::Serialize;

use crate::intake::port::kafka::{self, Coordinates, Decoded, NotKafka};
use crate::launch::{LaunchError, Launched, TaskLauncher};
use crate::rules::RuleSet;

/// Why an accepted event or a redispatch did not end as asked.
#[derive(Debug, thiserror::Error)]
pub enum DispatchError {
    #[error("record {0} not found")]
    NotFound(RecordId),
    /// The record is not in a state that allows it (only `received` records are launched again),
    /// or it has nothing to launch.
    #[error("{0}")]
    Conflict(String),
    /// The launch failed (after the retries its failure allowed); recorded as `dispatch_failed`.
    #[error("the task could not be launched: {reason}")]
    LaunchFailed { record_id: RecordId, reason: String },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// How launch failures are retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in all, the first included.
    pub max_attempts: u32,
    /// The first wait; each next wait doubles.
    pub initial_backoff: Duration,
    /// No retry starts once this much time has passed since the first attempt.
    pub budget: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 4,
            initial_backoff: Duration::from_millis(250),
            budget: Duration::from_secs(10),
        }
    }
}

/// What became of an accepted delivery.
#[derive(Debug)]
pub enum Accepted {
    /// A new record; launched (or ignored, when the record says so).
    New(Record),
    /// A redelivery of an event already recorded: nothing was launched.
    Duplicate(Record),
}

/// The job the task must run for `record`, if any: the gitops pull request of a derived job, or
/// the remediation of a matched rule's actions (which the task reads from the record).
pub fn contract_for(record: &Record) -> Option<LaunchContract> {
    match &record.job {
        Some(job) => Some(LaunchContract::gitops_pr(record.id, job.clone())),
        None if !record.actions.is_empty() => Some(LaunchContract::remediation(record.id)),
        None => None,
    }
}

/// Launches with bounded, classified retries.
pub async fn launch_with_retries(
    launcher: &dyn TaskLauncher,
    contract: &LaunchContract,
    policy: RetryPolicy,
) -> Result<Launched, LaunchError> {
    let started = Instant::now();
    let mut backoff = policy.initial_backoff;
    let mut attempt = 1;
    loop {
        match launcher.launch(contract).await {
            Ok(l) => return Ok(l),
            Err(e) => {
                let out_of_time = started.elapsed() + backoff > policy.budget;
                if !e.retryable || attempt >= policy.max_attempts || out_of_time {
                    let why = if !e.retryable {
                        "not retryable"
                    } else if out_of_time {
                        "retry budget spent"
                    } else {
                        "attempts exhausted"
                    };
                    return Err(LaunchError {
                        retryable: e.retryable,
                        reason: format!("{} (after {attempt} attempt(s), {why})", e.reason),
                    });
                }
                tracing::warn!(record_id = %contract.record_id, attempt, reason = %e.reason, "launch failed; retrying");
                tokio::time::sleep(backoff).await;
                backoff = backoff.saturating_mul(2);
                attempt += 1;
            }
        }
    }
}

/// Launches the task of a `received` record and records the outcome.
async fn launch_and_record(
    store: &dyn RecordStore,
    launcher: &dyn TaskLauncher,
    policy: RetryPolicy,
    record: &Record,
    contract: LaunchContract,
) -> Result<Record, DispatchError> {
    match launch_with_retries(launcher, &contract, policy).await {
        Ok(launched) => {
            let updated = store
                .transition(
                    record.id,
                    &Transition::to(Status::Dispatched).task_arn(launched.task_arn),
                )
                .await?;
            tracing::info!(record_id = %record.id, task = updated.task_arn.as_deref().unwrap_or(""), "dispatched");
            Ok(updated)
        }
        Err(e) => {
            tracing::warn!(record_id = %record.id, reason = %e.reason, "dispatch failed");
            store
                .transition(
                    record.id,
                    &Transition::to(Status::DispatchFailed).reason(e.reason.clone()),
                )
                .await?;
            Err(DispatchError::LaunchFailed {
                record_id: record.id,
                reason: e.reason,
            })
        }
    }
}

/// Writes `record`; when it is `received` with a job, launches the task and records the outcome.
/// A launch failure is recorded as `dispatch_failed` and returned as
/// [`DispatchError::LaunchFailed`].
pub async fn record_and_launch(
    store: &dyn RecordStore,
    launcher: &dyn TaskLauncher,
    policy: RetryPolicy,
    record: Record,
) -> Result<Accepted, DispatchError> {
    if let Created::Duplicate(existing) = store.create(&record).await? {
        tracing::info!(record_id = %existing.id, "duplicate delivery; nothing launched");
        return Ok(Accepted::Duplicate(*existing));
    }
    tracing::info!(record_id = %record.id, source = record.source.as_str(), status = %record.status, "recorded");
    let (Status::Received, Some(contract)) = (record.status, contract_for(&record)) else {
        return Ok(Accepted::New(record));
    };
    launch_and_record(store, launcher, policy, &record, contract)
        .await
        .map(Accepted::New)
}

/// Launches a record left in `received` (a crash between the write and the launch), with the
/// same client token as the first attempt would have used.
pub async fn redispatch(
    store: &dyn RecordStore,
    launcher: &dyn TaskLauncher,
    policy: RetryPolicy,
    id: RecordId,
) -> Result<Record, DispatchError> {
    let record = store.get(id).await?.ok_or(DispatchError::NotFound(id))?;
    if record.status != Status::Received {
        return Err(DispatchError::Conflict(format!(
            "record {id} is `{}`; only `received` records can be dispatched again",
            record.status
        )));
    }
    let contract = contract_for(&record)
        .ok_or_else(|| DispatchError::Conflict(format!("record {id} has no job to dispatch")))?;
    launch_and_record(store, launcher, policy, &record, contract).await
}

/// The `status` of an item whose record could not be written.
pub const ITEM_ERROR: &str = "error";
/// The `status` of an item not started: the invocation's time was running out.
pub const ITEM_DEFERRED: &str = "deferred";

/// What became of one Kafka record.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ItemReport {
    #[serde(flatten)]
    pub at: Coordinates,
    pub record_id: Option<RecordId>,
    /// The record's status (`dispatched`, `ignored`, `rejected`, `dispatch_failed`, ...), or
    /// [`ITEM_ERROR`] when it could not be written, or [`ITEM_DEFERRED`] when it was not started.
    pub status: String,
    pub duplicate: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// What became of a batch.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct BatchReport {
    pub records: Vec<ItemReport>,
}

/// One entry of a Kafka partial batch response: resume `partition` (the event's
/// `<topic>-<partition>` key) from `offset`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ItemIdentifier {
    pub partition: String,
    pub offset: i64,
}

impl BatchReport {
    /// Records that could not be written (store errors): they must be delivered again.
    pub fn unwritten(&self) -> usize {
        self.count(ITEM_ERROR)
    }

    pub fn count(&self, status: &str) -> usize {
        self.records.iter().filter(|r| r.status == status).count()
    }

    /// The partial batch response: for each partition with an item not done (a store error, or
    /// not started), its lowest such offset; the event source delivers that partition again from
    /// there. Empty when every item is done. `None` when such an item has no usable coordinates
    /// (a record too broken to name its partition or offset): only a failure of the whole
    /// invocation can then have it delivered again.
    pub fn item_failures(&self) -> Option<Vec<ItemIdentifier>> {
        let mut first = std::collections::BTreeMap::<(String, i64), i64>::new();
        for item in self
            .records
            .iter()
            .filter(|r| r.status == ITEM_ERROR || r.status == ITEM_DEFERRED)
        {
            let at = &item.at;
            if at.partition < 0 || at.offset < 0 {
                return None;
            }
            let offset = first
                .entry((at.topic.clone(), at.partition))
                .or_insert(at.offset);
            *offset = (*offset).min(at.offset);
        }
        Some(
            first
                .into_iter()
                .map(|((topic, partition), offset)| ItemIdentifier {
                    partition: format!("{topic}-{partition}"),
                    offset,
                })
                .collect(),
        )
    }
}

/// The Kafka batch loop: records (and launches) every record of `event`, decoded by
/// [`kafka::decode`]. One record's failure never stops the others;
/// see [`BatchReport::item_failures`] for what must be delivered again.
pub async fn process_batch(
    store: &dyn RecordStore,
    launcher: &dyn TaskLauncher,
    policy: RetryPolicy,
    rules: &RuleSet,
    event: &serde_json::Value,
) -> Result<BatchReport, NotKafka> {
    process_batch_until(store, launcher, policy, rules, event, None).await
}

/// [`process_batch`], starting no record once `stop_by` has passed: those are reported
/// [`ITEM_DEFERRED`], for the event source to deliver again.
pub async fn process_batch_until(
    store: &dyn RecordStore,
    launcher: &dyn TaskLauncher,
    policy: RetryPolicy,
    rules: &RuleSet,
    event: &serde_json::Value,
    stop_by: Option<tokio::time::Instant>,
) -> Result<BatchReport, NotKafka> {
    let runs = RunsIntake::default();
    process_batch_with(store, launcher, policy, rules, &runs, event, stop_by).await
}

/// What the runs topic's self-service deploy actions need beside the rules.
#[derive(Debug, Clone, Default)]
pub struct RunsIntake {
    pub derive: crate::intake::derive::DeriveConfig,
    pub deploy_actions: Vec<String>,
}

/// [`process_batch_until`], with the deploy actions of the runs topic.
pub async fn process_batch_with(
    store: &dyn RecordStore,
    launcher: &dyn TaskLauncher,
    policy: RetryPolicy,
    rules: &RuleSet,
    runs: &RunsIntake,
    event: &serde_json::Value,
    stop_by: Option<tokio::time::Instant>,
) -> Result<BatchReport, NotKafka> {
    let mut report = BatchReport::default();
    for item in kafka::decode(event)? {
        if stop_by.is_some_and(|t| tokio::time::Instant::now() >= t) {
            let at = item.at().clone();
            report.records.push(ItemReport {
                at,
                record_id: None,
                status: ITEM_DEFERRED.into(),
                duplicate: false,
                reason: Some("not started: the invocation was running out of time".into()),
            });
            continue;
        }
        let (at, record) = match item {
            Decoded::Event { at, event } => (at, event.to_record(rules)),
            Decoded::Run { at, run } => {
                match run.to_record(rules, &runs.derive, &runs.deploy_actions) {
                    Ok(r) => (at, r),
                    Err(e) => {
                        let reason = format!("the invocation cannot be run: {e}");
                        (at.clone(), kafka::rejected_record(&at, &reason, None))
                    }
                }
            }
            Decoded::Rejected { at, reason, value } => {
                tracing::warn!(topic = %at.topic, partition = at.partition, offset = at.offset, %reason, "Kafka record rejected");
                let r = kafka::rejected_record(&at, &reason, value.as_deref());
                (at, r)
            }
        };
        let outcome = match record_and_launch(store, launcher, policy, record).await {
            // A redelivered record still `received`: the invocation that wrote it stopped before
            // launching (a Lambda timeout, say), and Kafka delivered the batch again. Launch it now,
            // with the same client token; otherwise it would wait forever.
            Ok(Accepted::Duplicate(r))
                if r.status == Status::Received && contract_for(&r).is_some() =>
            {
                tracing::info!(record_id = %r.id, "redelivered record was never launched; dispatching it");
                redispatch(store, launcher, policy, r.id)
                    .await
                    .map(Accepted::Duplicate)
            }
            other => other,
        };
        let item = match outcome {
            Ok(Accepted::New(r)) => ItemReport {
                at,
                record_id: Some(r.id),
                status: r.status.as_str().to_owned(),
                duplicate: false,
                reason: r.status_reason,
            },
            Ok(Accepted::Duplicate(r)) => ItemReport {
                at,
                record_id: Some(r.id),
                status: r.status.as_str().to_owned(),
                duplicate: true,
                reason: None,
            },
            Err(DispatchError::LaunchFailed { record_id, reason }) => ItemReport {
                at,
                record_id: Some(record_id),
                status: Status::DispatchFailed.as_str().to_owned(),
                duplicate: false,
                reason: Some(reason),
            },
            Err(e) => {
                let detail = e.to_string();
                tracing::error!(topic = %at.topic, partition = at.partition, offset = at.offset, error = %detail, "Kafka record not recorded");
                ItemReport {
                    at,
                    record_id: None,
                    status: ITEM_ERROR.into(),
                    duplicate: false,
                    reason: Some(detail),
                }
            }
        };
        report.records.push(item);
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(topic: &str, partition: i64, offset: i64, status: &str) -> ItemReport {
        ItemReport {
            at: Coordinates {
                topic: topic.into(),
                partition,
                offset,
            },
            record_id: None,
            status: status.into(),
            duplicate: false,
            reason: None,
        }
    }

    #[test]
    fn item_failures_name_the_first_unfinished_offset_of_each_partition() {
        let report = BatchReport {
            records: vec![
                item("t", 0, 10, "dispatched"),
                item("t", 0, 11, ITEM_ERROR),
                item("t", 0, 12, "rejected"),
                item("t", 0, 13, ITEM_DEFERRED),
                item("t", 1, 7, "ignored"),
                item("t", 1, 8, ITEM_DEFERRED),
                item("t", 1, 9, ITEM_DEFERRED),
                item("u.v-w", 3, 5, "dispatched"),
            ],
        };
        assert_eq!(
            report.item_failures().unwrap(),
            [
                ItemIdentifier {
                    partition: "t-0".into(),
                    offset: 11
                },
                ItemIdentifier {
                    partition: "t-1".into(),
                    offset: 8
                },
            ]
        );
        // The answer Lambda reads: {"partition": "<topic>-<n>", "offset": n}.
        assert_eq!(
            serde_json::to_value(&report.item_failures().unwrap()[0]).unwrap(),
            serde_json::json!({"partition": "t-0", "offset": 11})
        );
    }

    #[test]
    fn a_done_batch_has_no_item_failures_and_an_unlocatable_one_fails_whole() {
        let done = BatchReport {
            records: vec![item("t", 0, 1, "dispatched"), item("t", 0, 2, "rejected")],
        };
        assert_eq!(done.item_failures(), Some(vec![]));
        let lost = BatchReport {
            records: vec![item("t", 0, 1, "dispatched"), item("t", -1, -1, ITEM_ERROR)],
        };
        assert_eq!(lost.item_failures(), None);
        // A rejected record without coordinates is done: it needs no redelivery.
        let rejected = BatchReport {
            records: vec![item("t", -1, -1, "rejected")],
        };
        assert_eq!(rejected.item_failures(), Some(vec![]));
    }
}
