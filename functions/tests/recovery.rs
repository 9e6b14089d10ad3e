//! The recovery sweeper.
//!
//! - Each decision, over the real SQLite store with a scripted task double (see [`Scripted`]):
//!   young records are left alone; a `received` record is adopted or launched again as a new
//!   attempt; retryable launch failures back off and then give up; a stuck record whose task
//!   stopped or is gone ends `failed` with what ECS says; two sweepers racing launch once.
//! - The fault test, against moto (DynamoDB and ECS, the real store and launcher): 1,000
//!   deliveries through the Router with injected faults, the sweeper running beside them, end
//!   with 1,000 records, each final or `dispatched` to exactly one task, and no record with two
//!   tasks. It prints its figures.

mod common;

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use chrono::{DateTime, Utc};
use orchestrator::dispatch::{RetryPolicy, record_and_launch};
use orchestrator::launch::ecs::EcsLauncher;
use orchestrator::launch::{
    LaunchError, Launched, LiveTask, TaskInspector, TaskLauncher, TaskState,
};
use orchestrator::recovery::{RecoveryPolicy, SweepReport, sweep};
use orchestrator::{AppState, IntakeSettings};
use orchestrator_core::store::dynamodb::DynamoStore;
use orchestrator_core::store::sqlite::SqliteStore;
use orchestrator_core::store::{
    Created, ListQuery, MAX_PAGE, Page, RecordStore, StoreError, Transition, cursor,
};
use orchestrator_core::{Job, LaunchContract, Record, RecordId, Source, Status};
use serde_json::Value;

// ---------------------------------------------------------------------------------------------
// Decisions, one at a time.

/// A launcher and inspector that answers as scripted.
///
/// Why a double here: each test sets up one exact situation (a live task of an older attempt, a
/// task ECS stopped with a given reason, a failure that passes after N calls) and checks the one
/// decision the sweeper takes. The real ECS adapter is checked against moto in `ecs_moto.rs` and
/// in the fault test at the end of this file.
#[derive(Debug, Default)]
struct Scripted {
    launched: Mutex<Vec<LaunchContract>>,
    /// What the next launches return instead of starting a task, in order.
    failures: Mutex<VecDeque<LaunchError>>,
    /// Live tasks by record (launches add theirs).
    live: Mutex<HashMap<RecordId, Vec<LiveTask>>>,
    /// What `describe` says of a task; `Live("RUNNING")` when not set.
    states: Mutex<HashMap<String, TaskState>>,
}

impl Scripted {
    fn contracts(&self) -> Vec<LaunchContract> {
        self.launched.lock().unwrap().clone()
    }

    fn fail_next(&self, n: usize, e: LaunchError) {
        self.failures
            .lock()
            .unwrap()
            .extend(std::iter::repeat_n(e, n));
    }
}

#[async_trait]
impl TaskLauncher for Scripted {
    async fn launch(&self, contract: &LaunchContract) -> Result<Launched, LaunchError> {
        if let Some(e) = self.failures.lock().unwrap().pop_front() {
            return Err(e);
        }
        self.launched.lock().unwrap().push(contract.clone());
        let task_arn = format!("arn:task/{}-{}", contract.record_id, contract.attempt);
        self.live
            .lock()
            .unwrap()
            .entry(contract.record_id)
            .or_default()
            .push(LiveTask {
                task_arn: task_arn.clone(),
                attempt: Some(contract.attempt),
            });
        Ok(Launched { task_arn })
    }
}

#[async_trait]
impl TaskInspector for Scripted {
    async fn live_tasks(&self, record: RecordId) -> Result<Vec<LiveTask>, LaunchError> {
        Ok(self
            .live
            .lock()
            .unwrap()
            .get(&record)
            .cloned()
            .unwrap_or_default())
    }

    async fn describe(&self, task_arn: &str) -> Result<TaskState, LaunchError> {
        Ok(self
            .states
            .lock()
            .unwrap()
            .get(task_arn)
            .cloned()
            .unwrap_or_else(|| TaskState::Live("RUNNING".into())))
    }
}

