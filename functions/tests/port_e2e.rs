//! The two seed scenarios end to end in local mode: a signed Port delivery through the Router
//! in-process, the record in SQLite, the real `gitops-task` binary started by the real
//! `ProcessLauncher`, and Port and Slack played by wiremock servers that check the exact requests.
//! The remediation command is a test script in the task's command directory.

mod common;

use axum::http::StatusCode;
use orchestrator::AppState;
use orchestrator_core::{RecordId, Status};
use serde_json::{Value, json};
use wiremock::matchers::{body_json, header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use common::port_local::{
    CLIENT_ID, Local, RECORD_BASE, REMEDIATE_FAILS, REMEDIATE_OK, SECRET, SLACK_PATH,
};

fn local(port_api: &str, slack: &str, script: &str) -> Local {
    common::port_local::local(port_api, slack, script, Vec::new())
}

async fn deliver(state: &AppState, body: &[u8]) -> (StatusCode, Value) {
    common::port_local::deliver(state, "/webhooks/port", body).await
}

fn record_id(rec: &Value) -> RecordId {
    rec["id"].as_str().unwrap().parse().unwrap()
}

async fn port_mock(patch_calls: u64) -> MockServer {
    let port = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/auth/access_token"))
        .and(body_json(
            json!({"clientId": CLIENT_ID, "clientSecret": SECRET}),
        ))
        .respond_with(ResponseTemplate::new(200).set_body_json(
            json!({"ok": true, "accessToken": "port-token-1", "expiresIn": 3600, "tokenType": "Bearer"}),
        ))
        .expect(patch_calls.min(1))
        .mount(&port)
        .await;
    Mock::given(method("PATCH"))
        .and(path("/v1/blueprints/vm/entities/storage-example"))
        .and(header("authorization", "Bearer port-token-1"))
        .and(body_json(json!({"properties": {"free_storage": 7.5}})))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"ok": true})))
        .expect(patch_calls)
        .mount(&port)
        .await;
    port
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn low_free_storage_runs_the_command_then_patches_the_reported_value() {
    let port = port_mock(1).await;
    let slack = MockServer::start().await;
    let t = local(&port.uri(), &slack.uri(), REMEDIATE_OK);

    let body = common::fixture("port/changelog-vm-free-storage-low.json");
    let (status, rec) = deliver(&t.state, &body).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{rec}");
    assert_eq!(rec["status"], "dispatched");
    let done = t.final_record(record_id(&rec)).await;

    assert_eq!(done.status, Status::Succeeded, "{:?}", done.outcome);
    let outcome = done.outcome.unwrap();
    assert_eq!(outcome["rule"], "vm-free-storage-low");
    assert_eq!(outcome["failed_step"], Value::Null);
    let steps = outcome["steps"].as_array().unwrap();
    assert_eq!(steps.len(), 2);
    assert_eq!(steps[0]["id"], "remediate");
    assert_eq!(steps[0]["status"], "succeeded");
    assert_eq!(steps[0]["detail"]["exit_code"], 0);
    assert_eq!(steps[0]["detail"]["outputs"]["free_storage"], "7.5");
    assert_eq!(
        steps[0]["detail"]["outputs"]["secret_seen"], "none",
        "the command must not see the task's secrets"
    );
    assert!(
        steps[0]["detail"]["stdout_tail"]
            .as_str()
            .unwrap()
            .contains("freeing storage on storage-example (blueprint vm, action UPDATE)")
    );
    assert_eq!(steps[1]["type"], "port.patch_entity");
    assert_eq!(steps[1]["status"], "succeeded");
    assert_eq!(steps[1]["detail"]["http_status"], 200);
    assert_eq!(
        steps[1]["detail"]["request"],
        json!({"properties": {"free_storage": 7.5}})
    );

    // Exactly the token request and one PATCH; nothing to Slack.
    let requests = port.received_requests().await.unwrap();
    assert_eq!(requests.len(), 2, "{requests:?}");
    assert!(slack.received_requests().await.unwrap().is_empty());
    let doc = serde_json::to_string(&done.payload).unwrap() + &outcome.to_string();
    assert!(!doc.contains(SECRET) && !doc.contains("port-token-1"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_command_stops_the_sequence_and_names_the_step() {
    let port = port_mock(0).await;
    let slack = MockServer::start().await;
    let t = local(&port.uri(), &slack.uri(), REMEDIATE_FAILS);
    let body = common::fixture("port/changelog-vm-free-storage-low.json");
    let (status, rec) = deliver(&t.state, &body).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{rec}");
    let done = t.final_record(record_id(&rec)).await;
    assert_eq!(done.status, Status::Failed);
    let reason = done.status_reason.unwrap();
    assert!(
        reason.contains("step 1 of 2 `remediate` (exec) failed")
            && reason.contains("exited with status 3"),
        "{reason}"
    );
    let outcome = done.outcome.unwrap();
    assert_eq!(outcome["failed_step"], "remediate");
    assert_eq!(outcome["steps"][0]["detail"]["exit_code"], 3);
    assert!(
        outcome["steps"][0]["detail"]["stderr_tail"]
            .as_str()
            .unwrap()
            .contains("disk is locked")
    );
    assert_eq!(outcome["steps"][1]["status"], "skipped");
    assert!(
        port.received_requests().await.unwrap().is_empty(),
        "no token, no PATCH"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_degraded_deployment_posts_exactly_one_slack_message() {
    for fixture in [
        "port/changelog-deployment-health-degraded.json",
        "port/automation-deployment-health-degraded.json",
    ] {
        let port = MockServer::start().await;
        let slack = MockServer::start().await;
        Mock::given(method("POST"))
            .and(path(SLACK_PATH))
            .and(header("content-type", "application/json"))
            .respond_with(ResponseTemplate::new(200).set_body_string("ok"))
            .expect(1)
            .mount(&slack)
            .await;
        let t = local(&port.uri(), &slack.uri(), REMEDIATE_OK);
        let (status, rec) = deliver(&t.state, &common::fixture(fixture)).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{fixture}: {rec}");
        let id = record_id(&rec);
        let done = t.final_record(id).await;
        assert_eq!(
            done.status,
            Status::Succeeded,
            "{fixture}: {:?}",
            done.outcome
        );

        let requests = slack.received_requests().await.unwrap();
        assert_eq!(requests.len(), 1, "{fixture}: exactly one message");
        let sent: Value = serde_json::from_slice(&requests[0].body).unwrap();
        let text = sent["text"].as_str().unwrap();
        assert_eq!(sent.as_object().unwrap().len(), 1, "{sent}");
        assert!(text.contains("notification-service-prod"), "{text}");
        assert!(text.contains("healthStatus: Healthy → Degraded"), "{text}");
        assert!(
            text.contains(&format!("{RECORD_BASE}/pullrequests/{id}")),
            "{text}"
        );
        assert!(port.received_requests().await.unwrap().is_empty());
        slack.verify().await;
    }
}
