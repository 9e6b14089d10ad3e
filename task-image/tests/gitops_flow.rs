//! The gitops flow end to end, in-process, against real components: local bare repositories
//! driven by the git CLI, the real kustomize edit and preflight, a SQLite store in a temporary
//! data directory, and (where a PR is opened) the real GitHub client against wiremock.

mod support;
#[path = "../../tests/support/tools.rs"]
mod tools;

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use gitops_task::gitops::{FlowOptions, OutcomeKind};
use orchestrator_core::{LaunchContract, Status};
use support::*;

const DEV_BRANCH: &str = "update-image/dev/circleci-samples";

fn local_settings(repo: &GitopsRepo) -> gitops_task::gitops::Settings {
    settings(&["--repo-url", &repo.url()])
}

/// Runs `contract` in-process against the local repository, with the default options.
async fn run_contract(
    contract: &LaunchContract,
    repo: &GitopsRepo,
    store: &Store,
) -> gitops_task::gitops::JobRun {
    gitops_task::gitops::run_job(
        contract,
        Ok(local_settings(repo)),
        &store.store,
        FlowOptions::default(),
    )
    .await
}

#[tokio::test]
async fn pushes_one_signed_commit_with_only_the_tag_changed() {
    let repo = GitopsRepo::new();
    let store = Store::new();
    let base = repo.rev("main").unwrap();
    let (id, run) = run_default(&store, &job("dev", NEW_TAG), local_settings(&repo)).await;
    assert!(run.ok(), "{run:#?}");
    assert_eq!(run.summary.outcome, OutcomeKind::Succeeded);
    assert_eq!(run.summary.branch.as_deref(), Some(DEV_BRANCH));
    assert_eq!(
        run.summary.pr_url, None,
        "no GitHub API for a local repository"
    );

    // Exactly the tag changed, every other byte of the overlay kept; nothing else touched.
    assert_eq!(
        repo.show(DEV_BRANCH, &overlay_path("dev")).unwrap(),
        dev_overlay(OLD_TAG).replace(OLD_TAG, NEW_TAG)
    );
    assert_eq!(
        repo.changed_files("main", DEV_BRANCH),
        vec![overlay_path("dev")]
    );
    // One commit on top of the base tip; the base is untouched.
    assert_eq!(
        repo.rev(&format!("{DEV_BRANCH}^")).as_deref(),
        Some(base.as_str())
    );
    assert_eq!(repo.rev("main").unwrap(), base);

    let message = repo.message(DEV_BRANCH);
    assert!(
        message.starts_with("Update circleci-samples image in dev to 8f59df9\n"),
        "{message}"
    );
    for needle in [
        &format!("{IMAGE}: {OLD_TAG} → {NEW_TAG}"),
        &format!("Build: {BUILD_URL}"),
        &format!("Orchestrator-Record: {id}"),
        "Signed-off-by: gitops-orchestrator <gitops-orchestrator@users.noreply.github.com>",
    ] {
        assert!(message.contains(needle), "{needle:?} not in:\n{message}");
    }
    // Sign-off and record are git trailers, not just text.
    let trailers = support::git(
        &repo.bare,
        &["log", "-1", "--format=%(trailers:only,unfold)", DEV_BRANCH],
    );
    assert!(
        trailers.contains("Signed-off-by: gitops-orchestrator"),
        "{trailers}"
    );
    assert!(
        trailers.contains(&format!("Orchestrator-Record: {id}")),
        "{trailers}"
    );
    let author = support::git(
        &repo.bare,
        &["log", "-1", "--format=%an <%ae>|%cn", DEV_BRANCH],
    );
    assert_eq!(
        author.trim(),
        "gitops-orchestrator <gitops-orchestrator@users.noreply.github.com>|gitops-orchestrator"
    );

    let record = store.get(id).await;
    assert_eq!(record.status, Status::Succeeded);
    assert_eq!(record.branch.as_deref(), Some(DEV_BRANCH));
    assert_eq!(record.outcome.as_ref().unwrap()["outcome"], "succeeded");
    assert_eq!(
        record.outcome.as_ref().unwrap()["old_tag"].as_str(),
        Some(OLD_TAG)
    );
}

