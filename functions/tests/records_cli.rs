//! `orchestrator records list|show|redispatch|redact`, the real binary against the real local
//! server (`orchestrator serve` on a temporary DATA_DIR), with the tokens from the environment;
//! and `--sigv4` against a wiremock server standing in for API Gateway, where the request's
//! Authorization header is checked for SigV4's shape and its signature recomputed from what
//! arrived (so the URL sent is the URL signed).

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, SystemTime};

use aws_credential_types::Credentials;
use serde_json::Value;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const INTAKE: &str = "cli-intake";
const AUDIT: &str = "cli-audit";
const ADMIN: &str = "cli-admin";

struct Server {
    child: Child,
    base: String,
    _dir: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `orchestrator serve` on port 0 with the three tokens; the task is a script that exits at once
/// (records stay `dispatched`: a task that may still be running).
fn serve() -> Server {
    let dir = tempfile::tempdir().unwrap();
    let task = dir.path().join("task.sh");
    std::fs::write(&task, "#!/bin/sh\nexit 0\n").unwrap();
    let mut perm = std::fs::metadata(&task).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perm, 0o755);
    std::fs::set_permissions(&task, perm).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_orchestrator"))
        .arg("serve")
        .env("PORT", "0")
        .env("DATA_DIR", dir.path().join("data"))
        .env("TASK_BINARY", &task)
        .env("INTAKE_TOKEN", INTAKE)
        .env("AUDIT_TOKEN", AUDIT)
        .env("ADMIN_TOKEN", ADMIN)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let base = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("unexpected first line: {line:?}"))
        .to_owned();
    Server {
        child,
        base,
        _dir: dir,
    }
}

/// Posts an orb fixture with the intake token; the record's id.
async fn deliver(base: &str, fixture: &str) -> String {
    let resp = orchestrator_clients::http::client()
        .unwrap()
        .post(format!("{base}/pullrequests?token={INTAKE}"))
        .header("content-type", "application/json")
        .body(common::fixture(fixture))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 202);
    let rec: Value = resp.json().await.unwrap();
    rec["id"].as_str().unwrap().to_owned()
}

