//! Fixtures shared by the gitops tests: a seeded bare gitops repository (kustomize base plus dev
//! and prod overlays), a SQLite store holding a dispatched record, settings parsed from flags
//! only (never from this process's environment), and a GitHub API mock.

#![allow(dead_code)]

pub mod github_git;

use std::path::{Path, PathBuf};
use std::process::Command;

use clap::{CommandFactory, FromArgMatches, Parser};
use gitops_task::gitops::{self, FlowOptions, JobRun, RunArgs, Settings};
use orchestrator_core::store::sqlite::SqliteStore;
use orchestrator_core::store::{RecordStore, Transition};
use orchestrator_core::{Job, LaunchContract, Record, RecordId, Source, Status};
use serde_json::{Value, json};
use tempfile::TempDir;
use wiremock::matchers::{method, path, path_regex};
use wiremock::{Mock, MockServer, ResponseTemplate};

pub const SERVICE: &str = "circleci-samples";
pub const IMAGE: &str = "eddiewebb/circleci-samples";
pub const OLD_TAG: &str = "0b5e1f3c9d2a4e6f8a1b3c5d7e9f0a2b4c6d8e0f";
/// The tag of `tests/fixtures/circleci-orb/success.json`.
pub const NEW_TAG: &str = "8f59df978e3fa133a2ee39ff66b3382342ce958c";
pub const NEWER_TAG: &str = "c0ffee00c0ffee00c0ffee00c0ffee00c0ffee00";
pub const BUILD_URL: &str = "https://circleci.com/gh/eddiewebb/circleci-samples/231";
pub const PR_URL: &str = "https://github.com/acme/gitops/pull/7";