/// A tag that YAML would read as a number is quoted in the overlay, and the commit says why.
#[tokio::test]
async fn a_quoted_tag_is_explained_in_the_commit_message() {
    let repo = GitopsRepo::new();
    let store = Store::new();
    let (_, run) = run_default(&store, &job("dev", "1234"), local_settings(&repo)).await;
    assert!(run.ok(), "{run:#?}");
    assert_eq!(
        repo.show(DEV_BRANCH, &overlay_path("dev")).unwrap(),
        dev_overlay(OLD_TAG).replace(OLD_TAG, "\"1234\"")
    );
    let message = repo.message(DEV_BRANCH);
    assert!(
        message.contains(
            "newTag \"1234\" is quoted: unquoted, YAML would read 1234 as a number, and \
             kustomize needs a string.\n"
        ),
        "{message}"
    );
    // A tag that reads as a string needs no note.
    let other = GitopsRepo::new();
    let (_, run) = run_default(&store, &job("dev", NEW_TAG), local_settings(&other)).await;
    assert!(run.ok(), "{run:#?}");
    assert!(!other.message(DEV_BRANCH).contains("is quoted"));
}

/// kustomize itself (kubectl kustomize, v5) renders the pushed overlay with the new image.
#[tokio::test]
async fn the_pushed_overlay_renders_the_new_image_with_kustomize() {
    if !tools::kubectl("the_pushed_overlay_renders_the_new_image_with_kustomize") {
        return;
    }
    let repo = GitopsRepo::new();
    let store = Store::new();
    for env in ["dev", "prod"] {
        let (_, run) = run_default(&store, &job(env, NEW_TAG), local_settings(&repo)).await;
        assert!(run.ok(), "{run:#?}");
    }
    let checkout = tempfile::tempdir().unwrap();
    for (env, image) in [
        ("dev", format!("{IMAGE}:{NEW_TAG}")),
        (
            "prod",
            format!("registry.example.com/mirror/circleci-samples:{NEW_TAG}"),
        ),
    ] {
        let dir = checkout.path().join(env);
        support::git(
            checkout.path(),
            &[
                "clone",
                "--quiet",
                "--branch",
                &format!("update-image/{env}/{SERVICE}"),
                &repo.url(),
                dir.to_str().unwrap(),
            ],
        );
        let rendered =
            tools::kustomize_build(&dir.join(format!("kustomize/{SERVICE}/overlays/{env}")))
                .unwrap_or_else(|e| panic!("{e}"));
        assert!(
            rendered.contains(&format!("image: {image}\n")),
            "{env}: {image} not in\n{rendered}"
        );
    }
}

#[tokio::test]
async fn prod_keeps_its_registry_mirror() {
    let repo = GitopsRepo::new();
    let store = Store::new();
    let (_, run) = run_default(&store, &job("prod", NEW_TAG), local_settings(&repo)).await;
    assert!(run.ok(), "{run:#?}");
    assert_eq!(
        repo.show("update-image/prod/circleci-samples", &overlay_path("prod"))
            .unwrap(),
        prod_overlay(NEW_TAG)
    );
}

