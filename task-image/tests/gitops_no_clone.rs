//! The no-clone mode (`GITOPS_CLONE=github-api`) end to end, in-process: the real flow, edit,
//! preflight and GitHub client against a GitHub mock whose Git Database API is backed by a real
//! bare repository (`support::github_git`), so that every check below reads the repository
//! itself: the commit, its parent, its trailers, the branch and what the lease let through.

mod support;

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use gitops_task::gitops::{FlowOptions, OutcomeKind, Settings};
use orchestrator_core::{LaunchContract, Status};
use serde_json::{Value, json};
use support::github_git::{self, BOT_EMAIL, BOT_NAME};
use support::*;
use wiremock::MockServer;

const DEV_BRANCH: &str = "update-image/dev/circleci-samples";
const ZERO: &str = "0000000000000000000000000000000000000000";

/// The PR mocks of the other gitops tests plus the Git Database API over `repo`.
async fn github(repo: &GitopsRepo) -> MockServer {
    let server = github_mock().await;
    github_git::mount(&server, &repo.bare).await;
    server
}

fn api_settings(server: &MockServer) -> Settings {
    settings(&[
        "--repo-url",
        "https://github.com/acme/gitops.git",
        "--github-api-url",
        &server.uri(),
        "--github-token",
        "test-token",
        "--clone",
        "github-api",
        "--reviewers",
        "alice,bob",
        "--labels",
        "gitops,automated",
        "--record-base-url",
        "https://orchestrator.example.com/",
    ])
}

/// Requests whose method is `m` and whose path is `p`, or starts with it when it ends in `/`.
fn matching<'a>(
    requests: &'a [(String, String, Value)],
    m: &str,
    p: &str,
) -> Vec<&'a (String, String, Value)> {
    requests
        .iter()
        .filter(|(rm, rp, _)| rm == m && (rp == p || (p.ends_with('/') && rp.starts_with(p))))
        .collect()
}

const GIT: &str = "/repos/acme/gitops/git/";

