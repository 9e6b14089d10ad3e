//! A Port self-service "deploy image" run through the gitops job, in-process: a seeded gitops
//! repository, a GitHub mock, and a Port mock that records the exact reports to the run. The
//! pull request body names the Port user and links the run; the run ends `SUCCESS` with the PR.

mod support;

use std::time::Duration;

use gitops_task::gitops::{self, FlowOptions, OutcomeKind};
use gitops_task::port_run::PortRunSettings;
use orchestrator_core::store::{RecordStore, Transition};
use orchestrator_core::{LaunchContract, PortRun, PortRunKind, Record, Secret, Source, Status};
use serde_json::{Value, json};
use support::*;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const RUN: &str = "r_Dp7mW2zX9cV5kB1q";
const USER: &str = "dana@example.com";

async fn port_mock() -> MockServer {
    let port = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/auth/access_token"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"accessToken": "tok"})))
        .mount(&port)
        .await;
    Mock::given(wiremock::matchers::path_regex("^/v1/actions/runs/"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"ok": true})))
        .mount(&port)
        .await;
    port
}

async fn run_requests(port: &MockServer) -> Vec<(String, String, Value)> {
    port.received_requests()
        .await
        .unwrap()
        .into_iter()
        .filter(|r| r.url.path().starts_with("/v1/actions/runs/"))
        .map(|r| {
            (
                r.method.to_string(),
                r.url.path().to_owned(),
                serde_json::from_slice(&r.body).unwrap(),
            )
        })
        .collect()
}

/// A dispatched record of a deploy action run, as the intake writes it.
async fn dispatched_run(store: &Store, tag: &str) -> LaunchContract {
    let job = job("dev", tag);
    let mut record = Record::received(Source::Port, json!({"runId": RUN}), Some(job.clone()));
    record.port_run = Some(PortRun {
        id: RUN.into(),
        kind: PortRunKind::Action,
        identifier: Some("deploy_image".into()),
        user: Some(USER.into()),
    });
    store.store.create(&record).await.unwrap();
    store
        .store
        .transition(
            record.id,
            &Transition::to(Status::Dispatched).task_arn("local:1"),
        )
        .await
        .unwrap();
    LaunchContract::gitops_pr(record.id, job)
}

fn port_settings(port: &MockServer) -> PortRunSettings {
    PortRunSettings {
        api: Some(port_runs::PortApi {
            base: port.uri().parse().unwrap(),
            client_id: "id".into(),
            client_secret: Secret::new("secret"),
        }),
        app_url: "https://app.port.io".into(),
        timeout: Duration::from_secs(5),
    }
}

#[tokio::test]
async fn a_deploy_run_opens_the_pr_naming_the_user_and_ends_success_with_its_link() {
    let repo = GitopsRepo::new();
    let github = github_mock().await;
    let port = port_mock().await;
    let store = Store::new();
    let contract = dispatched_run(&store, NEW_TAG).await;
    let id = contract.record_id;
    let run = gitops::run_job_reported(
        &contract,
        Ok(settings_with_github(&repo, &github.uri())),
        &store.store,
        FlowOptions::default(),
        &port_settings(&port),
    )
    .await;
    assert_eq!(
        run.summary.outcome,
        OutcomeKind::Succeeded,
        "{:?}",
        run.summary
    );
    assert!(
        run.summary.port_report.is_empty(),
        "{:?}",
        run.summary.port_report
    );

    // The PR body names who ran it in Port and links the run.
    let created = github_requests(&github)
        .await
        .into_iter()
        .find(|(m, p, _)| m == "POST" && p == "/repos/acme/gitops/pulls")
        .expect("a PR was created");
    let body = created.2["body"].as_str().unwrap();
    assert!(
        body.contains(&format!("| Requested by | `{USER}` in Port |")),
        "{body}"
    );
    assert!(
        body.contains(&format!(
            "| Port run | https://app.port.io/organization/run?runId={RUN} |"
        )),
        "{body}"
    );

    let record_url = format!("https://orchestrator.example.com/pullrequests/{id}");
    let what = format!("{SERVICE} in dev to {NEW_TAG}");
    let run_path = format!("/v1/actions/runs/{RUN}");
    assert_eq!(
        run_requests(&port).await,
        vec![
            (
                "PATCH".into(),
                run_path.clone(),
                json!({"status": "IN_PROGRESS",
                       "statusLabel": format!("Opening the gitops pull request: {what}"),
                       "link": [record_url]})
            ),
            (
                "POST".into(),
                format!("{run_path}/logs"),
                json!({"message": format!("Gitops pull request started: {what}")})
            ),
            (
                "POST".into(),
                format!("{run_path}/logs"),
                json!({"message": format!("Gitops pull request finished: {PR_URL}")})
            ),
            (
                "PATCH".into(),
                run_path,
                json!({"status": "SUCCESS",
                       "statusLabel": format!("Pull request opened: {what}"),
                       "link": [PR_URL, record_url]})
            ),
        ]
    );
    assert_eq!(store.get(id).await.status, Status::Succeeded);
}

