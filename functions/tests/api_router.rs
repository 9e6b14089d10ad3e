//! The Router in-process (`oneshot`), over the real SQLite store and a recording launcher.

mod common;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use common::{fixture, sqlite_app};
use orchestrator::launch::LaunchError;
use orchestrator::{IntakeSettings, app};
use orchestrator_core::store::RecordStore;
use orchestrator_core::{Secret, Status};
use serde_json::{Value, json};
use tower::ServiceExt;

const SHA: &str = "8f59df978e3fa133a2ee39ff66b3382342ce958c";

async fn send(
    t: &common::TestApp,
    req: Request<Body>,
) -> (StatusCode, axum::http::HeaderMap, Value) {
    let resp = app(t.state.clone()).oneshot(req).await.unwrap();
    let status = resp.status();
    let headers = resp.headers().clone();
    let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX)
        .await
        .unwrap();
    let body = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes).unwrap()
    };
    (status, headers, body)
}

fn post(uri: &str, body: impl Into<Body>) -> Request<Body> {
    Request::post(uri)
        .header("content-type", "application/json")
        .body(body.into())
        .unwrap()
}

/// A GET with the audit token.
fn get(uri: &str) -> Request<Body> {
    common::bearer(
        Request::get(uri).body(Body::empty()).unwrap(),
        common::AUDIT_TOKEN,
    )
}

async fn count(app: &common::TestApp) -> usize {
    common::record_count(app.store.as_ref()).await
}

