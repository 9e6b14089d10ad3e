//! The reporter against a wiremock Port: the exact requests, and what each kind of answer does.

use std::time::Duration;

use orchestrator_core::Secret;
use port_runs::{PortApi, Retry, RunReporter, RunStatus};
use serde_json::{Value, json};
use wiremock::matchers::{body_json, header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const SECRET: &str = "port-secret-canary-91c";
const TOKEN: &str = "port-token-canary-4d2";
const RUN: &str = "r_QpY9kXdZ2eT4bN7w";

fn reporter(server: &MockServer) -> RunReporter {
    RunReporter::new(
        orchestrator_clients::http::client().unwrap(),
        PortApi {
            base: server.uri().parse().unwrap(),
            client_id: "client-id".into(),
            client_secret: Secret::new(SECRET),
        },
        RUN,
    )
    .with_retry(Retry {
        attempts: 3,
        initial_backoff: Duration::from_millis(10),
        max_backoff: Duration::from_millis(50),
    })
}

async fn token_ok(server: &MockServer) {
    Mock::given(method("POST"))
        .and(path("/v1/auth/access_token"))
        .and(body_json(
            json!({"clientId": "client-id", "clientSecret": SECRET}),
        ))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"accessToken": TOKEN})))
        .mount(server)
        .await;
}

/// (method, path, body) of every request Port received, token requests left out.
async fn run_requests(server: &MockServer) -> Vec<(String, String, Value)> {
    server
        .received_requests()
        .await
        .unwrap()
        .into_iter()
        .filter(|r| r.url.path() != "/v1/auth/access_token")
        .map(|r| {
            assert_eq!(
                r.headers.get("authorization").unwrap().to_str().unwrap(),
                format!("Bearer {TOKEN}")
            );
            (
                r.method.to_string(),
                r.url.path().to_owned(),
                serde_json::from_slice(&r.body).unwrap(),
            )
        })
        .collect()
}

#[tokio::test]
async fn a_run_gets_in_progress_log_lines_and_success_with_links() {
    let server = MockServer::start().await;
    token_ok(&server).await;
    Mock::given(header("authorization", format!("Bearer {TOKEN}").as_str()))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"ok": true})))
        .mount(&server)
        .await;
    let r = reporter(&server);
    r.status(RunStatus::InProgress, "Remediating vm storage-example", &[])
        .await;
    r.log("step `remediate` (exec) started").await;
    r.status(
        RunStatus::Success,
        "Done",
        &[
            "https://github.com/acme/gitops/pull/7".into(),
            "http://o/pullrequests/1".into(),
        ],
    )
    .await;
    let run = format!("/v1/actions/runs/{RUN}");
    assert_eq!(
        run_requests(&server).await,
        vec![
            (
                "PATCH".into(),
                run.clone(),
                json!({"status": "IN_PROGRESS", "statusLabel": "Remediating vm storage-example"})
            ),
            (
                "POST".into(),
                format!("{run}/logs"),
                json!({"message": "step `remediate` (exec) started"})
            ),
            (
                "PATCH".into(),
                run,
                json!({"status": "SUCCESS", "statusLabel": "Done",
                       "link": ["https://github.com/acme/gitops/pull/7", "http://o/pullrequests/1"]})
            ),
        ]
    );
    let tokens = server
        .received_requests()
        .await
        .unwrap()
        .iter()
        .filter(|r| r.url.path() == "/v1/auth/access_token")
        .count();
    assert_eq!(tokens, 1, "one token per reporter");
    assert!(r.problems().is_empty(), "{:?}", r.problems());
}

#[tokio::test]
async fn throttling_and_server_errors_are_retried_then_given_up_and_recorded() {
    let server = MockServer::start().await;
    token_ok(&server).await;
    // The first PATCH is throttled once, then accepted.
    Mock::given(method("PATCH"))
        .respond_with(ResponseTemplate::new(429).insert_header("retry-after", "0"))
        .up_to_n_times(1)
        .mount(&server)
        .await;
    Mock::given(method("PATCH"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path(format!("/v1/actions/runs/{RUN}/logs")))
        .respond_with(ResponseTemplate::new(503).set_body_string(format!("echo {TOKEN}")))
        .mount(&server)
        .await;
    let r = reporter(&server);
    r.status(RunStatus::InProgress, "x", &[]).await;
    assert!(r.problems().is_empty(), "{:?}", r.problems());
    r.log("a line").await;
    let sent = run_requests(&server).await;
    assert_eq!(
        sent.iter().filter(|s| s.0 == "PATCH").count(),
        2,
        "429 retried"
    );
    assert_eq!(
        sent.iter().filter(|s| s.0 == "POST").count(),
        3,
        "503 retried, bounded"
    );
    let problems = r.problems();
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(
        problems[0].contains("gave up after 3 attempt(s): HTTP 503"),
        "{problems:?}"
    );
    assert!(
        !problems[0].contains(TOKEN),
        "the token is redacted: {problems:?}"
    );
    // Giving up on one line does not stop the run's other reports.
    r.status(RunStatus::Success, "ok", &[]).await;
    assert_eq!(run_requests(&server).await.len(), 6);
}

#[tokio::test]
async fn a_missing_run_stops_reporting_and_a_422_is_recorded_without_retry() {
    let server = MockServer::start().await;
    token_ok(&server).await;
    Mock::given(method("PATCH"))
        .respond_with(
            ResponseTemplate::new(422)
                .set_body_json(json!({"ok": false, "error": "run_synchronized_error"})),
        )
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(404).set_body_json(json!({"error": "not_found"})))
        .mount(&server)
        .await;
    let r = reporter(&server);
    r.status(RunStatus::InProgress, "x", &[]).await;
    assert_eq!(run_requests(&server).await.len(), 1, "a 422 is not retried");
    assert!(
        r.problems()[0].contains("run_synchronized_error"),
        "{:?}",
        r.problems()
    );
    r.log("line").await;
    assert_eq!(run_requests(&server).await.len(), 2, "a 404 is not retried");
    // After a 404 nothing more is sent to the run.
    r.log("another").await;
    r.status(RunStatus::Failure, "failed", &[]).await;
    assert_eq!(run_requests(&server).await.len(), 2);
    let problems = r.problems();
    assert_eq!(problems.len(), 2, "{problems:?}");
    assert!(problems[1].contains("404"), "{problems:?}");
}

#[tokio::test]
async fn refused_credentials_send_nothing_to_the_run_and_never_leak_the_secret() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/auth/access_token"))
        .respond_with(ResponseTemplate::new(401).set_body_string(format!("bad {SECRET}")))
        .mount(&server)
        .await;
    let r = reporter(&server);
    r.status(RunStatus::InProgress, "x", &[]).await;
    r.log("line").await;
    let all = server.received_requests().await.unwrap();
    assert_eq!(all.len(), 1, "one token request, then nothing");
    let problems = r.problems();
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(problems[0].contains("HTTP 401"), "{problems:?}");
    assert!(!problems[0].contains(SECRET), "{problems:?}");
}
