//! Secret canaries: every secret the system handles is planted as a unique value, the
//! whole flow runs with it (successes and failures), and then every place a secret could end up
//! is searched for it.
//!
//! **Planted** (each `canary-<what>-<uuid>`; the intake, audit, CircleCI, Port and GitHub ones end
//! in `+/=` so that their percent-encoded and base64 forms differ from the plain one):
//! the intake token (`INTAKE_TOKEN`), the audit token (`AUDIT_TOKEN`, which lists and polls the
//! records; the intake token is refused there), the CircleCI webhook signing secret
//! (`CIRCLECI_WEBHOOK_SECRET`), the Port client secret (`PORT_CLIENT_SECRET`: the webhook signature
//! key of the server and the task's client secret), the GitHub token (`GITHUB_TOKEN`, for the
//! GitHub API and, as a Basic `extraHeader`, for git over http), the Slack webhook URL
//! (`SLACK_WEBHOOK_URL`, whose path holds the canary) and the Port access token the Port mock
//! hands out.
//!
//! **Searched for**, in each place, as: the value itself; its 32-hex-digit unique part alone
//! (a truncated or escaped copy still shows it); its percent-encoded forms (a logged query
//! string); its base64 forms in both alphabets at the three byte alignments (a logged Basic
//! auth header, `base64("x-access-token:" + token)`, shows the token at an arbitrary offset).
//!
//! **Local mode** (`secrets_stay_out_of_every_local_artifact`): the real `orchestrator serve`
//! binary (`RUST_LOG=trace`, stdout and stderr captured to files) launching the real `gitops-task`
//! binary. The gitops repository is a bare repository served by `git http-backend`
//! (`task-image/tests/support/git_http_server.py`), which refuses any request without the Basic
//! header made from the GitHub token, so a clone or push proves the token reached git (through
//! `GIT_CONFIG_*`, never argv). GitHub, Port and Slack are wiremock servers. The flows: orb
//! deliveries with the token as `?token=` (PR opened) and as Bearer (GitHub answers 500, echoing
//! the token), a signed CircleCI delivery (the push is refused by a `pre-receive` hook), signed
//! Port deliveries (command + Port PATCH; a Slack message; a Port auth failure), a redelivery, and
//! 401s for wrong tokens and bad signatures. Searched: the server's stdout and stderr (its logs,
//! the task exit lines); every file in the data directory (the SQLite store and its journal
//! files byte for byte, the per-record task logs: the tasks' stdout and stderr); every API
//! response (status, headers, body; records listed and fetched one by one); the argv of every
//! git the tasks ran and the names of its environment variables (a `git` shim first on `PATH`
//! logs them, runs the real git, then snapshots every `.git/config` under the task's work root:
//! the task deletes its clones when it is done); the bare repository (config, hooks, refs, and
//! every commit's message and diff); whatever the tasks left in their `TMPDIR`; the environment
//! and arguments the remediation command received; the git server's access log; and every
//! request the GitHub, Port and Slack mocks received, except the one header or body each secret
//! is meant for.
//!
//! **ECS mode** (`secrets_stay_out_of_run_task_and_dynamodb`, needs moto): the same intake
//! in-process (its tracing captured at TRACE in a buffer) with the ECS launcher and the DynamoDB
//! store, their AWS clients pointed at a small recording proxy in front of moto. Searched: the
//! captured logs, every API response, every raw request and response body that went to AWS
//! (RunTask, PutItem, ...), and the DescribeTasks answer, whose container overrides must hold the
//! launch contract's identifiers and nothing else.
//!
//! Each test also asserts the canaries were used (202s, the PR opened with the token, the Port
//! PATCH made with the token Port handed out, ...), so that it cannot pass by doing nothing.

mod common;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE_NO_PAD};
use hmac::{KeyInit, Mac};
use orchestrator_core::Status;
use serde_json::{Value, json};
use wiremock::matchers::{body_json, header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

// ───────────────────────────── canaries and the scanner ─────────────────────────────

/// One planted secret and the forms a leak of it could take.
struct Canary {
    what: &'static str,
    value: String,
    /// `(form, needle)`.
    needles: Vec<(String, String)>,
}

impl Canary {
    fn new(what: &'static str, tag: &str, suffix: &str) -> Canary {
        let id = uuid::Uuid::now_v7().simple().to_string();
        let value = format!("canary-{tag}-{id}{suffix}");
        let mut needles = vec![
            ("value".to_owned(), value.clone()),
            ("unique part".to_owned(), id),
        ];
        for (form, needle) in [
            ("percent-encoded", percent_encode(&value, true)),
            (
                "percent-encoded (lower case)",
                percent_encode(&value, false),
            ),
        ] {
            if needle != value {
                needles.push((form.to_owned(), needle));
            }
        }
        needles.extend(base64_forms(value.as_bytes()));
        Canary {
            what,
            value,
            needles,
        }
    }
}

/// Percent-encoding of everything but RFC 3986's unreserved characters.
fn percent_encode(s: &str, upper: bool) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else if upper {
            let _ = write!(out, "%{b:02X}");
        } else {
            let _ = write!(out, "%{b:02x}");
        }
    }
    out
}

/// The base64 characters that encode `raw` whatever precedes it: for each alignment (0, 1 or 2
/// bytes before it), the encoding minus the characters shared with its neighbours. A Basic auth
/// header `base64("x-access-token:" + token)` contains one of them.
fn base64_forms(raw: &[u8]) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for (alphabet, engine) in [
        ("base64", &STANDARD_NO_PAD),
        ("base64url", &URL_SAFE_NO_PAD),
    ] {
        for offset in 0..3usize {
            let mut input = vec![0u8; offset];
            input.extend_from_slice(raw);
            let encoded = engine.encode(&input);
            let start = (offset * 8).div_ceil(6);
            let end = input.len() * 8 / 6;
            let core = encoded[start..end].to_owned();
            if !out.iter().any(|(_, n)| *n == core) {
                out.push((format!("{alphabet} (alignment {offset})"), core));
            }
        }
    }
    out
}

/// Every planted secret.
struct Canaries {
    intake: Canary,
    audit: Canary,
    circleci: Canary,
    port: Canary,
    github: Canary,
    slack: Canary,
    port_access: Canary,
}

impl Canaries {
    fn new() -> Canaries {
        Canaries {
            intake: Canary::new("the intake token", "intake", "+/="),
            audit: Canary::new("the audit token", "audit", "+/="),
            circleci: Canary::new("the CircleCI signing secret", "circleci", "+/="),
            port: Canary::new("the Port client secret", "port", "+/="),
            github: Canary::new("the GitHub token", "github", "+/="),
            // A URL path segment: kept to characters that need no escaping there.
            slack: Canary::new("the Slack webhook URL", "slack", ""),
            port_access: Canary::new("the Port access token", "port-access", ""),
        }
    }

    fn all(&self) -> [&Canary; 7] {
        [
            &self.intake,
            &self.audit,
            &self.circleci,
            &self.port,
            &self.github,
            &self.slack,
            &self.port_access,
        ]
    }
}