/// Runs git for the test's own setup and checks, isolated from the host's configuration.
pub fn git(dir: &Path, args: &[&str]) -> String {
    let out = git_output(dir, args);
    assert!(
        out.status.success(),
        "git {args:?} failed in {}: {}",
        dir.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn git_output(dir: &Path, args: &[&str]) -> std::process::Output {
    Command::new("git")
        .args([
            "-c",
            "init.defaultBranch=main",
            "-c",
            "advice.detachedHead=false",
        ])
        .args(args)
        .current_dir(dir)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_AUTHOR_NAME", "Test Human")
        .env("GIT_AUTHOR_EMAIL", "human@example.com")
        .env("GIT_COMMITTER_NAME", "Test Human")
        .env("GIT_COMMITTER_EMAIL", "human@example.com")
        .output()
        .expect("git runs")
}

pub fn deployment(tag: &str) -> String {
    format!(
        "apiVersion: apps/v1
kind: Deployment
metadata:
  name: circleci-samples
  labels:
    app: circleci-samples
spec:
  replicas: 1
  selector:
    matchLabels:
      app: circleci-samples
  template:
    metadata:
      labels:
        app: circleci-samples
    spec:
      containers:
      - name: app
        image: eddiewebb/circleci-samples:{tag}
        ports:
        - containerPort: 8080
"
    )
}

pub const BASE: &str = "apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources:
- deployment.yaml
";

/// The dev overlay with `tag`: comments and key order a human chose, which the edit must keep.
pub fn dev_overlay(tag: &str) -> String {
    format!(
        "# Dev overlay of circleci-samples. The image tag is bumped by the gitops orchestrator.
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
namespace: circleci-samples-dev
resources:
- ../../base
images:
- name: eddiewebb/circleci-samples
  newTag: {tag}
# Keep one replica in dev.
replicas:
- name: circleci-samples
  count: 1
"
    )
}

/// The prod overlay pulls from a registry mirror (`newName`), which the edit must keep.
pub fn prod_overlay(tag: &str) -> String {
    format!(
        "# Prod overlay: images come from the mirror.
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
namespace: circleci-samples-prod
resources:
- ../../base
images:
- name: eddiewebb/circleci-samples
  newName: registry.example.com/mirror/circleci-samples
  newTag: {tag}
"
    )
}

pub fn overlay_path(env: &str) -> String {
    format!("kustomize/{SERVICE}/overlays/{env}/kustomization.yaml")
}

/// A bare gitops repository seeded on `main`, and a working clone to make "human" commits with.
#[derive(Debug)]
pub struct GitopsRepo {
    pub dir: TempDir,
    pub bare: PathBuf,
    pub work: PathBuf,
}

impl GitopsRepo {
    pub fn new() -> Self {
        Self::new_in(tempfile::tempdir().unwrap(), "gitops.git")
    }

    /// Creates `<dir>/<name>` (bare) and `<dir>/seed` (its working clone).
    pub fn new_in(dir: TempDir, name: &str) -> Self {
        let bare = dir.path().join(name);
        let work = dir.path().join("seed");
        git(dir.path(), &["init", "--quiet", "--bare", name]);
        git(dir.path(), &["init", "--quiet", "seed"]);
        let files = [
            (
                format!("kustomize/{SERVICE}/base/kustomization.yaml"),
                BASE.to_owned(),
            ),
            (
                format!("kustomize/{SERVICE}/base/deployment.yaml"),
                deployment(OLD_TAG),
            ),
            (overlay_path("dev"), dev_overlay(OLD_TAG)),
            (overlay_path("prod"), prod_overlay(OLD_TAG)),
            (
                "kustomize/other/overlays/dev/kustomization.yaml".to_owned(),
                "resources: []\n".to_owned(),
            ),
            ("README.md".to_owned(), "# gitops\n".to_owned()),
        ];
        for (p, text) in &files {
            let full = work.join(p);
            std::fs::create_dir_all(full.parent().unwrap()).unwrap();
            std::fs::write(full, text).unwrap();
        }
        git(&work, &["add", "."]);
        git(
            &work,
            &["commit", "--quiet", "-m", "Seed the gitops repository"],
        );
        git(&work, &["remote", "add", "origin", bare.to_str().unwrap()]);
        git(
            &work,
            &["push", "--quiet", "origin", "HEAD:refs/heads/main"],
        );
        Self { dir, bare, work }
    }

    pub fn url(&self) -> String {
        self.bare.display().to_string()
    }

    /// `git rev-parse` in the bare repository; `None` when `rev` names nothing.
    pub fn rev(&self, rev: &str) -> Option<String> {
        let out = git_output(&self.bare, &["rev-parse", "--verify", "--quiet", rev]);
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
    }

    pub fn show(&self, rev: &str, path: &str) -> Option<String> {
        let out = git_output(&self.bare, &["show", &format!("{rev}:{path}")]);
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    }

    pub fn message(&self, rev: &str) -> String {
        git(&self.bare, &["log", "-1", "--format=%B", rev])
    }

    pub fn branches(&self) -> Vec<String> {
        git(
            &self.bare,
            &["for-each-ref", "--format=%(refname:short)", "refs/heads/"],
        )
        .lines()
        .map(str::to_owned)
        .collect()
    }

    /// Files that differ between two revisions.
    pub fn changed_files(&self, a: &str, b: &str) -> Vec<String> {
        git(&self.bare, &["diff", "--name-only", a, b])
            .lines()
            .map(str::to_owned)
            .collect()
    }

    /// Runs `change` in the working clone on `main` (fetched first), then commits everything
    /// and pushes `main`: for changes a file write cannot make (a mode, a symbolic link).
    pub fn change_main(&self, message: &str, change: impl FnOnce(&Path)) -> String {
        git(&self.work, &["fetch", "--quiet", "origin"]);
        git(
            &self.work,
            &["checkout", "--quiet", "-B", "main", "origin/main"],
        );
        change(&self.work);
        git(&self.work, &["add", "--all"]);
        git(&self.work, &["commit", "--quiet", "-m", message]);
        git(
            &self.work,
            &["push", "--quiet", "origin", "HEAD:refs/heads/main"],
        );
        git(&self.work, &["rev-parse", "HEAD"]).trim().to_owned()
    }

    /// Commits a file to `branch` (created from `main` when missing) as a human would, and
    /// pushes it. Returns the new commit.
    pub fn commit_to(&self, branch: &str, path: &str, text: &str, message: &str) -> String {
        git(&self.work, &["fetch", "--quiet", "origin"]);
        let remote = format!("origin/{branch}");
        let start = if self.rev(&format!("refs/heads/{branch}")).is_some() {
            remote.as_str()
        } else {
            "origin/main"
        };
        git(&self.work, &["checkout", "--quiet", "-B", branch, start]);
        let full = self.work.join(path);
        std::fs::create_dir_all(full.parent().unwrap()).unwrap();
        std::fs::write(full, text).unwrap();
        git(&self.work, &["add", "."]);
        git(&self.work, &["commit", "--quiet", "-m", message]);
        git(
            &self.work,
            &[
                "push",
                "--quiet",
                "--force",
                "origin",
                &format!("HEAD:refs/heads/{branch}"),
            ],
        );
        git(&self.work, &["rev-parse", "HEAD"]).trim().to_owned()
    }
}

pub fn job(env: &str, tag: &str) -> Job {
    Job::parse(SERVICE, IMAGE, env, tag).expect("a valid job")
}

/// The orb fixture, with `vcs_revision` set to `tag`.
pub fn payload(tag: &str) -> Value {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../tests/fixtures/circleci-orb/success.json"
    ))
    .unwrap();
    let mut v: Value = serde_json::from_str(&text).unwrap();
    v["vcs_revision"] = json!(tag);
    v
}

