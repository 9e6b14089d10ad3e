//! Dry runs through the real intake (the Router in-process, the SQLite store, a recording
//! launcher): the orb's `?dry_run=true` and body field, CircleCI's native webhook with the query
//! parameter, services configured to always dry-run; a dry run and a real run of one build both
//! launch, and the contract carries the flag.

mod common;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use common::{fixture, send, sqlite_app};
use hmac::{KeyInit, Mac};
use orchestrator::IntakeSettings;
use orchestrator::config::IntakeArgs;
use orchestrator_core::Secret;
use orchestrator_core::contract::vars;
use serde_json::Value;

const SECRET: &str = "whsec-test-1";

fn post(uri: &str, body: impl Into<Body>) -> Request<Body> {
    Request::post(uri)
        .header("content-type", "application/json")
        .body(body.into())
        .unwrap()
}

#[tokio::test]
async fn an_orb_dry_run_then_a_real_run_of_the_same_build_both_launch() {
    let t = sqlite_app(IntakeSettings::default());
    let body = fixture("circleci-orb/success.json");

    let (status, dry) = send(&t.state, post("/pullrequests?dry_run=true", body.clone())).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{dry}");
    assert_eq!(dry["dry_run"], true);
    assert_eq!(dry["status"], "dispatched");
    let key = dry["dedupe_key"].as_str().unwrap();
    assert!(key.ends_with("#dry_run"), "{key}");

    // The same delivery again is a redelivery of the dry run: 200, nothing launched.
    let (status, again) = send(&t.state, post("/pullrequests?dry_run=1", body.clone())).await;
    assert_eq!(status, StatusCode::OK, "{again}");
    assert_eq!(again["id"], dry["id"]);

    // The real run of the same build is another event: it launches.
    let (status, real) = send(&t.state, post("/pullrequests", body.clone())).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{real}");
    assert_ne!(real["id"], dry["id"]);
    assert_eq!(real["dry_run"], false);
    assert_eq!(
        format!("{}#dry_run", real["dedupe_key"].as_str().unwrap()),
        key
    );

    let contracts = t.launcher.contracts();
    assert_eq!(contracts.len(), 2, "{contracts:?}");
    assert!(contracts[0].dry_run);
    assert_eq!(contracts[0].to_map()[vars::DRY_RUN], "1");
    assert!(!contracts[1].dry_run);
    assert!(!contracts[1].to_map().contains_key(vars::DRY_RUN));

    // ... and a dry run after the real run launches too (the other order).
    let t = sqlite_app(IntakeSettings::default());
    let (s1, _) = send(&t.state, post("/pullrequests", body.clone())).await;
    let (s2, _) = send(&t.state, post("/pullrequests?dry_run=true", body)).await;
    assert_eq!((s1, s2), (StatusCode::ACCEPTED, StatusCode::ACCEPTED));
    assert_eq!(t.launcher.contracts().len(), 2);
}

#[tokio::test]
async fn the_orb_body_field_asks_for_a_dry_run_and_a_bad_flag_is_refused() {
    let t = sqlite_app(IntakeSettings::default());
    let mut body: Value = serde_json::from_slice(&fixture("circleci-orb/success.json")).unwrap();
    body["dry_run"] = Value::String("true".into());
    let (status, rec) = send(&t.state, post("/pullrequests", body.to_string())).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{rec}");
    assert_eq!(rec["dry_run"], true);
    assert!(t.launcher.contracts()[0].dry_run);

    body["dry_run"] = Value::from(7);
    let (status, err) = send(&t.state, post("/pullrequests", body.to_string())).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{err}");
    assert_eq!(err["error"]["field"], "dry_run", "{err}");

    let plain = fixture("circleci-orb/success.json");
    let (status, err) = send(&t.state, post("/pullrequests?dry_run=maybe", plain)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{err}");
    assert_eq!(err["error"]["field"], "dry_run", "{err}");
    assert_eq!(
        t.launcher.contracts().len(),
        1,
        "a refused delivery launches nothing"
    );
}

#[tokio::test]
async fn a_native_circleci_webhook_dry_runs_with_the_query_parameter() {
    let t = sqlite_app(IntakeSettings {
        circleci_secret: Some(Secret::new(SECRET)),
        ..IntakeSettings::default()
    });
    let body = fixture("circleci-native/workflow-completed.json");
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
    mac.update(&body);
    let signature = format!("v1={}", hex::encode(mac.finalize().into_bytes()));
    let delivery = |uri: &str| {
        Request::post(uri)
            .header("content-type", "application/json")
            .header("circleci-event-type", "workflow-completed")
            .header("circleci-signature", signature.as_str())
            .body(Body::from(body.clone()))
            .unwrap()
    };
    let (status, dry) = send(&t.state, delivery("/webhooks/circleci?dry_run=true")).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{dry}");
    assert_eq!(dry["dry_run"], true);
    let (status, real) = send(&t.state, delivery("/webhooks/circleci")).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{real}");
    assert_eq!(real["dry_run"], false);
    let contracts = t.launcher.contracts();
    assert_eq!(
        contracts.iter().map(|c| c.dry_run).collect::<Vec<_>>(),
        [true, false]
    );
}

#[tokio::test]
async fn a_service_configured_to_dry_run_always_does() {
    use clap::Parser;
    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        intake: IntakeArgs,
    }
    let cli = Cli::try_parse_from(["x", "--dry-run-services", "shop-*,circleci-sam*"]).unwrap();
    let t = sqlite_app(cli.intake.settings().unwrap());
    let (status, rec) = send(
        &t.state,
        post("/pullrequests", fixture("circleci-orb/success.json")),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{rec}");
    assert_eq!(rec["job"]["service"], "circleci-samples");
    assert_eq!(rec["dry_run"], true);
    assert!(rec["dedupe_key"].as_str().unwrap().ends_with("#dry_run"));
    // `?dry_run=false` cannot take the configured dry run back.
    let t2 = sqlite_app(cli.intake.settings().unwrap());
    let (_, rec) = send(
        &t2.state,
        post(
            "/pullrequests?dry_run=false",
            fixture("circleci-orb/success.json"),
        ),
    )
    .await;
    assert_eq!(rec["dry_run"], true);

    let bad = Cli::try_parse_from(["x", "--dry-run-services", "shop/api"]).unwrap();
    let err = bad.intake.settings().unwrap_err();
    assert!(err.starts_with("DRY_RUN_SERVICES:"), "{err}");
}