fn policy() -> RecoveryPolicy {
    RecoveryPolicy {
        received_after: Duration::from_secs(60),
        stuck_after: Duration::from_secs(600),
        retry: RetryPolicy {
            max_attempts: 1,
            initial_backoff: Duration::from_millis(1),
            budget: Duration::from_secs(1),
            retry_after: Duration::from_secs(10),
            max_retry_delay: Duration::from_secs(300),
            give_up_after: Duration::from_secs(600),
        },
        max_pages: 10,
        concurrency: 4,
    }
}

struct Fixture {
    store: SqliteStore,
    tasks: Scripted,
    _dir: tempfile::TempDir,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    Fixture {
        store: SqliteStore::open(&SqliteStore::file_in(dir.path())).unwrap(),
        tasks: Scripted::default(),
        _dir: dir,
    }
}

fn job() -> Job {
    Job::parse("shop-api", "acme/shop-api", "dev", "1.2.3").unwrap()
}

/// A `received` record written to the store (as if the process died right after).
async fn received(store: &dyn RecordStore) -> Record {
    let r = Record::received(Source::CircleciOrb, serde_json::json!({}), Some(job()));
    store.create(&r).await.unwrap();
    r
}

fn later(d: Duration) -> DateTime<Utc> {
    orchestrator_core::record::now() + chrono::Duration::from_std(d).unwrap()
}

impl Fixture {
    async fn sweep_at(&self, at: DateTime<Utc>) -> SweepReport {
        sweep(&self.store, &self.tasks, &policy(), at).await
    }

    async fn get(&self, id: RecordId) -> Record {
        self.store.get(id).await.unwrap().unwrap()
    }
}

fn notes(r: &Record) -> Vec<String> {
    r.history.iter().filter_map(|h| h.note.clone()).collect()
}

#[tokio::test]
async fn young_records_are_left_alone() {
    let f = fixture();
    let r = received(&f.store).await;
    let report = f.sweep_at(later(Duration::from_secs(30))).await;
    assert_eq!(report.acted(), 0, "{report:?}");
    assert!(f.tasks.contracts().is_empty());
    assert_eq!(f.get(r.id).await, r);
}

#[tokio::test]
async fn a_received_record_without_a_live_task_is_launched_as_a_new_attempt() {
    let f = fixture();
    let r = received(&f.store).await;
    let report = f.sweep_at(later(Duration::from_secs(120))).await;
    assert_eq!(report.launched, 1, "{report:?}");
    let contracts = f.tasks.contracts();
    assert_eq!(contracts.len(), 1);
    assert_eq!((contracts[0].record_id, contracts[0].attempt), (r.id, 2));
    let now = f.get(r.id).await;
    assert_eq!((now.status, now.attempt), (Status::Dispatched, 2));
    assert_eq!(
        now.task_arn.as_deref(),
        Some(format!("arn:task/{}-2", r.id).as_str())
    );
    assert_eq!(
        notes(&now),
        ["recovery: `received` for 2 min with no launch recorded: launching attempt 2"]
    );
    // Nothing left to do.
    let again = f.sweep_at(later(Duration::from_secs(240))).await;
    assert_eq!(again.acted(), 0, "{again:?}");
    assert_eq!(f.tasks.contracts().len(), 1);
}

#[tokio::test]
async fn a_live_task_of_the_current_attempt_is_adopted_not_launched_again() {
    let f = fixture();
    let r = received(&f.store).await;
    // Its launch happened; the `dispatched` write was lost.
    f.tasks.live.lock().unwrap().insert(
        r.id,
        vec![LiveTask {
            task_arn: "arn:task/lost-write".into(),
            attempt: Some(1),
        }],
    );
    let report = f.sweep_at(later(Duration::from_secs(120))).await;
    assert_eq!((report.adopted, report.launched), (1, 0), "{report:?}");
    assert!(f.tasks.contracts().is_empty(), "nothing launched");
    let now = f.get(r.id).await;
    assert_eq!(
        (now.status, now.attempt, now.task_arn.as_deref()),
        (Status::Dispatched, 1, Some("arn:task/lost-write"))
    );
    assert!(notes(&now)[0].ends_with("adopted the live task arn:task/lost-write of attempt 1"));
}

