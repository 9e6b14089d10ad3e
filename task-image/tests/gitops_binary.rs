//! The `gitops-task` binary as the local server runs it: the launch contract and settings in its
//! environment, a SQLite store in DATA_DIR, a local bare gitops repository, GitHub on wiremock.

mod support;
#[path = "../../tests/support/tools.rs"]
mod tools;

use std::time::Instant;

use orchestrator_core::{LaunchContract, Status};
use support::*;

/// The binary for `contract`, reporting to the SQLite store in `store`'s data directory.
fn task(store: &Store, contract: &LaunchContract) -> tokio::process::Command {
    let mut cmd = task_command(contract);
    cmd.env("ORCH_STORE", "sqlite")
        .env("DATA_DIR", store.dir.path());
    cmd
}

fn last_line_json(stdout: &[u8]) -> serde_json::Value {
    let text = String::from_utf8_lossy(stdout);
    let line = text.lines().last().unwrap_or_default();
    serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

#[test]
fn run_help_documents_every_setting() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_gitops-task"))
        .args(["run", "--help"])
        .env("GITHUB_TOKEN", "canary-help-token")
        .output()
        .unwrap();
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    for var in [
        "GITOPS_REPO_URL",
        "GITOPS_BASE_BRANCH",
        "OVERLAY_PATH_TEMPLATE",
        "GITOPS_REVIEWERS",
        "GITOPS_TEAM_REVIEWERS",
        "GITOPS_LABELS",
        "GIT_AUTHOR_NAME",
        "GIT_AUTHOR_EMAIL",
        "GITHUB_API_URL",
        "GITHUB_REPOSITORY",
        "GITHUB_TOKEN",
        "RECORD_BASE_URL",
        "GIT_TIMEOUT_SECS",
        "GITOPS_PUSH_ATTEMPTS",
        "GITOPS_CLONE",
        "ORCH_STORE",
        "DATA_DIR",
        "TABLE_NAME",
    ] {
        assert!(help.contains(var), "{var} missing from:\n{help}");
    }
    assert!(
        !help.contains("canary-help-token"),
        "--help printed the token"
    );
}

