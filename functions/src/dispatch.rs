//! The application layer: record first, then launch, then record the launch. The one path every
//! intake source takes (the webhook handlers and the Kafka batch loop) and the recovery sweeper
//! ([`crate::recovery`]) reuses, with no HTTP in it: it returns [`DispatchError`], which `api`
//! maps to status codes and the Kafka function to its per-record report ([`process_batch`]).
//!
//! - The record is written before anything starts (conditionally on its dedupe key: a redelivery
//!   gets the existing record back and launches nothing).
//! - Each launch is an attempt with its own number ([`Record::attempt`], in the contract and in
//!   ECS's `clientToken`); the launch is recorded only while its attempt is the record's current
//!   one, and a task of another attempt does no work, so at most one task ever does the work.
//! - Launch failures that may pass (capacity, throttling, timeouts) are retried with exponential
//!   backoff within a time budget; if they still fail, the record is `dispatch_failed` with a
//!   pending retry (`retry_at`) that the sweeper carries out, until [`RetryPolicy::give_up_after`]
//!   has passed since the event arrived; then the failure is final ("gave up after N attempts
//!   over T"). Other failures (parameters, permissions, missing resources) are final at once.
//! - [`relaunch`] starts a new attempt for a record left `received` (a crash between the write
//!   and the launch, or a lost `dispatched` write) or `dispatch_failed`: it first adopts a live
//!   task of the record's current attempt, if ECS has one, instead of launching.

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use orchestrator_core::store::{Created, RecordStore, StoreError, Transition};
use orchestrator_core::{LaunchContract, Record, RecordId, Status};
use serde::Serialize;

use crate::intake::port::kafka::{self, Coordinates, Decoded, NotKafka};
use crate::launch::{LaunchError, Launched, TaskLauncher, Tasks};
use crate::rules::RuleSet;

/// Why an accepted event or a redispatch did not end as asked.
#[derive(Debug, thiserror::Error)]
pub enum DispatchError {
    #[error("record {0} not found")]
    NotFound(RecordId),
    /// The record is not in a state that allows it (only `received` and `dispatch_failed`
    /// records are launched again), or it has nothing to launch.
    #[error("{0}")]
    Conflict(String),
    /// The launch failed for good (after the retries its failure allowed); recorded as
    /// `dispatch_failed` with no retry pending.
    #[error("the task could not be launched: {reason}")]
    LaunchFailed { record_id: RecordId, reason: String },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// How launch failures are retried: at once, within the request ([`Self::max_attempts`],
/// [`Self::budget`]), then later by the recovery sweeper ([`Self::retry_after`],
/// [`Self::give_up_after`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Calls in one launch attempt, the first included.
    pub max_attempts: u32,
    /// The first wait between calls; each next wait doubles.
    pub initial_backoff: Duration,
    /// No call starts once this much time has passed since the attempt's first.
    pub budget: Duration,
    /// The wait before the sweeper's first new attempt; it doubles with each attempt, up to
    /// [`Self::max_retry_delay`].
    pub retry_after: Duration,
    /// The longest wait between two launch attempts of one record.
    pub max_retry_delay: Duration,
    /// No new attempt is scheduled once this much time has passed since the event arrived.
    pub give_up_after: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 4,
            initial_backoff: Duration::from_millis(250),
            budget: Duration::from_secs(10),
            retry_after: Duration::from_secs(30),
            max_retry_delay: Duration::from_secs(300),
            give_up_after: Duration::from_secs(30 * 60),
        }
    }
}

impl RetryPolicy {
    /// The wait after launch attempt `attempt` failed.
    pub fn delay_after(&self, attempt: u32) -> Duration {
        let factor = 1u32 << attempt.saturating_sub(1).min(16);
        self.retry_after
            .saturating_mul(factor)
            .min(self.max_retry_delay.max(self.retry_after))
    }
}

/// What became of an accepted delivery.
#[derive(Debug)]
pub enum Accepted {
    /// A new record; launched (or ignored, when the record says so, or `dispatch_failed` with a
    /// retry pending).
    New(Record),
    /// A redelivery of an event already recorded: nothing was launched.
    Duplicate(Record),
}