#[tokio::test]
async fn a_live_task_of_a_superseded_attempt_is_not_adopted() {
    let f = fixture();
    let r = received(&f.store).await;
    let bump = Transition {
        attempt: Some(2),
        ..Transition::default().at_attempt(1)
    };
    f.store.transition(r.id, &bump).await.unwrap();
    // Attempt 1's task still runs; it will find the record at attempt 3 and do nothing.
    f.tasks.live.lock().unwrap().insert(
        r.id,
        vec![LiveTask {
            task_arn: "arn:task/old".into(),
            attempt: Some(1),
        }],
    );
    let report = f.sweep_at(later(Duration::from_secs(120))).await;
    assert_eq!((report.adopted, report.launched), (0, 1), "{report:?}");
    assert_eq!(f.tasks.contracts()[0].attempt, 3);
    assert_eq!(f.get(r.id).await.attempt, 3);
}

#[tokio::test]
async fn retryable_launch_failures_back_off_then_give_up() {
    let f = fixture();
    let capacity = LaunchError::retryable("RunTask started no task: Capacity is unavailable");
    f.tasks.fail_next(1, capacity.clone());
    let record = Record::received(Source::CircleciOrb, serde_json::json!({}), Some(job()));
    let t0 = orchestrator_core::record::now();
    record_and_launch(&f.store, &f.tasks, policy().retry, record.clone())
        .await
        .expect("a failure that will be retried is not an error");
    let r = f.get(record.id).await;
    let first = r.retry_at.expect("retry pending");
    assert_eq!((first - t0).num_seconds(), 10, "first wait: retry_after");

    // Not due yet.
    let report = f.sweep_at(later(Duration::from_secs(5))).await;
    assert_eq!(report.acted(), 0, "{report:?}");

    // Due, and still no capacity: attempt 2 fails, the wait doubles.
    f.tasks.fail_next(1, capacity.clone());
    let t1 = orchestrator_core::record::now();
    let report = f.sweep_at(later(Duration::from_secs(11))).await;
    assert_eq!(report.retry_scheduled, 1, "{report:?}");
    let r = f.get(record.id).await;
    assert_eq!((r.status, r.attempt), (Status::DispatchFailed, 2));
    assert_eq!((r.retry_at.unwrap() - t1).num_seconds(), 20);

    // Past the retry window: the next failure is final.
    f.tasks.fail_next(1, capacity);
    let mut give_up = policy();
    give_up.retry.give_up_after = Duration::ZERO;
    let report = sweep(&f.store, &f.tasks, &give_up, later(Duration::from_secs(40))).await;
    assert_eq!(report.gave_up, 1, "{report:?}");
    let r = f.get(record.id).await;
    assert!(r.is_settled(), "{r:?}");
    let reason = r.status_reason.as_deref().unwrap();
    assert!(
        reason.starts_with("RunTask started no task: Capacity is unavailable")
            && reason.contains("gave up after 3 launch attempt(s) over"),
        "{reason}"
    );
    assert!(f.tasks.contracts().is_empty(), "no task ever started");
    let statuses: Vec<_> = r.history.iter().map(|h| (h.status, h.attempt)).collect();
    assert_eq!(
        statuses,
        [
            (Status::DispatchFailed, 1),
            (Status::DispatchFailed, 2),
            (Status::DispatchFailed, 2),
            (Status::DispatchFailed, 3),
            (Status::DispatchFailed, 3),
        ],
        "each failure and each new attempt is in the history"
    );
    // A settled record is left alone.
    let report = f.sweep_at(later(Duration::from_secs(3600))).await;
    assert_eq!(report.acted(), 0, "{report:?}");
}

