//! `POST /webhooks/port/runs` through the Router in-process (SQLite store, recording launcher):
//! Port automation and self-service action invocations, both payload forms, the signature on the
//! raw bytes, the run id as the dedupe key, and the deploy action's gitops job.

mod common;

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use common::{record_count, send};
use hmac::{KeyInit, Mac};
use orchestrator::IntakeSettings;
use orchestrator::intake::port::PortSettings;
use orchestrator::rules::RuleSet;
use orchestrator_core::contract::JobKind;
use orchestrator_core::{Secret, Status};
use serde_json::Value;

const SECRET: &str = "port-client-secret-runs";

fn settings() -> IntakeSettings {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/rules.yaml");
    IntakeSettings {
        port: PortSettings {
            secret: Some(Secret::new(SECRET)),
            rules: Some(Arc::new(RuleSet::load(&path).unwrap())),
            deploy_actions: vec!["deploy_image".into()],
        },
        derive: orchestrator::intake::derive::DeriveConfig {
            image: "acme/{reponame}".parse().unwrap(),
            ..Default::default()
        },
        ..IntakeSettings::default()
    }
}

fn signed_with(secret: &str, body: &[u8]) -> Request<Body> {
    let ts = chrono::Utc::now().timestamp().to_string();
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(ts.as_bytes());
    mac.update(b".");
    mac.update(body);
    let sig = format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()));
    Request::post("/webhooks/port/runs")
        .header("content-type", "application/json")
        .header("x-port-timestamp", ts)
        .header("x-port-signature", sig)
        .body(Body::from(body.to_vec()))
        .unwrap()
}

#[tokio::test]
async fn an_automation_run_is_recorded_once_with_its_run_and_launched_once() {
    let t = common::sqlite_app(settings());
    let body = common::fixture("port/automation-vm-free-storage-low.json");
    let (status, rec) = send(&t.state, signed_with(SECRET, &body)).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{rec}");
    assert_eq!(rec["rule"], "vm-free-storage-low");
    assert_eq!(rec["port_run"]["id"], "r_QpY9kXdZ2eT4bN7w");
    assert_eq!(rec["port_run"]["kind"], "automation");
    assert_eq!(rec["dedupe_key"], "port-run:r_QpY9kXdZ2eT4bN7w");
    // Port retries, possibly with the body re-serialised: the run id decides.
    let reformatted =
        serde_json::to_vec_pretty(&serde_json::from_slice::<Value>(&body).unwrap()).unwrap();
    let (status, again) = send(&t.state, signed_with(SECRET, &reformatted)).await;
    assert_eq!(status, StatusCode::OK, "{again}");
    assert_eq!(again["id"], rec["id"]);
    assert_eq!(record_count(t.store.as_ref()).await, 1);
    let launched = t.launcher.contracts();
    assert_eq!(launched.len(), 1);
    assert_eq!(launched[0].kind, JobKind::Remediation);
}

#[tokio::test]
async fn a_wrong_signature_records_nothing() {
    let t = common::sqlite_app(settings());
    let body = common::fixture("port/automation-context-vm-free-storage-low.json");
    let (status, resp) = send(&t.state, signed_with("another-secret", &body)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{resp}");
    assert_eq!(resp["error"]["code"], "bad_signature");
    assert_eq!(record_count(t.store.as_ref()).await, 0);
}

#[tokio::test]
async fn a_deploy_action_launches_the_gitops_job() {
    let t = common::sqlite_app(settings());
    let body = common::fixture("port/action-context-deploy-image.json");
    let (status, rec) = send(&t.state, signed_with(SECRET, &body)).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{rec}");
    assert_eq!(rec["status"], Status::Dispatched.as_str());
    assert_eq!(rec["port_run"]["user"], "dana@example.com");
    let launched = t.launcher.contracts();
    assert_eq!(launched.len(), 1);
    assert_eq!(launched[0].kind, JobKind::GitopsPr);
    let job = launched[0].job.as_ref().unwrap();
    assert_eq!(
        (
            job.service.as_str(),
            job.environment.as_str(),
            job.tag.as_str(),
            job.image.as_str()
        ),
        ("shop-api", "prod", "1.4.2", "acme/shop-api")
    );
}

#[tokio::test]
async fn a_payload_without_a_run_is_400_naming_it() {
    let t = common::sqlite_app(settings());
    let (status, resp) = send(
        &t.state,
        signed_with(SECRET, br#"{"automationIdentifier":"a","diff":{}}"#),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{resp}");
    assert!(resp.to_string().contains("runId"), "{resp}");
    assert_eq!(record_count(t.store.as_ref()).await, 0);
}