/// Measures task start → PR opened against a local bare repository (the lead needs the figure).
#[tokio::test]
async fn opens_one_pr_with_reviewers_and_labels_and_the_rerun_changes_nothing() {
    let repo = GitopsRepo::new();
    let store = Store::new();
    let github = github_mock().await;
    let settings = settings_with_github(&repo, &github.uri());

    let started = Instant::now();
    let (first, run1) = run_default(&store, &job("dev", NEW_TAG), settings.clone()).await;
    let elapsed = started.elapsed();
    eprintln!(
        "TIMING task start -> PR opened (in-process, local bare repo, GitHub mock): {} ms on the task's clock; whole run (report and clone cleanup included): {} ms",
        run1.summary.elapsed_ms,
        elapsed.as_millis()
    );
    assert!(run1.ok(), "{run1:#?}");
    assert_eq!(run1.summary.pr_url.as_deref(), Some(PR_URL));
    assert_eq!(run1.summary.pr_created, Some(true));
    let commit = repo.rev(DEV_BRANCH).unwrap();

    let requests = github_requests(&github).await;
    let create: Vec<_> = requests
        .iter()
        .filter(|(m, p, _)| m == "POST" && p == "/repos/acme/gitops/pulls")
        .collect();
    assert_eq!(create.len(), 1, "{requests:#?}");
    let body = &create[0].2;
    assert_eq!(body["head"], DEV_BRANCH);
    assert_eq!(body["base"], "main");
    assert_eq!(
        body["title"],
        "Update circleci-samples image in dev to 8f59df9"
    );
    let text = body["body"].as_str().unwrap();
    for needle in [
        &format!("`{OLD_TAG}` → `{NEW_TAG}`"),
        BUILD_URL,
        &format!("https://orchestrator.example.com/pullrequests/{first}"),
    ] {
        assert!(text.contains(needle), "{needle:?} not in PR body:\n{text}");
    }
    let reviewers = requests
        .iter()
        .find(|(_, p, _)| p.ends_with("/requested_reviewers"))
        .expect("reviewers requested");
    assert_eq!(
        reviewers.2["reviewers"],
        serde_json::json!(["alice", "bob"])
    );
    assert_eq!(
        reviewers.2["team_reviewers"],
        serde_json::json!(["platform"])
    );
    let labels = requests
        .iter()
        .find(|(_, p, _)| p.ends_with("/labels"))
        .expect("labels added");
    assert_eq!(
        labels.2["labels"],
        serde_json::json!(["gitops", "automated"])
    );

    // The same job again (a CircleCI rerun: a new record, the same SHA).
    let (second, run2) = run_default(&store, &job("dev", NEW_TAG), settings).await;
    assert!(run2.ok(), "{run2:#?}");
    assert_eq!(run2.summary.outcome, OutcomeKind::Succeeded);
    assert!(!run2.summary.pushed, "nothing to push the second time");
    assert_eq!(repo.rev(DEV_BRANCH).unwrap(), commit, "same branch state");
    assert_eq!(run2.summary.pr_url.as_deref(), Some(PR_URL));
    assert_eq!(
        run2.summary.pr_created,
        Some(false),
        "the open PR is updated"
    );
    let requests = github_requests(&github).await;
    let count = |m: &str, p: &str| {
        requests
            .iter()
            .filter(|(rm, rp, _)| rm == m && rp == p)
            .count()
    };
    assert_eq!(count("POST", "/repos/acme/gitops/pulls"), 1, "one PR only");
    assert_eq!(count("PATCH", "/repos/acme/gitops/pulls/7"), 1);
    for id in [first, second] {
        let r = store.get(id).await;
        assert_eq!(r.status, Status::Succeeded);
        assert_eq!(r.pr_url.as_deref(), Some(PR_URL));
        assert_eq!(r.branch.as_deref(), Some(DEV_BRANCH));
    }
}

#[tokio::test]
async fn a_newer_sha_supersedes_the_older_commit_and_updates_the_same_pr() {
    let repo = GitopsRepo::new();
    let store = Store::new();
    let github = github_mock().await;
    let settings = settings_with_github(&repo, &github.uri());
    let (_, run1) = run_default(&store, &job("dev", NEW_TAG), settings.clone()).await;
    assert!(run1.ok(), "{run1:#?}");
    let older = repo.rev(DEV_BRANCH).unwrap();

    // Meanwhile another change lands on the base branch.
    let base = repo.commit_to("main", "README.md", "# gitops\n\nMoved on.\n", "Docs");

    let (_, run2) = run_default(&store, &job("dev", NEWER_TAG), settings).await;
    assert!(run2.ok(), "{run2:#?}");
    assert!(run2.summary.pushed);
    assert_eq!(run2.summary.pr_created, Some(false));
    let newer = repo.rev(DEV_BRANCH).unwrap();
    assert_ne!(newer, older);
    // Rebuilt from the new base tip: one commit, the newer tag, the base's other change kept.
    assert_eq!(
        repo.rev(&format!("{DEV_BRANCH}^")).as_deref(),
        Some(base.as_str())
    );
    assert_eq!(
        repo.show(DEV_BRANCH, &overlay_path("dev")).unwrap(),
        dev_overlay(NEWER_TAG)
    );
    assert_eq!(
        repo.changed_files("main", DEV_BRANCH),
        vec![overlay_path("dev")]
    );
    assert!(
        repo.message(DEV_BRANCH)
            .contains(&format!("{OLD_TAG} → {NEWER_TAG}"))
    );

    let requests = github_requests(&github).await;
    let creates = requests
        .iter()
        .filter(|(m, p, _)| m == "POST" && p == "/repos/acme/gitops/pulls")
        .count();
    assert_eq!(creates, 1, "no second PR");
    let patch = requests
        .iter()
        .find(|(m, p, _)| m == "PATCH" && p == "/repos/acme/gitops/pulls/7")
        .expect("the open PR is updated");
    assert_eq!(
        patch.2["title"],
        "Update circleci-samples image in dev to c0ffee0"
    );
}

