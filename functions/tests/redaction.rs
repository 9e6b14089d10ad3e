//! An audit trail nobody can silently erase, through the real Router: `DELETE` redacts (the
//! payload and outcome go, a tombstone stays), a replay of the redacted delivery is still a
//! duplicate and launches nothing, a record whose task may be running cannot be redacted, and on
//! DynamoDB (moto) every record and dedupe marker carries the retention TTL.

mod common;

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use hmac::{KeyInit, Mac};
use orchestrator::{AppState, IntakeSettings};
use orchestrator_core::store::Transition;
use orchestrator_core::{RecordId, Secret, Status};
use serde_json::Value;

const SECRET: &str = "redaction-test-circleci-secret";

fn signed_delivery(body: &[u8]) -> Request<Body> {
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
    mac.update(body);
    Request::post("/webhooks/circleci")
        .header("content-type", "application/json")
        .header("circleci-event-type", "workflow-completed")
        .header(
            "circleci-signature",
            format!("v1={}", hex::encode(mac.finalize().into_bytes())),
        )
        .body(Body::from(body.to_vec()))
        .unwrap()
}

fn redact(id: &str) -> Request<Body> {
    common::bearer(
        Request::delete(format!("/pullrequests/{id}"))
            .body(Body::empty())
            .unwrap(),
        common::ADMIN_TOKEN,
    )
}

fn settings() -> IntakeSettings {
    IntakeSettings {
        circleci_secret: Some(Secret::new(SECRET)),
        ..IntakeSettings::default()
    }
}

/// The attack: redact a record, then replay its signed delivery to launch the rollout again.
async fn a_replay_after_redaction_is_a_duplicate(
    state: &AppState,
    launcher: &common::RecordingLauncher,
) {
    let body = common::fixture("circleci-native/workflow-completed.json");
    let (status, rec) = common::send(state, signed_delivery(&body)).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{rec}");
    assert_eq!(launcher.contracts().len(), 1);
    let id = rec["id"].as_str().unwrap().to_owned();

    // Dispatched: its task may be running, so no redaction (409 naming the status).
    let (status, err) = common::send(state, redact(&id)).await;
    assert_eq!(status, StatusCode::CONFLICT, "{err}");
    assert!(
        err["error"]["message"]
            .as_str()
            .unwrap()
            .contains("`dispatched`"),
        "{err}"
    );

    // The task finishes, then the record is redacted.
    let rid: RecordId = id.parse().unwrap();
    let mut done = Transition::to(Status::Succeeded);
    done.outcome = Some(serde_json::json!({"output": "workflow build-and-deploy of org/repo"}));
    state.store.transition(rid, &done).await.unwrap();
    let (status, tomb) = common::send(state, redact(&id)).await;
    assert_eq!(status, StatusCode::OK, "{tomb}");
    assert_eq!(tomb["payload"], Value::Null);
    assert_eq!(tomb["outcome"], Value::Null);
    assert_eq!(tomb["status"], "succeeded");
    assert_eq!(tomb["redacted_by"], "admin-token");
    assert_eq!(tomb["dedupe_key"], rec["dedupe_key"]);
    assert!(tomb["dedupe_key"].is_string());

    // The replay: the same signed bytes. A duplicate of the tombstone; nothing launched.
    let (status, again) = common::send(state, signed_delivery(&body)).await;
    assert_eq!(status, StatusCode::OK, "{again}");
    assert_eq!(again["id"], id.as_str());
    assert_eq!(again["redacted_by"], "admin-token");
    assert_eq!(launcher.contracts().len(), 1, "the replay launched a task");
    assert_eq!(common::record_count(state.store.as_ref()).await, 1);
}

#[tokio::test]
async fn sqlite_a_replay_after_redaction_launches_nothing() {
    let t = common::sqlite_app(settings());
    a_replay_after_redaction_is_a_duplicate(&t.state, &t.launcher).await;
}

#[tokio::test]
async fn dynamodb_a_replay_after_redaction_launches_nothing_and_items_expire() {
    let Some(endpoint) = common::moto_endpoint("dynamodb_a_replay_after_redaction") else {
        return;
    };
    let config = common::moto_config(&endpoint).await;
    let (table, store) = common::dynamo_store(&config, "redaction").await;
    let store = store.with_retention(30);
    let launcher = Arc::new(common::RecordingLauncher::default());
    let state = AppState {
        store: Arc::new(store),
        launcher: launcher.clone(),
        intake: Arc::new(settings()),
        access: common::access(),
        console: Default::default(),
    };
    a_replay_after_redaction_is_a_duplicate(&state, &launcher).await;

    // Retention: the table's TTL is on, and the record and its marker expire 30 days after the
    // record was received (a redaction leaves that alone).
    let ddb = aws_sdk_dynamodb::Client::new(&config);
    let ttl = ddb
        .describe_time_to_live()
        .table_name(&table)
        .send()
        .await
        .unwrap();
    let spec = ttl.time_to_live_description().unwrap();
    assert_eq!(spec.attribute_name(), Some("expires_at"));
    let items = ddb.scan().table_name(&table).send().await.unwrap();
    assert_eq!(items.items().len(), 2, "the record and its dedupe marker");
    let record = state.store.list(&Default::default()).await.unwrap().records[0].clone();
    let want = (record.received_at + chrono::Duration::days(30)).timestamp();
    for item in items.items() {
        let at: i64 = item["expires_at"].as_n().unwrap().parse().unwrap();
        assert_eq!(at, want, "{:?}", item["id"]);
    }
}
