//! Git over HTTP with a token: `git http-backend` (served by a small Python CGI wrapper on
//! 127.0.0.1) refuses every request without `Authorization: Basic base64(x-access-token:<token>)`.
//! The flow must clone and push with it, and the token must appear in no argv the task spawns,
//! in no file of the work tree (`.git/config` included), in no log line and in no output.

mod support;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use gitops_task::gitops::{FlowOptions, OutcomeKind};
use orchestrator_core::Status;
use support::*;

const TOKEN: &str = "ghs_canaryTokenValue0123456789abcdef";
const DEV_BRANCH: &str = "update-image/dev/circleci-samples";

fn encoded(token: &str) -> String {
    STANDARD.encode(format!("x-access-token:{token}"))
}

/// The Python server, killed on drop.
struct HttpGit {
    child: Child,
    port: u16,
    access_log: PathBuf,
}

impl HttpGit {
    fn start(root: &Path, token: &str) -> HttpGit {
        let script = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/support/git_http_server.py"
        );
        let access_log = root.join("access.log");
        let mut child = Command::new("python3")
            .arg(script)
            .arg(root)
            .arg(&access_log)
            .env(
                "EXPECTED_AUTHORIZATION",
                format!("Basic {}", encoded(token)),
            )
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("python3 runs");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let port = line
            .trim()
            .strip_prefix("PORT ")
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("server did not start: {line:?}"));
        HttpGit {
            child,
            port,
            access_log,
        }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}/gitops.git", self.port)
    }

    fn access_log(&self) -> String {
        std::fs::read_to_string(&self.access_log).unwrap_or_default()
    }
}

impl Drop for HttpGit {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The seeded gitops repository, served over HTTP by a server that requires [`TOKEN`].
/// It allows partial-clone filters, as GitHub does, so blobs are fetched on demand: each of
/// those fetches must authenticate too.
fn served_repo() -> (GitopsRepo, HttpGit) {
    let repo = GitopsRepo::new();
    support::git(&repo.bare, &["config", "uploadpack.allowFilter", "true"]);
    let server = HttpGit::start(repo.dir.path(), TOKEN);
    (repo, server)
}

/// Every file under `dir`, recursively.
fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let p = entry.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out
}

fn assert_no_secret(what: &str, text: &str) {
    for secret in [TOKEN.to_owned(), encoded(TOKEN)] {
        assert!(!text.contains(&secret), "the token leaked into {what}");
    }
}

#[tokio::test]
async fn clones_and_pushes_with_the_token_in_gits_environment_only() {
    let (repo, server) = served_repo();
    // Without credentials the server refuses: the auth check is real.
    let anonymous = support::git_output(
        repo.dir.path(),
        &["-c", "credential.helper=", "ls-remote", &server.url()],
    );
    assert!(!anonymous.status.success());
    assert!(server.access_log().contains(" 401"));

    let store = Store::new();
    let work = tempfile::tempdir().unwrap();
    let settings = settings(&["--repo-url", &server.url(), "--github-token", TOKEN]);
    assert!(
        settings.github.is_none(),
        "not github.com and no API URL: push only"
    );
    let (id, run) = run(
        &store,
        &job("dev", NEW_TAG),
        settings,
        FlowOptions {
            work_root: Some(work.path().to_owned()),
            ..FlowOptions::default()
        },
    )
    .await;
    assert!(run.ok(), "{run:#?}");
    assert_eq!(run.summary.outcome, OutcomeKind::Succeeded);
    assert_eq!(
        repo.show(DEV_BRANCH, &overlay_path("dev")).unwrap(),
        dev_overlay(NEW_TAG)
    );
    assert_eq!(store.get(id).await.status, Status::Succeeded);

    // The server saw an authenticated clone and push.
    let log = server.access_log();
    assert!(
        log.contains("POST /gitops.git/git-upload-pack 200"),
        "{log}"
    );
    assert!(
        log.contains("POST /gitops.git/git-receive-pack 200"),
        "{log}"
    );
    assert_no_secret("the request paths", &log);
    // The clone was partial: the base's blobs came in a later, authenticated fetch, and the prod
    // overlay's never came.
    assert!(
        log.matches("POST /gitops.git/git-upload-pack 200").count() >= 2,
        "{log}"
    );
    let clone = work.path().join(format!("{id}-attempt-1"));
    let missing = support::git(
        &clone,
        &["rev-list", "--objects", "--missing=print", "HEAD"],
    );
    assert!(missing.lines().any(|l| l.starts_with('?')), "{missing}");

    // No argv held the token, its encoding or the header.
    assert!(run.git_invocations.len() >= 5, "{:?}", run.git_invocations);
    for argv in &run.git_invocations {
        let line = argv.join(" ");
        assert_no_secret("a git argv", &line);
        assert!(
            !line.to_ascii_lowercase().contains("authorization"),
            "{line}"
        );
        assert!(
            !line.contains("extraheader") && !line.contains("extraHeader"),
            "{line}"
        );
    }
    // No file of the work tree holds it; .git/config has a clean remote URL.
    let all = files(work.path());
    let configs: Vec<_> = all.iter().filter(|p| p.ends_with(".git/config")).collect();
    assert!(!configs.is_empty(), "the clones were kept for inspection");
    for file in &all {
        let bytes = std::fs::read(file).unwrap();
        assert_no_secret(
            &file.display().to_string(),
            &String::from_utf8_lossy(&bytes),
        );
    }
    for config in configs {
        let text = std::fs::read_to_string(config).unwrap();
        assert!(text.contains(&format!("url = {}", server.url())), "{text}");
        assert!(!text.to_ascii_lowercase().contains("extraheader"), "{text}");
        assert!(!text.contains('@'), "{text}");
    }
    // Nor the summary the task prints and stores.
    assert_no_secret("the summary", &run.summary.to_line());
}

