//! Recorded API Gateway events (REST v1 with a stage, HTTP API v2; base64 and plain bodies)
//! converted by `lambda_http` itself and served by the Lambda's service, in-process.

mod common;

use axum::http::StatusCode;
use orchestrator::{IntakeSettings, lambda_app};
use orchestrator_core::Secret;
use serde_json::Value;
use tower::ServiceExt;

const TOKEN: &str = "tok-lambda-1";

fn event(name: &str) -> lambda_http::Request {
    let raw = String::from_utf8(common::fixture(&format!("apigw/{name}"))).unwrap();
    lambda_http::request::from_str(&raw.replace("REPLACE_TOKEN", TOKEN))
        .unwrap_or_else(|e| panic!("{name}: {e}"))
}

async fn call(
    t: &common::TestApp,
    req: lambda_http::Request,
) -> (StatusCode, axum::http::HeaderMap, Value) {
    let resp = lambda_app(t.state.clone()).oneshot(req).await.unwrap();
    let status = resp.status();
    let headers = resp.headers().clone();
    let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX)
        .await
        .unwrap();
    (
        status,
        headers,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

fn app() -> common::TestApp {
    common::sqlite_app(IntakeSettings {
        token: Some(Secret::new(TOKEN)),
        ..IntakeSettings::default()
    })
}

#[tokio::test]
async fn rest_v1_with_a_stage_records_and_locates_under_the_stage() {
    for name in [
        "rest-v1-post-pullrequests.json",
        "rest-v1-post-pullrequests-base64.json",
    ] {
        let t = app();
        let (status, headers, body) = call(&t, event(name)).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{name}: {body}");
        assert_eq!(
            body["job"]["tag"], "8f59df978e3fa133a2ee39ff66b3382342ce958c",
            "{name}"
        );
        let id = body["id"].as_str().unwrap();
        assert_eq!(
            headers["location"],
            format!("/dev/pullrequests/{id}").as_str(),
            "{name}"
        );
        assert_eq!(t.launcher.contracts().len(), 1, "{name}");
        let (status, _, list) = call(&t, event("rest-v1-get-pullrequests.json")).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(list["records"][0]["id"], id);
    }
}

/// The audit routes on AWS are IAM-authorized by API Gateway: the function trusts the identity
/// API Gateway verified and put in the request context, and nothing a caller can send instead.
#[tokio::test]
async fn an_iam_authorized_event_reads_and_the_same_event_without_the_identity_is_refused() {
    let t = app();
    let raw = String::from_utf8(common::fixture("apigw/rest-v1-get-pullrequests.json")).unwrap();
    let (status, _, body) = call(&t, lambda_http::request::from_str(&raw).unwrap()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let mut doc: Value = serde_json::from_str(&raw).unwrap();
    doc["requestContext"]["identity"]["userArn"] = Value::Null;
    doc["requestContext"]["identity"]["accessKey"] = Value::Null;
    let anonymous = lambda_http::request::from_str(&doc.to_string()).unwrap();
    let (status, _, body) = call(&t, anonymous).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert_eq!(body["error"]["credential"], "AUDIT_TOKEN");
    // The intake token in the query string does not stand in for the identity.
    doc["queryStringParameters"] = serde_json::json!({"token": TOKEN});
    doc["multiValueQueryStringParameters"] = serde_json::json!({"token": [TOKEN]});
    let (status, _, _) = call(
        &t,
        lambda_http::request::from_str(&doc.to_string()).unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn http_api_v2_events_work_with_plain_and_base64_bodies() {
    for name in [
        "http-v2-post-pullrequests.json",
        "http-v2-post-pullrequests-base64.json",
    ] {
        let t = app();
        let (status, headers, body) = call(&t, event(name)).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{name}: {body}");
        let id = body["id"].as_str().unwrap();
        assert_eq!(
            headers["location"],
            format!("/pullrequests/{id}").as_str(),
            "{name}"
        );
    }
}

#[tokio::test]
async fn a_wrong_token_in_an_event_is_401_and_records_nothing() {
    let t = common::sqlite_app(IntakeSettings {
        token: Some(Secret::new("other")),
        ..IntakeSettings::default()
    });
    let (status, _, body) = call(&t, event("rest-v1-post-pullrequests.json")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body["error"]["code"], "unauthorized");
    assert!(t.launcher.contracts().is_empty());
}
