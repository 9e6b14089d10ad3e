//! A gitops dry run of the demo's repository (the bare repository scripts/demo.sh and these tests
//! seed): the diff and the images are recorded, the record ends `planned`, and the remote is
//! untouched: the same refs before and after, and no request to the GitHub API.

mod support;

use std::process::Stdio;

use gitops_task::gitops::{self, FlowOptions, OutcomeKind};
use orchestrator_core::store::{RecordStore, Transition};
use orchestrator_core::{LaunchContract, Record, Source, Status};
use serde_json::{Value, json};
use support::*;

/// Every ref of the bare repository with what it points at.
fn refs(repo: &GitopsRepo) -> String {
    git(
        &repo.bare,
        &["for-each-ref", "--format=%(refname) %(objectname)"],
    )
}

/// A dispatched record of `job`, a dry run when `dry_run`.
async fn dispatched(store: &Store, job: &orchestrator_core::Job, dry_run: bool) -> Record {
    let mut r = Record::received(
        Source::CircleciOrb,
        payload(job.tag.as_str()),
        Some(job.clone()),
    );
    r.dry_run = dry_run;
    store.store.create(&r).await.unwrap();
    store
        .store
        .transition(
            r.id,
            &Transition::to(Status::Dispatched).task_arn("local:1"),
        )
        .await
        .unwrap();
    r
}

#[tokio::test]
async fn a_dry_run_records_the_diff_and_leaves_the_remote_untouched() {
    let repo = GitopsRepo::new();
    let github = github_mock().await;
    let store = Store::new();
    let job = job("prod", NEW_TAG);
    let before = refs(&repo);

    // The record asks for it, then the contract alone: either is enough.
    for (record_dry, contract_dry) in [(true, false), (false, true)] {
        let r = dispatched(&store, &job, record_dry).await;
        let contract = LaunchContract::gitops_pr(r.id, job.clone()).with_dry_run(contract_dry);
        let run = gitops::run_job(
            &contract,
            Ok(settings_with_github(&repo, &github.uri())),
            &store.store,
            FlowOptions::default(),
        )
        .await;
        assert!(run.ok(), "{run:?}");
        assert_eq!(run.summary.outcome, OutcomeKind::Planned, "{run:?}");
        assert!(!run.summary.pushed);

        let stored = store.get(r.id).await;
        assert_eq!(stored.status, Status::Planned);
        assert_eq!((stored.pr_url, stored.branch), (None, None));
        let outcome = stored.outcome.unwrap();
        assert_eq!(outcome["outcome"], "planned");
        let diff = outcome["diff"].as_str().unwrap();
        let file = overlay_path("prod");
        assert!(
            diff.contains(&format!("--- a/{file}\n+++ b/{file}\n")),
            "{diff}"
        );
        assert!(
            diff.contains(&format!("\n-  newTag: {OLD_TAG}\n")),
            "{diff}"
        );
        assert!(
            diff.contains(&format!("\n+  newTag: {NEW_TAG}\n")),
            "{diff}"
        );
        // Exactly one line removed and one added: the edit is minimal.
        let changed = diff
            .lines()
            .filter(|l| {
                (l.starts_with('-') || l.starts_with('+'))
                    && !l.starts_with("---")
                    && !l.starts_with("+++")
            })
            .count();
        assert_eq!(changed, 2, "{diff}");
        // The prod overlay pulls from the mirror: the rendered image keeps its `newName`.
        assert_eq!(
            outcome["images"],
            json!([{
                "name": format!("{IMAGE}:{OLD_TAG}"),
                "before": format!("registry.example.com/mirror/circleci-samples:{OLD_TAG}"),
                "after": format!("registry.example.com/mirror/circleci-samples:{NEW_TAG}"),
            }])
        );
        assert!(
            stored.status_reason.as_deref().unwrap().contains("dry run"),
            "{:?}",
            stored.status_reason
        );
    }
    assert_eq!(refs(&repo), before, "the remote's refs moved");
    assert_eq!(
        github_requests(&github).await,
        Vec::<(String, String, Value)>::new()
    );
}

#[tokio::test]
async fn a_dry_run_of_a_tag_already_running_plans_nothing() {
    let repo = GitopsRepo::new();
    let store = Store::new();
    let job = job("dev", OLD_TAG);
    let before = refs(&repo);
    let r = dispatched(&store, &job, true).await;
    let run = gitops::run_job(
        &LaunchContract::gitops_pr(r.id, job.clone()),
        Ok(settings(&["--repo-url", &repo.url()])),
        &store.store,
        FlowOptions::default(),
    )
    .await;
    assert_eq!(run.summary.outcome, OutcomeKind::Planned, "{run:?}");
    assert_eq!(run.summary.diff.as_deref(), Some(""));
    assert!(
        run.summary
            .reason
            .as_deref()
            .unwrap()
            .contains("nothing would change"),
        "{run:?}"
    );
    assert_eq!(
        run.summary.images[0].before, run.summary.images[0].after,
        "{run:?}"
    );
    assert_eq!(store.get(r.id).await.status, Status::Planned);
    assert_eq!(refs(&repo), before);
}

/// `gitops-task plan` by hand: the diff on stdout, `--json` for scripts, nothing pushed.
#[tokio::test]
async fn gitops_task_plan_prints_the_diff_and_pushes_nothing() {
    let repo = GitopsRepo::new();
    let before = refs(&repo);
    let plan = |extra: &[&str]| {
        let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_gitops-task"));
        cmd.env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .args([
                "plan",
                "--repo-url",
                &repo.url(),
                "--service",
                SERVICE,
                "--image",
                IMAGE,
                "--environment",
                "dev",
                "--tag",
                NEW_TAG,
            ])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        cmd
    };
    let out = plan(&[]).output().await.unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains(&format!("-  newTag: {OLD_TAG}\n")),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!("+  newTag: {NEW_TAG}\n")),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!(
            "{IMAGE}:{OLD_TAG}: {IMAGE}:{OLD_TAG} -> {IMAGE}:{NEW_TAG}"
        )),
        "{stdout}"
    );
    assert!(stdout.contains("\nplanned: dry run:"), "{stdout}");

    let out = plan(&["--json"]).output().await.unwrap();
    assert!(out.status.success());
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["outcome"], "planned");
    assert!(v["diff"].as_str().unwrap().contains(NEW_TAG), "{v}");
    assert_eq!(v["pushed"], false);
    assert_eq!(refs(&repo), before, "the remote's refs moved");

    // An overlay that does not exist: exit 1 with the reason.
    let out = plan(&[
        "--overlay-path-template",
        "nowhere/{service}/{environment}/kustomization.yaml",
    ])
    .output()
    .await
    .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("failed: overlay nowhere/"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );

    let help = tokio::process::Command::new(env!("CARGO_BIN_EXE_gitops-task"))
        .args(["plan", "--help"])
        .output()
        .await
        .unwrap();
    let help = String::from_utf8_lossy(&help.stdout);
    for needle in [
        "Nothing is committed or pushed",
        "--json",
        "--service",
        "--repo-url",
    ] {
        assert!(help.contains(needle), "{needle} missing from:\n{help}");
    }
}