/// Task start (process spawn) → PR opened → outcome reported → exit, for the lead's figure.
#[tokio::test]
async fn opens_the_pr_and_reports_it_with_no_subcommand() {
    let repo = GitopsRepo::new();
    let store = Store::new();
    let github = github_mock().await;
    let (id, contract) = store.contract(job("dev", NEW_TAG)).await;
    let started = Instant::now();
    let out = task(&store, &contract)
        .env("GITOPS_REPO_URL", repo.url())
        .env("GITHUB_API_URL", github.uri())
        .env("GITHUB_REPOSITORY", "acme/gitops")
        .env("GITHUB_TOKEN", "test-token")
        .env("GITOPS_REVIEWERS", "alice")
        .output()
        .await
        .unwrap();
    let elapsed = started.elapsed();
    let summary = last_line_json(&out.stdout);
    eprintln!(
        "TIMING task start -> PR opened (local bare repo, GitHub mock): {} ms on the task's clock; process spawn -> exit (report and clone cleanup included): {} ms",
        summary["elapsed_ms"],
        elapsed.as_millis()
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(summary["record_id"], id.to_string());
    assert_eq!(summary["outcome"], "succeeded");
    assert_eq!(summary["branch"], "update-image/dev/circleci-samples");
    assert_eq!(summary["pr_url"], PR_URL);
    assert_eq!(summary["reason"], serde_json::Value::Null);
    let record = store.get(id).await;
    assert_eq!(record.status, Status::Succeeded);
    assert_eq!(record.pr_url.as_deref(), Some(PR_URL));
    assert_eq!(record.outcome.unwrap()["outcome"], "succeeded");
}

#[tokio::test]
async fn a_missing_setting_is_reported_and_exits_1() {
    let store = Store::new();
    let (id, contract) = store.contract(job("dev", NEW_TAG)).await;
    let out = task(&store, &contract).arg("run").output().await.unwrap();
    assert_eq!(out.status.code(), Some(1));
    let summary = last_line_json(&out.stdout);
    assert_eq!(summary["outcome"], "failed");
    assert_eq!(
        summary["reason"],
        "configuration: GITOPS_REPO_URL: is missing"
    );
    let record = store.get(id).await;
    assert_eq!(record.status, Status::Failed);
    assert!(record.status_reason.unwrap().contains("GITOPS_REPO_URL"));
}

#[tokio::test]
async fn no_change_exits_0() {
    let repo = GitopsRepo::new();
    let store = Store::new();
    let (id, contract) = store.contract(job("dev", OLD_TAG)).await;
    let out = task(&store, &contract)
        .env("GITOPS_REPO_URL", repo.url())
        .output()
        .await
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(last_line_json(&out.stdout)["outcome"], "no_change");
    assert_eq!(store.get(id).await.status, Status::NoChange);
}

#[tokio::test]
async fn a_finished_record_is_not_run_again() {
    let repo = GitopsRepo::new();
    let store = Store::new();
    let (id, contract) = store.contract(job("dev", NEW_TAG)).await;
    let run = |s: &Store| {
        let mut c = task(s, &contract);
        c.env("GITOPS_REPO_URL", repo.url());
        c
    };
    let first = run(&store).output().await.unwrap();
    assert!(first.status.success());
    let commit = repo.rev("update-image/dev/circleci-samples").unwrap();
    let again = run(&store).output().await.unwrap();
    assert_eq!(again.status.code(), Some(1));
    let summary = last_line_json(&again.stdout);
    assert!(
        summary["reason"]
            .as_str()
            .unwrap()
            .contains("already `succeeded`"),
        "{summary}"
    );
    assert_eq!(store.get(id).await.status, Status::Succeeded, "left alone");
    assert_eq!(
        repo.rev("update-image/dev/circleci-samples").unwrap(),
        commit
    );
}

/// The SAM template passes optional parameters as empty variables: empty means "not set".
#[tokio::test]
async fn empty_variables_count_as_unset() {
    let repo = GitopsRepo::new();
    let store = Store::new();
    let (_, contract) = store.contract(job("dev", NEW_TAG)).await;
    let mut cmd = task(&store, &contract);
    cmd.env("GITOPS_REPO_URL", repo.url());
    for var in [
        "GITOPS_BASE_BRANCH",
        "OVERLAY_PATH_TEMPLATE",
        "GITOPS_REVIEWERS",
        "GITOPS_TEAM_REVIEWERS",
        "GITOPS_LABELS",
        "GIT_AUTHOR_NAME",
        "GIT_AUTHOR_EMAIL",
        "GITHUB_API_URL",
        "GITHUB_REPOSITORY",
        "GITHUB_TOKEN",
        "RECORD_BASE_URL",
        "GIT_TIMEOUT_SECS",
        "GITOPS_PUSH_ATTEMPTS",
        "GITOPS_CLONE",
    ] {
        cmd.env(var, "");
    }
    let out = cmd.output().await.unwrap();
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(last_line_json(&out.stdout)["outcome"], "succeeded");
    assert!(repo.message("update-image/dev/circleci-samples").contains(
        "Signed-off-by: gitops-orchestrator <gitops-orchestrator@users.noreply.github.com>"
    ));
}

/// ORCH_STORE=dynamodb: the task reports to DynamoDB (moto), configured the way Fargate
/// configures it, from the environment (AWS_ENDPOINT_URL here).
#[tokio::test]
async fn reports_to_dynamodb() {
    use orchestrator_core::store::RecordStore;
    use orchestrator_core::store::Transition;
    use orchestrator_core::store::dynamodb::{DynamoStore, TableNames};

    let Some(endpoint) = tools::moto_endpoint("reports_to_dynamodb") else {
        return;
    };
    let aws = orchestrator_clients::aws::loader()
        .endpoint_url(&endpoint)
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_dynamodb::config::Credentials::new(
            "test", "test", None, None, "test",
        ))
        .load()
        .await;
    let table = format!("gitops-task-{}", orchestrator_core::RecordId::new());
    let store = DynamoStore::new(
        aws_sdk_dynamodb::Client::new(&aws),
        TableNames::with_defaults(&table),
    );
    store.create_table().await.unwrap();
    let job = job("dev", NEW_TAG);
    let record = orchestrator_core::Record::received(
        orchestrator_core::Source::CircleciOrb,
        payload(NEW_TAG),
        Some(job.clone()),
    );
    store.create(&record).await.unwrap();
    store
        .transition(record.id, &Transition::to(Status::Dispatched))
        .await
        .unwrap();

    let repo = GitopsRepo::new();
    let contract = LaunchContract::gitops_pr(record.id, job);
    let out = task_command(&contract)
        .env("ORCH_STORE", "dynamodb")
        .env("TABLE_NAME", &table)
        .env("AWS_ENDPOINT_URL", &endpoint)
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("GITOPS_REPO_URL", repo.url())
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stored = store.get(record.id).await.unwrap().unwrap();
    assert_eq!(stored.status, Status::Succeeded);
    assert_eq!(
        stored.branch.as_deref(),
        Some("update-image/dev/circleci-samples")
    );
    assert_eq!(stored.outcome.unwrap()["outcome"], "succeeded");
}