/// Collects every place searched and every leak found, so one run reports all of them.
#[derive(Default)]
struct Scan {
    places: Vec<String>,
    leaks: Vec<String>,
}

impl Scan {
    fn check(&mut self, canaries: &Canaries, place: impl Into<String>, bytes: &[u8]) {
        let place = place.into();
        let text = String::from_utf8_lossy(bytes);
        for c in canaries.all() {
            for (form, needle) in &c.needles {
                if let Some(at) = text.find(needle.as_str()) {
                    let from = text.floor_char_boundary(at.saturating_sub(120));
                    let to = text.ceil_char_boundary((at + needle.len() + 120).min(text.len()));
                    self.leaks.push(format!(
                        "{} ({form}) in {place}:\n    …{}…",
                        c.what,
                        &text[from..to]
                    ));
                }
            }
        }
        self.places.push(place);
    }

    fn check_file(&mut self, canaries: &Canaries, file: &Path) {
        let bytes = std::fs::read(file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        self.check(canaries, file.display().to_string(), &bytes);
    }

    fn check_tree(&mut self, canaries: &Canaries, dir: &Path) {
        for file in files_under(dir) {
            self.check_file(canaries, &file);
        }
    }

    fn assert_clean(&self) {
        assert!(
            self.leaks.is_empty(),
            "{} leak(s) found:\n{}",
            self.leaks.len(),
            self.leaks.join("\n")
        );
        eprintln!(
            "secret canaries: {} places searched, none leaked",
            self.places.len()
        );
    }
}

/// Every file under `dir`, recursively (symbolic links are not followed).
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for entry in entries.flatten() {
            let p = entry.path();
            match entry.file_type() {
                Ok(t) if t.is_dir() => stack.push(p),
                Ok(t) if t.is_file() => out.push(p),
                _ => {}
            }
        }
    }
    out.sort();
    out
}

// ───────────────────────────── signatures and payloads ─────────────────────────────

fn hmac_sha256(key: &str, parts: &[&[u8]]) -> Vec<u8> {
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(key.as_bytes()).unwrap();
    for p in parts {
        mac.update(p);
    }
    mac.finalize().into_bytes().to_vec()
}

/// `circleci-signature: v1=<hex HMAC-SHA256 of the body>`.
fn circleci_signature(secret: &str, body: &[u8]) -> String {
    format!("v1={}", hex::encode(hmac_sha256(secret, &[body])))
}

/// `(x-port-timestamp, x-port-signature)`: `v1,<base64 HMAC-SHA256 of "<ts>.<body>">`.
fn port_signature(secret: &str, body: &[u8]) -> (String, String) {
    let ts = chrono::Utc::now().timestamp().to_string();
    let mac = hmac_sha256(secret, &[ts.as_bytes(), b".", body]);
    (ts, format!("v1,{}", STANDARD.encode(mac)))
}

fn fixture_json(rel: &str) -> Value {
    serde_json::from_slice(&common::fixture(rel)).unwrap()
}

/// The orb fixture as build `build_num` of `branch` at `tag`.
fn orb_body(build_num: u32, branch: &str, tag: &str) -> Vec<u8> {
    let mut v = fixture_json("circleci-orb/success.json");
    v["build_num"] = json!(build_num.to_string());
    v["branch"] = json!(branch);
    v["vcs_revision"] = json!(tag);
    serde_json::to_vec(&v).unwrap()
}

/// CircleCI's `workflow-completed` fixture as a new event on `branch` at `sha`.
fn native_body(branch: &str, sha: &str) -> Vec<u8> {
    let mut v = fixture_json("circleci-native/workflow-completed.json");
    v["id"] = json!(uuid::Uuid::now_v7().to_string());
    v["pipeline"]["vcs"]["branch"] = json!(branch);
    v["pipeline"]["vcs"]["revision"] = json!(sha);
    serde_json::to_vec(&v).unwrap()
}

/// The low-free-storage Port event; `free_storage` makes distinct events.
fn port_vm_body(free_storage: f64) -> Vec<u8> {
    let mut v = fixture_json("port/changelog-vm-free-storage-low.json");
    v["diff"]["after"]["properties"]["free_storage"] = json!(free_storage);
    serde_json::to_vec(&v).unwrap()
}

fn port_degraded_body() -> Vec<u8> {
    common::fixture("port/changelog-deployment-health-degraded.json")
}

const DEV_TAG: &str = "8f59df978e3fa133a2ee39ff66b3382342ce958c";
const STAGING_TAG: &str = "c0ffee00c0ffee00c0ffee00c0ffee00c0ffee00";
const PROD_SHA: &str = "1dc6aa69429bff4806ad6afe58d3d8f57e25973e";
const OLD_TAG: &str = "0b5e1f3c9d2a4e6f8a1b3c5d7e9f0a2b4c6d8e0f";
/// Orb branches `webhook` and `release/*`, CircleCI branch `prod`.
const BRANCH_ENVIRONMENTS: &str = "webhook=dev,release/*=staging,prod=prod";

// ───────────────────────────── the API, as a client sees it ─────────────────────────────

/// An HTTP client that keeps every response it got (status, headers, body) for the scan.
struct Api {
    base: String,
    http: reqwest::Client,
    responses: Vec<(String, Vec<u8>)>,
}

