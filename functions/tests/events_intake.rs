//! `POST /events` through the Router in-process, with the rules of `examples/events.yaml`: the
//! documented EventBridge envelopes and a schedule run are recorded with the rule they match and
//! a remediation task is launched; a redelivery (same event id, same execution id) returns the
//! first record and launches nothing; the intake token is required; without rules the endpoint
//! answers 503. Also `orchestrator::events::handle`, the `events` function's path, on the same
//! store: the same event through both doors is one record.

mod common;

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use orchestrator::IntakeSettings;
use orchestrator::dispatch::RetryPolicy;
use orchestrator::intake::port::PortSettings;
use orchestrator::rules::RuleSet;
use orchestrator_core::contract::JobKind;
use orchestrator_core::store::RecordStore;
use orchestrator_core::{Secret, Source, Status};
use serde_json::{Value, json};

const TOKEN: &str = "tok-events-1";

fn rules() -> Arc<RuleSet> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/events.yaml");
    Arc::new(RuleSet::load(&path).unwrap())
}

fn app() -> common::TestApp {
    common::sqlite_app(IntakeSettings {
        token: Some(Secret::new(TOKEN)),
        port: PortSettings {
            secret: None,
            rules: Some(rules()),
            deploy_actions: Vec::new(),
        },
        ..IntakeSettings::default()
    })
}

fn post(body: &[u8], token: Option<&str>) -> Request<Body> {
    let mut b = Request::post("/events").header("content-type", "application/json");
    if let Some(t) = token {
        b = b.header("authorization", format!("Bearer {t}"));
    }
    b.body(Body::from(body.to_vec())).unwrap()
}

