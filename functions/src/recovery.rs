//! The recovery sweeper: brings every accepted record to a final state with nobody watching. One
//! implementation, run by the `recovery` Lambda on an EventBridge schedule and on a timer inside
//! the local server.
//!
//! Each pass ([`sweep`]):
//! - `received` for longer than [`RecoveryPolicy::received_after`] (a crash between the write
//!   and the launch, or a lost `dispatched` write): a live task of the record's attempt is
//!   adopted, otherwise a new attempt is launched ([`dispatch::relaunch`]);
//! - `dispatch_failed` with a retry due (`retry_at` passed): the same; a failure that may pass is
//!   scheduled again with a longer wait, until [`RetryPolicy::give_up_after`], then final with the
//!   reason "gave up after N launch attempts over T";
//! - `dispatched`/`running` with no progress for [`RecoveryPolicy::stuck_after`] (the task's time
//!   limit): the task is described; one that stopped or that ECS no longer knows ends the record
//!   `failed` with what ECS says; one still running is left alone (and noted once).
//!
//! Every decision is logged with the record id and written to the record's history. Every write
//! is a conditional transition at the attempt the sweeper read, so a task, the lifecycle
//! function, a webhook or another sweeper that got there first wins, and the sweeper moves on.

use std::time::Duration;

use chrono::{DateTime, Utc};
use futures_util::StreamExt;
use orchestrator_core::store::{ListQuery, MAX_PAGE, RecordStore, StoreError, Transition};
use orchestrator_core::{Record, RecordId, Status};
use serde::Serialize;

use crate::dispatch::{self, DispatchError, RetryPolicy, human_duration};
use crate::launch::{TaskState, Tasks};

/// When the sweeper acts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecoveryPolicy {
    /// A `received` record this old (since its last change) is launched again.
    pub received_after: Duration,
    /// A `dispatched` or `running` record with no change for this long has its task described.
    pub stuck_after: Duration,
    /// How launches are retried (within a pass, and between passes).
    pub retry: RetryPolicy,
    /// Pages of [`MAX_PAGE`] records read per status and pass.
    pub max_pages: u32,
    /// Records handled at once.
    pub concurrency: usize,
}

impl Default for RecoveryPolicy {
    fn default() -> Self {
        Self {
            received_after: Duration::from_secs(120),
            stuck_after: Duration::from_secs(3600),
            retry: RetryPolicy::default(),
            max_pages: 10,
            concurrency: 8,
        }
    }
}

/// What one pass did, by decision.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct SweepReport {
    /// Records read (in the statuses the sweeper looks at).
    pub examined: usize,
    /// New attempts that launched a task.
    pub launched: usize,
    /// Live tasks adopted instead of launching.
    pub adopted: usize,
    /// Launch attempts that failed and are scheduled again.
    pub retry_scheduled: usize,
    /// Launch attempts that failed for good (gave up, or a failure that cannot pass).
    pub gave_up: usize,
    /// Records ended `failed` because their task stopped or is gone.
    pub failed: usize,
    /// Records past the time limit whose task still runs.
    pub still_running: usize,
    /// Records another writer changed first (the sweeper's write was refused; nothing to do).
    pub raced: usize,
    /// Records that could not be handled this pass (they are tried again on the next one).
    pub errors: Vec<String>,
}

impl SweepReport {
    fn merge(&mut self, other: SweepReport) {
        self.examined += other.examined;
        self.launched += other.launched;
        self.adopted += other.adopted;
        self.retry_scheduled += other.retry_scheduled;
        self.gave_up += other.gave_up;
        self.failed += other.failed;
        self.still_running += other.still_running;
        self.raced += other.raced;
        self.errors.extend(other.errors);
    }

    /// Records the sweeper changed.
    pub fn acted(&self) -> usize {
        self.launched + self.adopted + self.retry_scheduled + self.gave_up + self.failed
    }
}