#[tokio::test]
async fn no_change_when_the_base_already_has_the_tag() {
    let repo = GitopsRepo::new();
    let store = Store::new();
    let github = github_mock().await;
    let before = repo.branches();
    let (id, run) = run_default(
        &store,
        &job("dev", OLD_TAG),
        settings_with_github(&repo, &github.uri()),
    )
    .await;
    assert!(run.ok(), "{run:#?}");
    assert_eq!(run.summary.outcome, OutcomeKind::NoChange);
    assert!(!run.summary.pushed);
    assert_eq!(repo.branches(), before, "no branch pushed");
    assert!(github_requests(&github).await.is_empty(), "no PR opened");
    let record = store.get(id).await;
    assert_eq!(record.status, Status::NoChange);
    let reason = record.status_reason.unwrap();
    assert!(
        reason.contains("already uses") && reason.contains(&overlay_path("dev")),
        "{reason}"
    );
}

#[tokio::test]
async fn a_stale_branch_is_deleted_once_the_base_has_the_tag() {
    let repo = GitopsRepo::new();
    let store = Store::new();
    let (_, run1) = run_default(&store, &job("dev", NEW_TAG), local_settings(&repo)).await;
    assert!(run1.ok(), "{run1:#?}");
    // Someone sets the newer tag on main directly; the PR for NEW_TAG would now roll back.
    repo.commit_to(
        "main",
        &overlay_path("dev"),
        &dev_overlay(NEWER_TAG),
        "Hotfix",
    );
    let (id, run2) = run_default(&store, &job("dev", NEWER_TAG), local_settings(&repo)).await;
    assert!(run2.ok(), "{run2:#?}");
    assert_eq!(run2.summary.outcome, OutcomeKind::NoChange);
    assert_eq!(repo.rev(DEV_BRANCH), None, "stale branch deleted");
    let reason = store.get(id).await.status_reason.unwrap();
    assert!(reason.contains("deleted the stale branch"), "{reason}");
}

#[tokio::test]
async fn an_older_event_never_overwrites_a_newer_one() {
    let repo = GitopsRepo::new();
    let store = Store::new();
    // Both recorded in order; the task of the newer one happens to run first.
    let older_job = job("dev", NEW_TAG);
    let newer_job = job("dev", NEWER_TAG);
    let older = store.dispatched(&older_job).await;
    let newer = store.dispatched(&newer_job).await;
    for (id, j) in [(newer, &newer_job), (older, &older_job)] {
        let contract = LaunchContract::gitops_pr(id, j.clone());
        let run = run_contract(&contract, &repo, &store).await;
        assert!(run.ok(), "{run:#?}");
    }
    assert_eq!(
        repo.show(DEV_BRANCH, &overlay_path("dev")).unwrap(),
        dev_overlay(NEWER_TAG)
    );
    let r = store.get(older).await;
    assert_eq!(r.status, Status::NoChange);
    assert!(r.status_reason.unwrap().contains(&newer.to_string()));
}

#[tokio::test]
async fn a_diverged_update_branch_is_replaced() {
    let repo = GitopsRepo::new();
    let store = Store::new();
    repo.commit_to(
        DEV_BRANCH,
        "notes.txt",
        "hand-made\n",
        "A human commit on the bot's branch",
    );
    let base = repo.rev("main").unwrap();
    let (_, run) = run_default(&store, &job("dev", NEW_TAG), local_settings(&repo)).await;
    assert!(run.ok(), "{run:#?}");
    assert_eq!(
        repo.rev(&format!("{DEV_BRANCH}^")).as_deref(),
        Some(base.as_str())
    );
    assert_eq!(repo.show(DEV_BRANCH, "notes.txt"), None);
    assert_eq!(
        repo.changed_files("main", DEV_BRANCH),
        vec![overlay_path("dev")]
    );
}

