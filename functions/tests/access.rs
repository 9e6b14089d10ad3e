//! Least authority through the real Router (`oneshot`, SQLite store): each credential tried on
//! every audit route, as an attacker holding it would. The intake token (the one baked into every
//! CircleCI project's webhook URL) creates records and nothing else; the audit token reads; the
//! admin token also re-dispatches and redacts; with no audit credential the routes are closed.
//! And `template.yaml` puts exactly the routes the intake token cannot open behind IAM.

mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use base64::Engine;
use orchestrator::IntakeSettings;
use orchestrator::api::access::AccessSettings;
use orchestrator_core::store::{RecordStore, Transition};
use orchestrator_core::{Record, RecordId, Secret, Source, Status};
use serde_json::Value;

const INTAKE: &str = "intake-token-in-every-webhook-url";

fn app() -> common::TestApp {
    common::sqlite_app(IntakeSettings {
        token: Some(Secret::new(INTAKE)),
        ..IntakeSettings::default()
    })
}

/// A record in a final status (`dispatch_failed`), so every operation has something to act on.
async fn finished(store: &dyn RecordStore) -> RecordId {
    let r = Record::received(Source::CircleciOrb, serde_json::json!({"a": 1}), None);
    store.create(&r).await.unwrap();
    store
        .transition(r.id, &Transition::to(Status::DispatchFailed).reason("test"))
        .await
        .unwrap();
    r.id
}