/// The job the task must run for `record`, at its current attempt, if any: the gitops pull
/// request of a derived job, or the remediation of a matched rule's actions (which the task reads
/// from the record).
pub fn contract_for(record: &Record) -> Option<LaunchContract> {
    let contract = match &record.job {
        Some(job) => LaunchContract::gitops_pr(record.id, job.clone()),
        None if !record.actions.is_empty() => LaunchContract::remediation(record.id),
        None => return None,
    };
    Some(
        contract
            .with_attempt(record.attempt)
            .with_dry_run(record.dry_run),
    )
}

/// Launches with bounded, classified retries.
pub async fn launch_with_retries(
    launcher: &dyn TaskLauncher,
    contract: &LaunchContract,
    policy: RetryPolicy,
) -> Result<Launched, LaunchError> {
    let started = Instant::now();
    let mut backoff = policy.initial_backoff;
    let mut call = 1;
    loop {
        match launcher.launch(contract).await {
            Ok(l) => return Ok(l),
            Err(e) => {
                let out_of_time = started.elapsed() + backoff > policy.budget;
                if !e.retryable || call >= policy.max_attempts || out_of_time {
                    let why = if !e.retryable {
                        "not retryable"
                    } else if out_of_time {
                        "retry budget spent"
                    } else {
                        "calls exhausted"
                    };
                    return Err(LaunchError {
                        retryable: e.retryable,
                        reason: format!("{} (after {call} call(s), {why})", e.reason),
                    });
                }
                tracing::warn!(record_id = %contract.record_id, attempt = contract.attempt, call, reason = %e.reason, "launch failed; retrying");
                tokio::time::sleep(backoff).await;
                backoff = backoff.saturating_mul(2);
                call += 1;
            }
        }
    }
}

/// A duration for people: `45 s`, `12 min`, `2 h 5 min`.
pub fn human_duration(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0..120 => format!("{s} s"),
        120..7200 => format!("{} min", s / 60),
        _ => format!("{} h {} min", s / 3600, (s % 3600) / 60),
    }
}

/// The change that records a failed launch attempt of `record`: a pending retry while the cause
/// may pass and the event is young enough, a final failure otherwise.
pub fn failed_launch(
    record: &Record,
    e: &LaunchError,
    policy: RetryPolicy,
    now: DateTime<Utc>,
) -> Transition {
    let age = (now - record.received_at).to_std().unwrap_or_default();
    let to = (record.status != Status::DispatchFailed).then_some(Status::DispatchFailed);
    let n = record.attempt;
    let (retry_at, reason) = if !e.retryable {
        (None, e.reason.clone())
    } else if age >= policy.give_up_after {
        (
            None,
            format!(
                "{}; gave up after {n} launch attempt(s) over {}",
                e.reason,
                human_duration(age)
            ),
        )
    } else {
        let at = now
            + chrono::Duration::from_std(policy.delay_after(n))
                .unwrap_or_else(|_| chrono::Duration::seconds(60));
        (
            Some(at),
            format!(
                "{}; launch attempt {n} failed, attempt {} at {}",
                e.reason,
                n + 1,
                orchestrator_core::record::rfc3339::format(&at)
            ),
        )
    };
    Transition {
        to,
        retry_at: Some(retry_at),
        // In the history too when the status stays `dispatch_failed` (a retry that failed).
        ..Transition::default()
            .reason(reason.clone())
            .note(reason)
            .at_attempt(n)
    }
}

/// Launches the task of `record` (`received` or `dispatch_failed`) at its current attempt and
/// records the outcome. A failure that will be retried returns the record (`dispatch_failed`,
/// `retry_at` set); a final one is [`DispatchError::LaunchFailed`].
pub async fn launch_and_record(
    store: &dyn RecordStore,
    launcher: &dyn TaskLauncher,
    policy: RetryPolicy,
    record: &Record,
) -> Result<Record, DispatchError> {
    let contract = contract_for(record).ok_or_else(|| {
        DispatchError::Conflict(format!("record {} has no job to dispatch", record.id))
    })?;
    match launch_with_retries(launcher, &contract, policy).await {
        Ok(launched) => {
            let change = Transition::to(Status::Dispatched)
                .task_arn(launched.task_arn.clone())
                .at_attempt(record.attempt);
            match store.transition_from(record, &change).await {
                Ok(updated) => {
                    tracing::info!(record_id = %record.id, attempt = record.attempt, task = %launched.task_arn, "dispatched");
                    Ok(updated)
                }
                // The task reported first (`running`), or another attempt began: the record
                // already says what happens; the task of a superseded attempt does no work.
                Err(e @ (StoreError::Conflict(_) | StoreError::Superseded { .. })) => {
                    tracing::info!(record_id = %record.id, attempt = record.attempt, task = %launched.task_arn, reason = %e, "launch not recorded: the record moved on");
                    store
                        .get(record.id)
                        .await?
                        .ok_or(DispatchError::NotFound(record.id))
                }
                Err(e) => Err(e.into()),
            }
        }
        Err(e) => {
            let change = failed_launch(record, &e, policy, orchestrator_core::record::now());
            let updated = store.transition_from(record, &change).await?;
            tracing::warn!(record_id = %record.id, attempt = record.attempt, retry_at = ?updated.retry_at, reason = %e.reason, "dispatch failed");
            match updated.retry_at {
                Some(_) => Ok(updated),
                None => Err(DispatchError::LaunchFailed {
                    record_id: record.id,
                    reason: updated.status_reason.unwrap_or(e.reason),
                }),
            }
        }
    }
}