#[tokio::test]
async fn a_failure_that_cannot_pass_is_final_at_once() {
    let f = fixture();
    f.tasks
        .fail_next(1, LaunchError::permanent("RunTask: AccessDeniedException"));
    let record = Record::received(Source::CircleciOrb, serde_json::json!({}), Some(job()));
    let err = record_and_launch(&f.store, &f.tasks, policy().retry, record.clone())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("AccessDenied"), "{err}");
    let r = f.get(record.id).await;
    assert!(r.is_settled() && r.retry_at.is_none(), "{r:?}");
    let report = f.sweep_at(later(Duration::from_secs(3600))).await;
    assert_eq!(report.acted(), 0, "{report:?}");
}

/// A `dispatched` record whose task was given `state`, swept after `idle`.
async fn stuck(f: &Fixture, state: Option<TaskState>, idle: Duration) -> (Record, SweepReport) {
    let r = common::dispatched_record(&f.store).await;
    if let Some(s) = state {
        f.tasks.states.lock().unwrap().insert("arn:task".into(), s);
    }
    let report = f.sweep_at(later(idle)).await;
    (f.get(r.id).await, report)
}

#[tokio::test]
async fn a_stuck_record_whose_task_stopped_ends_failed_with_what_ecs_says() {
    let f = fixture();
    let how = "EssentialContainerExited (OutOfMemoryError: Container killed), exit code 137";
    let (r, report) = stuck(
        &f,
        Some(TaskState::Stopped(how.into())),
        Duration::from_secs(700),
    )
    .await;
    assert_eq!(report.failed, 1, "{report:?}");
    assert_eq!(r.status, Status::Failed);
    assert_eq!(
        r.status_reason.as_deref(),
        Some(format!("the task stopped without reporting an outcome: {how}").as_str())
    );
    assert!(
        notes(&r)[0]
            .starts_with("recovery: no progress for 11 min; ECS says the task arn:task stopped")
    );
}

#[tokio::test]
async fn a_stuck_record_whose_task_is_gone_ends_failed() {
    let f = fixture();
    let (r, report) = stuck(
        &f,
        Some(TaskState::Gone(
            "ECS does not know the task (MISSING)".into(),
        )),
        Duration::from_secs(700),
    )
    .await;
    assert_eq!(report.failed, 1, "{report:?}");
    assert_eq!(
        r.status_reason.as_deref(),
        Some("the task is gone: ECS does not know the task (MISSING)")
    );
}

#[tokio::test]
async fn a_record_before_the_time_limit_or_with_a_running_task_is_kept() {
    let f = fixture();
    let (r, report) = stuck(
        &f,
        Some(TaskState::Stopped("x".into())),
        Duration::from_secs(300),
    )
    .await;
    assert_eq!((report.acted(), r.status), (0, Status::Dispatched));

    let f = fixture();
    let (r, report) = stuck(&f, None, Duration::from_secs(700)).await;
    assert_eq!((report.still_running, r.status), (1, Status::Dispatched));
    assert_eq!(notes(&r).len(), 1, "noted: {:?}", notes(&r));
    // Noted once, not on every pass.
    f.sweep_at(later(Duration::from_secs(800))).await;
    assert_eq!(notes(&f.get(r.id).await).len(), 1);
}

#[tokio::test]
async fn two_sweepers_at_once_launch_one_attempt() {
    let f = Arc::new(fixture());
    let r = received(&f.store).await;
    let at = later(Duration::from_secs(120));
    let (a, b) = tokio::join!(f.sweep_at(at), f.sweep_at(at));
    assert_eq!(a.launched + b.launched, 1, "{a:?} {b:?}");
    assert_eq!(a.raced + b.raced + a.adopted + b.adopted, 1, "{a:?} {b:?}");
    assert_eq!(f.tasks.contracts().len(), 1);
    let now = f.get(r.id).await;
    assert_eq!((now.status, now.attempt), (Status::Dispatched, 2));
}

// ---------------------------------------------------------------------------------------------
// The fault test, against moto.