enum Auth<'a> {
    None,
    Query(&'a str),
    Bearer(&'a str),
}

impl Api {
    fn new(base: String) -> Api {
        Api {
            base,
            http: orchestrator_clients::http::client().unwrap(),
            responses: Vec::new(),
        }
    }

    fn url(&self, path: &str, auth: &Auth<'_>) -> String {
        match auth {
            Auth::Query(t) => {
                let sep = if path.contains('?') { '&' } else { '?' };
                format!("{}{path}{sep}token={}", self.base, percent_encode(t, true))
            }
            _ => format!("{}{path}", self.base),
        }
    }

    async fn send(
        &mut self,
        what: &str,
        method: reqwest::Method,
        path: &str,
        auth: Auth<'_>,
        headers: &[(&str, String)],
        body: Option<Vec<u8>>,
    ) -> (u16, Value) {
        let mut rb = self.http.request(method.clone(), self.url(path, &auth));
        if let Auth::Bearer(t) = auth {
            rb = rb.bearer_auth(t);
        }
        for (k, v) in headers {
            rb = rb.header(*k, v);
        }
        if let Some(b) = body {
            rb = rb.header("content-type", "application/json").body(b);
        }
        let resp = rb.send().await.unwrap();
        let status = resp.status().as_u16();
        let mut raw = format!("{status}\n");
        for (k, v) in resp.headers() {
            let _ = writeln!(raw, "{k}: {}", String::from_utf8_lossy(v.as_bytes()));
        }
        raw.push('\n');
        let bytes = resp.bytes().await.unwrap().to_vec();
        let mut raw = raw.into_bytes();
        raw.extend_from_slice(&bytes);
        self.responses
            .push((format!("the response to {what} ({method} {path})"), raw));
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        )
    }

    async fn orb(&mut self, what: &str, auth: Auth<'_>, body: Vec<u8>) -> (u16, Value) {
        self.send(
            what,
            reqwest::Method::POST,
            "/pullrequests",
            auth,
            &[],
            Some(body),
        )
        .await
    }

    async fn circleci(&mut self, what: &str, secret: &str, body: Vec<u8>) -> (u16, Value) {
        let sig = circleci_signature(secret, &body);
        self.send(
            what,
            reqwest::Method::POST,
            "/webhooks/circleci",
            Auth::None,
            &[("circleci-signature", sig)],
            Some(body),
        )
        .await
    }

    async fn port(&mut self, what: &str, secret: &str, body: Vec<u8>) -> (u16, Value) {
        let (ts, sig) = port_signature(secret, &body);
        self.send(
            what,
            reqwest::Method::POST,
            "/webhooks/port",
            Auth::None,
            &[("x-port-timestamp", ts), ("x-port-signature", sig)],
            Some(body),
        )
        .await
    }

    /// Every record, through the list endpoint (all pages).
    async fn all_records(&mut self, token: &str) -> Vec<Value> {
        let mut out = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let path = match &cursor {
                Some(c) => format!("/pullrequests?limit=2&cursor={}", percent_encode(c, true)),
                None => "/pullrequests?limit=2".to_owned(),
            };
            let (status, page) = self
                .send(
                    "the record list",
                    reqwest::Method::GET,
                    &path,
                    Auth::Bearer(token),
                    &[],
                    None,
                )
                .await;
            assert_eq!(status, 200, "{page}");
            out.extend(page["records"].as_array().unwrap().iter().cloned());
            match page["next_cursor"].as_str() {
                Some(c) => cursor = Some(c.to_owned()),
                None => return out,
            }
        }
    }

    /// Polls the record until its status is final (bounded).
    async fn final_record(&mut self, token: &str, id: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let (status, rec) = self
                .send(
                    "a record poll",
                    reqwest::Method::GET,
                    &format!("/pullrequests/{id}"),
                    Auth::Bearer(token),
                    &[],
                    None,
                )
                .await;
            assert_eq!(status, 200, "{rec}");
            let s: Status = serde_json::from_value(rec["status"].clone()).unwrap();
            if s.is_final() {
                return rec;
            }
            assert!(
                Instant::now() < deadline,
                "record {id} still `{s}` after 120 s: {rec}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// Waits (bounded) until `f` gives a value.
async fn wait_for<T>(what: &str, limit: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

// ───────────────────────────── local mode: processes and fixtures ─────────────────────────────

fn write_executable(path: &Path, body: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, body).unwrap();
    let mut perm = std::fs::metadata(path).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perm, 0o755);
    std::fs::set_permissions(path, perm).unwrap();
}

/// The real git, found on this process's `PATH` (the shim calls it by absolute path).
fn real_git() -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|d| d.join("git"))
        .find(|p| p.is_file())
        .expect("git on PATH")
}

/// Runs git for the test's own setup and checks, isolated from the host's configuration.
fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .args(["-c", "init.defaultBranch=main"])
        .args(args)
        .current_dir(dir)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_AUTHOR_NAME", "Test Human")
        .env("GIT_AUTHOR_EMAIL", "human@example.com")
        .env("GIT_COMMITTER_NAME", "Test Human")
        .env("GIT_COMMITTER_EMAIL", "human@example.com")
        .output()
        .expect("git runs");
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `git` first on the task's `PATH`: logs the argv and the environment variable names (never
/// the values: `GIT_CONFIG_VALUE_*` legitimately carries the auth header), runs the real git,
/// then appends every `.git/config` under `$HOME` (the task sets it to its work root, where the
/// clones are; the task removes them when it is done) to a snapshot log. Tasks run side by side,
/// so each shim process writes its own files (`*.<pid>.log`): appends never interleave.
fn git_shim(dir: &Path, logs: &Path) -> PathBuf {
    let bin = dir.join("shim-bin");
    let script = format!(
        r#"#!/bin/sh
{{
  printf 'argv:'
  for a in "$@"; do printf ' %s' "$a"; done
  printf '\nenv names:'
  awk 'BEGIN {{ for (k in ENVIRON) printf " %s", k }}'
  printf '\n'
}} >> "{logs}/git-argv.$$.log"
'{git}' "$@"
status=$?
if [ -n "$HOME" ] && [ -d "$HOME" ]; then
  find "$HOME" -path '*/.git/config' -type f 2>/dev/null | while read -r f; do
    {{ printf '### %s\n' "$f"; cat "$f"; }} >> "{logs}/git-configs.$$.log"
  done
fi
exit $status
"#,
        logs = logs.display(),
        git = real_git().display()
    );
    write_executable(&bin.join("git"), &script);
    bin
}

/// The shim's logs whose names start with `prefix`, concatenated.
fn shim_logs(dir: &Path, prefix: &str) -> String {
    files_under(dir)
        .into_iter()
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(prefix))
        })
        .map(|p| std::fs::read_to_string(p).unwrap())
        .collect()
}

const BASE_DEPLOYMENT: &str = "apiVersion: apps/v1
kind: Deployment
metadata:
  name: app
spec:
  selector:
    matchLabels:
      app: app
  template:
    metadata:
      labels:
        app: app
    spec:
      containers:
      - name: app
        image: IMAGE:OLD
";

/// A bare gitops repository with overlays for `circleci-samples` (dev, staging) and
/// `webhook-service` (prod), and a `pre-receive` hook refusing pushes of prod update branches.
fn gitops_repo(root: &Path) -> PathBuf {
    let bare = root.join("gitops.git");
    let seed = root.join("seed");
    git(root, &["init", "--quiet", "--bare", "gitops.git"]);
    git(root, &["init", "--quiet", "seed"]);
    for (service, image, envs) in [
        (
            "circleci-samples",
            "eddiewebb/circleci-samples",
            &["dev", "staging"][..],
        ),
        ("webhook-service", "circleci/webhook-service", &["prod"][..]),
    ] {
        let base = seed.join(format!("kustomize/{service}/base"));
        std::fs::create_dir_all(&base).unwrap();
        std::fs::write(
            base.join("kustomization.yaml"),
            "resources:\n- deployment.yaml\n",
        )
        .unwrap();
        std::fs::write(
            base.join("deployment.yaml"),
            BASE_DEPLOYMENT
                .replace("IMAGE", image)
                .replace("OLD", OLD_TAG),
        )
        .unwrap();
        for env in envs {
            let overlay = seed.join(format!("kustomize/{service}/overlays/{env}"));
            std::fs::create_dir_all(&overlay).unwrap();
            std::fs::write(
                overlay.join("kustomization.yaml"),
                format!(
                    "resources:\n- ../../base\nimages:\n- name: {image}\n  newTag: {OLD_TAG}\n"
                ),
            )
            .unwrap();
        }
    }
    git(&seed, &["add", "."]);
    git(&seed, &["commit", "--quiet", "-m", "Seed"]);
    git(
        &seed,
        &[
            "push",
            "--quiet",
            bare.to_str().unwrap(),
            "HEAD:refs/heads/main",
        ],
    );
    write_executable(
        &bare.join("hooks/pre-receive"),
        "#!/bin/sh\nwhile read old new ref; do\n  case \"$ref\" in refs/heads/update-image/prod/*)\n    echo 'prod overlays are frozen' >&2; exit 1;;\n  esac\ndone\n",
    );
    bare
}