#[tokio::test]
async fn opens_a_pr_with_one_commit_made_through_the_api_and_no_clone() {
    let repo = GitopsRepo::new();
    let server = github(&repo).await;
    let store = Store::new();
    let base = repo.rev("main").unwrap();

    let started = Instant::now();
    let (id, run) = run_default(&store, &job("dev", NEW_TAG), api_settings(&server)).await;
    let elapsed = started.elapsed();
    let requests = github_requests(&server).await;
    let git_calls = requests
        .iter()
        .filter(|(_, p, _)| p.starts_with(GIT))
        .count();
    let other = requests.len() - git_calls;
    eprintln!(
        "TIMING no clone (GITOPS_CLONE=github-api, GitHub mock over a local bare repo): task start -> PR opened {} ms on the task's clock; whole run {} ms; {} API calls ({} Git Database, {} pull request and repository)",
        run.summary.elapsed_ms,
        elapsed.as_millis(),
        requests.len(),
        git_calls,
        other
    );
    // For scripts/bench.sh's one table (scripts/python/bench_table.py).
    eprintln!(
        "FIGURE gitops small (test repository)|task start -> PR opened, GITOPS_CLONE=github-api (no clone; GitHub mock over a local bare repository)|{} ms|{} API calls",
        run.summary.elapsed_ms,
        requests.len()
    );
    assert!(run.ok(), "{run:#?}");
    assert_eq!(run.summary.outcome, OutcomeKind::Succeeded);
    assert_eq!(run.summary.pr_url.as_deref(), Some(PR_URL));
    assert_eq!(run.summary.pr_created, Some(true));
    assert!(
        run.git_invocations.is_empty(),
        "no git command at all: {:?}",
        run.git_invocations
    );

    // The repository: one commit on the base tip changing one line of the overlay.
    let commit = repo.rev(DEV_BRANCH).unwrap();
    assert_eq!(run.summary.commit.as_deref(), Some(commit.as_str()));
    assert_eq!(
        repo.rev(&format!("{DEV_BRANCH}^")).as_deref(),
        Some(base.as_str())
    );
    assert_eq!(
        repo.show(DEV_BRANCH, &overlay_path("dev")).unwrap(),
        dev_overlay(OLD_TAG).replace(OLD_TAG, NEW_TAG)
    );
    assert_eq!(
        git(&repo.bare, &["diff", "--numstat", "main", DEV_BRANCH]).trim(),
        format!("1\t1\t{}", overlay_path("dev"))
    );
    let trailers = git(
        &repo.bare,
        &["log", "-1", "--format=%(trailers:only,unfold)", DEV_BRANCH],
    );
    assert_eq!(
        trailers.trim(),
        format!(
            "Orchestrator-Record: {id}\nSigned-off-by: gitops-orchestrator <gitops-orchestrator@users.noreply.github.com>"
        )
    );
    let message = repo.message(DEV_BRANCH);
    assert!(
        message.starts_with("Update circleci-samples image in dev to 8f59df9\n"),
        "{message}"
    );
    assert!(message.contains(&format!("{IMAGE}: {OLD_TAG} → {NEW_TAG}")));
    // GitHub made the commit as the App: no author or committer was sent (what gets it signed).
    assert_eq!(
        git(
            &repo.bare,
            &["log", "-1", "--format=%an <%ae>|%cn", DEV_BRANCH]
        )
        .trim(),
        format!("{BOT_NAME} <{BOT_EMAIL}>|{BOT_NAME}")
    );
    let commits = matching(&requests, "POST", &format!("{GIT}commits"));
    assert_eq!(commits.len(), 1);
    let body = &commits[0].2;
    for custom in ["author", "committer", "signature"] {
        assert!(body.get(custom).is_none(), "{custom} sent: {body}");
    }
    assert_eq!(body["parents"], json!([base]));
    // A new branch is created with POST git/refs (fails if it exists: the lease "absent").
    let refs = matching(&requests, "POST", &format!("{GIT}refs"));
    assert_eq!(refs.len(), 1);
    assert_eq!(
        refs[0].2,
        json!({ "ref": format!("refs/heads/{DEV_BRANCH}"), "sha": commit })
    );

    // Only what the edit and the preflight read was fetched: the overlay, then ../../base.
    let blob = |p: &str| repo.rev(&format!("main:{p}")).unwrap();
    let mut fetched: Vec<String> = matching(&requests, "GET", &format!("{GIT}blobs/"))
        .iter()
        .map(|(_, p, _)| p.rsplit('/').next().unwrap().to_owned())
        .collect();
    fetched.sort();
    let mut wanted = vec![
        blob(&overlay_path("dev")),
        blob("kustomize/circleci-samples/base/kustomization.yaml"),
        blob("kustomize/circleci-samples/base/deployment.yaml"),
    ];
    wanted.sort();
    assert_eq!(fetched, wanted);
    assert_eq!(
        matching(&requests, "GET", &format!("{GIT}trees/")).len(),
        6,
        "root, kustomize, circleci-samples, overlays, dev, base: each listed once"
    );

    // The same pull request flow.
    let create = matching(&requests, "POST", "/repos/acme/gitops/pulls");
    assert_eq!(create.len(), 1);
    assert_eq!(create[0].2["head"], DEV_BRANCH);
    assert_eq!(create[0].2["base"], "main");
    assert_eq!(
        create[0].2["title"],
        "Update circleci-samples image in dev to 8f59df9"
    );
    assert!(create[0].2["body"].as_str().unwrap().contains(&format!(
        "https://orchestrator.example.com/pullrequests/{id}"
    )));
    let reviewers = matching(
        &requests,
        "POST",
        "/repos/acme/gitops/pulls/7/requested_reviewers",
    );
    assert_eq!(reviewers[0].2["reviewers"], json!(["alice", "bob"]));
    let labels = matching(&requests, "POST", "/repos/acme/gitops/issues/7/labels");
    assert_eq!(labels[0].2["labels"], json!(["gitops", "automated"]));

    let record = store.get(id).await;
    assert_eq!(record.status, Status::Succeeded);
    assert_eq!(record.branch.as_deref(), Some(DEV_BRANCH));
    assert_eq!(record.pr_url.as_deref(), Some(PR_URL));
    assert_eq!(
        record.outcome.as_ref().unwrap()["old_tag"].as_str(),
        Some(OLD_TAG)
    );
}

/// The same job again: the branch already has exactly this tree, so no commit and no ref
/// update; the open PR is updated.
#[tokio::test]
async fn a_rerun_makes_no_commit_and_updates_the_open_pr() {
    let repo = GitopsRepo::new();
    let server = github(&repo).await;
    let store = Store::new();
    let (_, run1) = run_default(&store, &job("dev", NEW_TAG), api_settings(&server)).await;
    assert!(run1.ok(), "{run1:#?}");
    let commit = repo.rev(DEV_BRANCH).unwrap();

    let (_, run2) = run_default(&store, &job("dev", NEW_TAG), api_settings(&server)).await;
    assert!(run2.ok(), "{run2:#?}");
    assert_eq!(run2.summary.outcome, OutcomeKind::Succeeded);
    assert!(!run2.summary.pushed);
    assert_eq!(run2.summary.commit.as_deref(), Some(commit.as_str()));
    assert_eq!(run2.summary.pr_created, Some(false));
    assert_eq!(repo.rev(DEV_BRANCH).unwrap(), commit);
    let requests = github_requests(&server).await;
    assert_eq!(
        matching(&requests, "POST", &format!("{GIT}commits")).len(),
        1
    );
    assert_eq!(matching(&requests, "POST", &format!("{GIT}refs")).len(), 1);
    assert!(matching(&requests, "POST", "/graphql").is_empty());
    assert_eq!(
        matching(&requests, "POST", "/repos/acme/gitops/pulls").len(),
        1
    );
    assert_eq!(
        matching(&requests, "PATCH", "/repos/acme/gitops/pulls/7").len(),
        1
    );
}

