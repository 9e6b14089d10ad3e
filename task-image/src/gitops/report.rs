//! Reporting the job to its record: `running` at start, then `succeeded`, `no_change`, `failed`
//! (or `planned`, a dry run's end, with the diff and the images) with the branch, PR URL and reason, plus the one-line JSON summary the task prints.
//!
//! The store enforces the state machine (`dispatched → running → final`) with conditional
//! writes, so a late or repeated report can never overwrite another writer's final outcome: it
//! fails, and the task says so and exits non-zero. Every write is made at the task's launch
//! attempt: a task whose attempt is no longer the record's current one (recovery launched another)
//! does no work and reports nothing.

use std::time::Duration;

use orchestrator_core::store::{RecordStore, StoreError, Transition};
use orchestrator_core::{Record, RecordId, Status};
use serde::Serialize;

use super::flow::{FlowOutcome, ImageChange, OutcomeKind};

/// How long the task waits for its record to leave `received` before it takes it to `running`
/// itself: the launcher starts the task before it records the dispatch (with the task ARN), so a
/// fast task can see its record a moment early; a launcher that died before recording it never
/// will.
pub const RECEIVED_WAIT: Duration = Duration::from_secs(10);
const POLL: Duration = Duration::from_millis(200);

/// The task's record cannot be taken to `running`.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("record {0} not found")]
    NotFound(RecordId),
    #[error("record {id} is already `{status}`; nothing to do")]
    AlreadyDone { id: RecordId, status: Status },
    #[error("record {id} is at launch attempt {current}, not this task's {mine}: nothing to do")]
    Superseded {
        id: RecordId,
        mine: u32,
        current: u32,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Moves the record to `running` at launch attempt `attempt` and returns it. A record already
/// `running` (the ECS lifecycle function got there first) is fine; a record still `received` is
/// waited for up to `wait`, then taken to `running` by the task itself (its launch was never
/// recorded). A record at another attempt is [`StartError::Superseded`]: this task must not work.
pub async fn mark_running(
    store: &dyn RecordStore,
    id: RecordId,
    attempt: u32,
    wait: Duration,
) -> Result<Record, StartError> {
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let record = store.get(id).await?.ok_or(StartError::NotFound(id))?;
        if record.attempt != attempt {
            return Err(StartError::Superseded {
                id,
                mine: attempt,
                current: record.attempt,
            });
        }
        let change = Transition::to(Status::Running).at_attempt(attempt);
        let change = match record.status {
            Status::Running => return Ok(record),
            Status::Dispatched => change,
            Status::Received if tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(POLL).await;
                continue;
            }
            Status::Received => change.note(format!(
                "the task of attempt {attempt} started; its launch was not recorded within {} s",
                wait.as_secs()
            )),
            status => return Err(StartError::AlreadyDone { id, status }),
        };
        match store.transition(id, &change).await {
            Ok(r) => return Ok(r),
            // Someone else moved it (to running, usually, or to a new attempt): read again.
            Err(StoreError::Conflict(_) | StoreError::Superseded { .. }) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

/// The final line the task prints on stdout, and the record's `outcome` document.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Summary {
    pub record_id: String,
    pub outcome: OutcomeKind,
    pub branch: Option<String>,
    pub pr_url: Option<String>,
    pub reason: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pr_created: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub commit: Option<String>,
    pub pushed: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub old_tag: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub new_tag: Option<String>,
    pub attempts: u32,
    /// From the start of the job to its outcome (the PR opened), before reporting.
    pub elapsed_ms: u64,
    /// What the Port action run refused to take (empty when all was reported, or no run).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub port_report: Vec<String>,
    /// A dry run's unified diff of the changed files (`git diff`; empty: nothing would change).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub diff: Option<String>,
    /// A dry run's container images of the built overlay, before and after the edit.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub images: Vec<ImageChange>,
}

impl Summary {
    /// A failure before the flow could run.
    pub fn failed(record_id: RecordId, reason: impl Into<String>, elapsed: Duration) -> Self {
        Summary {
            record_id: record_id.to_string(),
            outcome: OutcomeKind::Failed,
            branch: None,
            pr_url: None,
            reason: Some(reason.into()),
            pr_created: None,
            commit: None,
            pushed: false,
            old_tag: None,
            new_tag: None,
            attempts: 0,
            elapsed_ms: elapsed.as_millis().try_into().unwrap_or(u64::MAX),
            port_report: Vec::new(),
            diff: None,
            images: Vec::new(),
        }
    }

    pub fn from_flow(record_id: RecordId, o: FlowOutcome, elapsed: Duration) -> Self {
        Summary {
            record_id: record_id.to_string(),
            outcome: o.outcome,
            branch: o.branch,
            pr_url: o.pr_url,
            reason: o.reason,
            pr_created: o.pr_created,
            commit: o.commit,
            pushed: o.pushed,
            old_tag: o.old_tag,
            new_tag: Some(o.new_tag),
            attempts: o.attempts,
            elapsed_ms: elapsed.as_millis().try_into().unwrap_or(u64::MAX),
            port_report: Vec::new(),
            diff: o.diff,
            images: o.images,
        }
    }

    /// One line of JSON.
    pub fn to_line(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|_| {
            format!(
                "{{\"record_id\":\"{}\",\"outcome\":\"{}\"}}",
                self.record_id,
                self.outcome.as_str()
            )
        })
    }

    /// The status the record ends in.
    pub fn status(&self) -> Status {
        match self.outcome {
            OutcomeKind::Succeeded => Status::Succeeded,
            OutcomeKind::NoChange => Status::NoChange,
            OutcomeKind::Failed => Status::Failed,
            OutcomeKind::Planned => Status::Planned,
        }
    }
}

