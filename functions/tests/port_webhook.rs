//! `POST /webhooks/port` through the Router in-process (SQLite store, recording launcher):
//! signatures and timestamps, both payload shapes, rule decisions, and the audit listing.

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
use orchestrator_core::Secret;
use orchestrator_core::contract::JobKind;
use serde_json::Value;

const SECRET: &str = "port-client-secret-1";

fn rules() -> Arc<RuleSet> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/rules.yaml");
    Arc::new(RuleSet::load(&path).unwrap())
}

fn settings() -> IntakeSettings {
    IntakeSettings {
        port: PortSettings {
            secret: Some(Secret::new(SECRET)),
            rules: Some(rules()),
            deploy_actions: Vec::new(),
        },
        ..IntakeSettings::default()
    }
}

fn sign_with(secret: &str, ts: &str, body: &[u8]) -> String {
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(ts.as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()))
}

fn now_secs() -> i64 {
    chrono::Utc::now().timestamp()
}

fn delivery(body: &[u8], ts: Option<&str>, sig: Option<&str>) -> Request<Body> {
    let mut b = Request::post("/webhooks/port").header("content-type", "application/json");
    if let Some(t) = ts {
        b = b.header("x-port-timestamp", t);
    }
    if let Some(s) = sig {
        b = b.header("x-port-signature", s);
    }
    b.body(Body::from(body.to_vec())).unwrap()
}

/// A delivery signed now with the right secret.
fn signed(body: &[u8]) -> Request<Body> {
    let ts = now_secs().to_string();
    let sig = sign_with(SECRET, &ts, body);
    delivery(body, Some(&ts), Some(&sig))
}

#[tokio::test]
async fn bad_stale_or_wrongly_keyed_signatures_are_401_and_record_nothing() {
    let t = common::sqlite_app(settings());
    let body = common::fixture("port/changelog-vm-free-storage-low.json");
    let now = now_secs();
    let now_ms = now * 1000;
    let good_ts = now.to_string();
    let mut cases: Vec<(&str, Option<String>, Option<String>)> = vec![
        ("no headers", None, None),
        ("no signature", Some(good_ts.clone()), None),
        (
            "no timestamp",
            None,
            Some(sign_with(SECRET, &good_ts, &body)),
        ),
        (
            "bad signature",
            Some(good_ts.clone()),
            Some("v1,bm90IHRoZSBzaWduYXR1cmU=".into()),
        ),
        (
            "signature of another body",
            Some(good_ts.clone()),
            Some(sign_with(SECRET, &good_ts, b"{}")),
        ),
        (
            "wrong secret",
            Some(good_ts.clone()),
            Some(sign_with("another-secret", &good_ts, &body)),
        ),
        (
            "hex instead of base64",
            Some(good_ts.clone()),
            Some("v1,deadbeef".into()),
        ),
    ];
    for (what, ts) in [
        ("stale, seconds, past", now - 301),
        ("stale, seconds, future", now + 301),
        ("stale, milliseconds, past", now_ms - 301_000),
        ("stale, milliseconds, future", now_ms + 301_000),
    ] {
        let ts = ts.to_string();
        let sig = sign_with(SECRET, &ts, &body);
        cases.push((what, Some(ts), Some(sig)));
    }
    for (what, ts, sig) in cases {
        let (status, resp) = send(&t.state, delivery(&body, ts.as_deref(), sig.as_deref())).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{what}: {resp}");
        assert_eq!(resp["error"]["code"], "bad_signature", "{what}");
        assert!(!resp.to_string().contains(SECRET));
    }
    assert_eq!(record_count(t.store.as_ref()).await, 0, "nothing recorded");
    assert!(t.launcher.contracts().is_empty(), "nothing launched");

    // The same delivery, signed properly in seconds and in milliseconds, is accepted.
    let (status, _) = send(&t.state, signed(&body)).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let ms = now_ms.to_string();
    let sig = sign_with(SECRET, &ms, &body);
    let (status, rec) = send(&t.state, delivery(&body, Some(&ms), Some(&sig))).await;
    assert_eq!(
        status,
        StatusCode::OK,
        "the same event again is a duplicate: {rec}"
    );
    assert_eq!(record_count(t.store.as_ref()).await, 1);
    assert_eq!(t.launcher.contracts().len(), 1);
}

#[tokio::test]
async fn without_a_secret_the_endpoint_says_it_is_not_configured() {
    let t = common::sqlite_app(IntakeSettings::default());
    let body = common::fixture("port/changelog-vm-free-storage-low.json");
    let (status, resp) = send(&t.state, signed(&body)).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(resp["error"]["code"], "not_configured");
    let message = resp["error"]["message"].as_str().unwrap();
    assert!(message.contains("PORT_CLIENT_SECRET"), "{message}");
    assert_eq!(record_count(t.store.as_ref()).await, 0);
}