/// A SQLite store in its own data directory, as the local server leaves it.
#[derive(Debug)]
pub struct Store {
    pub dir: TempDir,
    pub store: SqliteStore,
}

impl Store {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&SqliteStore::file_in(dir.path())).unwrap();
        Self { dir, store }
    }

    /// Records the job as the intake would, and moves it to `dispatched` as the launcher does.
    pub async fn dispatched(&self, job: &Job) -> RecordId {
        let record = Record::received(
            Source::CircleciOrb,
            payload(job.tag.as_str()),
            Some(job.clone()),
        );
        self.store.create(&record).await.unwrap();
        self.store
            .transition(
                record.id,
                &Transition::to(Status::Dispatched).task_arn("local:1"),
            )
            .await
            .unwrap();
        record.id
    }

    pub async fn get(&self, id: RecordId) -> Record {
        self.store.get(id).await.unwrap().unwrap()
    }

    /// Records `job` as dispatched and returns the launch contract the launcher hands its task.
    pub async fn contract(&self, job: Job) -> (RecordId, LaunchContract) {
        let id = self.dispatched(&job).await;
        (id, LaunchContract::gitops_pr(id, job))
    }
}

/// The `gitops-task` binary with an empty environment but for `PATH` and the contract's
/// variables; each test adds the store and settings it needs.
pub fn task_command(contract: &LaunchContract) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_gitops-task"));
    cmd.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .envs(contract.to_env());
    cmd
}

#[derive(Debug, Parser)]
struct Cli {
    #[command(flatten)]
    run: RunArgs,
}

/// `gitops-task run` flags, parsed with every `env = ..` switched off.
pub fn args(flags: &[&str]) -> RunArgs {
    let cmd = Cli::command().mut_args(|a| a.env(None::<&str>));
    let m = cmd
        .try_get_matches_from(std::iter::once("gitops-task").chain(flags.iter().copied()))
        .unwrap();
    Cli::from_arg_matches(&m).unwrap().run
}

pub fn settings(flags: &[&str]) -> Settings {
    Settings::from_args(&args(flags)).unwrap()
}

/// Runs the job of a new dispatched record in-process and returns the run and the record id.
pub async fn run(
    store: &Store,
    job: &Job,
    settings: Settings,
    options: FlowOptions,
) -> (RecordId, JobRun) {
    let id = store.dispatched(job).await;
    let contract = LaunchContract::gitops_pr(id, job.clone());
    let run = gitops::run_job(&contract, Ok(settings), &store.store, options).await;
    (id, run)
}