/// Deliveries in the fault test (`RECOVERY_FAULT_DELIVERIES` changes it, e.g. for a quick look).
fn deliveries() -> usize {
    std::env::var("RECOVERY_FAULT_DELIVERIES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000)
}

/// The fault a delivery gets, by its build number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Fault {
    /// The record is written, then the process dies before RunTask (the answer is a 500).
    KilledAfterRecord,
    /// RunTask is throttled for a while (several calls), then works.
    Throttled,
    /// Fargate is out of capacity for a while, then has some.
    OutOfCapacity,
    /// RunTask starts the task; the `dispatched` write fails.
    DispatchedWriteFails,
    /// Fargate stays out of capacity: the record must give up.
    CapacityNeverReturns,
    /// The same delivery twice, at once.
    DeliveredTwice,
    None,
}

fn fault_of(build: u64) -> Fault {
    match build % 10 {
        0 => Fault::KilledAfterRecord,
        1 => Fault::Throttled,
        2 => Fault::OutOfCapacity,
        3 => Fault::DispatchedWriteFails,
        4 => Fault::CapacityNeverReturns,
        5 => Fault::DeliveredTwice,
        _ => Fault::None,
    }
}

/// Which record is which delivery (by the orb payload's `build_num`), and how many RunTask calls
/// each record has seen.
#[derive(Debug, Default)]
struct Faults {
    build_of: Mutex<HashMap<RecordId, u64>>,
    calls: Mutex<HashMap<RecordId, u32>>,
    dispatched_write_failed: Mutex<HashSet<RecordId>>,
}

impl Faults {
    fn fault(&self, id: RecordId) -> Fault {
        self.build_of
            .lock()
            .unwrap()
            .get(&id)
            .map_or(Fault::None, |b| fault_of(*b))
    }
}

/// The real DynamoDB store (on moto), with the process's crash and a lost write injected.
#[derive(Debug)]
struct FaultyStore {
    inner: DynamoStore,
    faults: Arc<Faults>,
}

#[async_trait]
impl RecordStore for FaultyStore {
    async fn create(&self, record: &Record) -> Result<Created, StoreError> {
        let build = record.payload["build_num"].as_u64().unwrap_or_default();
        self.faults
            .build_of
            .lock()
            .unwrap()
            .insert(record.id, build);
        let created = self.inner.create(record).await?;
        if created == Created::New && fault_of(build) == Fault::KilledAfterRecord {
            return Err(StoreError::Backend(
                "injected: the process died after the record was written".into(),
            ));
        }
        Ok(created)
    }

    async fn get(&self, id: RecordId) -> Result<Option<Record>, StoreError> {
        self.inner.get(id).await
    }

    async fn list(&self, query: &ListQuery) -> Result<Page, StoreError> {
        self.inner.list(query).await
    }

    async fn redact(&self, id: RecordId, by: &str) -> Result<Record, StoreError> {
        self.inner.redact(id, by).await
    }

    async fn transition(&self, id: RecordId, change: &Transition) -> Result<Record, StoreError> {
        if change.to == Some(Status::Dispatched)
            && self.faults.fault(id) == Fault::DispatchedWriteFails
            && self
                .faults
                .dispatched_write_failed
                .lock()
                .unwrap()
                .insert(id)
        {
            return Err(StoreError::Backend(
                "injected: the `dispatched` write failed after the launch".into(),
            ));
        }
        self.inner.transition(id, change).await
    }
}

/// The real ECS launcher (on moto), with throttling and capacity outages injected.
#[derive(Debug)]
struct FaultyEcs {
    inner: EcsLauncher,
    faults: Arc<Faults>,
}

/// RunTask calls a passing outage lasts: more than one launch attempt makes (2 calls).
const OUTAGE_CALLS: u32 = 5;