/// `git http-backend` behind the Basic header made from `token` (the task-image tests' server).
struct GitHttp {
    child: Child,
    url: String,
    access_log: PathBuf,
}

impl GitHttp {
    fn start(root: &Path, token: &str) -> GitHttp {
        let script = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../task-image/tests/support/git_http_server.py"
        );
        let access_log = root.join("git-access.log");
        let expected = format!(
            "Basic {}",
            STANDARD.encode(format!("x-access-token:{token}"))
        );
        let mut child = Command::new("python3")
            .arg(script)
            .arg(root)
            .arg(&access_log)
            .env("EXPECTED_AUTHORIZATION", expected)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("python3 runs");
        let mut line = String::new();
        std::io::BufRead::read_line(
            &mut std::io::BufReader::new(child.stdout.take().unwrap()),
            &mut line,
        )
        .unwrap();
        let port: u16 = line
            .trim()
            .strip_prefix("PORT ")
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("git server did not start: {line:?}"));
        GitHttp {
            child,
            url: format!("http://127.0.0.1:{port}/gitops.git"),
            access_log,
        }
    }
}

impl Drop for GitHttp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `orchestrator serve` with stdout and stderr in files.
struct Server {
    child: Child,
    base: String,
    stdout: PathBuf,
    stderr: PathBuf,
}

impl Server {
    async fn start(dir: &Path, env: &[(&str, String)]) -> Server {
        let stdout = dir.join("server.stdout");
        let stderr = dir.join("server.stderr");
        let mut child = Command::new(env!("CARGO_BIN_EXE_orchestrator"))
            .arg("serve")
            .env_clear()
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&stdout).unwrap())
            .stderr(std::fs::File::create(&stderr).unwrap())
            .spawn()
            .unwrap();
        let base = wait_for("the server to listen", Duration::from_secs(30), || {
            if let Ok(Some(status)) = child.try_wait() {
                panic!(
                    "the server exited ({status}): {}",
                    std::fs::read_to_string(&stderr).unwrap_or_default()
                );
            }
            let out = std::fs::read_to_string(&stdout).ok()?;
            out.lines()
                .next()?
                .strip_prefix("listening on ")
                .map(str::to_owned)
        })
        .await;
        Server {
            child,
            base,
            stdout,
            stderr,
        }
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The remediation command: dumps its arguments and environment (values included: none of the
/// task's secrets may be there), then reports the free storage.
fn remediation_command(commands: &Path, dump: &Path) {
    write_executable(
        &commands.join("free-vm-storage"),
        &format!(
            "#!/bin/sh\n{{ echo \"argv: $*\"; env; }} >> '{}'\necho free_storage=7.5\n",
            dump.display()
        ),
    );
}

const PR_URL: &str = "https://github.com/acme/gitops/pull/7";

/// GitHub: the staging branch's requests fail with 500, with a message echoing the token (the
/// task promises to redact GitHub's answers: the echo tests that promise); otherwise there is
/// no open PR, and creating one succeeds.
async fn github_mock(token: &str) -> MockServer {
    let server = MockServer::start().await;
    let echo =
        json!({"message": format!("Server Error (request had Authorization: Bearer {token})")});
    Mock::given(|r: &wiremock::Request| {
        r.url.query().unwrap_or_default().contains("staging")
            || String::from_utf8_lossy(&r.body).contains("update-image/staging")
    })
    .respond_with(ResponseTemplate::new(500).set_body_json(echo))
    .with_priority(1)
    .mount(&server)
    .await;
    Mock::given(method("GET"))
        .and(path("/repos/acme/gitops/pulls"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!([])))
        .with_priority(2)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/repos/acme/gitops/pulls"))
        .respond_with(
            ResponseTemplate::new(201)
                .set_body_json(json!({"number": 7, "html_url": PR_URL, "base": {"ref": "main"}})),
        )
        .with_priority(2)
        .mount(&server)
        .await;
    server
}

const PORT_CLIENT_ID: &str = "port-client-id-canary-test";

/// Port: the first token request succeeds (handing out the access-token canary), later ones are
/// refused with 401; the PATCH needs that access token.
async fn port_mock(secret: &str, access: &str) -> MockServer {
    let server = MockServer::start().await;
    let auth_body = json!({"clientId": PORT_CLIENT_ID, "clientSecret": secret});
    Mock::given(method("POST"))
        .and(path("/v1/auth/access_token"))
        .and(body_json(auth_body.clone()))
        .respond_with(ResponseTemplate::new(200).set_body_json(
            json!({"ok": true, "accessToken": access, "expiresIn": 3600, "tokenType": "Bearer"}),
        ))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/v1/auth/access_token"))
        .respond_with(ResponseTemplate::new(401).set_body_json(
            json!({"ok": false, "error": "invalid_credentials", "message": "The client credentials are invalid"}),
        ))
        .with_priority(2)
        .mount(&server)
        .await;
    Mock::given(method("PATCH"))
        .and(path("/v1/blueprints/vm/entities/storage-example"))
        .and(header("authorization", format!("Bearer {access}").as_str()))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"ok": true})))
        .mount(&server)
        .await;
    server
}

/// A mock's requests as text, leaving out the header named `skip_header` and any request
/// `skip_request` picks (the one place each secret is meant to go).
async fn requests_text(
    server: &MockServer,
    skip_header: &str,
    skip_request: impl Fn(&wiremock::Request) -> bool,
) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    for (i, r) in server
        .received_requests()
        .await
        .unwrap_or_default()
        .into_iter()
        .enumerate()
    {
        if skip_request(&r) {
            continue;
        }
        let mut text = format!("{} {}\n", r.method, r.url);
        for (k, v) in &r.headers {
            if k.as_str().eq_ignore_ascii_case(skip_header) {
                continue;
            }
            let _ = writeln!(text, "{k}: {}", String::from_utf8_lossy(v.as_bytes()));
        }
        let mut bytes = text.into_bytes();
        bytes.push(b'\n');
        bytes.extend_from_slice(&r.body);
        out.push((
            format!("request {i} ({} {})", r.method, r.url.path()),
            bytes,
        ));
    }
    out
}