#[tokio::test]
async fn a_reboot_event_is_recorded_with_its_rule_and_launched_once() {
    let t = app();
    let body = common::fixture("eventbridge/cloudtrail-reboot-instances.json");

    let (status, err) = common::send(&t.state, post(&body, None)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{err}");
    let (status, err) = common::send(&t.state, post(&body, Some("wrong"))).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{err}");
    assert_eq!(common::record_count(t.store.as_ref()).await, 0);

    let (status, rec) = common::send(&t.state, post(&body, Some(TOKEN))).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{rec}");
    assert_eq!(rec["source"], "eventbridge");
    assert_eq!(rec["status"], "dispatched");
    assert_eq!(rec["rule"], "instance-rebooted-snapshot");
    assert_eq!(rec["actions"][0]["type"], "aws.ec2.snapshot_instance");
    assert_eq!(
        rec["dedupe_key"],
        "eventbridge:6a7e8feb-b491-4cf7-a9f1-bf3703467718"
    );
    assert_eq!(rec["payload"]["detail"]["eventName"], "RebootInstances");
    let contracts = t.launcher.contracts();
    assert_eq!(contracts.len(), 1);
    assert_eq!(contracts[0].kind, JobKind::Remediation);
    assert_eq!(
        contracts[0].record_id.to_string(),
        rec["id"].as_str().unwrap()
    );

    // EventBridge delivers again (same id): the first record, nothing launched.
    let (status, again) = common::send(&t.state, post(&body, Some(TOKEN))).await;
    assert_eq!(status, StatusCode::OK, "{again}");
    assert_eq!(again["id"], rec["id"]);
    assert_eq!(t.launcher.contracts().len(), 1);

    // The same event through the events function's path: still one record, one launch.
    let report = orchestrator::events::handle(
        t.store.as_ref(),
        t.launcher.as_ref(),
        RetryPolicy::default(),
        &rules(),
        serde_json::from_slice(&body).unwrap(),
    )
    .await
    .unwrap();
    assert!(report.duplicate);
    assert_eq!(report.record_id.to_string(), rec["id"].as_str().unwrap());
    assert_eq!(t.launcher.contracts().len(), 1);
    assert_eq!(common::record_count(t.store.as_ref()).await, 1);
}

#[tokio::test]
async fn every_documented_shape_finds_its_rule_and_others_are_ignored() {
    let t = app();
    for (fixture, rule) in [
        (
            "health-instance-reboot-maintenance.json",
            "maintenance-reboot-snapshot",
        ),
        ("ec2-instance-state-stopped.json", "instance-stopped-notify"),
        ("scheduler-run.json", "nightly-reset-web"),
    ] {
        let body = common::fixture(&format!("eventbridge/{fixture}"));
        let (status, rec) = common::send(&t.state, post(&body, Some(TOKEN))).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{fixture}: {rec}");
        assert_eq!(
            (rec["rule"].as_str(), rec["status"].as_str()),
            (Some(rule), Some("dispatched")),
            "{fixture}"
        );
    }
    // A state nobody asked about: recorded `ignored`, with each EventBridge rule's reason.
    let mut running: Value = serde_json::from_slice(&common::fixture(
        "eventbridge/ec2-instance-state-stopped.json",
    ))
    .unwrap();
    running["id"] = json!("another-event");
    running["detail"]["state"] = json!("running");
    let (status, rec) = common::send(
        &t.state,
        post(&serde_json::to_vec(&running).unwrap(), Some(TOKEN)),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{rec}");
    assert_eq!(rec["status"], "ignored");
    let reason = rec["status_reason"].as_str().unwrap();
    assert!(
        reason.contains("`instance-stopped-notify`: condition is false")
            && reason
                .contains("`nightly-reset-web`: source `aws.ec2` is not orchestrator.schedule"),
        "{reason}"
    );
    assert_eq!(t.launcher.contracts().len(), 3);

    // Not an envelope: 400 naming the field, nothing recorded.
    let before = common::record_count(t.store.as_ref()).await;
    let (status, err) = common::send(
        &t.state,
        post(br#"{"source": "aws.ec2", "detail-type": "x"}"#, Some(TOKEN)),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{err}");
    assert!(err.to_string().contains("`id`"), "{err}");
    assert_eq!(common::record_count(t.store.as_ref()).await, before);
}

#[tokio::test]
async fn a_schedule_run_is_one_record_per_execution_id() {
    let t = app();
    let schedules = orchestrator::intake::events::parse_schedules(
        r#"[{"name": "nightly-reset-web", "expression": "cron(0 3 * * ? *)", "input": {"instance_id": "i-0abc"}}]"#,
    )
    .unwrap();
    let fire = |execution_id: Option<&'static str>| {
        let (store, launcher, schedules) = (t.store.clone(), t.launcher.clone(), schedules.clone());
        async move {
            orchestrator::events::fire(
                store.as_ref(),
                launcher.as_ref(),
                RetryPolicy::default(),
                &rules(),
                &schedules,
                "nightly-reset-web",
                execution_id,
            )
            .await
        }
    };
    let first = fire(Some("exec-1")).await.unwrap();
    assert_eq!((first.status, first.duplicate), (Status::Dispatched, false));
    assert_eq!(first.key, "schedule:exec-1");
    let replay = fire(Some("exec-1")).await.unwrap();
    assert!(replay.duplicate);
    assert_eq!(replay.record_id, first.record_id);
    let next = fire(None).await.unwrap();
    assert!(!next.duplicate);
    assert_ne!(next.record_id, first.record_id);
    assert_eq!(t.launcher.contracts().len(), 2);

    let record = t.store.get(first.record_id).await.unwrap().unwrap();
    assert_eq!(record.source, Source::Eventbridge);
    assert_eq!(record.payload["detail"]["input"]["instance_id"], "i-0abc");
    assert_eq!(record.payload["source"], "orchestrator.schedule");

    let unknown = orchestrator::events::fire(
        t.store.as_ref(),
        t.launcher.as_ref(),
        RetryPolicy::default(),
        &rules(),
        &schedules,
        "no-such-schedule",
        None,
    )
    .await
    .unwrap_err();
    assert!(
        unknown.to_string().contains("no-such-schedule"),
        "{unknown}"
    );
}

#[tokio::test]
async fn without_rules_the_endpoint_is_not_configured() {
    let t = common::sqlite_app(IntakeSettings {
        token: Some(Secret::new(TOKEN)),
        ..IntakeSettings::default()
    });
    let body = common::fixture("eventbridge/cloudtrail-reboot-instances.json");
    let (status, err) = common::send(&t.state, post(&body, Some(TOKEN))).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{err}");
    assert_eq!(err["error"]["code"], "not_configured");
    assert_eq!(common::record_count(t.store.as_ref()).await, 0);
}