/// One pass over the records, as of `now`.
pub async fn sweep(
    store: &dyn RecordStore,
    tasks: &dyn Tasks,
    policy: &RecoveryPolicy,
    now: DateTime<Utc>,
) -> SweepReport {
    let mut report = SweepReport::default();
    let age = |t: DateTime<Utc>| (now - t).to_std().unwrap_or_default();
    let at_once = policy.concurrency.max(1);

    // Records are listed from the newest created before the threshold: none younger can qualify.
    let created_before = |d: Duration| now - chrono::Duration::from_std(d).unwrap_or_default();
    let stuck_received: Vec<Record> = candidates(
        store,
        Status::Received,
        created_before(policy.received_after),
        policy,
        &mut report,
    )
    .await
    .into_iter()
    .filter(|r| age(r.updated_at) >= policy.received_after)
    .collect();
    let due_retries: Vec<Record> =
        candidates(store, Status::DispatchFailed, now, policy, &mut report)
            .await
            .into_iter()
            .filter(|r| r.retry_at.is_some_and(|due| due <= now))
            .collect();
    let relaunches = stuck_received
        .into_iter()
        .chain(due_retries)
        .map(|record| async move {
            let why = match record.status {
                Status::Received => format!(
                    "recovery: `received` for {} with no launch recorded",
                    human_duration(age(record.updated_at))
                ),
                _ => format!("recovery: retry of launch attempt {}", record.attempt),
            };
            relaunch(store, tasks, policy, &record, &why).await
        });
    let mut done = futures_util::stream::iter(relaunches).buffer_unordered(at_once);
    while let Some(r) = done.next().await {
        report.merge(r);
    }

    let mut stuck = Vec::new();
    for status in [Status::Dispatched, Status::Running] {
        stuck.extend(
            candidates(
                store,
                status,
                created_before(policy.stuck_after),
                policy,
                &mut report,
            )
            .await
            .into_iter()
            .filter(|r| age(r.updated_at) >= policy.stuck_after),
        );
    }
    let checks = stuck.into_iter().map(|record| async move {
        check_task(store, tasks, &record, age(record.updated_at)).await
    });
    let mut done = futures_util::stream::iter(checks).buffer_unordered(at_once);
    while let Some(r) = done.next().await {
        report.merge(r);
    }

    if report.acted() > 0 || !report.errors.is_empty() {
        tracing::info!(report = ?report, "recovery pass");
    } else {
        tracing::debug!(report = ?report, "recovery pass");
    }
    report
}

/// The records in `status` created before `before`, newest first, at most `max_pages` pages. A
/// `dispatch_failed` record older than the retry window has no retry pending; reading stops
/// there.
async fn candidates(
    store: &dyn RecordStore,
    status: Status,
    before: DateTime<Utc>,
    policy: &RecoveryPolicy,
    report: &mut SweepReport,
) -> Vec<Record> {
    let mut out = Vec::new();
    let mut query = ListQuery {
        limit: MAX_PAGE,
        status: Some(status),
        after: Some(RecordId::first_at(before)),
        ..ListQuery::default()
    };
    let oldest_retry = orchestrator_core::record::now()
        - chrono::Duration::from_std(
            policy.retry.give_up_after + dispatch::MAX_RETRY_DELAY + policy.retry.budget,
        )
        .unwrap_or_else(|_| chrono::Duration::days(1));
    for _ in 0..policy.max_pages {
        let page = match store.list(&query).await {
            Ok(p) => p,
            Err(e) => {
                tracing::error!(%status, error = %e, "recovery: cannot list records");
                report
                    .errors
                    .push(format!("listing `{status}` records: {e}"));
                break;
            }
        };
        let past_window = status == Status::DispatchFailed
            && page
                .records
                .last()
                .is_some_and(|r| r.received_at < oldest_retry);
        // A listing filtered by status may include a record that has moved on since: check.
        out.extend(page.records.into_iter().filter(|r| r.status == status));
        match page.next_cursor {
            Some(c) if !past_window => {
                query.after = orchestrator_core::store::cursor::decode(&c).ok();
                if query.after.is_none() {
                    break;
                }
            }
            _ => break,
        }
    }
    report.examined += out.len();
    out
}