#[tokio::test]
async fn a_push_race_recovers_within_the_retry_bound() {
    let repo = Arc::new(GitopsRepo::new());
    let store = Store::new();
    let calls = Arc::new(AtomicU32::new(0));
    let racer = {
        let repo = repo.clone();
        let calls = calls.clone();
        Arc::new(move |attempt: u32| {
            calls.fetch_add(1, Ordering::SeqCst);
            if attempt == 1 {
                // Another writer moves the branch between our fetch and our push.
                repo.commit_to(DEV_BRANCH, "race.txt", "first\n", "Concurrent writer");
            }
        })
    };
    let options = FlowOptions {
        before_push: Some(racer),
        ..FlowOptions::default()
    };
    let (_, run) = run(&store, &job("dev", NEW_TAG), local_settings(&repo), options).await;
    assert!(run.ok(), "{run:#?}");
    assert_eq!(run.summary.attempts, 2);
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    // The second attempt leased against the racer's commit and replaced it.
    assert_eq!(repo.show(DEV_BRANCH, "race.txt"), None);
    assert_eq!(
        repo.show(DEV_BRANCH, &overlay_path("dev")).unwrap(),
        dev_overlay(NEW_TAG)
    );
    let push_commands = run
        .git_invocations
        .iter()
        .filter(|argv| argv.get(1).map(String::as_str) == Some("push"))
        .count();
    assert_eq!(push_commands, 2);
}

#[tokio::test]
async fn a_race_lost_every_time_fails_after_the_bound() {
    let repo = Arc::new(GitopsRepo::new());
    let store = Store::new();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let racer = {
        let repo = repo.clone();
        let seen = seen.clone();
        Arc::new(move |attempt: u32| {
            seen.lock().unwrap().push(attempt);
            repo.commit_to(DEV_BRANCH, "race.txt", &format!("{attempt}\n"), "Writer");
        })
    };
    let options = FlowOptions {
        before_push: Some(racer),
        ..FlowOptions::default()
    };
    let (id, run) = run(&store, &job("dev", NEW_TAG), local_settings(&repo), options).await;
    assert!(!run.ok());
    assert_eq!(*seen.lock().unwrap(), vec![1, 2, 3]);
    let r = store.get(id).await;
    assert_eq!(r.status, Status::Failed);
    let reason = r.status_reason.unwrap();
    assert!(
        reason.contains("rejected 3 times") && reason.contains("stale info"),
        "{reason}"
    );
}

#[tokio::test]
async fn a_missing_overlay_fails_with_its_path() {
    let repo = GitopsRepo::new();
    let store = Store::new();
    let (id, run) = run_default(&store, &job("staging", NEW_TAG), local_settings(&repo)).await;
    assert!(!run.ok());
    let r = store.get(id).await;
    assert_eq!(r.status, Status::Failed);
    let reason = r.status_reason.unwrap();
    assert!(reason.contains(&overlay_path("staging")), "{reason}");
    assert_eq!(repo.branches(), vec!["main"]);
}

#[tokio::test]
async fn a_missing_base_branch_fails_with_gits_message() {
    let repo = GitopsRepo::new();
    let store = Store::new();
    let settings = settings(&["--repo-url", &repo.url(), "--base-branch", "trunk"]);
    let (id, run) = run_default(&store, &job("dev", NEW_TAG), settings).await;
    assert!(!run.ok());
    let reason = store.get(id).await.status_reason.unwrap();
    assert!(
        reason.contains("git fetch") && reason.contains("refs/heads/trunk"),
        "{reason}"
    );
}

#[tokio::test]
async fn a_bad_setting_is_reported_as_the_failure() {
    let store = Store::new();
    let (id, contract) = store.contract(job("dev", NEW_TAG)).await;
    let settings = gitops_task::gitops::Settings::from_args(&args(&[]));
    let run =
        gitops_task::gitops::run_job(&contract, settings, &store.store, FlowOptions::default())
            .await;
    assert!(!run.ok());
    let r = store.get(id).await;
    assert_eq!(r.status, Status::Failed);
    assert_eq!(
        r.status_reason.as_deref(),
        Some("configuration: GITOPS_REPO_URL: is missing")
    );
    assert!(run.git_invocations.is_empty());
}