#[tokio::test]
async fn a_wrong_token_fails_without_leaking_it() {
    let (repo, server) = served_repo();
    let store = Store::new();
    let wrong = "ghs_wrongTokenValue0123456789";
    let settings = settings(&["--repo-url", &server.url(), "--github-token", wrong]);
    let (id, run) = run_default(&store, &job("dev", NEW_TAG), settings).await;
    assert!(!run.ok());
    let r = store.get(id).await;
    assert_eq!(r.status, Status::Failed);
    let reason = r.status_reason.unwrap();
    assert!(reason.contains("git fetch"), "{reason}");
    assert!(
        !reason.contains(wrong) && !reason.contains(&encoded(wrong)),
        "{reason}"
    );
    assert!(server.access_log().contains(" 401"));
    assert_eq!(repo.branches(), vec!["main"]);
}

/// The real binary, as the local server launches it, with debug logs on: the token is nowhere
/// in what it prints.
#[tokio::test]
async fn the_binary_keeps_the_token_out_of_its_output() {
    let (_repo, server) = served_repo();
    let store = Store::new();
    let (id, contract) = store.contract(job("dev", NEW_TAG)).await;
    let out = task_command(&contract)
        .arg("run")
        .env("ORCH_STORE", "sqlite")
        .env("DATA_DIR", store.dir.path())
        .env("GITOPS_REPO_URL", server.url())
        .env("GITHUB_TOKEN", TOKEN)
        .env("RUST_LOG", "debug")
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "stdout:\n{stdout}\nstderr:\n{stderr}");
    assert_no_secret("stdout", &stdout);
    assert_no_secret("stderr", &stderr);
    // Logs are JSON lines, git commands among them; the last stdout line is the summary.
    assert!(stderr.contains("git fetch"), "{stderr}");
    for line in stderr.lines() {
        serde_json::from_str::<serde_json::Value>(line)
            .unwrap_or_else(|e| panic!("not a JSON log line ({e}): {line}"));
    }
    let summary: serde_json::Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    assert_eq!(summary["outcome"], "succeeded");
    assert_eq!(summary["branch"], DEV_BRANCH);
    assert_eq!(store.get(id).await.status, Status::Succeeded);
}

/// Round trips, counted at the server, for a build of a service whose update branch exists:
/// one fetch brings both branches; then, at once, the checkout's on-demand fetch of the files it
/// writes and the fetch of the update branch's version of the overlay; then the push, which
/// fetches nothing (over HTTPS git always pushes a thin pack, which deltas against the version
/// the server has: missing in a partial clone, it would be one more round trip first).
#[tokio::test]
async fn a_build_over_an_existing_update_branch_fetches_nothing_while_it_pushes() {
    let (repo, server) = served_repo();
    let store = Store::new();
    let settings = || settings(&["--repo-url", &server.url(), "--github-token", TOKEN]);
    let (_, first) = run_default(&store, &job("dev", NEW_TAG), settings()).await;
    assert!(first.ok(), "{first:#?}");
    let before = server.access_log().lines().count();

    let (_, second) = run_default(&store, &job("dev", NEWER_TAG), settings()).await;
    assert!(second.ok(), "{second:#?}");
    assert_eq!(second.summary.outcome, OutcomeKind::Succeeded);
    assert_eq!(
        repo.show(DEV_BRANCH, &overlay_path("dev")).unwrap(),
        dev_overlay(NEWER_TAG)
    );
    let log: Vec<String> = server
        .access_log()
        .lines()
        .skip(before)
        .map(str::to_owned)
        .collect();
    let fetches = log
        .iter()
        .filter(|l| *l == "GET /gitops.git/info/refs?service=git-upload-pack 200")
        .count();
    assert_eq!(fetches, 3, "{log:#?}");
    // The push's two requests come one after the other, with no fetch between them, and last.
    assert_eq!(
        log[log.len() - 2..],
        [
            "GET /gitops.git/info/refs?service=git-receive-pack 200",
            "POST /gitops.git/git-receive-pack 200"
        ],
        "{log:#?}"
    );
}
