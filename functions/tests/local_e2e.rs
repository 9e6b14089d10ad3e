//! End to end in local mode: the real `orchestrator serve` binary on port 0, the orb fixture
//! posted over HTTP, the record listed, and the task started as a process with exactly the
//! contract's environment; a record left `received` launched by the server's recovery sweeper.
//!
//! The task program here is a two-line shell script that saves its environment: that is the
//! only way to see, from outside, the exact environment a child process received.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// The audit token every server here is started with.
const AUDIT: &str = "local-audit";

struct Server {
    child: Child,
    base: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(data_dir: &std::path::Path, task: &std::path::Path, token: Option<&str>) -> Server {
    start_with(data_dir, task, token, &[])
}

fn start_with(
    data_dir: &std::path::Path,
    task: &std::path::Path,
    token: Option<&str>,
    env: &[(&str, &str)],
) -> Server {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_orchestrator"));
    cmd.arg("serve")
        .envs(env.iter().copied())
        .env("PORT", "0")
        .env("DATA_DIR", data_dir)
        .env("TASK_BINARY", task)
        .env_remove("INTAKE_TOKEN")
        .env("AUDIT_TOKEN", AUDIT)
        .env_remove("ADMIN_TOKEN")
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    if let Some(t) = token {
        cmd.env("INTAKE_TOKEN", t);
    }
    let mut child = cmd.spawn().unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let base = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("unexpected first line: {line:?}"))
        .to_owned();
    Server { child, base }
}

fn env_dump_script(dir: &std::path::Path) -> std::path::PathBuf {
    let path = dir.join("fake-task.sh");
    std::fs::write(&path, "#!/bin/sh\nf=\"$DATA_DIR/task-env-$ORCH_RECORD_ID\"\nenv > \"$f.tmp\" && mv \"$f.tmp\" \"$f\"\n").unwrap();
    let mut perm = std::fs::metadata(&path).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perm, 0o755);
    std::fs::set_permissions(&path, perm).unwrap();
    path
}

#[tokio::test]
async fn orb_delivery_to_local_task_process() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let task = env_dump_script(dir.path());
    let server = start(&data, &task, None);
    let http = orchestrator_clients::http::client().unwrap();

    let resp = http
        .post(format!("{}/pullrequests", server.base))
        .header("content-type", "application/json")
        .body(common::fixture("circleci-orb/success.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 202);
    let location = resp.headers()["location"].to_str().unwrap().to_owned();
    let record: Value = resp.json().await.unwrap();
    let id = record["id"].as_str().unwrap().to_owned();
    assert_eq!(location, format!("/pullrequests/{id}"));
    assert!(record["task_arn"].as_str().unwrap().starts_with("local:"));

    let list: Value = http
        .get(format!("{}/pullrequests", server.base))
        .bearer_auth(AUDIT)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list["records"][0]["id"], id.as_str());
    assert_eq!(list["records"][0]["status"], "dispatched");

    // The task process ran with the contract in its environment.
    let dump = data.join(format!("task-env-{id}"));
    let deadline = Instant::now() + Duration::from_secs(10);
    while !dump.exists() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let env = std::fs::read_to_string(&dump).expect("the task process wrote its environment");
    let get = |k: &str| {
        env.lines()
            .find_map(|l| l.strip_prefix(&format!("{k}=")))
            .map(str::to_owned)
    };
    // The contract's variables, named by hand (not from `vars`), and no other `ORCH_` variable
    // but ORCH_STORE, which the local launcher adds (with DATA_DIR), and any this test inherited.
    let mut contract: Vec<&str> = env
        .lines()
        .filter(|l| {
            let name = l.split('=').next().unwrap_or_default();
            name.starts_with("ORCH_") && name != "ORCH_STORE" && std::env::var_os(name).is_none()
        })
        .collect();
    contract.sort_unstable();
    assert_eq!(
        contract,
        [
            "ORCH_ATTEMPT=1".to_owned(),
            "ORCH_ENVIRONMENT=dev".to_owned(),
            "ORCH_IMAGE=eddiewebb/circleci-samples".to_owned(),
            "ORCH_JOB_KIND=gitops_pr".to_owned(),
            format!("ORCH_RECORD_ID={id}"),
            "ORCH_SERVICE=circleci-samples".to_owned(),
            "ORCH_TAG=8f59df978e3fa133a2ee39ff66b3382342ce958c".to_owned(),
        ]
    );
    assert_eq!(get("ORCH_STORE").as_deref(), Some("sqlite"));
    assert!(get("DATA_DIR").is_some());
    assert!(
        data.join("tasks").join(format!("{id}.log")).exists(),
        "task output is kept per record"
    );
}