/// A newer build replaces the branch: rebuilt on the new base tip, moved with `updateRefs`
/// leased on the sha read, and the open PR updated.
#[tokio::test]
async fn a_newer_build_replaces_the_branch_under_a_lease_and_updates_the_pr() {
    let repo = GitopsRepo::new();
    let server = github(&repo).await;
    let store = Store::new();
    let (_, run1) = run_default(&store, &job("dev", NEW_TAG), api_settings(&server)).await;
    assert!(run1.ok(), "{run1:#?}");
    let older = repo.rev(DEV_BRANCH).unwrap();
    let base = repo.commit_to("main", "README.md", "# gitops\n\nMoved on.\n", "Docs");
    let first_run = github_requests(&server).await.len();

    let (_, run2) = run_default(&store, &job("dev", NEWER_TAG), api_settings(&server)).await;
    assert!(run2.ok(), "{run2:#?}");
    assert!(run2.summary.pushed);
    assert_eq!(run2.summary.pr_created, Some(false));
    let newer = repo.rev(DEV_BRANCH).unwrap();
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
    let requests = github_requests(&server).await;
    eprintln!(
        "TIMING no clone, a newer build replacing the branch and updating the open PR: {} ms on the task's clock, {} API calls",
        run2.summary.elapsed_ms,
        requests.len() - first_run
    );
    let updates = matching(&requests, "POST", "/graphql");
    assert_eq!(updates.len(), 1);
    let input = &updates[0].2["variables"]["input"];
    assert_eq!(input["repositoryId"], github_git::REPO_NODE_ID);
    assert_eq!(
        input["refUpdates"],
        json!([{ "name": format!("refs/heads/{DEV_BRANCH}"), "beforeOid": older, "afterOid": newer, "force": true }])
    );
    let patch = matching(&requests, "PATCH", "/repos/acme/gitops/pulls/7");
    assert_eq!(
        patch[0].2["title"],
        "Update circleci-samples image in dev to c0ffee0"
    );
}

/// The branch moves between our read and our update: the lease fails in the repository, a new
/// attempt reads again and replaces the racer's commit.
#[tokio::test]
async fn a_lost_race_starts_a_new_attempt_which_succeeds() {
    let repo = Arc::new(GitopsRepo::new());
    let server = github(&repo).await;
    let store = Store::new();
    let (_, run1) = run_default(&store, &job("dev", NEW_TAG), api_settings(&server)).await;
    assert!(run1.ok(), "{run1:#?}");
    let before = repo.rev(DEV_BRANCH).unwrap();

    let racer_commit = Arc::new(Mutex::new(None));
    let calls = Arc::new(AtomicU32::new(0));
    let racer = {
        let (repo, racer_commit, calls) = (repo.clone(), racer_commit.clone(), calls.clone());
        Arc::new(move |attempt: u32| {
            calls.fetch_add(1, Ordering::SeqCst);
            if attempt == 1 {
                let sha = repo.commit_to(DEV_BRANCH, "race.txt", "first\n", "Concurrent writer");
                *racer_commit.lock().unwrap() = Some(sha);
            }
        })
    };
    let options = FlowOptions {
        before_push: Some(racer),
        ..FlowOptions::default()
    };
    let (_, run) = run(
        &store,
        &job("dev", NEWER_TAG),
        api_settings(&server),
        options,
    )
    .await;
    assert!(run.ok(), "{run:#?}");
    assert_eq!(run.summary.attempts, 2);
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    assert_eq!(repo.show(DEV_BRANCH, "race.txt"), None, "racer replaced");
    assert_eq!(
        repo.show(DEV_BRANCH, &overlay_path("dev")).unwrap(),
        dev_overlay(NEWER_TAG)
    );
    let racer_sha = racer_commit.lock().unwrap().clone().unwrap();
    let requests = github_requests(&server).await;
    let leases: Vec<Value> = matching(&requests, "POST", "/graphql")
        .iter()
        .map(|(_, _, b)| b["variables"]["input"]["refUpdates"][0]["beforeOid"].clone())
        .collect();
    assert_eq!(leases, [json!(before), json!(racer_sha)]);
    assert!(!run.git_invocations.iter().any(|a| a.len() > 1));
}