/// Writes the final outcome to the record, at launch attempt `attempt`.
pub async fn finish(
    store: &dyn RecordStore,
    id: RecordId,
    attempt: u32,
    summary: &Summary,
) -> Result<Record, StoreError> {
    let change = Transition {
        to: Some(summary.status()),
        reason: summary.reason.clone(),
        pr_url: summary.pr_url.clone(),
        branch: summary.branch.clone(),
        outcome: serde_json::to_value(summary).ok(),
        expect_attempt: Some(attempt),
        ..Transition::default()
    };
    store.transition(id, &change).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use orchestrator_core::store::sqlite::SqliteStore;
    use orchestrator_core::{Job, Source};

    async fn store_with(status: Status) -> (tempfile::TempDir, SqliteStore, RecordId) {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&SqliteStore::file_in(dir.path())).unwrap();
        let job = Job::parse("s", "o/s", "dev", "t").unwrap();
        let r = Record::received(Source::CircleciOrb, serde_json::json!({}), Some(job));
        store.create(&r).await.unwrap();
        if status != Status::Received {
            store
                .transition(r.id, &Transition::to(Status::Dispatched))
                .await
                .unwrap();
        }
        if status == Status::Running {
            store
                .transition(r.id, &Transition::to(Status::Running))
                .await
                .unwrap();
        }
        (dir, store, r.id)
    }

    #[tokio::test]
    async fn dispatched_and_running_both_start() {
        for status in [Status::Dispatched, Status::Running] {
            let (_d, store, id) = store_with(status).await;
            let r = mark_running(&store, id, 1, Duration::ZERO).await.unwrap();
            assert_eq!(r.status, Status::Running);
        }
    }

    #[tokio::test]
    async fn waits_for_the_dispatch_then_starts_anyway_at_its_attempt() {
        let (_d, store, id) = store_with(Status::Received).await;
        let t0 = std::time::Instant::now();
        let r = mark_running(&store, id, 1, Duration::from_millis(300))
            .await
            .unwrap();
        assert!(
            t0.elapsed() >= Duration::from_millis(300),
            "it waited first"
        );
        assert_eq!((r.status, r.task_arn.as_deref()), (Status::Running, None));
        assert!(
            r.history
                .last()
                .unwrap()
                .note
                .as_deref()
                .unwrap()
                .contains("not recorded"),
            "{:?}",
            r.history
        );

        let (_d, store, id) = store_with(Status::Received).await;
        let writer = store.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(300)).await;
            writer
                .transition(id, &Transition::to(Status::Dispatched))
                .await
                .unwrap();
        });
        let r = mark_running(&store, id, 1, Duration::from_secs(10))
            .await
            .unwrap();
        assert_eq!(r.status, Status::Running);
        assert_eq!(
            r.history.len(),
            2,
            "dispatched, then running: {:?}",
            r.history
        );
    }

    #[tokio::test]
    async fn a_task_of_a_superseded_attempt_does_not_start() {
        let (_d, store, id) = store_with(Status::Received).await;
        let bump = Transition {
            attempt: Some(2),
            ..Transition::default().at_attempt(1)
        };
        store.transition(id, &bump).await.unwrap();
        let err = mark_running(&store, id, 1, Duration::from_secs(5))
            .await
            .unwrap_err();
        assert!(
            matches!(
                err,
                StartError::Superseded {
                    mine: 1,
                    current: 2,
                    ..
                }
            ),
            "{err}"
        );
        assert_eq!(
            store.get(id).await.unwrap().unwrap().status,
            Status::Received
        );
        let r = mark_running(&store, id, 2, Duration::ZERO).await.unwrap();
        assert_eq!((r.status, r.attempt), (Status::Running, 2));
        // The old attempt cannot report an outcome either.
        let s = Summary::failed(id, "late", Duration::from_millis(1));
        assert!(matches!(
            finish(&store, id, 1, &s).await,
            Err(StoreError::Superseded { current: 2, got: 1 })
        ));
    }

    #[tokio::test]
    async fn a_final_record_is_left_alone_and_cannot_be_reported_twice() {
        let (_d, store, id) = store_with(Status::Running).await;
        let s = Summary::failed(id, "boom", Duration::from_millis(5));
        let r = finish(&store, id, 1, &s).await.unwrap();
        assert_eq!(r.status, Status::Failed);
        assert_eq!(r.status_reason.as_deref(), Some("boom"));
        assert_eq!(r.outcome.as_ref().unwrap()["outcome"], "failed");
        assert!(finish(&store, id, 1, &s).await.is_err());
        let err = mark_running(&store, id, 1, Duration::ZERO)
            .await
            .unwrap_err();
        assert!(matches!(err, StartError::AlreadyDone { .. }), "{err}");
        let missing = RecordId::new();
        assert!(matches!(
            mark_running(&store, missing, 1, Duration::ZERO).await,
            Err(StartError::NotFound(_))
        ));
    }

    #[test]
    fn summary_line_has_the_documented_keys() {
        let id = RecordId::new();
        let line = Summary::failed(id, "r", Duration::from_millis(1)).to_line();
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        for k in ["record_id", "outcome", "branch", "pr_url", "reason"] {
            assert!(v.get(k).is_some(), "{k} missing in {line}");
        }
        assert_eq!(v["outcome"], "failed");
        assert!(!line.contains('\n'));
    }
}