/// [`run`] with the default [`FlowOptions`].
pub async fn run_default(store: &Store, job: &Job, settings: Settings) -> (RecordId, JobRun) {
    run(store, job, settings, FlowOptions::default()).await
}

/// GitHub: no open PR for the branch until one is created (the first `GET /pulls` answers `[]`,
/// later ones the PR), then create, update, reviewers and labels all succeed.
pub async fn github_mock() -> MockServer {
    let server = MockServer::start().await;
    let pr = json!({ "number": 7, "html_url": PR_URL, "base": { "ref": "main" } });
    Mock::given(method("GET"))
        .and(path("/repos/acme/gitops/pulls"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!([])))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/repos/acme/gitops/pulls"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!([pr.clone()])))
        .with_priority(2)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/repos/acme/gitops/pulls"))
        .respond_with(ResponseTemplate::new(201).set_body_json(pr.clone()))
        .mount(&server)
        .await;
    Mock::given(method("PATCH"))
        .and(path("/repos/acme/gitops/pulls/7"))
        .respond_with(ResponseTemplate::new(200).set_body_json(pr.clone()))
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path_regex(
            r"^/repos/acme/gitops/(pulls/7/requested_reviewers|issues/7/labels)$",
        ))
        .respond_with(ResponseTemplate::new(201).set_body_json(json!({})))
        .mount(&server)
        .await;
    server
}

/// The requests the mock received, as `(method, path, JSON body)`.
pub async fn github_requests(server: &MockServer) -> Vec<(String, String, Value)> {
    server
        .received_requests()
        .await
        .unwrap_or_default()
        .into_iter()
        .map(|r| {
            (
                r.method.to_string(),
                r.url.path().to_owned(),
                serde_json::from_slice(&r.body).unwrap_or(Value::Null),
            )
        })
        .collect()
}

/// Settings for the seeded repository with the GitHub mock.
pub fn settings_with_github(repo: &GitopsRepo, api: &str) -> Settings {
    settings(&[
        "--repo-url",
        &repo.url(),
        "--github-api-url",
        api,
        "--github-repository",
        "acme/gitops",
        "--github-token",
        "test-token",
        "--reviewers",
        "alice,bob",
        "--team-reviewers",
        "platform",
        "--labels",
        "gitops,automated",
        "--record-base-url",
        "https://orchestrator.example.com/",
    ])
}

/// An executable overlay stays executable, and an overlay that is a symbolic link is refused by
/// name, with nothing pushed: the task edits only a regular file (a link's target may be shared by
/// other overlays). The same in a clone and through GitHub's API (`settings` picks the mode).
pub async fn overlay_mode_and_symlink(repo: &GitopsRepo, settings: impl Fn() -> Settings) {
    use std::os::unix::fs::PermissionsExt;
    repo.change_main("An executable dev overlay; prod links to dev", |work| {
        let dev = work.join(overlay_path("dev"));
        std::fs::set_permissions(&dev, std::fs::Permissions::from_mode(0o755)).unwrap();
        let prod = work.join(overlay_path("prod"));
        std::fs::remove_file(&prod).unwrap();
        std::os::unix::fs::symlink("../dev/kustomization.yaml", &prod).unwrap();
    });
    let branch = "update-image/dev/circleci-samples";
    let store = Store::new();
    let (_, run) = run_default(&store, &job("dev", NEW_TAG), settings()).await;
    assert!(run.ok(), "{run:#?}");
    let listed = git(&repo.bare, &["ls-tree", branch, "--", &overlay_path("dev")]);
    assert!(listed.starts_with("100755 blob "), "{listed}");
    assert_eq!(
        repo.show(branch, &overlay_path("dev")).unwrap(),
        dev_overlay(NEW_TAG)
    );

    let (id, run) = run_default(&store, &job("prod", NEW_TAG), settings()).await;
    assert!(!run.ok(), "{run:#?}");
    let reason = store.get(id).await.status_reason.unwrap();
    assert!(
        reason.contains(&overlay_path("prod")) && reason.contains("it is a symbolic link"),
        "{reason}"
    );
    assert_eq!(repo.branches(), vec!["main", branch]);
}