#[tokio::test]
async fn a_port_that_refuses_every_report_never_fails_the_pull_request() {
    let repo = GitopsRepo::new();
    let github = github_mock().await;
    let port = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/auth/access_token"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"accessToken": "tok"})))
        .mount(&port)
        .await;
    Mock::given(wiremock::matchers::path_regex("^/v1/actions/runs/"))
        .respond_with(ResponseTemplate::new(404).set_body_json(json!({"error": "not_found"})))
        .mount(&port)
        .await;
    let store = Store::new();
    let contract = dispatched_run(&store, NEW_TAG).await;
    let run = gitops::run_job_reported(
        &contract,
        Ok(settings_with_github(&repo, &github.uri())),
        &store.store,
        FlowOptions::default(),
        &port_settings(&port),
    )
    .await;
    assert_eq!(run.summary.outcome, OutcomeKind::Succeeded);
    assert!(run.ok());
    // The first 404 stopped the reports; it is recorded in the outcome.
    assert_eq!(run_requests(&port).await.len(), 1);
    let record = store.get(contract.record_id).await;
    let report = &record.outcome.unwrap()["port_report"];
    assert!(report[0].as_str().unwrap().contains("404"), "{report}");
}

/// A deploy run asked as a dry run: the run ends `SUCCESS` (Port ends a run SUCCESS or FAILURE),
/// labelled a dry run, with no pull request; GitHub is never called and the record is `planned`.
#[tokio::test]
async fn a_dry_run_deploy_ends_the_port_run_success_labelled_a_dry_run() {
    let repo = GitopsRepo::new();
    let github = github_mock().await;
    let port = port_mock().await;
    let store = Store::new();
    let contract = dispatched_run(&store, NEW_TAG).await.with_dry_run(true);
    let id = contract.record_id;
    let run = gitops::run_job_reported(
        &contract,
        Ok(settings_with_github(&repo, &github.uri())),
        &store.store,
        FlowOptions::default(),
        &port_settings(&port),
    )
    .await;
    assert_eq!(
        run.summary.outcome,
        OutcomeKind::Planned,
        "{:?}",
        run.summary
    );
    let record_url = format!("https://orchestrator.example.com/pullrequests/{id}");
    let what = format!("{SERVICE} in dev to {NEW_TAG}");
    let run_path = format!("/v1/actions/runs/{RUN}");
    let reason = run.summary.reason.clone().unwrap();
    assert_eq!(
        run_requests(&port).await,
        vec![
            (
                "PATCH".into(),
                run_path.clone(),
                json!({"status": "IN_PROGRESS",
                       "statusLabel": format!("Dry run of the gitops pull request: {what}"),
                       "link": [record_url]})
            ),
            (
                "POST".into(),
                format!("{run_path}/logs"),
                json!({"message": format!("Gitops pull request started: {what}")})
            ),
            (
                "POST".into(),
                format!("{run_path}/logs"),
                json!({"message": format!("Gitops dry run finished: {reason}")})
            ),
            (
                "PATCH".into(),
                run_path,
                json!({"status": "SUCCESS",
                       "statusLabel": format!("Dry run planned, nothing pushed: {what}"),
                       "link": [record_url]})
            ),
        ]
    );
    assert!(github_requests(&github).await.is_empty());
    assert_eq!(store.get(id).await.status, Status::Planned);
}
