//! A task that dies before reporting, for a record Port invoked: the lifecycle function fails the
//! record and reports `FAILURE` to its Port run (wiremock Port, exact requests); a record the
//! task already finished, or one Port did not invoke, sends nothing; a Port that refuses is kept
//! in the record and never fails the event.

mod common;

use std::time::Duration;

use common::ecs_event as event;
use orchestrator::lifecycle::{Applied, PortReports, apply_and_report};
use orchestrator_core::store::sqlite::SqliteStore;
use orchestrator_core::store::{RecordStore, Transition};
use orchestrator_core::{Job, PortRun, PortRunKind, Record, Secret, Source, Status};
use serde_json::{Value, json};
use wiremock::matchers::{method, path, path_regex};
use wiremock::{Mock, MockServer, ResponseTemplate};

const CLUSTER: Option<&str> = Some("orchestrator");
const RUN: &str = "r_Dp7mW2zX9cV5kB1q";

async fn dispatched(store: &SqliteStore, port_run: bool) -> Record {
    let job = Job::parse("shop-api", "acme/shop-api", "prod", "1.4.2").unwrap();
    let mut r = Record::received(Source::Port, json!({}), Some(job));
    if port_run {
        r.port_run = Some(PortRun {
            id: RUN.into(),
            kind: PortRunKind::Action,
            identifier: Some("deploy_image".into()),
            user: Some("dana@example.com".into()),
        });
    }
    store.create(&r).await.unwrap();
    store
        .transition(
            r.id,
            &Transition::to(Status::Dispatched).task_arn("arn:task"),
        )
        .await
        .unwrap()
}

async fn port(run_status: u16) -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/auth/access_token"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"accessToken": "tok"})))
        .mount(&server)
        .await;
    Mock::given(path_regex("^/v1/actions/runs/"))
        .respond_with(ResponseTemplate::new(run_status).set_body_json(json!({"ok": false})))
        .mount(&server)
        .await;
    server
}

fn reports(server: &MockServer) -> PortReports {
    PortReports {
        http: orchestrator_clients::http::client().unwrap(),
        api: port_runs::PortApi {
            base: server.uri().parse().unwrap(),
            client_id: "id".into(),
            client_secret: Secret::new("secret"),
        },
        record_base_url: Some("https://orchestrator.example".into()),
        retry: port_runs::Retry {
            attempts: 2,
            initial_backoff: Duration::from_millis(5),
            max_backoff: Duration::from_millis(5),
        },
    }
}

async fn run_requests(server: &MockServer) -> Vec<(String, String, Value)> {
    server
        .received_requests()
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

#[tokio::test]
async fn a_task_that_dies_ends_its_port_run_failure_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&SqliteStore::file_in(dir.path())).unwrap();
    let server = port(200).await;
    let r = dispatched(&store, true).await;
    let applied = apply_and_report(
        &store,
        &event("task-state-change-stopped.json", &r, 5),
        CLUSTER,
        Some(&reports(&server)),
    )
    .await
    .unwrap();
    assert_eq!(applied, Applied::Updated(Status::Failed));
    let rec = store.get(r.id).await.unwrap().unwrap();
    let reason = rec.status_reason.unwrap();
    let sent = run_requests(&server).await;
    assert_eq!(
        sent,
        vec![
            (
                "POST".into(),
                format!("/v1/actions/runs/{RUN}/logs"),
                json!({"message": format!("The task stopped: {reason}")})
            ),
            (
                "PATCH".into(),
                format!("/v1/actions/runs/{RUN}"),
                json!({"status": "FAILURE", "statusLabel": "The task stopped before finishing",
                       "link": [format!("https://orchestrator.example/pullrequests/{}", r.id)]})
            ),
        ]
    );
    assert!(rec.outcome.is_none(), "nothing refused, nothing kept");
}

#[tokio::test]
async fn records_finished_by_their_task_or_not_from_port_send_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&SqliteStore::file_in(dir.path())).unwrap();
    let server = port(200).await;
    // The task reported its own failure (and its own FAILURE to Port) before stopping.
    let done = dispatched(&store, true).await;
    store
        .transition(
            done.id,
            &Transition::to(Status::Failed).reason("step failed"),
        )
        .await
        .unwrap();
    let plain = dispatched(&store, false).await;
    for r in [&done, &plain] {
        apply_and_report(
            &store,
            &event("task-state-change-stopped.json", r, 5),
            CLUSTER,
            Some(&reports(&server)),
        )
        .await
        .unwrap();
    }
    assert!(server.received_requests().await.unwrap().is_empty());
    assert_eq!(
        store.get(plain.id).await.unwrap().unwrap().status,
        Status::Failed
    );
}

#[tokio::test]
async fn a_run_port_refuses_is_kept_in_the_record_and_the_event_still_applies() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&SqliteStore::file_in(dir.path())).unwrap();
    let server = port(422).await;
    let r = dispatched(&store, true).await;
    let applied = apply_and_report(
        &store,
        &event("task-state-change-stopped.json", &r, 5),
        CLUSTER,
        Some(&reports(&server)),
    )
    .await
    .unwrap();
    assert_eq!(applied, Applied::Updated(Status::Failed));
    assert_eq!(run_requests(&server).await.len(), 2, "422s are not retried");
    let rec = store.get(r.id).await.unwrap().unwrap();
    let kept = &rec.outcome.unwrap()["port_report"];
    assert_eq!(kept.as_array().unwrap().len(), 2, "{kept}");
    assert!(kept[1].as_str().unwrap().contains("422"), "{kept}");
}