/// Runs `orchestrator records <args>` against `base` with only the variables in `env` (and
/// PATH): no token or AWS setting leaks in from the test's own environment.
fn records(base: &str, env: &[(&str, &str)], args: &[&str]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_orchestrator"));
    cmd.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("ORCHESTRATOR_API_URL", base)
        .arg("records")
        .args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[tokio::test]
async fn list_show_redispatch_and_redact_against_the_local_server() {
    let server = serve();
    let running = deliver(&server.base, "circleci-orb/success.json").await;
    let ignored = deliver(&server.base, "circleci-orb/failed.json").await;
    let audit = [("AUDIT_TOKEN", AUDIT)];
    let admin = [("ADMIN_TOKEN", ADMIN)];

    // list --json: the API's page, as sent.
    let out = records(&server.base, &audit, &["list", "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let page: Value = serde_json::from_slice(&out.stdout).unwrap();
    let ids: Vec<&str> = page["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [ignored.as_str(), running.as_str()], "newest first");

    // list as a table, filtered.
    let out = records(&server.base, &audit, &["list", "--status", "dispatched"]);
    let text = stdout(&out);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(text.lines().count(), 2, "{text}");
    assert!(text.lines().next().unwrap().starts_with("ID "), "{text}");
    assert!(
        text.contains(&running) && !text.contains(&ignored),
        "{text}"
    );
    assert!(text.contains("circleci-samples"), "{text}");

    // show, for people and for scripts.
    let out = records(&server.base, &audit, &["show", &running]);
    assert!(
        stdout(&out).contains(&format!("id            {running}")),
        "{}",
        stdout(&out)
    );
    let out = records(&server.base, &audit, &["show", &running, "--json"]);
    let rec: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(rec["status"], "dispatched");

    // The audit token cannot operate: the CLI says which credential it needs, before any request.
    let out = records(&server.base, &audit, &["redact", &ignored]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("set ADMIN_TOKEN"), "{}", stderr(&out));
    // Given as ADMIN_TOKEN, the audit token is refused by the server: 403, naming ADMIN_TOKEN.
    let out = records(
        &server.base,
        &[("ADMIN_TOKEN", AUDIT)],
        &["redact", &ignored],
    );
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("403 forbidden: this operation needs ADMIN_TOKEN"),
        "{}",
        stderr(&out)
    );
    // The intake token reads nothing.
    let out = records(&server.base, &[("AUDIT_TOKEN", INTAKE)], &["list"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("401"), "{}", stderr(&out));

    // The admin token: redispatch of a dispatched record is a 409 from the API.
    let out = records(&server.base, &admin, &["redispatch", &running]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("409 conflict"), "{}", stderr(&out));

    // redact: refused while the task may run (409 naming the status), the tombstone otherwise.
    let out = records(&server.base, &admin, &["redact", &running]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("409 conflict"), "{}", stderr(&out));
    assert!(stderr(&out).contains("`dispatched`"), "{}", stderr(&out));
    let out = records(&server.base, &admin, &["redact", &ignored, "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let tomb: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(tomb["id"], ignored.as_str());
    assert_eq!(tomb["status"], "ignored");
    assert_eq!(tomb["redacted_by"], "admin-token");
    assert!(tomb["redacted_at"].is_string());
    assert_eq!(tomb["payload"], Value::Null);
    let out = records(&server.base, &audit, &["show", &ignored]);
    assert!(
        stdout(&out).contains("redacted by   admin-token"),
        "{}",
        stdout(&out)
    );

    // A bad id never reaches the server.
    let out = records(&server.base, &audit, &["show", "not-a-uuid"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("not-a-uuid"), "{}", stderr(&out));
}

/// Parses SigV4's `Authorization` header: (credential scope, signed headers, signature).
fn sigv4_parts(auth: &str) -> (String, Vec<String>, String) {
    let rest = auth
        .strip_prefix("AWS4-HMAC-SHA256 ")
        .unwrap_or_else(|| panic!("not SigV4: {auth}"));
    let mut parts = rest.split(", ");
    let field = |p: Option<&str>, name: &str| {
        p.and_then(|p| p.strip_prefix(name))
            .unwrap_or_else(|| panic!("{name} missing: {auth}"))
            .to_owned()
    };
    let credential = field(parts.next(), "Credential=");
    let signed = field(parts.next(), "SignedHeaders=")
        .split(';')
        .map(str::to_owned)
        .collect();
    let signature = field(parts.next(), "Signature=");
    assert!(parts.next().is_none(), "{auth}");
    (credential, signed, signature)
}

#[tokio::test]
async fn sigv4_signs_with_the_default_credential_chain() {
    let api = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/prod/pullrequests"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(serde_json::json!({"records": [], "next_cursor": null})),
        )
        .mount(&api)
        .await;
    let base = format!("{}/prod", api.uri());
    // The environment is the first link of the default chain; no file or instance metadata.
    let env = [
        ("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE"),
        (
            "AWS_SECRET_ACCESS_KEY",
            "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
        ),
        ("AWS_SESSION_TOKEN", "session-token-example"),
        ("AWS_REGION", "eu-west-1"),
        ("AWS_CONFIG_FILE", "/nonexistent/config"),
        ("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/credentials"),
        ("AWS_EC2_METADATA_DISABLED", "true"),
        // Present but unused: --sigv4 never sends the token.
        ("AUDIT_TOKEN", "must-not-be-sent"),
    ];
    let out = records(
        &base,
        &env,
        &[
            "list",
            "--sigv4",
            "--json",
            "--limit",
            "5",
            "--service",
            "a b/c",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));

    let received = api.received_requests().await.unwrap();
    assert_eq!(received.len(), 1);
    let req = &received[0];
    let header = |n: &str| {
        req.headers
            .get(n)
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_else(|| panic!("no {n} header"))
    };
    let auth = header("authorization");
    assert!(!auth.contains("must-not-be-sent"));
    let (credential, signed, signature) = sigv4_parts(&auth);
    let scope: Vec<&str> = credential.split('/').collect();
    assert_eq!(scope.len(), 5, "{credential}");
    assert_eq!(
        (scope[0], scope[2], scope[3], scope[4]),
        ("AKIDEXAMPLE", "eu-west-1", "execute-api", "aws4_request")
    );
    assert!(scope[1].len() == 8 && scope[1].bytes().all(|b| b.is_ascii_digit()));
    for h in ["host", "x-amz-date", "x-amz-security-token"] {
        assert!(signed.iter().any(|s| s == h), "{h} not signed: {signed:?}");
    }
    assert!(signature.len() == 64 && signature.bytes().all(|b| b.is_ascii_hexdigit()));
    assert_eq!(header("x-amz-security-token"), "session-token-example");
    let date = header("x-amz-date");
    assert_eq!(&date[..8], scope[1]);
    assert_eq!(req.url.query(), Some("limit=5&service=a+b%2Fc"));

    // The signature over what arrived (method, path and query, Host header, date) is the one
    // sent. (wiremock's `url` names `localhost`; the Host header says where the CLI connected.)
    let arrived = format!(
        "http://{}{}?{}",
        header("host"),
        req.url.path(),
        req.url.query().unwrap()
    );
    let at = chrono::NaiveDateTime::parse_from_str(&date, "%Y%m%dT%H%M%SZ")
        .unwrap()
        .and_utc();
    let time = SystemTime::UNIX_EPOCH + Duration::from_secs(at.timestamp() as u64);
    let credentials = Credentials::new(
        "AKIDEXAMPLE",
        "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
        Some("session-token-example".into()),
        None,
        "test",
    );
    let again = orchestrator::records_client::sigv4_headers(
        &credentials,
        "eu-west-1",
        "GET",
        &arrived,
        time,
    )
    .unwrap();
    let expected = again
        .iter()
        .find(|(k, _)| k == "authorization")
        .map(|(_, v)| v.clone())
        .unwrap();
    assert_eq!(auth, expected, "the request sent is not the request signed");
    // A different secret gives a different signature: the check above can fail.
    let wrong = Credentials::new(
        "AKIDEXAMPLE",
        "other",
        Some("session-token-example".into()),
        None,
        "t",
    );
    let other =
        orchestrator::records_client::sigv4_headers(&wrong, "eu-west-1", "GET", &arrived, time)
            .unwrap();
    assert!(
        other
            .iter()
            .all(|(k, v)| k != "authorization" || *v != auth)
    );
}

#[tokio::test]
async fn an_api_gateway_refusal_is_reported_with_its_message() {
    let api = MockServer::start().await;
    Mock::given(method("DELETE"))
        .respond_with(ResponseTemplate::new(403).set_body_json(
            serde_json::json!({"message": "User: arn:aws:iam::1:user/x is not authorized to perform: execute-api:Invoke"}),
        ))
        .mount(&api)
        .await;
    let env = [
        ("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE"),
        ("AWS_SECRET_ACCESS_KEY", "secret"),
        ("AWS_REGION", "us-east-1"),
        ("AWS_CONFIG_FILE", "/nonexistent/config"),
        ("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/credentials"),
        ("AWS_EC2_METADATA_DISABLED", "true"),
    ];
    let id = orchestrator_core::RecordId::new().to_string();
    let out = records(&api.uri(), &env, &["redact", &id, "--sigv4"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("403 unknown: User: arn:aws:iam::1:user/x is not authorized"),
        "{}",
        stderr(&out)
    );
}
