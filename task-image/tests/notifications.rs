//! Notifications from the `gitops-task` binary: after its outcome write, one message per target
//! (Slack and the signed webhook, on wiremock), exact; the same job run again (a retried report)
//! sends nothing more; a failing target leaves the outcome as it is; the secrets reach neither
//! the output nor the record.

mod support;
#[path = "../../tests/support/tools.rs"]
mod tools;

use base64::Engine;
use orchestrator_core::{LaunchContract, Status};
use serde_json::{Value, json};
use support::*;
use wiremock::matchers::method;
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

const SLACK_PATH: &str = "/services/T0/B0/slack-url-canary";
const HOOK_SECRET: &str = "hook-secret-canary";
const CONSOLE: &str = "https://gitops.example.com";
const RULES: &str = "rules:\n  - match: {service: \"circleci-*\", environment: \"dev\"}\n    events: [pr_opened, pr_updated, no_change, task_failed]\n    targets: [slack, webhook]\n";

async fn target(status: u16) -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(status))
        .mount(&server)
        .await;
    server
}

fn task(
    store: &Store,
    contract: &LaunchContract,
    slack: &MockServer,
    hook: &MockServer,
) -> tokio::process::Command {
    let mut cmd = task_command(contract);
    cmd.env("ORCH_STORE", "sqlite")
        .env("DATA_DIR", store.dir.path())
        .env("NOTIFY_RULES", RULES)
        .env(
            "NOTIFY_SLACK_WEBHOOK_URL",
            format!("{}{SLACK_PATH}", slack.uri()),
        )
        .env("NOTIFY_WEBHOOK_URL", format!("{}/events", hook.uri()))
        .env("NOTIFY_WEBHOOK_SECRET", HOOK_SECRET)
        .env("CONSOLE_BASE_URL", CONSOLE);
    cmd
}

async fn received(server: &MockServer) -> Vec<Request> {
    server.received_requests().await.unwrap()
}

fn signature_ok(req: &Request) -> bool {
    use hmac::{KeyInit, Mac};
    let h = |n: &str| req.headers.get(n).unwrap().to_str().unwrap().to_owned();
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(HOOK_SECRET.as_bytes()).unwrap();
    mac.update(format!("{}.", h("x-orchestrator-timestamp")).as_bytes());
    mac.update(&req.body);
    let sig = h("x-orchestrator-signature");
    let raw = base64::engine::general_purpose::STANDARD
        .decode(sig.strip_prefix("v1,").unwrap())
        .unwrap();
    mac.verify_slice(&raw).is_ok()
}

#[tokio::test]
async fn the_pr_opened_is_told_once_even_when_the_task_runs_again() {
    let repo = GitopsRepo::new();
    let store = Store::new();
    let github = github_mock().await;
    let (slack, hook) = (target(200).await, target(200).await);
    let (id, contract) = store.contract(job("dev", NEW_TAG)).await;
    let run = || {
        let mut cmd = task(&store, &contract, &slack, &hook);
        cmd.env("GITOPS_REPO_URL", repo.url())
            .env("GITHUB_API_URL", github.uri())
            .env("GITHUB_REPOSITORY", "acme/gitops")
            .env("GITHUB_TOKEN", "test-token");
        cmd
    };
    let out = run().output().await.unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{stderr}");
    let record = store.get(id).await;
    assert_eq!(record.status, Status::Succeeded);
    let old = record.outcome.as_ref().unwrap()["old_tag"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(old, OLD_TAG);

    let key = format!("{id}:succeeded:1");
    let slack_got = received(&slack).await;
    assert_eq!(slack_got.len(), 1, "{stderr}");
    assert_eq!(slack_got[0].url.path(), SLACK_PATH);
    assert_eq!(
        slack_got[0].headers.get("idempotency-key").unwrap(),
        key.as_str()
    );
    let body: Value = serde_json::from_slice(&slack_got[0].body).unwrap();
    assert_eq!(
        body,
        json!({"text": format!(
            "Pull request opened: *{SERVICE}* in *dev*: `{OLD_TAG}` → `{NEW_TAG}`\n\
             Pull request: <{PR_URL}>\n\
             Record: <{CONSOLE}/console/records/{id}|{id}>"
        )})
    );
    let hook_got = received(&hook).await;
    assert_eq!(hook_got.len(), 1);
    assert!(signature_ok(&hook_got[0]));
    let body: Value = serde_json::from_slice(&hook_got[0].body).unwrap();
    assert_eq!(body["event"], "pr_opened");
    assert_eq!(body["idempotency_key"], key);
    assert_eq!(body["pr_url"], PR_URL);
    assert_eq!(
        (body["old_tag"].as_str(), body["new_tag"].as_str()),
        (Some(OLD_TAG), Some(NEW_TAG))
    );

    // The same job again (a launcher's retry, a duplicate task): the record is final, the task
    // reports nothing, and nobody is told twice.
    let again = run().output().await.unwrap();
    assert!(!again.status.success());
    assert_eq!(received(&slack).await.len(), 1);
    assert_eq!(received(&hook).await.len(), 1);

    // The secrets went nowhere but to their targets.
    let stored = serde_json::to_string(&store.get(id).await).unwrap();
    for text in [
        stderr,
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&again.stderr).into_owned(),
        stored,
    ] {
        assert!(
            !text.contains("slack-url-canary") && !text.contains(HOOK_SECRET),
            "{text}"
        );
    }
}

#[tokio::test]
async fn a_failing_target_leaves_the_outcome_as_it_is() {
    let repo = GitopsRepo::new();
    let store = Store::new();
    let (slack, hook) = (target(500).await, target(200).await);
    let (id, contract) = store.contract(job("dev", OLD_TAG)).await;
    let out = task(&store, &contract, &slack, &hook)
        .env("GITOPS_REPO_URL", repo.url())
        .output()
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert_eq!(store.get(id).await.status, Status::NoChange);
    assert_eq!(received(&slack).await.len(), 1, "Slack was asked once");
    assert!(stderr.contains("notification not sent"), "{stderr}");
    assert!(stderr.contains("answered HTTP 500"), "{stderr}");
    assert!(!stderr.contains("slack-url-canary"), "{stderr}");
    let hook_got = received(&hook).await;
    assert_eq!(hook_got.len(), 1);
    let body: Value = serde_json::from_slice(&hook_got[0].body).unwrap();
    assert_eq!(body["event"], "no_change");
    assert_eq!(body["idempotency_key"], format!("{id}:no_change:1"));
}

#[tokio::test]
async fn notification_settings_it_cannot_use_never_stop_the_job() {
    let repo = GitopsRepo::new();
    let store = Store::new();
    let (slack, hook) = (target(200).await, target(200).await);
    let (id, contract) = store.contract(job("dev", OLD_TAG)).await;
    let out = task(&store, &contract, &slack, &hook)
        .env("GITOPS_REPO_URL", repo.url())
        .env(
            "NOTIFY_RULES",
            "rules:\n  - events: [pr_opend]\n    targets: [slack]\n",
        )
        .output()
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert_eq!(store.get(id).await.status, Status::NoChange);
    assert!(
        stderr.contains("notifications are off") && stderr.contains("rules[0].events[0]"),
        "{stderr}"
    );
    assert!(received(&slack).await.is_empty());
}