/// Writes `record`; when it is `received` with a job, launches the task and records the outcome.
/// A final launch failure is recorded as `dispatch_failed` and returned as
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
    if record.status != Status::Received || contract_for(&record).is_none() {
        return Ok(Accepted::New(record));
    }
    launch_and_record(store, launcher, policy, &record)
        .await
        .map(Accepted::New)
}

/// Launches a record again: `received` (never launched, or its launch never recorded) or
/// `dispatch_failed`. A live task of its current attempt is adopted (`dispatched`, nothing
/// launched); otherwise a new attempt begins and is launched. `why` goes to the history.
pub async fn relaunch(
    store: &dyn RecordStore,
    tasks: &dyn Tasks,
    policy: RetryPolicy,
    record: &Record,
    why: &str,
) -> Result<Record, DispatchError> {
    let id = record.id;
    if !matches!(record.status, Status::Received | Status::DispatchFailed) {
        return Err(DispatchError::Conflict(format!(
            "record {id} is `{}`; only `received` and `dispatch_failed` records can be dispatched again",
            record.status
        )));
    }
    if contract_for(record).is_none() {
        return Err(DispatchError::Conflict(format!(
            "record {id} has no job to dispatch"
        )));
    }
    let live = tasks.live_tasks(id).await.map_err(|e| {
        DispatchError::Store(StoreError::Backend(format!(
            "cannot look for the record's tasks: {e}"
        )))
    })?;
    if let Some(task) = live
        .iter()
        .find(|t| t.attempt.unwrap_or(1) == record.attempt)
    {
        let change = Transition::to(Status::Dispatched)
            .task_arn(task.task_arn.clone())
            .at_attempt(record.attempt)
            .note(format!(
                "{why}: adopted the live task {} of attempt {}",
                task.task_arn, record.attempt
            ));
        let adopted = store.transition(id, &change).await?;
        tracing::info!(record_id = %id, attempt = record.attempt, task = %task.task_arn, why, "adopted a live task");
        return Ok(adopted);
    }
    let next = record.attempt + 1;
    let change = Transition {
        attempt: Some(next),
        ..Transition::default()
            .at_attempt(record.attempt)
            .note(format!("{why}: launching attempt {next}"))
    };
    let current = store.transition(id, &change).await?;
    tracing::info!(record_id = %id, attempt = next, why, "launching a new attempt");
    launch_and_record(store, tasks, policy, &current).await
}

/// The operator's re-dispatch of record `id` ([`relaunch`]).
pub async fn redispatch(
    store: &dyn RecordStore,
    tasks: &dyn Tasks,
    policy: RetryPolicy,
    id: RecordId,
) -> Result<Record, DispatchError> {
    let record = store.get(id).await?.ok_or(DispatchError::NotFound(id))?;
    relaunch(store, tasks, policy, &record, "re-dispatch requested").await
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
    launcher: &dyn Tasks,
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
    launcher: &dyn Tasks,
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
    launcher: &dyn Tasks,
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
            // recording a launch (a Lambda timeout, say), and Kafka delivered the batch again.
            // Adopt its task or launch it now rather than wait for the sweeper.
            Ok(Accepted::Duplicate(r))
                if r.status == Status::Received && contract_for(&r).is_some() =>
            {
                tracing::info!(record_id = %r.id, "redelivered record was never launched; dispatching it");
                relaunch(
                    store,
                    launcher,
                    policy,
                    &r,
                    "redelivered by Kafka, never launched",
                )
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