#[tokio::test]
async fn matched_events_launch_a_remediation_with_the_rule_and_actions_recorded() {
    let t = common::sqlite_app(settings());
    let body = common::fixture("port/changelog-vm-free-storage-low.json");
    let (status, rec) = send(&t.state, signed(&body)).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{rec}");
    assert_eq!(rec["source"], "port");
    assert_eq!(rec["status"], "dispatched");
    assert_eq!(rec["rule"], "vm-free-storage-low");
    assert_eq!(rec["entity"]["blueprint"], "vm");
    assert_eq!(rec["entity"]["entity"], "storage-example");
    assert_eq!(rec["actions"][0]["type"], "exec");
    assert_eq!(rec["actions"][1]["type"], "port.patch_entity");
    let contracts = t.launcher.contracts();
    assert_eq!(contracts.len(), 1);
    assert_eq!(contracts[0].kind, JobKind::Remediation);
    assert_eq!(
        contracts[0].record_id.to_string(),
        rec["id"].as_str().unwrap()
    );
    // Identifiers only: the record id, the kind and the attempt, nothing of the event.
    let env = contracts[0].to_map();
    assert_eq!(
        env.into_iter().collect::<Vec<_>>(),
        [
            ("ORCH_ATTEMPT".to_owned(), "1".to_owned()),
            ("ORCH_JOB_KIND".to_owned(), "remediation".to_owned()),
            (
                "ORCH_RECORD_ID".to_owned(),
                rec["id"].as_str().unwrap().to_owned()
            ),
        ]
    );
    let env = contracts[0].to_map();
    assert!(!env.values().any(|v| v.contains("storage-example")));
}

#[tokio::test]
async fn both_payload_shapes_of_the_degraded_deployment_match_the_slack_rule() {
    let t = common::sqlite_app(settings());
    for f in [
        "port/changelog-deployment-health-degraded.json",
        "port/automation-deployment-health-degraded.json",
    ] {
        let (status, rec) = send(&t.state, signed(&common::fixture(f))).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{f}: {rec}");
        assert_eq!(rec["rule"], "deployment-health-changed", "{f}");
        assert_eq!(rec["entity"]["entity"], "notification-service-prod", "{f}");
        assert_eq!(rec["entity"]["blueprint"], "deploymentConfig", "{f}");
        assert_eq!(rec["actions"][0]["type"], "slack.post", "{f}");
    }
    assert_eq!(t.launcher.contracts().len(), 2);
}

#[tokio::test]
async fn create_events_and_unmatched_updates_are_ignored_and_launch_nothing() {
    let t = common::sqlite_app(settings());
    let create = common::fixture("port/changelog-vm-create.json");
    let (status, rec) = send(&t.state, signed(&create)).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{rec}");
    assert_eq!(rec["status"], "ignored");
    let reason = rec["status_reason"].as_str().unwrap();
    assert!(reason.starts_with("no rule matched"), "{reason}");
    assert!(reason.contains("action `CREATE` is not UPDATE"), "{reason}");

    // Plenty of free storage: the VM rule's condition is false.
    let mut update: Value =
        serde_json::from_slice(&common::fixture("port/changelog-vm-free-storage-low.json"))
            .unwrap();
    update["diff"]["after"]["properties"]["free_storage"] = serde_json::json!(4);
    let body = serde_json::to_vec(&update).unwrap();
    let (status, rec) = send(&t.state, signed(&body)).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{rec}");
    assert_eq!(rec["status"], "ignored");
    assert!(
        rec["status_reason"]
            .as_str()
            .unwrap()
            .contains("`vm-free-storage-low`: condition is false")
    );
    assert_eq!(rec["rule"], Value::Null);
    assert!(t.launcher.contracts().is_empty(), "nothing launched");

    // Both are in the audit trail, filtered by source.
    let req = common::bearer(
        Request::get("/pullrequests?source=port&status=ignored")
            .body(Body::empty())
            .unwrap(),
        common::AUDIT_TOKEN,
    );
    let (status, page) = send(&t.state, req).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(page["records"].as_array().unwrap().len(), 2, "{page}");
    let req = common::bearer(
        Request::get("/pullrequests?source=circleci_orb")
            .body(Body::empty())
            .unwrap(),
        common::AUDIT_TOKEN,
    );
    let (_, page) = send(&t.state, req).await;
    assert!(page["records"].as_array().unwrap().is_empty());
}

#[tokio::test]
async fn signed_but_invalid_events_are_400_and_record_nothing() {
    let t = common::sqlite_app(settings());
    for body in [
        &b"{\"resourceType\":\"entity\"}"[..],
        b"[1,2]",
        b"{\"action\":\"UPDATE\",\"resourceType\":\"entity\",\"context\":{\"blueprint\":\"vm\"}}",
    ] {
        let (status, resp) = send(&t.state, signed(body)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{resp}");
    }
    let (status, _) = send(
        &t.state,
        Request::post("/webhooks/port")
            .header("content-type", "text/plain")
            .body(Body::from("x"))
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert_eq!(record_count(t.store.as_ref()).await, 0);
}