/// The four audit operations on record `id`: (what, method, uri).
fn operations(id: RecordId) -> [(&'static str, Method, String); 4] {
    [
        ("list", Method::GET, "/pullrequests".to_owned()),
        ("show", Method::GET, format!("/pullrequests/{id}")),
        (
            "redispatch",
            Method::POST,
            format!("/pullrequests/{id}/dispatch"),
        ),
        ("delete", Method::DELETE, format!("/pullrequests/{id}")),
    ]
}

fn req(method: &Method, uri: &str, auth: Option<String>) -> Request<Body> {
    let mut b = Request::builder().method(method.clone()).uri(uri);
    if let Some(a) = auth {
        b = b.header("authorization", a);
    }
    b.body(Body::empty()).unwrap()
}

fn bearer(t: &str) -> Option<String> {
    Some(format!("Bearer {t}"))
}

#[tokio::test]
async fn the_intake_token_opens_no_audit_route_in_any_form() {
    let t = app();
    let id = finished(t.store.as_ref()).await;
    for (what, method, uri) in operations(id) {
        let sep = if uri.contains('?') { '&' } else { '?' };
        for (form, uri, auth) in [
            ("as Bearer", uri.clone(), bearer(INTAKE)),
            ("as ?token=", format!("{uri}{sep}token={INTAKE}"), None),
            (
                "as the Basic password",
                uri.clone(),
                Some(format!(
                    "Basic {}",
                    base64::engine::general_purpose::STANDARD.encode(format!("x:{INTAKE}"))
                )),
            ),
        ] {
            let (status, body) = common::send(&t.state, req(&method, &uri, auth)).await;
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{what} {form}: {body}");
            assert_eq!(body["error"]["code"], "unauthorized", "{what} {form}");
            assert!(!body.to_string().contains(INTAKE), "{what} {form}: echoed");
        }
    }
    let rec = t.store.get(id).await.unwrap().expect("still there");
    assert_eq!(rec.status, Status::DispatchFailed);
    assert_eq!(rec.payload, serde_json::json!({"a": 1}), "not redacted");
    assert!(t.launcher.contracts().is_empty(), "nothing launched");
}

#[tokio::test]
async fn the_audit_token_reads_but_cannot_redispatch_or_delete() {
    let t = app();
    let id = finished(t.store.as_ref()).await;
    let mut answers = Vec::new();
    for (what, method, uri) in operations(id) {
        let (status, body) =
            common::send(&t.state, req(&method, &uri, bearer(common::AUDIT_TOKEN))).await;
        answers.push((what, status, body["error"]["credential"].clone()));
    }
    assert_eq!(
        answers,
        [
            ("list", StatusCode::OK, Value::Null),
            ("show", StatusCode::OK, Value::Null),
            ("redispatch", StatusCode::FORBIDDEN, "ADMIN_TOKEN".into()),
            ("delete", StatusCode::FORBIDDEN, "ADMIN_TOKEN".into()),
        ]
    );
    assert!(t.store.get(id).await.unwrap().is_some());
    assert!(t.launcher.contracts().is_empty());
}

#[tokio::test]
async fn the_admin_token_reads_redispatches_and_deletes() {
    let t = app();
    let id = finished(t.store.as_ref()).await;
    let stuck = Record::received(Source::CircleciOrb, serde_json::json!({}), None);
    t.store.create(&stuck).await.unwrap();
    let admin = || bearer(common::ADMIN_TOKEN);
    let (status, page) = common::send(&t.state, req(&Method::GET, "/pullrequests", admin())).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(page["records"].as_array().unwrap().len(), 2);
    let show = format!("/pullrequests/{id}");
    let (status, _) = common::send(&t.state, req(&Method::GET, &show, admin())).await;
    assert_eq!(status, StatusCode::OK);
    // A record with no job cannot be launched: the admin gets past authorization to the 409.
    let dispatch = format!("/pullrequests/{}/dispatch", stuck.id);
    let (status, body) = common::send(&t.state, req(&Method::POST, &dispatch, admin())).await;
    assert_ne!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert_ne!(status, StatusCode::FORBIDDEN, "{body}");
    let (status, body) = common::send(&t.state, req(&Method::DELETE, &show, admin())).await;
    assert!(status.is_success(), "{status} {body}");
}

#[tokio::test]
async fn with_no_audit_credential_the_audit_routes_are_closed() {
    let mut t = app();
    t.state.access = Arc::new(AccessSettings::default());
    let id = finished(t.store.as_ref()).await;
    for (what, method, uri) in operations(id) {
        for auth in [None, bearer(INTAKE), bearer(common::AUDIT_TOKEN)] {
            let (status, body) = common::send(&t.state, req(&method, &uri, auth)).await;
            assert_eq!(status, StatusCode::FORBIDDEN, "{what}: {body}");
            assert_eq!(body["error"]["code"], "credential_not_configured");
            let named = body["error"]["credential"].as_str().unwrap();
            assert!(
                named == "AUDIT_TOKEN" || named == "ADMIN_TOKEN",
                "{what}: {body}"
            );
            assert!(body["error"]["message"].as_str().unwrap().contains(named));
        }
    }
    // Deliveries still work: the intake is not the audit trail.
    let post = Request::post(format!("/pullrequests?token={INTAKE}"))
        .header("content-type", "application/json")
        .body(Body::from(common::fixture("circleci-orb/success.json")))
        .unwrap();
    assert_eq!(common::send(&t.state, post).await.0, StatusCode::ACCEPTED);
}

#[tokio::test]
async fn a_guessed_or_near_miss_token_is_refused() {
    let t = app();
    let near = format!("{}x", common::ADMIN_TOKEN);
    let prefix = &common::ADMIN_TOKEN[..common::ADMIN_TOKEN.len() - 1];
    for auth in [
        bearer(&near),
        bearer(prefix),
        bearer(""),
        bearer(&common::ADMIN_TOKEN.to_uppercase()),
        Some(format!("Token {}", common::ADMIN_TOKEN)),
        Some(common::ADMIN_TOKEN.to_owned()),
    ] {
        let (status, _) =
            common::send(&t.state, req(&Method::GET, "/pullrequests", auth.clone())).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{auth:?}");
    }
}

/// `(METHOD, path)`.
type Op = (String, String);

/// `(METHOD, path)` of the `api` function's events in `template.yaml` that use IAM authorization,
/// and of those that do not.
fn template_auth() -> (BTreeSet<Op>, BTreeSet<Op>) {
    let text =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../template.yaml"))
            .unwrap();
    let doc: yaml_serde::Value = yaml_serde::from_str(&text).unwrap();
    let events = doc["Resources"]["ApiFunction"]["Properties"]["Events"]
        .as_mapping()
        .expect("ApiFunction events");
    let (mut iam, mut open) = (BTreeSet::new(), BTreeSet::new());
    for (_, e) in events {
        let p = &e["Properties"];
        let op = (
            p["Method"].as_str().unwrap().to_uppercase(),
            p["Path"].as_str().unwrap().to_owned(),
        );
        match p["Auth"]["Authorizer"].as_str() {
            Some("AWS_IAM") => iam.insert(op),
            None => open.insert(op),
            Some(other) => panic!("{op:?}: unexpected authorizer {other}"),
        };
    }
    (iam, open)
}

/// The routes that take the audit credentials are exactly those `template.yaml` puts behind IAM:
/// probed through the Router with no credential, a route answers `credential` (an audit route)
/// or not (a delivery route, or the document).
#[tokio::test]
async fn template_iam_routes_are_exactly_the_audit_routes() {
    let (iam, open) = template_auth();
    assert!(iam.len() >= 4, "{iam:?}");
    let t = app();
    for (method, path) in iam.iter().chain(&open) {
        let uri = path.replace("{id}", &RecordId::new().to_string());
        let method = Method::from_bytes(method.as_bytes()).unwrap();
        let probe = Request::builder()
            .method(method.clone())
            .uri(&uri)
            .header("content-type", "application/json")
            .body(Body::from("{}"))
            .unwrap();
        let (_, body) = common::send(&t.state, probe).await;
        let audit_route = body["error"]["credential"].is_string();
        assert_eq!(
            audit_route,
            iam.contains(&(method.to_string(), path.clone())),
            "{method} {path}: the Router and template.yaml disagree on whether it is an audit \
             route ({body})"
        );
    }
}