/// Creating the branch races too: someone creates it between our read and our create.
#[tokio::test]
async fn a_branch_created_meanwhile_is_a_lost_race_too() {
    let repo = Arc::new(GitopsRepo::new());
    let server = github(&repo).await;
    let store = Store::new();
    let racer = {
        let repo = repo.clone();
        Arc::new(move |attempt: u32| {
            if attempt == 1 {
                repo.commit_to(DEV_BRANCH, "race.txt", "first\n", "Concurrent writer");
            }
        })
    };
    let options = FlowOptions {
        before_push: Some(racer),
        ..FlowOptions::default()
    };
    let (_, run) = run(&store, &job("dev", NEW_TAG), api_settings(&server), options).await;
    assert!(run.ok(), "{run:#?}");
    assert_eq!(run.summary.attempts, 2);
    assert_eq!(repo.show(DEV_BRANCH, "race.txt"), None);
    assert_eq!(
        repo.show(DEV_BRANCH, &overlay_path("dev")).unwrap(),
        dev_overlay(NEW_TAG)
    );
}

#[tokio::test]
async fn an_older_event_leaves_the_branch_of_a_newer_one_alone() {
    let repo = GitopsRepo::new();
    let server = github(&repo).await;
    let store = Store::new();
    let older_job = job("dev", NEW_TAG);
    let newer_job = job("dev", NEWER_TAG);
    let older = store.dispatched(&older_job).await;
    let newer = store.dispatched(&newer_job).await;
    for (id, j) in [(newer, &newer_job), (older, &older_job)] {
        let contract = LaunchContract::gitops_pr(id, j.clone());
        let run = gitops_task::gitops::run_job(
            &contract,
            Ok(api_settings(&server)),
            &store.store,
            FlowOptions::default(),
        )
        .await;
        assert!(run.ok(), "{run:#?}");
    }
    assert_eq!(
        repo.show(DEV_BRANCH, &overlay_path("dev")).unwrap(),
        dev_overlay(NEWER_TAG)
    );
    let r = store.get(older).await;
    assert_eq!(r.status, Status::NoChange);
    assert!(r.status_reason.unwrap().contains(&newer.to_string()));
    let requests = github_requests(&server).await;
    assert_eq!(
        matching(&requests, "POST", &format!("{GIT}commits")).len(),
        1
    );
}

#[tokio::test]
async fn no_change_when_the_base_has_the_tag_and_a_stale_branch_is_deleted_under_a_lease() {
    let repo = GitopsRepo::new();
    let server = github(&repo).await;
    let store = Store::new();
    let (id, run) = run_default(&store, &job("dev", OLD_TAG), api_settings(&server)).await;
    assert!(run.ok(), "{run:#?}");
    assert_eq!(run.summary.outcome, OutcomeKind::NoChange);
    assert_eq!(repo.branches(), vec!["main"]);
    let requests = github_requests(&server).await;
    assert!(
        requests.iter().all(|(m, _, _)| m == "GET"),
        "reads only: {requests:#?}"
    );
    assert!(
        store
            .get(id)
            .await
            .status_reason
            .unwrap()
            .contains("already uses")
    );

    // A branch for NEW_TAG, then the base gets NEWER_TAG by hand: the branch would roll back.
    let (_, run1) = run_default(&store, &job("dev", NEW_TAG), api_settings(&server)).await;
    assert!(run1.ok(), "{run1:#?}");
    let stale = repo.rev(DEV_BRANCH).unwrap();
    repo.commit_to(
        "main",
        &overlay_path("dev"),
        &dev_overlay(NEWER_TAG),
        "Hotfix",
    );
    let (id, run2) = run_default(&store, &job("dev", NEWER_TAG), api_settings(&server)).await;
    assert!(run2.ok(), "{run2:#?}");
    assert_eq!(run2.summary.outcome, OutcomeKind::NoChange);
    assert_eq!(repo.rev(DEV_BRANCH), None, "stale branch deleted");
    let reason = store.get(id).await.status_reason.unwrap();
    assert!(reason.contains("deleted the stale branch"), "{reason}");
    let requests = github_requests(&server).await;
    let delete = matching(&requests, "POST", "/graphql");
    assert_eq!(
        delete[0].2["variables"]["input"]["refUpdates"][0],
        json!({ "name": format!("refs/heads/{DEV_BRANCH}"), "beforeOid": stale, "afterOid": ZERO, "force": true })
    );
}