#[async_trait]
impl TaskLauncher for FaultyEcs {
    async fn launch(&self, contract: &LaunchContract) -> Result<Launched, LaunchError> {
        let id = contract.record_id;
        let calls = {
            let mut calls = self.faults.calls.lock().unwrap();
            let n = calls.entry(id).or_default();
            *n += 1;
            *n
        };
        match self.faults.fault(id) {
            Fault::Throttled if calls <= OUTAGE_CALLS => Err(LaunchError::retryable(
                "RunTask: ThrottlingException: Rate exceeded (injected)",
            )),
            Fault::OutOfCapacity if calls <= OUTAGE_CALLS => Err(LaunchError::retryable(
                "RunTask started no task: Capacity is unavailable at this time (injected)",
            )),
            Fault::CapacityNeverReturns => Err(LaunchError::retryable(
                "RunTask started no task: Capacity is unavailable at this time (injected)",
            )),
            _ => self.inner.launch(contract).await,
        }
    }
}

#[async_trait]
impl TaskInspector for FaultyEcs {
    async fn live_tasks(&self, record: RecordId) -> Result<Vec<LiveTask>, LaunchError> {
        self.inner.live_tasks(record).await
    }

    async fn describe(&self, task_arn: &str) -> Result<TaskState, LaunchError> {
        self.inner.describe(task_arn).await
    }
}

fn orb_delivery(build: u64) -> Vec<u8> {
    let mut v: Value =
        serde_json::from_slice(&common::fixture("circleci-orb/success.json")).unwrap();
    v["build_num"] = build.into();
    serde_json::to_vec(&v).unwrap()
}

/// Every task in the cluster, by its `startedBy` (the record id).
async fn tasks_by_record(aws: &common::MotoAws) -> HashMap<String, Vec<String>> {
    let mut arns = Vec::new();
    let mut next = None;
    loop {
        let page = aws
            .ecs
            .list_tasks()
            .cluster(&aws.cluster)
            .set_next_token(next)
            .send()
            .await
            .unwrap();
        arns.extend(page.task_arns().iter().cloned());
        next = page.next_token().map(str::to_owned);
        if next.is_none() {
            break;
        }
    }
    let mut by_record: HashMap<String, Vec<String>> = HashMap::new();
    for chunk in arns.chunks(100) {
        let out = aws
            .ecs
            .describe_tasks()
            .cluster(&aws.cluster)
            .set_tasks(Some(chunk.to_vec()))
            .send()
            .await
            .unwrap();
        for t in out.tasks() {
            by_record
                .entry(t.started_by().unwrap_or_default().to_owned())
                .or_default()
                .push(t.task_arn().unwrap_or_default().to_owned());
        }
    }
    by_record
}

