//! Port's runs topic (`<ORG_ID>.runs`) through the Kafka batch loop: automation and self-service
//! action invocations beside a corrupt record, on the SQLite store with a recording launcher.
//! Each record is isolated: the corrupt one is recorded `rejected`, the others run; a batch
//! delivered again launches nothing more; a run already delivered by webhook is the same record.

mod common;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use orchestrator::dispatch::{self, RetryPolicy, RunsIntake};
use orchestrator::intake::derive::DeriveConfig;
use orchestrator::intake::port::invocation;
use orchestrator::rules::RuleSet;
use orchestrator_core::contract::JobKind;
use orchestrator_core::store::RecordStore;
use serde_json::{Value, json};

const TOPIC: &str = "org_sYG4DOJZNGy8bYnt.runs";

fn rules() -> RuleSet {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/rules.yaml");
    RuleSet::load(&path).unwrap()
}

fn runs() -> RunsIntake {
    RunsIntake {
        derive: DeriveConfig {
            image: "acme/{reponame}".parse().unwrap(),
            ..Default::default()
        },
        deploy_actions: vec!["deploy_image".into()],
    }
}

fn record(offset: i64, value: &str) -> Value {
    json!({"topic": TOPIC, "partition": 0, "offset": offset, "timestamp": 1764320000000_i64,
           "timestampType": "CREATE_TIME", "value": value, "headers": []})
}

/// An automation run, a corrupt record, and a deploy action run, on partition 0.
fn batch() -> Value {
    let b64 = |name: &str| STANDARD.encode(common::fixture(name));
    json!({
        "eventSource": "SelfManagedKafka",
        "bootstrapServers": "b-1.kafka.example.com:9096",
        "records": {format!("{TOPIC}-0"): [
            record(7, &b64("port/automation-vm-free-storage-low.json")),
            record(8, &STANDARD.encode(b"{\"runId\": ")),
            record(9, &b64("port/action-deploy-image.json")),
        ]}
    })
}

async fn process(t: &common::TestApp, event: &Value) -> dispatch::BatchReport {
    dispatch::process_batch_with(
        t.store.as_ref(),
        t.launcher.as_ref(),
        RetryPolicy::default(),
        &rules(),
        &runs(),
        event,
        None,
    )
    .await
    .unwrap()
}

#[tokio::test]
async fn a_runs_batch_with_one_corrupt_record_runs_the_others_and_rejects_it() {
    let t = common::sqlite_app(Default::default());
    let report = process(&t, &batch()).await;
    let statuses: Vec<(i64, &str)> = report
        .records
        .iter()
        .map(|r| (r.at.offset, r.status.as_str()))
        .collect();
    assert_eq!(
        statuses,
        [(7, "dispatched"), (8, "rejected"), (9, "dispatched")],
        "{report:?}"
    );
    let rejected = &report.records[1];
    assert!(
        rejected
            .reason
            .as_deref()
            .unwrap()
            .contains("not a Port invocation"),
        "{rejected:?}"
    );
    assert_eq!(report.item_failures(), Some(vec![]), "every record is done");
    let kinds: Vec<JobKind> = t.launcher.contracts().iter().map(|c| c.kind).collect();
    assert_eq!(kinds, [JobKind::Remediation, JobKind::GitopsPr]);
    let deploy = t
        .store
        .get(report.records[2].record_id.unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(deploy.port_run.unwrap().id, "r_Dp7mW2zX9cV5kB1q");

    // Delivered again (a retried batch): the same records, nothing launched again.
    let again = process(&t, &batch()).await;
    assert!(again.records.iter().all(|r| r.duplicate), "{again:?}");
    assert_eq!(t.launcher.contracts().len(), 2);
}

#[tokio::test]
async fn a_run_delivered_by_webhook_and_by_kafka_is_one_record() {
    let t = common::sqlite_app(Default::default());
    // The webhook's record of the automation run, written as the webhook would.
    let webhook = invocation::parse(&common::fixture("port/automation-vm-free-storage-low.json"))
        .unwrap()
        .to_record(&rules(), &DeriveConfig::default(), &[])
        .unwrap();
    t.store.create(&webhook).await.unwrap();
    let report = process(&t, &batch()).await;
    assert_eq!(report.records[0].record_id, Some(webhook.id));
    assert!(report.records[0].duplicate);
}
