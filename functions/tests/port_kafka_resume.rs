//! A Kafka batch that cannot finish in one invocation goes on where it stopped: records not
//! started before the stop time are reported as batch item failures from their first offset, the
//! event source delivers the partition again from there, and nothing done is done twice.

mod common;

use std::time::Duration;

use async_trait::async_trait;
use orchestrator::dispatch::{self, RetryPolicy};
use orchestrator::launch::{
    LaunchError, Launched, LiveTask, TaskInspector, TaskLauncher, TaskState,
};
use orchestrator::rules::RuleSet;
use orchestrator_core::{LaunchContract, RecordId};
use serde_json::Value;

/// A launcher that takes `delay` per launch, then records the contract.
///
/// Why a double: the test needs launches that take a known time, to run out of an invocation's
/// time at a known record; the real launchers have their own tests.
#[derive(Debug)]
struct SlowLauncher {
    inner: common::RecordingLauncher,
    delay: Duration,
}

#[async_trait]
impl TaskInspector for SlowLauncher {
    async fn live_tasks(&self, record: RecordId) -> Result<Vec<LiveTask>, LaunchError> {
        self.inner.live_tasks(record).await
    }

    async fn describe(&self, task_arn: &str) -> Result<TaskState, LaunchError> {
        self.inner.describe(task_arn).await
    }
}

#[async_trait]
impl TaskLauncher for SlowLauncher {
    async fn launch(&self, contract: &LaunchContract) -> Result<Launched, LaunchError> {
        tokio::time::sleep(self.delay).await;
        self.inner.launch(contract).await
    }
}

fn rules() -> RuleSet {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/rules.yaml");
    RuleSet::load(&path).unwrap()
}

/// The recorded batch (offsets 1041, 1042 corrupt, 1043), keeping the records from `from` on, as
/// the event source delivers a partition again from a reported offset.
fn batch_from(from: i64) -> Value {
    let mut v: Value = serde_json::from_slice(&common::fixture("kafka/port-batch.json")).unwrap();
    for list in v["records"].as_object_mut().unwrap().values_mut() {
        list.as_array_mut()
            .unwrap()
            .retain(|r| r["offset"].as_i64().unwrap() >= from);
    }
    v
}

#[tokio::test]
async fn a_batch_that_runs_out_of_time_resumes_at_its_first_unstarted_record() {
    let t = common::sqlite_app(Default::default());
    let launcher = SlowLauncher {
        inner: common::RecordingLauncher::default(),
        delay: Duration::from_millis(400),
    };
    let rules = rules();
    let run = |event: Value, stop: Option<Duration>| {
        let (store, launcher, rules) = (t.store.clone(), &launcher, &rules);
        async move {
            let stop_by = stop.map(|d| tokio::time::Instant::now() + d);
            dispatch::process_batch_until(
                store.as_ref(),
                launcher,
                RetryPolicy::default(),
                rules,
                &event,
                stop_by,
            )
            .await
            .unwrap()
        }
    };

    // First invocation: time for one record only (its launch outlasts the stop time).
    let first = run(batch_from(0), Some(Duration::from_millis(100))).await;
    let statuses: Vec<(i64, &str)> = first
        .records
        .iter()
        .map(|r| (r.at.offset, r.status.as_str()))
        .collect();
    assert_eq!(
        statuses,
        [
            (1041, "dispatched"),
            (1042, dispatch::ITEM_DEFERRED),
            (1043, dispatch::ITEM_DEFERRED)
        ]
    );
    let failures = first.item_failures().unwrap();
    assert_eq!(failures.len(), 1);
    assert_eq!(failures[0].offset, 1042);
    assert_eq!(failures[0].partition, "org_sYG4DOJZNGy8bYnt.change.log-0");
    assert_eq!(launcher.inner.contracts().len(), 1);

    // The event source delivers the partition from 1042: the rest is done, nothing twice.
    let second = run(batch_from(failures[0].offset), None).await;
    let statuses: Vec<(i64, &str, bool)> = second
        .records
        .iter()
        .map(|r| (r.at.offset, r.status.as_str(), r.duplicate))
        .collect();
    assert_eq!(
        statuses,
        [(1042, "rejected", false), (1043, "dispatched", false)]
    );
    assert_eq!(second.item_failures(), Some(vec![]));
    assert_eq!(launcher.inner.contracts().len(), 2, "one launch per event");
    assert_eq!(
        common::port_records(t.store.as_ref()).await.records.len(),
        3
    );
}