async fn all_records(store: &dyn RecordStore) -> Vec<Record> {
    let mut out = Vec::new();
    let mut q = ListQuery {
        limit: MAX_PAGE,
        ..ListQuery::default()
    };
    loop {
        let page = store.list(&q).await.unwrap();
        out.extend(page.records);
        match page.next_cursor {
            Some(c) => q.after = Some(cursor::decode(&c).unwrap()),
            None => return out,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_thousand_deliveries_with_faults_end_final_or_dispatched_to_one_task() {
    let Some(endpoint) = common::moto_endpoint(
        "a_thousand_deliveries_with_faults_end_final_or_dispatched_to_one_task",
    ) else {
        return;
    };
    let n = deliveries();
    let aws = common::MotoAws::setup(&endpoint).await;
    let (_, dynamo) = common::dynamo_store(&aws.config, "recovery").await;
    let faults = Arc::new(Faults::default());
    let store = Arc::new(FaultyStore {
        inner: dynamo,
        faults: faults.clone(),
    });
    let tasks = Arc::new(FaultyEcs {
        inner: aws.launcher(),
        faults: faults.clone(),
    });
    let retry = RetryPolicy {
        max_attempts: 2,
        initial_backoff: Duration::from_millis(5),
        budget: Duration::from_secs(2),
        retry_after: Duration::from_millis(200),
        max_retry_delay: Duration::from_secs(2),
        // Until every record whose outage passes is dispatched; then the window closes (below)
        // and the records whose capacity never returns give up at their next failure.
        give_up_after: Duration::from_secs(600),
    };
    let state = AppState {
        store: store.clone(),
        launcher: tasks.clone(),
        intake: Arc::new(IntakeSettings {
            retry,
            ..IntakeSettings::default()
        }),
        access: common::access(),
        console: Default::default(),
    };
    // A received record is relaunched after 5 s: longer than any launch in flight here takes.
    let recovery = RecoveryPolicy {
        received_after: Duration::from_secs(5),
        stuck_after: Duration::from_secs(3600),
        retry,
        max_pages: 20,
        concurrency: 8,
    };

    let started = Instant::now();
    // The sweeper runs beside the deliveries, as the schedule would.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let window_closed = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sweeper = {
        let (store, tasks, stop) = (store.clone(), tasks.clone(), stop.clone());
        let window_closed = window_closed.clone();
        tokio::spawn(async move {
            let mut passes = Vec::new();
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let t = Instant::now();
                let mut policy = recovery;
                if window_closed.load(std::sync::atomic::Ordering::Relaxed) {
                    policy.retry.give_up_after = Duration::ZERO;
                }
                let report = sweep(
                    store.as_ref(),
                    tasks.as_ref(),
                    &policy,
                    orchestrator_core::record::now(),
                )
                .await;
                passes.push((report, t.elapsed()));
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            passes
        })
    };

    let gate = Arc::new(tokio::sync::Semaphore::new(12));
    let mut sends = Vec::new();
    for build in 1..=n as u64 {
        let copies = if fault_of(build) == Fault::DeliveredTwice {
            2
        } else {
            1
        };
        for _ in 0..copies {
            let (state, gate) = (state.clone(), gate.clone());
            sends.push(tokio::spawn(async move {
                let _permit = gate.acquire_owned().await.unwrap();
                // A client that gets no answer it can trust (a timeout under load, a 5xx that is
                // not the injected crash) delivers again, as a webhook sender would; the dedupe
                // key makes that safe. Every answer is kept.
                let mut answers = Vec::new();
                for _ in 0..3 {
                    let req = Request::post("/pullrequests")
                        .header("content-type", "application/json")
                        .body(Body::from(orb_delivery(build)))
                        .unwrap();
                    let (status, body) = common::send(&state, req).await;
                    answers.push((status, body));
                    let injected = status == StatusCode::INTERNAL_SERVER_ERROR
                        && matches!(
                            fault_of(build),
                            Fault::KilledAfterRecord | Fault::DispatchedWriteFails
                        );
                    if status.is_success() || injected {
                        break;
                    }
                }
                (build, answers)
            }));
        }
    }
    let mut answers: BTreeMap<u16, usize> = BTreeMap::new();
    let mut resent = 0;
    for s in sends {
        let (build, tries) = s.await.unwrap();
        resent += tries.len() - 1;
        for (status, _) in &tries {
            *answers.entry(status.as_u16()).or_default() += 1;
        }
        // 200 is a duplicate: the second copy, a client's retry, or a first copy whose write the
        // AWS SDK retried after moto, loaded, answered late (the marker then exists); nothing is
        // launched then, and the sweeper finds the record `received`.
        let (status, body) = tries.last().unwrap();
        let expected = match fault_of(build) {
            Fault::KilledAfterRecord | Fault::DispatchedWriteFails => {
                *status == StatusCode::INTERNAL_SERVER_ERROR || *status == StatusCode::OK
            }
            _ => *status == StatusCode::ACCEPTED || *status == StatusCode::OK,
        };
        assert!(expected, "build {build}: {status} {body}");
    }
    let delivered = started.elapsed();

    // Wait (sweeping) until every record whose outage passes is dispatched, then close the
    // retry window and wait until every record is settled or dispatched.
    let deadline = Instant::now() + Duration::from_secs(300);
    let mut window_closed_after = None;
    let records = loop {
        let records = all_records(store.as_ref()).await;
        let open = |r: &&Record| !r.is_settled() && r.status != Status::Dispatched;
        let waiting = records
            .iter()
            .filter(|r| faults.fault(r.id) != Fault::CapacityNeverReturns)
            .filter(|r| r.status != Status::Dispatched)
            .count();
        if window_closed_after.is_none() && waiting == 0 && records.len() == n {
            window_closed.store(true, std::sync::atomic::Ordering::Relaxed);
            window_closed_after = Some(started.elapsed());
        }
        if window_closed_after.is_some() && !records.iter().any(|r| open(&r)) {
            break records;
        }
        assert!(
            Instant::now() < deadline,
            "after 300 s: {} records, {waiting} with a passing fault not dispatched, {} open",
            records.len(),
            records.iter().filter(open).count()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let passes = sweeper.await.unwrap();
    let elapsed = started.elapsed();

    let tasks_of = tasks_by_record(&aws).await;
    let mut by_status: BTreeMap<String, usize> = BTreeMap::new();
    let mut by_fault: BTreeMap<String, BTreeMap<String, usize>> = BTreeMap::new();
    let mut max_tasks = 0;
    let mut attempts: BTreeMap<u32, usize> = BTreeMap::new();
    let mut wrong = Vec::new();
    for r in &records {
        let fault = faults.fault(r.id);
        *by_status.entry(r.status.to_string()).or_default() += 1;
        *by_fault
            .entry(format!("{fault:?}"))
            .or_default()
            .entry(r.status.to_string())
            .or_default() += 1;
        *attempts.entry(r.attempt).or_default() += 1;
        let mine = tasks_of.get(&r.id.to_string()).cloned().unwrap_or_default();
        max_tasks = max_tasks.max(mine.len());
        let ok = match fault {
            Fault::CapacityNeverReturns => {
                r.is_settled()
                    && r.status_reason
                        .as_deref()
                        .is_some_and(|why| why.contains("gave up after"))
                    && mine.is_empty()
            }
            // Dispatched to exactly its one task.
            _ => {
                r.status == Status::Dispatched
                    && mine.len() == 1
                    && r.task_arn.as_deref() == Some(mine[0].as_str())
            }
        };
        if !ok {
            wrong.push(format!("{fault:?}: tasks {mine:?}, record {r:?}"));
        }
    }
    let total = |f: fn(&SweepReport) -> usize| passes.iter().map(|(p, _)| f(p)).sum::<usize>();
    let longest = passes.iter().map(|(_, d)| *d).max().unwrap_or_default();
    println!(
        "recovery fault test: {n} deliveries (+{} sent twice), {:.0} s to deliver, {:.0} s until every record with a passing fault was dispatched (the retry window closed then), {:.0} s until every record was final or dispatched",
        n / 10,
        delivered.as_secs_f64(),
        window_closed_after.unwrap_or_default().as_secs_f64(),
        elapsed.as_secs_f64()
    );
    println!(
        "  answers by HTTP status: {answers:?} ({resent} deliveries sent again by the client after a timeout or an unexpected 5xx)"
    );
    println!(
        "  records: {} ({} distinct ids), by status: {by_status:?}",
        records.len(),
        records.iter().map(|r| r.id).collect::<HashSet<_>>().len()
    );
    println!("  by fault: {by_fault:?}");
    println!("  launch attempts per record: {attempts:?}");
    println!(
        "  tasks in the cluster: {}; most tasks for one record: {max_tasks}",
        tasks_of.values().map(Vec::len).sum::<usize>()
    );
    println!(
        "  sweeper: {} passes (longest {:.1} s); adopted {}, launched {}, retries scheduled {}, gave up {}, raced {}, errors {}",
        passes.len(),
        longest.as_secs_f64(),
        total(|p| p.adopted),
        total(|p| p.launched),
        total(|p| p.retry_scheduled),
        total(|p| p.gave_up),
        total(|p| p.raced),
        total(|p| p.errors.len())
    );
    assert_eq!(records.len(), n, "one record per distinct delivery");
    assert_eq!(max_tasks, 1, "at most one task per record");
    assert!(
        wrong.is_empty(),
        "{} record(s) did not end as their fault should:\n{}",
        wrong.len(),
        wrong.iter().take(3).cloned().collect::<Vec<_>>().join("\n")
    );
}