// ───────────────────────────── local mode ─────────────────────────────

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_stay_out_of_every_local_artifact() {
    let c = Canaries::new();
    // SECRET_CANARY_KEEP=1 keeps the work directory (logs, data, shim logs) for inspection.
    let keep = std::env::var_os("SECRET_CANARY_KEEP").is_some();
    let root = tempfile::Builder::new()
        .prefix("secret-canary-")
        .disable_cleanup(keep)
        .tempdir()
        .unwrap();
    let dir = root.path();
    if keep {
        eprintln!("SECRET_CANARY_KEEP: work directory {}", dir.display());
    }
    let (data, tmp, logs, commands) = (
        dir.join("data"),
        dir.join("task-tmp"),
        dir.join("shim-logs"),
        dir.join("commands"),
    );
    for d in [&data, &tmp, &logs, &commands] {
        std::fs::create_dir_all(d).unwrap();
    }
    let exec_dump = logs.join("remediation-command.log");
    remediation_command(&commands, &exec_dump);
    let shim = git_shim(dir, &logs);
    let repo_root = dir.join("git-server");
    std::fs::create_dir_all(&repo_root).unwrap();
    let bare = gitops_repo(&repo_root);
    let git_server = GitHttp::start(&repo_root, &c.github.value);

    let github = github_mock(&c.github.value).await;
    let port = port_mock(&c.port.value, &c.port_access.value).await;
    let slack = MockServer::start().await;
    let slack_path = format!("/services/T000/B000/{}", c.slack.value);
    Mock::given(method("POST"))
        .and(path(slack_path.as_str()))
        .respond_with(ResponseTemplate::new(200).set_body_string("ok"))
        .mount(&slack)
        .await;

    let path_var = format!(
        "{}:{}",
        shim.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let rules = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/rules.yaml");
    let env: Vec<(&str, String)> = vec![
        ("PATH", path_var),
        ("TMPDIR", tmp.display().to_string()),
        ("RUST_LOG", "trace".into()),
        ("PORT", "0".into()),
        ("DATA_DIR", data.display().to_string()),
        ("TASK_BINARY", common::task_binary().display().to_string()),
        // The intake's secrets and settings.
        ("INTAKE_TOKEN", c.intake.value.clone()),
        ("AUDIT_TOKEN", c.audit.value.clone()),
        ("CIRCLECI_WEBHOOK_SECRET", c.circleci.value.clone()),
        ("PORT_CLIENT_SECRET", c.port.value.clone()),
        ("RULES_FILE", rules.display().to_string()),
        ("BRANCH_ENVIRONMENTS", BRANCH_ENVIRONMENTS.into()),
        // The task's (it inherits the server's environment).
        ("GITOPS_REPO_URL", git_server.url.clone()),
        ("GITHUB_API_URL", github.uri()),
        ("GITHUB_REPOSITORY", "acme/gitops".into()),
        ("GITHUB_TOKEN", c.github.value.clone()),
        ("RECORD_BASE_URL", "http://orchestrator.test".into()),
        ("PORT_API_URL", port.uri()),
        ("PORT_CLIENT_ID", PORT_CLIENT_ID.into()),
        ("SLACK_WEBHOOK_URL", format!("{}{slack_path}", slack.uri())),
        ("EXEC_COMMANDS_DIR", commands.display().to_string()),
    ];
    let server = Server::start(dir, &env).await;
    let mut api = Api::new(server.base.clone());
    let token = c.intake.value.as_str();
    let audit = c.audit.value.as_str();
    let orb_dev = || orb_body(231, "webhook", DEV_TAG);

    // ── Refused: nothing recorded, nothing launched, nothing echoed.
    for (what, auth) in [
        ("an orb delivery without a token", Auth::None),
        (
            "an orb delivery with a wrong ?token=",
            Auth::Query("canary-wrong"),
        ),
        (
            "an orb delivery with a wrong Bearer",
            Auth::Bearer("canary-wrong"),
        ),
    ] {
        let (status, body) = api.orb(what, auth, orb_dev()).await;
        assert_eq!(status, 401, "{what}: {body}");
    }
    for (what, auth) in [
        ("a list with a wrong token", Auth::Bearer("canary-wrong")),
        ("a list with the intake token", Auth::Bearer(token)),
        (
            "a list with the intake token as ?token=",
            Auth::Query(token),
        ),
    ] {
        let (status, body) = api
            .send(what, reqwest::Method::GET, "/pullrequests", auth, &[], None)
            .await;
        assert_eq!(status, 401, "{what}: {body}");
    }
    let (status, _) = api
        .circleci(
            "a CircleCI delivery with a bad signature",
            "not-the-secret",
            native_body("prod", PROD_SHA),
        )
        .await;
    assert_eq!(status, 401);
    let (status, _) = api
        .port(
            "a Port delivery with a bad signature",
            "not-the-secret",
            port_degraded_body(),
        )
        .await;
    assert_eq!(status, 401);
    let (status, body) = api
        .orb(
            "a malformed orb delivery",
            Auth::Query(token),
            b"{not json".to_vec(),
        )
        .await;
    assert_eq!(status, 400, "{body}");

    // ── Accepted: every secret used for real.
    let mut launched = Vec::new();
    let mut accept = |what: &str, (status, rec): (u16, Value)| {
        assert_eq!(status, 202, "{what}: {rec}");
        launched.push((what.to_owned(), rec["id"].as_str().unwrap().to_owned()));
        rec["id"].as_str().unwrap().to_owned()
    };
    let dev = accept(
        "orb, ?token=",
        api.orb("an orb delivery (?token=)", Auth::Query(token), orb_dev())
            .await,
    );
    let staging = accept(
        "orb, Bearer",
        api.orb(
            "an orb delivery (Bearer)",
            Auth::Bearer(token),
            orb_body(232, "release/1", STAGING_TAG),
        )
        .await,
    );
    let prod = accept(
        "CircleCI",
        api.circleci(
            "a signed CircleCI delivery",
            &c.circleci.value,
            native_body("prod", PROD_SHA),
        )
        .await,
    );
    let slack_rec = accept(
        "Port (Slack)",
        api.port(
            "a signed Port delivery (Slack)",
            &c.port.value,
            port_degraded_body(),
        )
        .await,
    );
    let vm = accept(
        "Port (command + PATCH)",
        api.port(
            "a signed Port delivery (PATCH)",
            &c.port.value,
            port_vm_body(0.5),
        )
        .await,
    );
    // The Port mock refuses the second token request: wait for the first before asking again.
    let vm_done = api.final_record(audit, &vm).await;
    let vm_refused = accept(
        "Port (auth refused)",
        api.port(
            "a signed Port delivery (auth refused)",
            &c.port.value,
            port_vm_body(0.4),
        )
        .await,
    );
    let (status, again) = api
        .orb("an orb redelivery", Auth::Query(token), orb_dev())
        .await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(again["id"], dev.as_str());

    // ── The outcomes: the secrets worked where they were meant to.
    let dev_done = api.final_record(audit, &dev).await;
    assert_eq!(dev_done["status"], "succeeded", "{dev_done}");
    assert_eq!(dev_done["pr_url"], PR_URL);
    let staging_done = api.final_record(audit, &staging).await;
    assert_eq!(staging_done["status"], "failed", "{staging_done}");
    assert!(
        staging_done["status_reason"].as_str().unwrap().contains(
            "500 Internal Server Error: Server Error (request had Authorization: Bearer ***)"
        ),
        "{staging_done}"
    );
    let prod_done = api.final_record(audit, &prod).await;
    assert_eq!(prod_done["status"], "failed", "{prod_done}");
    assert!(
        prod_done.to_string().contains("pre-receive hook declined"),
        "the push was refused by the server, after authenticating: {prod_done}"
    );
    let slack_done = api.final_record(audit, &slack_rec).await;
    assert_eq!(slack_done["status"], "succeeded", "{slack_done}");
    assert_eq!(vm_done["status"], "succeeded", "{vm_done}");
    let refused_done = api.final_record(audit, &vm_refused).await;
    assert_eq!(refused_done["status"], "failed", "{refused_done}");
    assert!(
        refused_done.to_string().contains("HTTP 401"),
        "{refused_done}"
    );

    let gh = github.received_requests().await.unwrap();
    let bearer = format!("Bearer {}", c.github.value);
    assert!(
        gh.iter().any(|r| r.method.as_str() == "POST"
            && r.url.path() == "/repos/acme/gitops/pulls"
            && r.headers
                .get("authorization")
                .is_some_and(|v| v.as_bytes() == bearer.as_bytes())),
        "the PR was opened with the GitHub token"
    );
    assert!(
        gh.iter().all(|r| r
            .headers
            .get("authorization")
            .is_some_and(|v| v.as_bytes() == bearer.as_bytes())),
        "every GitHub request carried the token"
    );
    let access_log = std::fs::read_to_string(&git_server.access_log).unwrap();
    assert!(
        access_log.contains("git-upload-pack 200") && access_log.contains("git-receive-pack 200"),
        "git fetched and pushed with the token: {access_log}"
    );
    let port_requests = port.received_requests().await.unwrap();
    assert!(
        port_requests.iter().any(|r| r.method.as_str() == "PATCH"
            && r.headers.get("authorization").is_some_and(
                |v| v.as_bytes() == format!("Bearer {}", c.port_access.value).as_bytes()
            )),
        "the PATCH carried the token Port handed out"
    );
    let auth_body = json!({"clientId": PORT_CLIENT_ID, "clientSecret": c.port.value});
    let is_auth = |r: &wiremock::Request| {
        r.url.path() == "/v1/auth/access_token"
            && serde_json::from_slice::<Value>(&r.body).ok().as_ref() == Some(&auth_body)
    };
    assert_eq!(
        port_requests.iter().filter(|r| is_auth(r)).count(),
        2,
        "both token requests sent the client secret"
    );
    assert_eq!(
        slack.received_requests().await.unwrap().len(),
        1,
        "one message through the secret webhook URL"
    );

    // Every task has exited (its log is complete): the server logs each exit.
    wait_for("every task to exit", Duration::from_secs(60), || {
        (server.stderr().matches("local task exited").count() >= launched.len()).then_some(())
    })
    .await;

    // ── The records, as the API lists and shows them.
    let records = api.all_records(audit).await;
    assert_eq!(records.len(), launched.len(), "{records:?}");
    for (what, id) in &launched {
        let (status, _) = api
            .send(
                what,
                reqwest::Method::GET,
                &format!("/pullrequests/{id}"),
                Auth::Bearer(audit),
                &[],
                None,
            )
            .await;
        assert_eq!(status, 200);
    }

    // ── The scan.
    let mut scan = Scan::default();
    for (place, bytes) in &api.responses {
        scan.check(&c, place.clone(), bytes);
    }
    let outputs = [server.stdout.clone(), server.stderr.clone()];
    drop(server); // stops it; its output files are complete
    for file in &outputs {
        scan.check_file(&c, file);
    }
    let task_logs = files_under(&data.join("tasks"));
    assert_eq!(task_logs.len(), launched.len(), "{task_logs:?}");
    scan.check_tree(&c, &data); // task logs, records.sqlite3 and its -wal / -shm
    scan.check_tree(&c, &tmp); // whatever the tasks left behind
    scan.check_file(&c, &exec_dump);
    assert!(
        std::fs::read_to_string(&exec_dump)
            .unwrap()
            .contains("argv: storage-example"),
        "the remediation command ran"
    );
    scan.check_file(&c, &git_server.access_log);
    scan.check_tree(&c, &bare); // config, hooks, refs (objects are compressed: see below)
    let history = git(&bare, &["log", "--all", "-p", "--format=%H %an <%ae>%n%B"]);
    assert!(
        history.contains("update-image") || history.contains(DEV_TAG),
        "{history}"
    );
    scan.check(
        &c,
        "every commit of the gitops repository",
        history.as_bytes(),
    );

    // git's argv and environment, as the shim saw them.
    let argv_log = shim_logs(&logs, "git-argv.");
    scan.check(
        &c,
        "the argv of every git the tasks ran",
        argv_log.as_bytes(),
    );
    assert!(
        argv_log.contains("argv: fetch") && argv_log.contains("argv: push"),
        "{argv_log}"
    );
    for line in argv_log.lines() {
        if let Some(argv) = line.strip_prefix("argv:") {
            let lower = argv.to_ascii_lowercase();
            assert!(
                !lower.contains("authorization") && !lower.contains("extraheader"),
                "credentials configured through argv: {line}"
            );
        }
        if let Some(names) = line.strip_prefix("env names:") {
            let names: Vec<&str> = names.split_whitespace().collect();
            for secret_var in [
                "GITHUB_TOKEN",
                "INTAKE_TOKEN",
                "CIRCLECI_WEBHOOK_SECRET",
                "PORT_CLIENT_SECRET",
                "SLACK_WEBHOOK_URL",
            ] {
                assert!(
                    !names.contains(&secret_var),
                    "git's environment has {secret_var}"
                );
            }
            assert!(names.contains(&"GIT_CONFIG_COUNT"), "{line}");
        }
    }
    let configs = shim_logs(&logs, "git-configs.");
    assert!(
        configs.contains("### "),
        "the clones' .git/config were captured"
    );
    scan.check(
        &c,
        "every .git/config of the task's clones",
        configs.as_bytes(),
    );
    for block in configs.split("### ").filter(|b| !b.is_empty()) {
        assert!(
            block.contains(&format!("url = {}", git_server.url)),
            "{block}"
        );
        assert!(
            !block.to_ascii_lowercase().contains("extraheader"),
            "{block}"
        );
    }

    // What went out to GitHub, Port and Slack, minus each secret's own header or request.
    for (place, bytes) in requests_text(&github, "authorization", |_| false).await {
        scan.check(&c, format!("GitHub mock: {place}"), &bytes);
    }
    for (place, bytes) in requests_text(&port, "authorization", is_auth).await {
        scan.check(&c, format!("Port mock: {place}"), &bytes);
    }
    for (place, bytes) in requests_text(&slack, "", |_| false).await {
        // The URL is the secret's own place; the body and headers are not.
        let text = String::from_utf8_lossy(&bytes).replacen(&c.slack.value, "<url>", 1);
        scan.check(&c, format!("Slack mock: {place}"), text.as_bytes());
    }
    scan.assert_clean();
}

// ───────────────────────────── ECS mode (moto) ─────────────────────────────

/// One request to AWS and its answer, as text: `(place, bytes)`.
type Exchange = (String, Vec<u8>);

/// A recording HTTP proxy in front of moto: every request and response body that goes to AWS.
#[derive(Clone)]
struct Recorder {
    upstream: String,
    http: reqwest::Client,
    exchanges: Arc<Mutex<Vec<Exchange>>>,
}

async fn forward(
    axum::extract::State(rec): axum::extract::State<Recorder>,
    req: axum::extract::Request,
) -> axum::response::Response {
    let (parts, body) = req.into_parts();
    let body = axum::body::to_bytes(body, usize::MAX).await.unwrap();
    let target = parts
        .headers
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let pq = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    let mut raw = format!("{} {pq}\n", parts.method);
    for (k, v) in &parts.headers {
        let _ = writeln!(raw, "{k}: {}", String::from_utf8_lossy(v.as_bytes()));
    }
    let mut raw = raw.into_bytes();
    raw.push(b'\n');
    raw.extend_from_slice(&body);
    let mut out = rec
        .http
        .request(parts.method.clone(), format!("{}{pq}", rec.upstream))
        .body(body.to_vec());
    for (k, v) in &parts.headers {
        if k != axum::http::header::HOST && k != axum::http::header::CONTENT_LENGTH {
            out = out.header(k, v);
        }
    }
    let resp = out.send().await.unwrap();
    let status = resp.status();
    let headers = resp.headers().clone();
    let answer = resp.bytes().await.unwrap();
    raw.extend_from_slice(b"\n--- answer ---\n");
    raw.extend_from_slice(&answer);
    rec.exchanges
        .lock()
        .unwrap()
        .push((format!("the AWS exchange {target} {pq}"), raw));
    let mut builder = axum::http::Response::builder().status(status);
    for (k, v) in &headers {
        if !matches!(
            k.as_str(),
            "content-length" | "transfer-encoding" | "connection"
        ) {
            builder = builder.header(k, v);
        }
    }
    builder.body(axum::body::Body::from(answer)).unwrap()
}

impl Recorder {
    async fn start(upstream: &str) -> (Recorder, String) {
        let rec = Recorder {
            upstream: upstream.trim_end_matches('/').to_owned(),
            http: orchestrator_clients::http::client().unwrap(),
            exchanges: Arc::default(),
        };
        let app = axum::Router::new()
            .fallback(forward)
            .with_state(rec.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        (rec, format!("http://{addr}"))
    }

    fn exchanges(&self) -> Vec<Exchange> {
        self.exchanges.lock().unwrap().clone()
    }
}

/// A `tracing` writer into memory.
#[derive(Clone, Default)]
struct LogBuffer(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for LogBuffer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The in-process Router on an ephemeral port, so the API is exercised over real HTTP.
async fn serve_in_process(state: orchestrator::AppState) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(listener, orchestrator::app(state))
            .await
            .unwrap();
    });
    format!("http://{addr}")
}