#[tokio::test]
async fn local_mode_with_a_token_refuses_requests_without_it() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let task = env_dump_script(dir.path());
    let server = start(&data, &task, Some("local-secret"));
    let http = orchestrator_clients::http::client().unwrap();
    let resp = http
        .post(format!("{}/pullrequests", server.base))
        .header("content-type", "application/json")
        .body(common::fixture("circleci-orb/success.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    let resp = http
        .get(format!("{}/pullrequests?token=local-secret", server.base))
        .send()
        .await
        .unwrap();
    assert_eq!(
        resp.status(),
        401,
        "the intake token does not read the audit trail"
    );
    let resp = http
        .get(format!("{}/pullrequests", server.base))
        .basic_auth("audit", Some(AUDIT))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let list: Value = resp.json().await.unwrap();
    assert!(
        list["records"].as_array().unwrap().is_empty(),
        "nothing recorded for the 401"
    );
}

/// Without a token the local server serves loopback only: asked to bind another address, it
/// refuses to start (before binding anything) and says why. (A server that started instead is
/// killed after 10 s and the test fails, rather than hanging.)
#[test]
fn without_a_token_it_refuses_a_non_loopback_address() {
    let data = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_orchestrator"))
        .arg("serve")
        .env("PORT", "0")
        .env("BIND_ADDRESS", "0.0.0.0")
        .env("DATA_DIR", data.path())
        .env("TASK_BINARY", "/bin/true")
        .env_remove("INTAKE_TOKEN")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the server started on 0.0.0.0 without a token");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let out = child.wait_with_output().unwrap();
    assert!(!status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!stdout.contains("listening on"), "{stdout}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr
            .contains("BIND_ADDRESS 0.0.0.0 is not a loopback address and no INTAKE_TOKEN is set"),
        "{stderr}"
    );
}

#[tokio::test]
async fn a_record_left_received_is_launched_by_the_servers_sweeper() {
    use orchestrator_core::store::RecordStore;
    use orchestrator_core::store::sqlite::SqliteStore;
    let dir = tempfile::tempdir().unwrap();
    // Written by a server that died before launching it.
    let store = SqliteStore::open(&SqliteStore::file_in(dir.path())).unwrap();
    let job = orchestrator_core::Job::parse("shop-api", "acme/shop-api", "dev", "1.2.3").unwrap();
    let stuck = orchestrator_core::Record::received(
        orchestrator_core::Source::CircleciOrb,
        serde_json::json!({}),
        Some(job),
    );
    store.create(&stuck).await.unwrap();

    let task = env_dump_script(dir.path());
    let _server = start_with(
        dir.path(),
        &task,
        None,
        &[
            ("RECOVERY_INTERVAL_SECS", "1"),
            ("RECOVERY_RECEIVED_AFTER_SECS", "0"),
            ("AUDIT_TOKEN", "audit-token-not-for-the-task"),
            ("ADMIN_TOKEN", "admin-token-not-for-the-task"),
            (
                "CIRCLECI_WEBHOOK_SECRET",
                "circleci-secret-not-for-the-task",
            ),
        ],
    );
    let dump = dir.path().join(format!("task-env-{}", stuck.id));
    let deadline = Instant::now() + Duration::from_secs(20);
    while !dump.exists() {
        assert!(
            Instant::now() < deadline,
            "the sweeper did not launch the record within 20 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let env = std::fs::read_to_string(&dump).unwrap();
    assert!(env.lines().any(|l| l == "ORCH_ATTEMPT=2"), "{env}");
    // The server's own credentials stay with the server.
    assert!(!env.contains("not-for-the-task"), "{env}");
    let now = store.get(stuck.id).await.unwrap().unwrap();
    assert_eq!(
        (now.status, now.attempt),
        (orchestrator_core::Status::Dispatched, 2)
    );
    assert!(now.task_arn.as_deref().unwrap().starts_with("local:"));
    let note = now.history[0].note.as_deref().unwrap();
    assert!(
        note.starts_with("recovery: `received` for") && note.ends_with("launching attempt 2"),
        "{note}"
    );
}