#[tokio::test]
async fn a_contract_that_disagrees_with_the_record_is_refused() {
    let repo = GitopsRepo::new();
    let store = Store::new();
    let id = store.dispatched(&job("dev", NEW_TAG)).await;
    let forged = LaunchContract::gitops_pr(id, job("prod", NEW_TAG));
    let run = run_contract(&forged, &repo, &store).await;
    assert!(!run.ok());
    assert_eq!(store.get(id).await.status, Status::Failed);
    assert_eq!(repo.branches(), vec!["main"]);
}

#[tokio::test]
async fn a_preflight_failure_fails_naming_the_overlay_and_image() {
    let repo = GitopsRepo::new();
    let store = Store::new();
    // An image no container of the overlay uses: the edit alone would change nothing deployed.
    let mut unused = job("dev", NEW_TAG);
    unused.image = orchestrator_core::ImageName::parse("eddiewebb/not-deployed-here").unwrap();
    let (id, run) = run_default(&store, &unused, local_settings(&repo)).await;
    assert!(!run.ok());
    let r = store.get(id).await;
    assert_eq!(r.status, Status::Failed);
    let reason = r.status_reason.unwrap();
    assert!(
        reason.starts_with("preflight failed")
            && reason.contains(&overlay_path("dev"))
            && reason.contains("eddiewebb/not-deployed-here"),
        "{reason}"
    );
    assert!(
        !reason.contains("gitops-task-"),
        "no temporary path: {reason}"
    );
    assert_eq!(repo.branches(), vec!["main"], "nothing pushed");
}

/// A remote that accepts the connection and never answers: git is killed at the timeout and the
/// job fails saying so, instead of hanging the task until Fargate's own limit.
#[tokio::test]
async fn a_hanging_remote_is_cut_off_at_the_git_timeout() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for conn in listener.incoming().flatten() {
            held.push(conn); // keep it open, say nothing
        }
    });
    let store = Store::new();
    let settings = settings(&[
        "--repo-url",
        &format!("http://127.0.0.1:{port}/gitops.git"),
        "--github-token",
        "t0ken",
        "--git-timeout-secs",
        "1",
    ]);
    let started = Instant::now();
    let (id, run) = run_default(&store, &job("dev", NEW_TAG), settings).await;
    assert!(!run.ok());
    assert!(started.elapsed().as_secs() < 10, "{:?}", started.elapsed());
    let reason = store.get(id).await.status_reason.unwrap();
    assert!(
        reason.contains("git fetch") && reason.contains("did not finish within 1 s"),
        "{reason}"
    );
}

#[tokio::test]
async fn another_kind_of_job_is_not_run_and_its_record_is_left_alone() {
    let repo = GitopsRepo::new();
    let store = Store::new();
    let id = store.dispatched(&job("dev", NEW_TAG)).await;
    let remediation = LaunchContract::remediation(id);
    let run = run_contract(&remediation, &repo, &store).await;
    assert!(!run.ok());
    assert!(run.git_invocations.is_empty());
    assert_eq!(store.get(id).await.status, Status::Dispatched);
}

/// A gitops repository served through git's server side (`file://`), with a resource outside the
/// service's directory and an unrelated service, with or without `uploadpack.allowFilter`.
fn served_repo_with_a_shared_resource(allow_filter: bool) -> (GitopsRepo, String) {
    let repo = GitopsRepo::new();
    repo.commit_to(
        "main",
        "platform/common/namespace.yaml",
        "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: shared\n",
        "Shared namespace",
    );
    let overlay = dev_overlay(OLD_TAG).replace(
        "- ../../base\n",
        "- ../../base\n- ../../../../platform/common/namespace.yaml\n",
    );
    assert_ne!(
        overlay,
        dev_overlay(OLD_TAG),
        "the overlay lists the shared resource"
    );
    repo.commit_to(
        "main",
        &overlay_path("dev"),
        &overlay,
        "Use the shared namespace",
    );
    support::git(
        &repo.bare,
        &[
            "config",
            "uploadpack.allowFilter",
            &allow_filter.to_string(),
        ],
    );
    let url = format!("file://{}", repo.bare.display());
    (repo, url)
}

