//! The Port end-to-end tests' shared local setup (`port_e2e.rs`, `port_runs_e2e.rs`): the real
//! task binary behind the real `ProcessLauncher`, the operator's command as a script, and signed
//! deliveries.

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
use orchestrator_core::{Record, RecordId, Secret};
use serde_json::Value;

pub const SECRET: &str = "port-client-secret-e2e";
pub const CLIENT_ID: &str = "port-client-id-e2e";
pub const SLACK_PATH: &str = "/services/T000/B000/e2e";
pub const RECORD_BASE: &str = "http://orchestrator.test";

pub fn write_script(dir: &Path, name: &str, body: &str) {
    std::fs::create_dir_all(dir).unwrap();
    let p = dir.join(name);
    std::fs::write(&p, body).unwrap();
    let mut perm = std::fs::metadata(&p).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perm, 0o755);
    std::fs::set_permissions(&p, perm).unwrap();
}

/// The operator's remediation command: checks what it was given, then reports the new free
/// storage as a `key=value` line. It also reports whether the task's secret leaked to it.
pub const REMEDIATE_OK: &str = r#"#!/bin/sh
set -eu
echo "freeing storage on $1 (blueprint $PORT_BLUEPRINT, action $PORT_ACTION)"
[ "$1" = "$PORT_ENTITY" ] || { echo "argument and PORT_ENTITY differ" >&2; exit 9; }
grep -q '"free_storage":0.5' "$PORT_EVENT_FILE" || { echo "event file without the change" >&2; exit 8; }
echo "secret_seen=${PORT_CLIENT_SECRET:-none}"
echo "free_storage=7.5"
"#;

pub const REMEDIATE_FAILS: &str = r#"#!/bin/sh
echo "disk is locked" >&2
exit 3
"#;

pub struct Local {
    pub state: AppState,
    pub store: Arc<SqliteStore>,
    /// The temporary directory: DATA_DIR (`data/`) and the commands.
    pub dir: tempfile::TempDir,
}

/// A local setup: the store in a temporary DATA_DIR, the real task binary behind the real
/// `ProcessLauncher` (Port at `port_api`, Slack at `slack`, `script` as the operator's
/// `free-vm-storage` command), the example rules, and `deploy_actions` as the Port self-service
/// actions that open a pull request.
pub fn local(port_api: &str, slack: &str, script: &str, deploy_actions: Vec<String>) -> Local {
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
        super::task_binary(),
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
                deploy_actions,
            },
            ..IntakeSettings::default()
        }),
        access: super::access(),
        console: Default::default(),
    };
    Local { state, store, dir }
}

/// `body` POSTed to `route` with a valid Port signature.
pub async fn deliver(state: &AppState, route: &str, body: &[u8]) -> (StatusCode, Value) {
    let ts = chrono::Utc::now().timestamp().to_string();
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
    mac.update(ts.as_bytes());
    mac.update(b".");
    mac.update(body);
    let sig = format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()));
    let req = Request::post(route)
        .header("content-type", "application/json")
        .header("x-port-timestamp", ts)
        .header("x-port-signature", sig)
        .body(Body::from(body.to_vec()))
        .unwrap();
    super::send(state, req).await
}

impl Local {
    /// Polls the store until record `id` is final (at most 60 s; the task's log on timeout).
    pub async fn final_record(&self, id: RecordId) -> Record {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let r = self.store.get(id).await.unwrap().unwrap();
            if r.status.is_final() {
                return r;
            }
            if Instant::now() > deadline {
                let log =
                    std::fs::read_to_string(self.dir.path().join(format!("data/tasks/{id}.log")))
                        .unwrap_or_default();
                panic!(
                    "record {id} still `{}` after 60 s; task log:\n{log}",
                    r.status
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}
