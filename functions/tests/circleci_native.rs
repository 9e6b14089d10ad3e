//! `POST /webhooks/circleci`: signatures, event kinds, filters, and exactly-once under redelivery
//! (including 50 parallel identical deliveries against DynamoDB and ECS on moto).

mod common;

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use common::{record_count, send};
use hmac::{KeyInit, Mac};
use orchestrator::intake::circleci::NativeFilter;
use orchestrator::{AppState, IntakeSettings};
use orchestrator_core::Secret;
use serde_json::Value;

const SECRET: &str = "whsec-test-1";

fn sign(body: &[u8]) -> String {
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
    mac.update(body);
    format!("v1={}", hex::encode(mac.finalize().into_bytes()))
}

fn delivery(body: &[u8], signature: Option<&str>) -> Request<Body> {
    let mut b = Request::post("/webhooks/circleci")
        .header("content-type", "application/json")
        .header("circleci-event-type", "workflow-completed");
    if let Some(s) = signature {
        b = b.header("circleci-signature", s);
    }
    b.body(Body::from(body.to_vec())).unwrap()
}

fn settings() -> IntakeSettings {
    IntakeSettings {
        circleci_secret: Some(Secret::new(SECRET)),
        ..IntakeSettings::default()
    }
}

#[tokio::test]
async fn a_signed_workflow_completed_is_recorded_and_launched_once() {
    let t = common::sqlite_app(settings());
    let body = common::fixture("circleci-native/workflow-completed.json");
    let (status, rec) = send(&t.state, delivery(&body, Some(&sign(&body)))).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{rec}");
    assert_eq!(rec["source"], "circleci_native");
    assert_eq!(rec["status"], "dispatched");
    assert_eq!(rec["job"]["service"], "webhook-service");
    assert_eq!(rec["job"]["image"], "circleci/webhook-service");
    assert_eq!(
        rec["job"]["tag"],
        "1dc6aa69429bff4806ad6afe58d3d8f57e25973e"
    );
    assert_eq!(
        rec["dedupe_key"],
        "circleci_native:3888f21b-eaa7-38e3-8f3d-75a63bba8895"
    );

    let (status, again) = send(&t.state, delivery(&body, Some(&sign(&body)))).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(again["id"], rec["id"]);
    assert_eq!(t.launcher.contracts().len(), 1);
}

#[tokio::test]
async fn bad_missing_or_unknown_version_signatures_are_401_and_record_nothing() {
    let t = common::sqlite_app(settings());
    let body = common::fixture("circleci-native/workflow-completed.json");
    let good = sign(&body);
    let mut tampered = body.clone();
    tampered[10] ^= 1;
    let cases: Vec<(Vec<u8>, Option<String>)> = vec![
        (body.clone(), None),
        (body.clone(), Some("v1=deadbeef".into())),
        (body.clone(), Some(good.replace("v1=", "v2="))),
        (tampered, Some(good.clone())),
        (body.clone(), Some(sign(b"other body"))),
    ];
    for (b, sig) in cases {
        let (status, err) = send(&t.state, delivery(&b, sig.as_deref())).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{sig:?}");
        assert_eq!(err["error"]["code"], "bad_signature");
    }
    assert_eq!(record_count(t.store.as_ref()).await, 0);
    assert!(t.launcher.contracts().is_empty());
}

#[tokio::test]
async fn unconfigured_intake_is_503() {
    let t = common::sqlite_app(IntakeSettings::default());
    let body = common::fixture("circleci-native/workflow-completed.json");
    let (status, err) = send(&t.state, delivery(&body, Some(&sign(&body)))).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(err["error"]["code"], "not_configured");
}

#[tokio::test]
async fn job_events_follow_the_filter_and_failures_are_ignored() {
    let body = common::fixture("circleci-native/job-completed-github-app.json");
    // Default filter: job events are recorded but do not roll out.
    let t = common::sqlite_app(settings());
    let (status, rec) = send(&t.state, delivery(&body, Some(&sign(&body)))).await;
    assert_eq!(
        (status, rec["status"].as_str()),
        (StatusCode::ACCEPTED, Some("ignored"))
    );
    assert!(
        rec["status_reason"]
            .as_str()
            .unwrap()
            .contains("CIRCLECI_JOBS")
    );
    assert!(t.launcher.contracts().is_empty());

    // Listed job: it rolls out, with the SHA from trigger_parameters.
    let t = common::sqlite_app(IntakeSettings {
        circleci_filter: NativeFilter {
            workflows: vec![],
            jobs: vec!["docker-build-tag-push".into()],
        },
        ..settings()
    });
    let (status, rec) = send(&t.state, delivery(&body, Some(&sign(&body)))).await;
    assert_eq!(
        (status, rec["status"].as_str()),
        (StatusCode::ACCEPTED, Some("dispatched")),
        "{rec}"
    );
    assert_eq!(
        rec["job"]["tag"],
        "4e1243bd22c66e76c2ba9eddc1f91394e57f9f83"
    );
    assert_eq!(rec["job"]["image"], "acme/payments-api");

    // A failed workflow is recorded as ignored.
    let mut failed: Value =
        serde_json::from_slice(&common::fixture("circleci-native/workflow-completed.json"))
            .unwrap();
    failed["workflow"]["status"] = "failed".into();
    let failed = failed.to_string().into_bytes();
    let t = common::sqlite_app(settings());
    let (status, rec) = send(&t.state, delivery(&failed, Some(&sign(&failed)))).await;
    assert_eq!(
        (status, rec["status"].as_str()),
        (StatusCode::ACCEPTED, Some("ignored"))
    );
    assert!(t.launcher.contracts().is_empty());
}

#[tokio::test]
async fn fifty_parallel_identical_deliveries_make_one_record_and_at_most_one_task() {
    let Some(endpoint) = common::moto_endpoint(
        "fifty_parallel_identical_deliveries_make_one_record_and_at_most_one_task",
    ) else {
        return;
    };
    // DynamoDB and the ECS launcher on moto.
    let aws = common::MotoAws::setup(&endpoint).await;
    let (_table, store) = aws.store().await;
    let store = Arc::new(store);
    let state = AppState {
        store: store.clone(),
        launcher: Arc::new(aws.launcher()),
        intake: Arc::new(settings()),
        access: common::access(),
        console: Default::default(),
    };
    let body = common::fixture("circleci-native/workflow-completed.json");
    let sig = sign(&body);
    let mut handles = Vec::new();
    for _ in 0..50 {
        let (state, body, sig) = (state.clone(), body.clone(), sig.clone());
        handles.push(tokio::spawn(async move {
            send(&state, delivery(&body, Some(&sig))).await
        }));
    }
    let mut ids = std::collections::BTreeSet::new();
    let mut created = 0;
    for h in handles {
        let (status, rec) = h.await.unwrap();
        assert!(
            status == StatusCode::ACCEPTED || status == StatusCode::OK,
            "{status} {rec}"
        );
        if status == StatusCode::ACCEPTED {
            created += 1;
        }
        ids.insert(rec["id"].as_str().unwrap().to_owned());
    }
    assert_eq!(created, 1, "exactly one delivery creates the record");
    assert_eq!(ids.len(), 1, "every delivery gets the same record id");
    assert_eq!(record_count(store.as_ref()).await, 1);
    let tasks = aws.started_tasks().await;
    assert!(
        tasks.task_arns().len() <= 1,
        "at most one task: {:?}",
        tasks.task_arns()
    );
    assert_eq!(tasks.task_arns().len(), 1);
}
