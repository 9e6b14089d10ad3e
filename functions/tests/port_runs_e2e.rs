//! Port automation runs end to end in local mode: a signed invocation (`POST /webhooks/port/runs`)
//! through the Router in-process, the record in SQLite, the real `gitops-task` binary started by
//! the real `ProcessLauncher`, and Port played by a wiremock server that records the exact
//! reports to the run: `IN_PROGRESS`, a log line per step started and finished, and `SUCCESS` or
//! `FAILURE` with the record's link. The remediation command is a test script.

mod common;

use std::time::Duration;

use axum::http::StatusCode;
use orchestrator::AppState;
use orchestrator_core::{RecordId, Status};
use serde_json::{Value, json};
use wiremock::matchers::{body_json, header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use common::port_local::{CLIENT_ID, Local, RECORD_BASE, REMEDIATE_FAILS, REMEDIATE_OK, SECRET};

fn local(port_api: &str, slack: &str, script: &str) -> Local {
    common::port_local::local(port_api, slack, script, vec!["deploy_image".into()])
}

async fn deliver(state: &AppState, body: &[u8]) -> (StatusCode, Value) {
    common::port_local::deliver(state, "/webhooks/port/runs", body).await
}

fn record_id(rec: &Value) -> RecordId {
    rec["id"].as_str().unwrap().parse().unwrap()
}

const RUN: &str = "r_QpY9kXdZ2eT4bN7w";

/// Port: a token, the entity PATCH of the rule's second step, and every run report accepted.
async fn port_mock() -> MockServer {
    let port = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/auth/access_token"))
        .and(body_json(
            json!({"clientId": CLIENT_ID, "clientSecret": SECRET}),
        ))
        .respond_with(ResponseTemplate::new(200).set_body_json(
            json!({"ok": true, "accessToken": "port-token-1", "expiresIn": 3600, "tokenType": "Bearer"}),
        ))
        .mount(&port)
        .await;
    Mock::given(method("PATCH"))
        .and(path("/v1/blueprints/vm/entities/storage-example"))
        .and(header("authorization", "Bearer port-token-1"))
        .and(body_json(json!({"properties": {"free_storage": 7.5}})))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"ok": true})))
        .mount(&port)
        .await;
    Mock::given(wiremock::matchers::path_regex("^/v1/actions/runs/"))
        .and(header("authorization", "Bearer port-token-1"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"ok": true})))
        .mount(&port)
        .await;
    port
}

/// The reports to the run, in order: (method, path, body).
async fn run_reports(port: &MockServer) -> Vec<(String, String, Value)> {
    port.received_requests()
        .await
        .unwrap()
        .into_iter()
        .filter(|r| r.url.path().starts_with("/v1/actions/runs/"))
        .map(|r| {
            (
                r.method.to_string(),
                r.url.path().to_owned(),
                serde_json::from_slice(&r.body).unwrap(),
            )
        })
        .collect()
}

fn log(message: &str) -> (String, String, Value) {
    (
        "POST".into(),
        format!("/v1/actions/runs/{RUN}/logs"),
        json!({"message": message}),
    )
}

fn patch(status: &str, label: &str, links: &[&str]) -> (String, String, Value) {
    (
        "PATCH".into(),
        format!("/v1/actions/runs/{RUN}"),
        json!({"status": status, "statusLabel": label, "link": links}),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_entity_updated_automation_run_ends_success_with_its_steps_logged() {
    let port = port_mock().await;
    let slack = MockServer::start().await;
    let t = local(&port.uri(), &slack.uri(), REMEDIATE_OK);
    let body = common::fixture("port/automation-vm-free-storage-low.json");
    let (status, rec) = deliver(&t.state, &body).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{rec}");
    assert_eq!(rec["port_run"]["id"], RUN);
    let id = record_id(&rec);
    let done = t.final_record(id).await;
    assert_eq!(done.status, Status::Succeeded, "{:?}", done.outcome);
    let record_url = format!("{RECORD_BASE}/pullrequests/{id}");
    assert_eq!(
        run_reports(&port).await,
        vec![
            patch(
                "IN_PROGRESS",
                "Running rule `vm-free-storage-low`: 2 step(s)",
                &[&record_url]
            ),
            log("Step 1 of 2 `remediate` (exec) started"),
            log("Step 1 of 2 `remediate` succeeded"),
            log("Step 2 of 2 `report` (port.patch_entity) started"),
            log("Step 2 of 2 `report` succeeded"),
            patch("SUCCESS", "Remediated: 2 step(s) succeeded", &[&record_url]),
        ]
    );
    assert_eq!(done.outcome.unwrap().get("port_report"), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_step_ends_the_run_failure_with_the_step_named_in_its_log() {
    let port = port_mock().await;
    let slack = MockServer::start().await;
    let t = local(&port.uri(), &slack.uri(), REMEDIATE_FAILS);
    let body = common::fixture("port/automation-vm-free-storage-low.json");
    let (status, rec) = deliver(&t.state, &body).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{rec}");
    let id = record_id(&rec);
    let done = t.final_record(id).await;
    assert_eq!(done.status, Status::Failed);
    let record_url = format!("{RECORD_BASE}/pullrequests/{id}");
    let reports = run_reports(&port).await;
    assert_eq!(reports.len(), 4, "{reports:#?}");
    assert_eq!(reports[1], log("Step 1 of 2 `remediate` (exec) started"));
    let failed = reports[2].2["message"].as_str().unwrap();
    assert!(
        failed.starts_with("Step 1 of 2 `remediate` failed:") && failed.contains("status 3"),
        "{failed}"
    );
    assert_eq!(
        reports[3],
        patch("FAILURE", "Failed at step `remediate`", &[&record_url])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_run_delivered_twice_is_handled_once() {
    let port = port_mock().await;
    let slack = MockServer::start().await;
    let t = local(&port.uri(), &slack.uri(), REMEDIATE_OK);
    let body = common::fixture("port/automation-vm-free-storage-low.json");
    let (status, first) = deliver(&t.state, &body).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{first}");
    let done = t.final_record(record_id(&first)).await;
    assert_eq!(done.status, Status::Succeeded);
    // Port retries the delivery (a new timestamp, so a new signature): the same record, nothing run.
    let (status, again) = deliver(&t.state, &body).await;
    assert_eq!(status, StatusCode::OK, "{again}");
    assert_eq!(again["id"], first["id"]);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let reports = run_reports(&port).await;
    let in_progress = reports
        .iter()
        .filter(|r| r.2["status"] == "IN_PROGRESS")
        .count();
    assert_eq!(in_progress, 1, "{reports:#?}");
    let entity_patches = port
        .received_requests()
        .await
        .unwrap()
        .iter()
        .filter(|r| r.url.path() == "/v1/blueprints/vm/entities/storage-example")
        .count();
    assert_eq!(entity_patches, 1, "the remediation ran once");
}
