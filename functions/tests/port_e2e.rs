//! The two seed scenarios end to end in local mode: a signed Port delivery through the Router
//! in-process, the record in SQLite, the real `gitops-task` binary started by the real
//! `ProcessLauncher`, and Port and Slack played by wiremock servers that check the exact requests.
//! The remediation command is a test script in the task's command directory.

mod common;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{Request, StatusCode};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{KeyInit, Mac};
use orchestrator::intake::port::PortSettings;
use orchestrator::launch::process::ProcessLauncher;
use orchestrator::rules::RuleSet;
use orchestrator::{AppState, IntakeSettings};
use orchestrator_core::store::RecordStore;
use orchestrator_core::store::sqlite::SqliteStore;
use orchestrator_core::{Record, RecordId, Secret, Status};
use serde_json::{Value, json};
use wiremock::matchers::{body_json, header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const SECRET: &str = "port-client-secret-e2e";
const CLIENT_ID: &str = "port-client-id-e2e";
const SLACK_PATH: &str = "/services/T000/B000/e2e";
const RECORD_BASE: &str = "http://orchestrator.test";

fn write_script(dir: &Path, name: &str, body: &str) {
    std::fs::create_dir_all(dir).unwrap();
    let p = dir.join(name);
    std::fs::write(&p, body).unwrap();
    let mut perm = std::fs::metadata(&p).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perm, 0o755);
    std::fs::set_permissions(&p, perm).unwrap();
}

/// The operator's remediation command: checks what it was given, then reports the new free
/// storage as a `key=value` line. It also reports whether the task's secret leaked to it.
const REMEDIATE_OK: &str = r#"#!/bin/sh
set -eu
echo "freeing storage on $1 (blueprint $PORT_BLUEPRINT, action $PORT_ACTION)"
[ "$1" = "$PORT_ENTITY" ] || { echo "argument and PORT_ENTITY differ" >&2; exit 9; }
grep -q '"free_storage":0.5' "$PORT_EVENT_FILE" || { echo "event file without the change" >&2; exit 8; }
echo "secret_seen=${PORT_CLIENT_SECRET:-none}"
echo "free_storage=7.5"
"#;

const REMEDIATE_FAILS: &str = r#"#!/bin/sh
echo "disk is locked" >&2
exit 3
"#;

struct Local {
    state: AppState,
    store: Arc<SqliteStore>,
    _dir: tempfile::TempDir,
}

fn local(port_api: &str, slack: &str, script: &str) -> Local {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let commands = dir.path().join("commands");
    write_script(&commands, "free-vm-storage", script);
    std::fs::create_dir_all(&data).unwrap();
    let store = Arc::new(SqliteStore::open(&SqliteStore::file_in(&data)).unwrap());
    let env = [
        ("ORCH_STORE", "sqlite".to_owned()),
        ("DATA_DIR", data.display().to_string()),
        ("PORT_API_URL", port_api.to_owned()),
        ("PORT_CLIENT_ID", CLIENT_ID.to_owned()),
        ("PORT_CLIENT_SECRET", SECRET.to_owned()),
        ("SLACK_WEBHOOK_URL", format!("{slack}{SLACK_PATH}")),
        ("EXEC_COMMANDS_DIR", commands.display().to_string()),
        ("RECORD_BASE_URL", RECORD_BASE.to_owned()),
        ("RUST_LOG", "info".to_owned()),
    ];
    let launcher = ProcessLauncher::new(
        common::task_binary(),
        data.join("tasks"),
        env.into_iter().map(|(k, v)| (k.to_owned(), v)).collect(),
    );
    let rules =
        RuleSet::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/rules.yaml"))
            .unwrap();
    let state = AppState {
        store: store.clone(),
        launcher: Arc::new(launcher),
        intake: Arc::new(IntakeSettings {
            port: PortSettings {
                secret: Some(Secret::new(SECRET)),
                rules: Some(Arc::new(rules)),
                deploy_actions: Vec::new(),
            },
            ..IntakeSettings::default()
        }),
        access: common::access(),
    };
    Local {
        state,
        store,
        _dir: dir,
    }
}

async fn deliver(state: &AppState, body: &[u8]) -> (StatusCode, Value) {
    let ts = chrono::Utc::now().timestamp().to_string();
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
    mac.update(ts.as_bytes());
    mac.update(b".");
    mac.update(body);
    let sig = format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()));
    let req = Request::post("/webhooks/port")
        .header("content-type", "application/json")
        .header("x-port-timestamp", ts)
        .header("x-port-signature", sig)
        .body(Body::from(body.to_vec()))
        .unwrap();
    common::send(state, req).await
}

/// Polls the store until the record is final (bounded).
async fn final_record(store: &dyn RecordStore, id: RecordId, data_hint: &Local) -> Record {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let r = store.get(id).await.unwrap().unwrap();
        if r.status.is_final() {
            return r;
        }
        if Instant::now() > deadline {
            let log =
                std::fs::read_to_string(data_hint._dir.path().join(format!("data/tasks/{id}.log")))
                    .unwrap_or_default();
            panic!(
                "record {id} still `{}` after 60 s; task log:\n{log}",
                r.status
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
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
    let done = final_record(t.store.as_ref(), record_id(&rec), &t).await;

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
    let done = final_record(t.store.as_ref(), record_id(&rec), &t).await;
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
        let done = final_record(t.store.as_ref(), id, &t).await;
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