/// The preflight reads a resource outside the service's directory: it is fetched on demand, and
/// an image the overlay does not deploy still fails the preflight (it runs on what was fetched).
#[tokio::test]
async fn the_preflight_fetches_what_the_overlay_builds_from() {
    let repo = GitopsRepo::new();
    repo.commit_to(
        "main",
        "platform/common/namespace.yaml",
        "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: shared\n",
        "Shared namespace",
    );
    repo.commit_to(
        "main",
        "platform/common/kustomization.yaml",
        "resources:\n- sidecar.yaml\n",
        "Shared components",
    );
    repo.commit_to(
        "main",
        "platform/common/sidecar.yaml",
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: sidecar\nspec:\n  containers:\n  - name: s\n    image: busybox:1\n",
        "Sidecar",
    );
    repo.commit_to(
        "main",
        "platform/common/unused.yaml",
        "kind: ConfigMap\n",
        "Not listed anywhere",
    );
    repo.commit_to(
        "main",
        &overlay_path("dev"),
        // A file of the shared directory is listed first, so that directory is on disk before
        // its own kustomization is needed.
        &dev_overlay(OLD_TAG).replace(
            "- ../../base\n",
            "- ../../../../platform/common/namespace.yaml\n- ../../../../platform/common\n- ../../base\n",
        ),
        "Use the shared namespace",
    );
    let server = github(&repo).await;
    let store = Store::new();
    let work = tempfile::tempdir().unwrap();
    let options = FlowOptions {
        work_root: Some(work.path().to_owned()),
        ..FlowOptions::default()
    };
    let (id, run) = run(
        &store,
        &job("dev", NEW_TAG),
        api_settings(&server),
        options.clone(),
    )
    .await;
    assert!(run.ok(), "{run:#?}");
    let dir = work.path().join(format!("{id}-attempt-1"));
    let mut on_disk: Vec<String> = git(&repo.bare, &["ls-tree", "-r", "--name-only", "main"])
        .lines()
        .filter(|p| dir.join(p).is_file())
        .map(str::to_owned)
        .collect();
    on_disk.sort();
    assert_eq!(
        on_disk,
        [
            "kustomize/circleci-samples/base/deployment.yaml",
            "kustomize/circleci-samples/base/kustomization.yaml",
            "kustomize/circleci-samples/overlays/dev/kustomization.yaml",
            "platform/common/kustomization.yaml",
            "platform/common/namespace.yaml",
            "platform/common/sidecar.yaml",
        ]
    );

    let mut unused = job("prod", NEW_TAG);
    unused.image = orchestrator_core::ImageName::parse("eddiewebb/not-deployed-here").unwrap();
    let (id, failed) = support::run(&store, &unused, api_settings(&server), options).await;
    assert!(!failed.ok());
    let reason = store.get(id).await.status_reason.unwrap();
    assert!(
        reason.starts_with("preflight failed") && reason.contains(&overlay_path("prod")),
        "{reason}"
    );
    assert!(
        !reason.contains(&work.path().display().to_string()),
        "{reason}"
    );
}

#[tokio::test]
async fn a_repository_not_on_github_is_a_configuration_error() {
    let repo = GitopsRepo::new();
    let store = Store::new();
    let (id, contract) = store.contract(job("dev", NEW_TAG)).await;
    let settings = Settings::from_args(&args(&[
        "--repo-url",
        &repo.url(),
        "--clone",
        "github-api",
        "--github-api-url",
        "http://127.0.0.1:9",
        "--github-repository",
        "acme/gitops",
        "--github-token",
        "t",
    ]));
    let run =
        gitops_task::gitops::run_job(&contract, settings, &store.store, FlowOptions::default())
            .await;
    assert!(!run.ok());
    let r = store.get(id).await;
    assert_eq!(r.status, Status::Failed);
    let reason = r.status_reason.unwrap();
    assert!(
        reason.starts_with(
            "configuration: GITOPS_CLONE: `github-api` needs the gitops repository on GitHub"
        ),
        "{reason}"
    );
    assert_eq!(repo.branches(), vec!["main"]);
}

/// The overlay's mode is kept and a symbolic link is refused (`support::overlay_mode_and_symlink`).
#[tokio::test]
async fn the_overlays_mode_is_kept_and_a_symlinked_overlay_is_refused_through_the_api() {
    let repo = GitopsRepo::new();
    let server = github(&repo).await;
    overlay_mode_and_symlink(&repo, || api_settings(&server)).await;
}