/// Runs the dev job against the served repository with extra `flags`, keeping the clone; checks
/// it pushed exactly the overlay; returns what the clone holds: the files on disk (of those the
/// job could need or not), and how many objects of HEAD it never fetched.
async fn run_keeping_the_clone(
    allow_filter: bool,
    flags: &[&str],
) -> (GitopsRepo, Vec<&'static str>, usize) {
    let (repo, url) = served_repo_with_a_shared_resource(allow_filter);
    let store = Store::new();
    let work = tempfile::tempdir().unwrap();
    let mut args = vec!["--repo-url", url.as_str()];
    args.extend_from_slice(flags);
    let (id, run) = run(
        &store,
        &job("dev", NEW_TAG),
        settings(&args),
        FlowOptions {
            work_root: Some(work.path().to_owned()),
            ..FlowOptions::default()
        },
    )
    .await;
    assert!(run.ok(), "{run:#?}");
    assert_eq!(run.summary.outcome, OutcomeKind::Succeeded);
    assert_eq!(
        repo.changed_files("main", DEV_BRANCH),
        vec![overlay_path("dev")]
    );
    let clone = work.path().join(format!("{id}-attempt-1"));
    let on_disk = [
        "README.md",
        "kustomize/circleci-samples/overlays/dev/kustomization.yaml",
        "kustomize/circleci-samples/base/deployment.yaml",
        "platform/common/namespace.yaml",
        "kustomize/circleci-samples/overlays/prod/kustomization.yaml",
        "kustomize/other/overlays/dev/kustomization.yaml",
    ]
    .into_iter()
    .filter(|p| clone.join(p).is_file())
    .collect();
    let missing = support::git(
        &clone,
        &["rev-list", "--objects", "--missing=print", "HEAD"],
    )
    .lines()
    .filter(|l| l.starts_with('?'))
    .count();
    (repo, on_disk, missing)
}

/// On a server that allows filters, the task fetches only what the edit and the preflight read:
/// the overlay's directory, then the base and the shared resource the preflight asks for; the
/// other environment and the other service are neither checked out nor fetched.
#[tokio::test]
async fn fetches_only_the_overlay_and_what_it_builds_from() {
    let (repo, on_disk, missing) = run_keeping_the_clone(true, &[]).await;
    let pushed = repo.show(DEV_BRANCH, &overlay_path("dev")).unwrap();
    assert!(pushed.contains(&format!("newTag: {NEW_TAG}\n")), "{pushed}");
    assert!(pushed.contains("- ../../../../platform/common/namespace.yaml\n"));
    assert_eq!(
        on_disk,
        [
            "README.md",
            "kustomize/circleci-samples/overlays/dev/kustomization.yaml",
            "kustomize/circleci-samples/base/deployment.yaml",
            "platform/common/namespace.yaml",
        ]
    );
    // The prod overlay's and the other service's blobs were never fetched.
    assert_eq!(missing, 2, "objects of HEAD not fetched");
}

/// A server without filter support sends every file at the tip; the job is the same.
#[tokio::test]
async fn a_server_without_filters_gets_a_plain_shallow_clone() {
    let (_, _, missing) = run_keeping_the_clone(false, &[]).await;
    assert_eq!(missing, 0, "every object of HEAD is in the clone");
}

/// `GITOPS_CLONE=shallow` fetches and checks out every file at the tip, even from a server that
/// allows filters.
#[tokio::test]
async fn the_shallow_clone_setting_fetches_every_file() {
    let (_, on_disk, missing) = run_keeping_the_clone(true, &["--clone", "shallow"]).await;
    assert_eq!(on_disk.len(), 6, "{on_disk:?}");
    assert_eq!(missing, 0);
}

/// The overlay's mode is kept and a symbolic link is refused (`support::overlay_mode_and_symlink`).
#[tokio::test]
async fn the_overlays_mode_is_kept_and_a_symlinked_overlay_is_refused_in_a_clone() {
    let repo = GitopsRepo::new();
    overlay_mode_and_symlink(&repo, || local_settings(&repo)).await;
}