#[tokio::test]
async fn orb_success_is_recorded_dispatched_and_located() {
    let t = sqlite_app(IntakeSettings::default());
    let (status, headers, body) = send(
        &t,
        post("/pullrequests", fixture("circleci-orb/success.json")),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let id = body["id"].as_str().unwrap();
    assert_eq!(headers["location"], format!("/pullrequests/{id}").as_str());
    assert_eq!(body["status"], "dispatched");
    assert_eq!(body["source"], "circleci_orb");
    assert_eq!(
        body["job"],
        json!({"service": "circleci-samples", "image": "eddiewebb/circleci-samples", "environment": "dev", "tag": SHA})
    );
    assert_eq!(
        body["task_arn"],
        "arn:aws:ecs:us-east-1:123456789012:task/test/1"
    );
    assert_eq!(
        body["payload"]["workflow_id"],
        "6dfa1b01-96ef-430d-bc35-11b5d20a5127"
    );

    let contracts = t.launcher.contracts();
    assert_eq!(contracts.len(), 1);
    // The launch contract, every variable named by hand: a renamed or added variable fails here.
    let env = contracts[0].to_map();
    let expected: std::collections::BTreeMap<String, String> = [
        ("ORCH_RECORD_ID", id),
        ("ORCH_JOB_KIND", "gitops_pr"),
        ("ORCH_ATTEMPT", "1"),
        ("ORCH_SERVICE", "circleci-samples"),
        ("ORCH_IMAGE", "eddiewebb/circleci-samples"),
        ("ORCH_TAG", SHA),
        ("ORCH_ENVIRONMENT", "dev"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    assert_eq!(env, expected, "identifiers only");

    let (status, _, shown) = send(&t, get(&format!("/pullrequests/{id}"))).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(shown, body);
}

#[tokio::test]
async fn the_one_line_wire_form_is_accepted() {
    let t = sqlite_app(IntakeSettings::default());
    let (status, _, body) = send(
        &t,
        post("/pullrequests", fixture("circleci-orb/success.wire.txt")),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert_eq!(body["job"]["tag"], SHA);
}

#[tokio::test]
async fn unknown_fields_are_kept() {
    let t = sqlite_app(IntakeSettings::default());
    let mut v: Value = serde_json::from_slice(&fixture("circleci-orb/success.json")).unwrap();
    v["custom"] = json!({"nested": [1, 2]});
    let (status, _, body) = send(&t, post("/pullrequests", v.to_string())).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert_eq!(body["payload"]["custom"], json!({"nested": [1, 2]}));
}

#[tokio::test]
async fn failed_builds_are_ignored_and_launch_nothing() {
    let t = sqlite_app(IntakeSettings::default());
    let (status, _, body) = send(
        &t,
        post("/pullrequests", fixture("circleci-orb/failed.json")),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert_eq!(body["status"], "ignored");
    assert!(
        body["status_reason"].as_str().unwrap().contains("failed"),
        "{body}"
    );
    assert!(t.launcher.contracts().is_empty());
}

#[tokio::test]
async fn a_redelivery_returns_the_same_record_and_launches_once() {
    let t = sqlite_app(IntakeSettings::default());
    let (s1, _, first) = send(
        &t,
        post("/pullrequests", fixture("circleci-orb/success.json")),
    )
    .await;
    let (s2, h2, second) = send(
        &t,
        post("/pullrequests", fixture("circleci-orb/success.wire.txt")),
    )
    .await;
    assert_eq!((s1, s2), (StatusCode::ACCEPTED, StatusCode::OK));
    assert_eq!(first["id"], second["id"]);
    assert_eq!(
        h2["location"],
        format!("/pullrequests/{}", first["id"].as_str().unwrap()).as_str()
    );
    assert_eq!(t.launcher.contracts().len(), 1);
    assert_eq!(count(&t).await, 1);
}

#[tokio::test]
async fn missing_or_empty_required_fields_are_named() {
    let t = sqlite_app(IntakeSettings::default());
    let base: Value = serde_json::from_slice(&fixture("circleci-orb/success.json")).unwrap();
    for field in ["reponame", "job", "vcs_revision"] {
        for variant in [None, Some(json!("")), Some(Value::Null)] {
            let mut v = base.clone();
            match &variant {
                None => {
                    v.as_object_mut().unwrap().remove(field);
                }
                Some(x) => v[field] = x.clone(),
            }
            let (status, _, body) = send(&t, post("/pullrequests", v.to_string())).await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{field} {variant:?}");
            assert_eq!(body["error"]["code"], "missing_field");
            assert_eq!(body["error"]["field"], field);
            assert!(body["error"]["message"].as_str().unwrap().contains(field));
        }
    }
    let (status, _, body) = send(
        &t,
        post(
            "/pullrequests",
            fixture("circleci-orb/missing-vcs-revision.json"),
        ),
    )
    .await;
    assert_eq!(
        (status, body["error"]["field"].as_str()),
        (StatusCode::BAD_REQUEST, Some("vcs_revision"))
    );
    assert_eq!(count(&t).await, 0, "nothing is recorded for invalid input");
    assert!(t.launcher.contracts().is_empty());
}

/// A repository name git refuses as a ref component (`foo.lock`, `a..b`) would become the service
/// and fail the task in its container; the intake refuses it at the door, naming the field, and
/// records and launches nothing.
#[tokio::test]
async fn a_repository_the_task_would_refuse_is_a_400_naming_reponame() {
    let t = sqlite_app(IntakeSettings::default());
    for reponame in ["foo.lock", "a..b"] {
        let body = json!({
            "reponame": reponame,
            "job": "build",
            "vcs_revision": SHA,
            "status": "success",
            "api_link": format!("https://circleci.com/api/v1.1/project/github/acme/{reponame}/1"),
        });
        let (status, _, body) = send(&t, post("/pullrequests", body.to_string())).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{reponame}: {body}");
        assert_eq!(body["error"]["code"], "invalid_field", "{body}");
        assert_eq!(body["error"]["field"], "reponame", "{body}");
        assert!(
            body["error"]["message"]
                .as_str()
                .unwrap()
                .contains(reponame),
            "{body}"
        );
    }
    assert_eq!(count(&t).await, 0);
    assert!(t.launcher.contracts().is_empty());
}

#[tokio::test]
async fn invalid_values_bad_json_wrong_type_and_big_bodies_are_rejected() {
    let t = sqlite_app(IntakeSettings::default());
    let cases: Vec<(Request<Body>, StatusCode, &str)> = vec![
        (
            post(
                "/pullrequests",
                r#"{"reponame":"r","job":"j","vcs_revision":"xyz1234"}"#,
            ),
            StatusCode::BAD_REQUEST,
            "invalid_field",
        ),
        (
            post(
                "/pullrequests",
                r#"{"reponame":"a/b","job":"j","vcs_revision":"abcdef0"}"#,
            ),
            StatusCode::BAD_REQUEST,
            "invalid_field",
        ),
        (
            post(
                "/pullrequests",
                r#"{"reponame":"r","job":"j","vcs_revision":"abcdef0","api_link":null}"#,
            ),
            StatusCode::BAD_REQUEST,
            "invalid_field",
        ),
        (
            post("/pullrequests", "{not json"),
            StatusCode::BAD_REQUEST,
            "malformed_json",
        ),
        (
            post("/pullrequests", "[]"),
            StatusCode::BAD_REQUEST,
            "invalid_body",
        ),
        (
            post(
                "/pullrequests",
                r#"{"reponame":["r"],"job":"j","vcs_revision":"abcdef0"}"#,
            ),
            StatusCode::BAD_REQUEST,
            "invalid_field",
        ),
        (
            Request::post("/pullrequests")
                .header("content-type", "text/plain")
                .body(Body::from(fixture("circleci-orb/success.json")))
                .unwrap(),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
        ),
        (
            Request::post("/pullrequests")
                .body(Body::from(fixture("circleci-orb/success.json")))
                .unwrap(),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
        ),
        (
            post("/pullrequests", vec![b' '; 256 * 1024 + 1]),
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
        ),
        (
            Request::put("/pullrequests").body(Body::empty()).unwrap(),
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
        ),
        (get("/nope"), StatusCode::NOT_FOUND, "no_route"),
        (
            get("/pullrequests?limit=500"),
            StatusCode::BAD_REQUEST,
            "invalid_query",
        ),
        (
            get("/pullrequests?cursor=forged"),
            StatusCode::BAD_REQUEST,
            "invalid_query",
        ),
        (
            get("/pullrequests?status=nope"),
            StatusCode::BAD_REQUEST,
            "invalid_query",
        ),
    ];
    for (req, want_status, want_code) in cases {
        let what = format!("{} {}", req.method(), req.uri());
        let (status, _, body) = send(&t, req).await;
        assert_eq!(status, want_status, "{what}: {body}");
        assert_eq!(body["error"]["code"], want_code, "{what}: {body}");
        assert!(body["error"]["message"].is_string());
    }
    // A body exactly at the limit is read (and then judged on its content).
    let mut at_limit = br#"{"reponame":"r","job":"j","vcs_revision":"abcdef0","api_link":"https://circleci.com/api/v1.1/project/o/r/1"}"#.to_vec();
    at_limit.resize(256 * 1024, b' ');
    let (status, _, body) = send(&t, post("/pullrequests", at_limit)).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert_eq!(count(&t).await, 1);
}

#[tokio::test]
async fn the_token_is_required_when_configured() {
    let t = sqlite_app(IntakeSettings {
        token: Some(Secret::new("tok-123")),
        ..IntakeSettings::default()
    });
    for uri in [
        "/pullrequests",
        "/pullrequests?token=wrong",
        "/pullrequests?token=",
    ] {
        let (status, _, body) = send(&t, post(uri, fixture("circleci-orb/success.json"))).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{uri}");
        assert_eq!(body["error"]["code"], "unauthorized");
        assert!(!body.to_string().contains("tok-123"));
    }
    let intake_list = Request::get("/pullrequests")
        .header("authorization", "Bearer tok-123")
        .body(Body::empty())
        .unwrap();
    let (status, _, _) = send(&t, intake_list).await;
    assert_eq!(
        status,
        StatusCode::UNAUTHORIZED,
        "the intake token does not open the audit endpoints"
    );
    assert_eq!(count(&t).await, 0);
    assert!(t.launcher.contracts().is_empty());

    let (status, _, _) = send(
        &t,
        post(
            "/pullrequests?token=tok-123",
            fixture("circleci-orb/success.json"),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let (status, _, body) = send(&t, get("/pullrequests")).await;
    assert_eq!(
        (status, body["records"].as_array().unwrap().len()),
        (StatusCode::OK, 1)
    );
}

#[tokio::test]
async fn a_launch_failure_is_recorded_and_answered_502() {
    let t = sqlite_app(IntakeSettings::default());
    // A failure that cannot pass (a retryable one is answered 202 with a retry pending: see
    // aws_faults.rs).
    *t.launcher.fail_with.lock().unwrap() = Some(LaunchError::permanent(
        "RunTask started no task: Capacity is unavailable at this time",
    ));
    let (status, _, body) = send(
        &t,
        post("/pullrequests", fixture("circleci-orb/success.json")),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_GATEWAY);
    assert_eq!(body["error"]["code"], "dispatch_failed");
    let id = body["record_id"].as_str().unwrap();
    let (_, _, rec) = send(&t, get(&format!("/pullrequests/{id}"))).await;
    assert_eq!(rec["status"], "dispatch_failed");
    assert!(
        rec["status_reason"]
            .as_str()
            .unwrap()
            .contains("Capacity is unavailable")
    );
}

#[tokio::test]
async fn listing_filters_paginates_and_redacts() {
    let settings = IntakeSettings {
        derive: orchestrator::intake::derive::DeriveConfig {
            default_org: Some("acme".into()),
            ..Default::default()
        },
        ..IntakeSettings::default()
    };
    let t = sqlite_app(settings);
    let mut ids = Vec::new();
    for i in 0..5 {
        let repo = if i % 2 == 0 { "alpha" } else { "beta" };
        let body = json!({"reponame": repo, "job": "build", "vcs_revision": format!("abcdef{i}"), "build_num": i.to_string()});
        let (status, _, rec) = send(&t, post("/pullrequests", body.to_string())).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{rec}");
        ids.push(rec["id"].as_str().unwrap().to_owned());
    }
    ids.reverse();
    let (_, _, page1) = send(&t, get("/pullrequests?limit=2")).await;
    let got: Vec<&str> = page1["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap())
        .collect();
    assert_eq!(got, ids[..2]);
    let cursor = page1["next_cursor"].as_str().unwrap();
    let (_, _, page2) = send(&t, get(&format!("/pullrequests?limit=2&cursor={cursor}"))).await;
    let got: Vec<&str> = page2["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap())
        .collect();
    assert_eq!(got, ids[2..4]);

    let (_, _, alpha) = send(&t, get("/pullrequests?service=alpha&status=dispatched")).await;
    assert_eq!(alpha["records"].as_array().unwrap().len(), 3);
    assert!(alpha["next_cursor"].is_null());
    let (_, _, none) = send(&t, get("/pullrequests?status=ignored")).await;
    assert!(none["records"].as_array().unwrap().is_empty());

    let delete = |id: &str| {
        common::bearer(
            Request::delete(format!("/pullrequests/{id}"))
                .body(Body::empty())
                .unwrap(),
            common::ADMIN_TOKEN,
        )
    };
    // A dispatched record's task may be running: not redacted, 409 naming the status.
    let (status, _, body) = send(&t, delete(&ids[0])).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("`dispatched`"),
        "{body}"
    );
    // Once finished, DELETE redacts: the tombstone answers, and stays listed.
    let id0: orchestrator_core::RecordId = ids[0].parse().unwrap();
    t.store
        .transition(
            id0,
            &orchestrator_core::store::Transition::to(Status::Succeeded),
        )
        .await
        .unwrap();
    let (status, _, tomb) = send(&t, delete(&ids[0])).await;
    assert_eq!(status, StatusCode::OK, "{tomb}");
    assert_eq!(
        (&tomb["id"], &tomb["payload"], &tomb["redacted_by"]),
        (&json!(ids[0]), &Value::Null, &json!("admin-token"))
    );
    let (status, _, shown) = send(&t, get(&format!("/pullrequests/{}", ids[0]))).await;
    assert_eq!((status, &shown), (StatusCode::OK, &tomb));
    let (_, _, all) = send(&t, get("/pullrequests?limit=10")).await;
    assert_eq!(
        all["records"].as_array().unwrap().len(),
        5,
        "nothing deleted"
    );
    let (status, _, body) = send(&t, delete(&orchestrator_core::RecordId::new().to_string())).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (StatusCode::NOT_FOUND, Some("not_found"))
    );
    assert_eq!(
        send(&t, get("/pullrequests/not-a-uuid")).await.0,
        StatusCode::NOT_FOUND
    );
    let stored = t.store.get(ids[1].parse().unwrap()).await.unwrap().unwrap();
    assert_eq!(stored.status, Status::Dispatched);
}

/// Lambda refuses a response over 6 MB: a full page of the largest records the intake accepts
/// (a 256 KiB payload, a long reason, a big outcome) lists as summaries far below it, without
/// payloads or outcomes.
#[tokio::test]
async fn a_full_page_of_huge_records_lists_as_summaries_under_six_megabytes() {
    use orchestrator_core::store::Transition;
    let t = sqlite_app(IntakeSettings::default());
    let blob = "x".repeat(256 * 1024);
    for _ in 0..100 {
        let r = orchestrator_core::Record::received(
            orchestrator_core::Source::CircleciOrb,
            json!({"reponame": "r", "big": blob}),
            None,
        );
        t.store.create(&r).await.unwrap();
        let mut done = Transition::to(Status::DispatchFailed).reason("why ".repeat(5_000));
        done.outcome = Some(json!({"output": "o".repeat(60 * 1024)}));
        t.store.transition(r.id, &done).await.unwrap();
    }
    let resp = app(t.state.clone())
        .oneshot(get("/pullrequests?limit=100"))
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX)
        .await
        .unwrap();
    let page: Value = serde_json::from_slice(&bytes).unwrap();
    let records = page["records"].as_array().unwrap();
    assert_eq!(records.len(), 100);
    assert!(
        records
            .iter()
            .all(|r| r.get("payload").is_none() && r.get("outcome").is_none())
    );
    assert!(
        records[0]["status_reason"].as_str().unwrap().len() <= 512,
        "reasons are clipped"
    );
    eprintln!("a page of 100 huge records: {} bytes", bytes.len());
    assert!(bytes.len() < 6_000_000, "{} bytes", bytes.len());
}
