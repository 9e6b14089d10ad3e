//! The orb's dedupe key through the Router, over the real SQLite store: a redelivery launches
//! once, and no real build is taken for a redelivery of another (no `build_num`, or two
//! organisations' repositories with one name).

mod common;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use common::{fixture, sqlite_app};
use orchestrator::IntakeSettings;
use serde_json::Value;

/// The orb fixture with `edit` applied.
fn delivery(edit: impl FnOnce(&mut serde_json::Map<String, Value>)) -> Vec<u8> {
    let mut v: Value = serde_json::from_slice(&fixture("circleci-orb/success.json")).unwrap();
    edit(v.as_object_mut().unwrap());
    serde_json::to_vec(&v).unwrap()
}

async fn post(t: &common::TestApp, body: Vec<u8>) -> StatusCode {
    let req = Request::post("/pullrequests")
        .header("content-type", "application/json")
        .body(Body::from(body))
        .unwrap();
    let (status, body) = common::send(&t.state, req).await;
    assert!(status.is_success(), "{status}: {body}");
    status
}

#[tokio::test]
async fn the_same_delivery_twice_launches_once() {
    let t = sqlite_app(IntakeSettings::default());
    let body = delivery(|_| {});
    assert_eq!(post(&t, body.clone()).await, StatusCode::ACCEPTED);
    assert_eq!(post(&t, body).await, StatusCode::OK);
    assert_eq!(t.launcher.contracts().len(), 1);
    assert_eq!(common::record_count(t.store.as_ref()).await, 1);
}

#[tokio::test]
async fn two_builds_without_build_num_both_launch() {
    let t = sqlite_app(IntakeSettings::default());
    // Two workflows (a rerun, say) of one commit and job, no build_num in either.
    for wf in [
        "6dfa1b01-96ef-430d-bc35-11b5d20a5127",
        "0c2a9e3b-3f57-4c8e-9d7e-2f1d5b8a6c41",
    ] {
        let body = delivery(|m| {
            m.remove("build_num");
            m.insert("workflow_id".into(), wf.into());
        });
        assert_eq!(post(&t, body).await, StatusCode::ACCEPTED, "{wf}");
    }
    // Two commits, neither build_num nor workflow_id.
    for sha in [
        "1111111111111111111111111111111111111111",
        "2222222222222222222222222222222222222222",
    ] {
        let body = delivery(|m| {
            m.remove("build_num");
            m.remove("workflow_id");
            m.insert("vcs_revision".into(), sha.into());
        });
        assert_eq!(post(&t, body).await, StatusCode::ACCEPTED, "{sha}");
    }
    assert_eq!(t.launcher.contracts().len(), 4);
}

#[tokio::test]
async fn two_organisations_with_one_repository_name_both_launch() {
    let t = sqlite_app(IntakeSettings::default());
    for org in ["acme", "globex"] {
        let body = delivery(|m| {
            m.insert(
                "api_link".into(),
                format!("https://circleci.com/api/v1.1/project/github/{org}/circleci-samples/231")
                    .into(),
            );
            m.insert(
                "build_url".into(),
                format!("https://circleci.com/gh/{org}/circleci-samples/231").into(),
            );
        });
        assert_eq!(post(&t, body).await, StatusCode::ACCEPTED, "{org}");
    }
    // Each rolls out its own organisation's image (the default ImageTemplate, `{org}/{reponame}`).
    let images: Vec<String> = t
        .launcher
        .contracts()
        .iter()
        .map(|c| c.job.as_ref().expect("a gitops job").image.to_string())
        .collect();
    assert_eq!(
        images,
        ["acme/circleci-samples", "globex/circleci-samples"],
        "{images:?}"
    );
}