/// Every `tracing` event of this test binary at every level, from every thread, as JSON lines:
/// one global subscriber, installed once. (A thread-scoped `set_default` races with tracing's
/// per-callsite interest cache while other tests run in parallel, and then loses events; and it
/// misses events emitted on other threads.) Other tests' events land here too: the scan only
/// looks for the canaries of the test that reads it, so they can only add to what is searched.
fn global_logs() -> LogBuffer {
    static LOGS: std::sync::OnceLock<LogBuffer> = std::sync::OnceLock::new();
    LOGS.get_or_init(|| {
        let logs = LogBuffer::default();
        tracing_subscriber::fmt()
            .json()
            .flatten_event(true)
            .with_max_level(tracing::Level::TRACE)
            .with_writer({
                let logs = logs.clone();
                move || logs.clone()
            })
            .init();
        logs
    })
    .clone()
}

/// The captured events (JSON lines) whose fields include every `(key, value)` of `fields`.
fn events_with<'a>(captured: &'a [Value], fields: &[(&str, &str)]) -> Vec<&'a Value> {
    captured
        .iter()
        .filter(|e| {
            fields.iter().all(|(k, v)| {
                e.get(*k).is_some_and(|x| {
                    x.as_str().map_or_else(
                        || x.as_u64().is_some_and(|n| v.parse() == Ok(n)),
                        |s| s == *v,
                    )
                })
            })
        })
        .collect()
}

