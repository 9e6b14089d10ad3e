//! The Port Kafka batch: the recorded self-managed Kafka event (three records, one corrupt) through
//! the same intake as the webhook, on the SQLite store with a recording launcher.

mod common;

use orchestrator::dispatch::{self, RetryPolicy};
use orchestrator::intake::port::kafka;
use orchestrator::rules::RuleSet;
use orchestrator_core::Status;
use orchestrator_core::contract::JobKind;
use orchestrator_core::store::{ListQuery, RecordStore};

fn rules() -> RuleSet {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/rules.yaml");
    RuleSet::load(&path).unwrap()
}

fn batch() -> serde_json::Value {
    serde_json::from_slice(&common::fixture("kafka/port-batch.json")).unwrap()
}

/// `event` through the Kafka intake, on the app's store and launcher, with the example rules.
async fn process(
    t: &common::TestApp,
    event: &serde_json::Value,
) -> Result<dispatch::BatchReport, kafka::NotKafka> {
    dispatch::process_batch(
        t.store.as_ref(),
        t.launcher.as_ref(),
        RetryPolicy::default(),
        &rules(),
        event,
    )
    .await
}

#[tokio::test]
async fn two_records_are_processed_and_the_corrupt_one_is_recorded_rejected() {
    let t = common::sqlite_app(Default::default());
    let report = process(&t, &batch()).await.unwrap();
    assert_eq!(report.records.len(), 3, "{report:?}");
    assert_eq!(report.count("dispatched"), 2, "{report:?}");
    assert_eq!(report.count("rejected"), 1, "{report:?}");
    assert_eq!(report.unwritten(), 0);
    let rejected = report
        .records
        .iter()
        .find(|r| r.status == "rejected")
        .unwrap();
    assert_eq!(
        rejected.at.offset, 1042,
        "the corrupt record is the middle one"
    );

    let contracts = t.launcher.contracts();
    assert_eq!(contracts.len(), 2);
    assert!(contracts.iter().all(|c| c.kind == JobKind::Remediation));

    let page = common::port_records(t.store.as_ref()).await;
    assert_eq!(page.records.len(), 3);
    let bad = page
        .records
        .iter()
        .find(|r| r.status == Status::Rejected)
        .unwrap();
    let reason = bad.status_reason.as_deref().unwrap();
    assert!(
        reason.contains("not a Port changelog event") && reason.contains("JSON"),
        "{reason}"
    );
    assert_eq!(bad.payload["kafka"]["offset"], 1042);
    assert_eq!(
        bad.payload["kafka"]["topic"],
        "org_sYG4DOJZNGy8bYnt.change.log"
    );
    assert!(bad.actions.is_empty() && bad.task_arn.is_none());
    let mut rules_seen: Vec<_> = page.records.iter().filter_map(|r| r.rule.clone()).collect();
    rules_seen.sort();
    assert_eq!(
        rules_seen,
        ["deployment-health-changed", "vm-free-storage-low"]
    );
}

#[tokio::test]
async fn a_redelivered_batch_records_and_launches_nothing_twice() {
    let t = common::sqlite_app(Default::default());
    for _ in 0..2 {
        process(&t, &batch()).await.unwrap();
    }
    let page = t
        .store
        .list(&ListQuery {
            limit: 10,
            ..ListQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(page.records.len(), 3);
    assert_eq!(t.launcher.contracts().len(), 2);
}

#[tokio::test]
async fn a_launch_failure_is_recorded_and_does_not_stop_the_batch() {
    let t = common::sqlite_app(Default::default());
    *t.launcher.fail_with.lock().unwrap() = Some(orchestrator::launch::LaunchError::permanent(
        "no such task definition",
    ));
    let report = process(&t, &batch()).await.unwrap();
    assert_eq!(report.count("dispatch_failed"), 2, "{report:?}");
    assert_eq!(report.count("rejected"), 1);
    assert_eq!(report.unwritten(), 0);
}

#[tokio::test]
async fn an_event_that_is_not_a_kafka_batch_is_an_error() {
    let t = common::sqlite_app(Default::default());
    let err = process(
        &t,
        &serde_json::json!({"detail-type": "ECS Task State Change"}),
    )
    .await
    .unwrap_err();
    assert!(err.to_string().contains("records"));
}

/// A batch whose first delivery recorded its events but died before launching (a Lambda timeout):
/// the redelivery launches them, once, and a third delivery launches nothing more.
#[tokio::test]
async fn a_redelivered_batch_launches_records_left_received() {
    let t = common::sqlite_app(Default::default());
    // The first delivery, stopped between the write and the launch: the records exist, `received`.
    for item in kafka::decode(&batch()).unwrap() {
        if let kafka::Decoded::Event { event, .. } = item {
            let record = event.to_record(&rules());
            assert_eq!(record.status, Status::Received);
            t.store.create(&record).await.unwrap();
        }
    }
    assert!(t.launcher.contracts().is_empty());

    let report = process(&t, &batch()).await.unwrap();
    assert_eq!(report.count("dispatched"), 2, "{report:?}");
    assert_eq!(report.unwritten(), 0);
    assert_eq!(t.launcher.contracts().len(), 2);

    let again = process(&t, &batch()).await.unwrap();
    assert_eq!(again.count("dispatched"), 2, "{again:?}");
    assert!(again.records.iter().all(|r| r.duplicate), "{again:?}");
    assert_eq!(t.launcher.contracts().len(), 2, "nothing launched twice");
}