async fn relaunch(
    store: &dyn RecordStore,
    tasks: &dyn Tasks,
    policy: &RecoveryPolicy,
    record: &Record,
    why: &str,
) -> SweepReport {
    let mut report = SweepReport::default();
    let id = record.id;
    match dispatch::relaunch(store, tasks, policy.retry, record, why).await {
        Ok(r) if r.status == Status::Dispatched && r.attempt == record.attempt => {
            report.adopted += 1
        }
        Ok(r) if r.status == Status::Dispatched => report.launched += 1,
        Ok(r) if r.status == Status::DispatchFailed => report.retry_scheduled += 1,
        // The task reported (or the record moved) while the launch was in flight.
        Ok(_) => report.raced += 1,
        Err(DispatchError::LaunchFailed { .. }) => report.gave_up += 1,
        Err(DispatchError::Store(StoreError::Conflict(_) | StoreError::Superseded { .. })) => {
            tracing::info!(record_id = %id, "recovery: the record changed first; nothing to do");
            report.raced += 1;
        }
        Err(DispatchError::Conflict(why)) => {
            // A record with nothing to launch cannot wait for one: end it.
            let change = Transition::to(Status::Failed)
                .reason(format!("nothing to launch: {why}"))
                .at_attempt(record.attempt)
                .note("recovery: the record has no job and no actions");
            end(store, id, &change, &mut report).await;
        }
        Err(e) => {
            tracing::warn!(record_id = %id, error = %e, "recovery: cannot relaunch");
            report.errors.push(format!("{id}: {e}"));
        }
    }
    report
}

async fn check_task(
    store: &dyn RecordStore,
    tasks: &dyn Tasks,
    record: &Record,
    idle: Duration,
) -> SweepReport {
    let mut report = SweepReport::default();
    let id = record.id;
    let state = match &record.task_arn {
        Some(arn) => tasks.describe(arn).await,
        None => tasks.live_tasks(id).await.map(|live| match live.first() {
            Some(t) => TaskState::Live(format!("running as {}", t.task_arn)),
            None => TaskState::Gone("no task of the record is running".into()),
        }),
    };
    let state = match state {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(record_id = %id, error = %e, "recovery: cannot describe the task");
            report.errors.push(format!("{id}: {e}"));
            return report;
        }
    };
    let task = record.task_arn.as_deref().unwrap_or("(no task recorded)");
    let quiet = human_duration(idle);
    let change = match state {
        TaskState::Live(last) => {
            report.still_running += 1;
            let note = format!("recovery: no progress for {quiet}; the task {task} is {last}");
            tracing::warn!(record_id = %id, task, last, "recovery: task past its time limit still runs");
            let noted = record
                .history
                .last()
                .and_then(|h| h.note.as_deref())
                .is_some_and(|n| n.starts_with("recovery: no progress"));
            if !noted {
                let change = Transition::default().note(note).at_attempt(record.attempt);
                if let Err(e) = store.transition(id, &change).await {
                    tracing::info!(record_id = %id, error = %e, "recovery: note not written");
                }
            }
            return report;
        }
        TaskState::Stopped(how) => Transition::to(Status::Failed)
            .reason(format!(
                "the task stopped without reporting an outcome: {how}"
            ))
            .note(format!(
                "recovery: no progress for {quiet}; ECS says the task {task} stopped: {how}"
            )),
        TaskState::Gone(why) => Transition::to(Status::Failed)
            .reason(format!("the task is gone: {why}"))
            .note(format!(
                "recovery: no progress for {quiet}; the task {task} is gone: {why}"
            )),
    };
    end(store, id, &change.at_attempt(record.attempt), &mut report).await;
    report
}

async fn end(store: &dyn RecordStore, id: RecordId, change: &Transition, report: &mut SweepReport) {
    match store.transition(id, change).await {
        Ok(r) => {
            tracing::warn!(record_id = %id, status = %r.status, reason = r.status_reason.as_deref().unwrap_or(""), "recovery: record ended");
            report.failed += 1;
        }
        Err(StoreError::Conflict(_) | StoreError::Superseded { .. }) => report.raced += 1,
        Err(e) => {
            tracing::warn!(record_id = %id, error = %e, "recovery: cannot end the record");
            report.errors.push(format!("{id}: {e}"));
        }
    }
}

/// Runs [`sweep`] every `every`, forever (the local server's timer).
pub async fn run_every(
    store: std::sync::Arc<dyn RecordStore>,
    tasks: std::sync::Arc<dyn Tasks>,
    policy: RecoveryPolicy,
    every: Duration,
) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        sweep(
            store.as_ref(),
            tasks.as_ref(),
            &policy,
            orchestrator_core::record::now(),
        )
        .await;
    }
}