#[tokio::test]
async fn secrets_stay_out_of_run_task_and_dynamodb() {
    let logs = global_logs();
    let Some(moto) = common::moto_endpoint("secrets_stay_out_of_run_task_and_dynamodb") else {
        return;
    };
    let c = Canaries::new();

    // The network, cluster and task definition are made directly on moto; the store and the
    // launcher talk to it through the recording proxy.
    let direct = common::MotoAws::setup(&moto).await;
    let (recorder, proxy) = Recorder::start(&moto).await;
    let aws = common::moto_config(&proxy).await;
    let (_table, store) = common::dynamo_store(&aws, "canary-records").await;
    let launcher = orchestrator::launch::ecs::EcsLauncher::new(
        aws_sdk_ecs::Client::new(&aws),
        direct.ecs_settings(),
    );
    let rules = orchestrator::rules::RuleSet::load(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/rules.yaml"),
    )
    .unwrap();
    let settings = orchestrator::IntakeSettings {
        token: Some(orchestrator_core::Secret::new(c.intake.value.clone())),
        circleci_secret: Some(orchestrator_core::Secret::new(c.circleci.value.clone())),
        derive: orchestrator::intake::derive::DeriveConfig {
            branches: orchestrator::intake::derive::parse_branch_rules(BRANCH_ENVIRONMENTS)
                .unwrap(),
            ..Default::default()
        },
        port: orchestrator::intake::port::PortSettings {
            secret: Some(orchestrator_core::Secret::new(c.port.value.clone())),
            rules: Some(Arc::new(rules)),
            deploy_actions: Vec::new(),
        },
        ..Default::default()
    };
    let base = serve_in_process(orchestrator::AppState {
        store: Arc::new(store),
        launcher: Arc::new(launcher),
        intake: Arc::new(settings),
        access: Arc::new(orchestrator::api::access::AccessSettings {
            audit_token: Some(orchestrator_core::Secret::new(c.audit.value.clone())),
            admin_token: None,
        }),
        console: Default::default(),
    })
    .await;
    let mut api = Api::new(base);
    let token = c.intake.value.as_str();
    let audit = c.audit.value.as_str();

    for (what, auth) in [
        (
            "an orb delivery with a wrong ?token=",
            Auth::Query("canary-wrong"),
        ),
        (
            "an orb delivery with a wrong Bearer",
            Auth::Bearer("canary-wrong"),
        ),
    ] {
        let (status, _) = api.orb(what, auth, orb_body(231, "webhook", DEV_TAG)).await;
        assert_eq!(status, 401, "{what}");
    }
    let (status, _) = api
        .circleci(
            "a bad CircleCI signature",
            "not-the-secret",
            native_body("prod", PROD_SHA),
        )
        .await;
    assert_eq!(status, 401);
    let (status, _) = api
        .port("a bad Port signature", "not-the-secret", port_vm_body(0.5))
        .await;
    assert_eq!(status, 401);

    let mut accepted = Vec::new();
    for (what, (status, rec)) in [
        (
            "orb, ?token=",
            api.orb(
                "an orb delivery (?token=)",
                Auth::Query(token),
                orb_body(231, "webhook", DEV_TAG),
            )
            .await,
        ),
        (
            "orb, Bearer",
            api.orb(
                "an orb delivery (Bearer)",
                Auth::Bearer(token),
                orb_body(232, "release/1", STAGING_TAG),
            )
            .await,
        ),
        (
            "CircleCI",
            api.circleci(
                "a signed CircleCI delivery",
                &c.circleci.value,
                native_body("prod", PROD_SHA),
            )
            .await,
        ),
        (
            "Port (PATCH)",
            api.port("a signed Port delivery", &c.port.value, port_vm_body(0.5))
                .await,
        ),
        (
            "Port (Slack)",
            api.port(
                "a signed Port delivery",
                &c.port.value,
                port_degraded_body(),
            )
            .await,
        ),
    ] {
        assert_eq!(status, 202, "{what}: {rec}");
        assert_eq!(rec["status"], "dispatched", "{what}: {rec}");
        accepted.push(rec);
    }
    let records = api.all_records(audit).await;
    assert_eq!(records.len(), accepted.len());

    // RunTask as ECS recorded it: the overrides hold the contract's identifiers, nothing else.
    let mut scan = Scan::default();
    for rec in &accepted {
        let arn = rec["task_arn"].as_str().unwrap();
        let described = direct
            .ecs
            .describe_tasks()
            .cluster(&direct.cluster)
            .tasks(arn)
            .send()
            .await
            .unwrap();
        let task = &described.tasks()[0];
        let overrides = task.overrides().unwrap().container_overrides();
        assert_eq!(overrides.len(), 1);
        let env: BTreeMap<&str, &str> = overrides[0]
            .environment()
            .iter()
            .map(|kv| (kv.name().unwrap(), kv.value().unwrap()))
            .collect();
        assert_eq!(env["ORCH_RECORD_ID"], rec["id"].as_str().unwrap());
        // The contract's names, written by hand: a gitops job has all seven, a remediation three.
        let names: Vec<&str> = env.keys().copied().collect();
        assert!(
            names
                == [
                    "ORCH_ATTEMPT",
                    "ORCH_ENVIRONMENT",
                    "ORCH_IMAGE",
                    "ORCH_JOB_KIND",
                    "ORCH_RECORD_ID",
                    "ORCH_SERVICE",
                    "ORCH_TAG"
                ]
                || names == ["ORCH_ATTEMPT", "ORCH_JOB_KIND", "ORCH_RECORD_ID"],
            "not exactly the contract's identifiers: {names:?}"
        );
        scan.check(
            &c,
            format!("DescribeTasks of {arn}"),
            format!("{described:?}").as_bytes(),
        );
    }

    let exchanges = recorder.exchanges();
    let count = |target: &str| exchanges.iter().filter(|(p, _)| p.contains(target)).count();
    assert_eq!(count("RunTask"), accepted.len(), "one RunTask per record");
    assert!(count("TransactWriteItems") + count("PutItem") >= accepted.len());
    for (place, bytes) in &exchanges {
        scan.check(&c, place.clone(), bytes);
    }
    for (place, bytes) in &api.responses {
        scan.check(&c, place.clone(), bytes);
    }
    let captured = logs.0.lock().unwrap().clone();
    let events: Vec<Value> = captured
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| serde_json::from_slice(l).expect("a JSON log line"))
        .collect();
    // A known event of every kind arrived (the scan below is only as good as the capture). The
    // HTTP layer: a response event per API request, with its status.
    let count = |fields: &[(&str, &str)]| events_with(&events, fields).len();
    let responses = |status: &str| {
        count(&[
            ("target", "tower_http::trace::on_response"),
            ("status", status),
        ])
    };
    assert!(responses("401") >= 4, "401 responses: {}", responses("401"));
    assert!(
        responses("202") >= accepted.len(),
        "202 responses: {}",
        responses("202")
    );
    // The intake's own events: each accepted delivery recorded and dispatched; the refusal.
    for rec in &accepted {
        let id = rec["id"].as_str().unwrap();
        for message in ["recorded", "dispatched"] {
            assert_eq!(
                count(&[("message", message), ("record_id", id)]),
                1,
                "{message} {id}"
            );
        }
    }
    assert!(count(&[("message", "Port delivery refused")]) >= 1);
    // The AWS SDK at TRACE: the raw requests and responses it exchanged, RunTask and the
    // DynamoDB writes among them.
    let exchanged = |message: &str, needle: &str| {
        events_with(&events, &[("message", message)])
            .iter()
            .filter(|e| e.to_string().contains(needle))
            .count()
    };
    for (message, needle, at_least) in [
        ("transmitting request", "", exchanges.len()),
        ("received response from service", "", exchanges.len()),
        (
            "transmitting request",
            "AmazonEC2ContainerServiceV20141113.RunTask",
            accepted.len(),
        ),
        (
            "transmitting request",
            "DynamoDB_20120810.TransactWriteItems",
            1,
        ),
        ("transmitting request", "DynamoDB_20120810.UpdateItem", 1),
    ] {
        let n = exchanged(message, needle);
        assert!(
            n >= at_least,
            "{n} {message:?} events with {needle:?}, expected {at_least}"
        );
    }
    scan.check(&c, "the intake's logs (TRACE)", &captured);
    scan.assert_clean();
}

#[test]
fn the_scanner_finds_every_form() {
    let c = Canaries::new();
    let t = &c.github.value;
    let samples = [
        t.clone(),
        format!("token={}", percent_encode(t, true)),
        format!(
            "Authorization: Basic {}",
            STANDARD.encode(format!("x-access-token:{t}"))
        ),
        format!("Basic {}", STANDARD.encode(format!("x:{t}"))),
        STANDARD.encode(t),
        base64::engine::general_purpose::URL_SAFE.encode(format!("ab{t}")),
        format!("\"{}\"", &t[7..t.len() - 3]),
    ];
    for s in samples {
        let mut scan = Scan::default();
        scan.check(&c, "sample", s.as_bytes());
        assert!(!scan.leaks.is_empty(), "missed: {s}");
    }
    let mut scan = Scan::default();
    scan.check(
        &c,
        "clean",
        b"Basic eC1hY2Nlc3MtdG9rZW46b3RoZXI= canary-github-other",
    );
    assert!(scan.leaks.is_empty(), "{:?}", scan.leaks);
}
