//! The bodies of the intake fuzz targets: each takes any byte string, feeds it to a parser of the
//! `orchestrator` crate exactly as a request would, and asserts what must hold for every input.
//! Any panic (an `unwrap`, an index out of range, an overflow with debug assertions) is a finding.
//!
//! Shared by the libFuzzer targets (`fuzz/fuzz_targets/*.rs`) and the corpus replay test that the
//! main workspace runs (`functions/tests/fuzz_replay.rs` includes this file), so both exercise the
//! same code.

use std::sync::OnceLock;

use axum::http::Request;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use chrono::{DateTime, Utc};
use hmac::{KeyInit, Mac};
use orchestrator::api::auth;
use orchestrator::intake::circleci::{self, NativeFilter};
use orchestrator::intake::derive::{DeriveConfig, Vars};
use orchestrator::intake::events;
use orchestrator::intake::orb;
use orchestrator::intake::port::{self, SignatureError, kafka};
use orchestrator::rules::RuleSet;
use orchestrator_core::store::cursor;
use orchestrator_core::{Secret, Source, Status};

use crate::input;

type Hmac256 = hmac::Hmac<sha2::Sha256>;

/// The job derivation every intake runs after parsing, with the default templates and a default
/// organisation (so derivation runs even when the payload names none).
fn derive(reponame: &str, org: Option<&str>, job: &str, branch: Option<&str>, sha: &str) {
    let config = DeriveConfig {
        default_org: Some("fuzz-org".into()),
        ..DeriveConfig::default()
    };
    let vars = Vars {
        reponame,
        org,
        job,
        branch,
    };
    let tag = orchestrator_core::Tag::parse(sha).expect("a parsed commit SHA is a valid tag");
    if let Ok(derived) = config.derive(&vars, &tag) {
        assert_eq!(derived.tag, sha, "the tag is the commit SHA");
    }
}

/// `POST /pullrequests` body: the CircleCI webhook-orb payload.
pub fn orb_payload(data: &[u8]) {
    let Ok(event) = orb::parse(data) else {
        return;
    };
    assert!(orb::is_valid_name(&event.reponame), "{:?}", event.reponame);
    assert_eq!(
        orb::parse_sha(&event.vcs_revision).as_deref(),
        Ok(event.vcs_revision.as_str()),
        "vcs_revision is normalised"
    );
    let org = event.org();
    if let Some(o) = &org {
        assert!(orb::is_valid_name(o), "{o:?}");
    }
    let _ = (event.succeeded(), event.dedupe_key());
    derive(
        &event.reponame,
        org.as_deref(),
        &event.job,
        event.branch.as_deref(),
        &event.vcs_revision,
    );
}

/// The intake token: `?token=` decoding (axum's `Query`) and the whole check (query or bearer
/// header). Input: the query string, then (after a NUL) an `Authorization` header value.
pub fn auth_percent_decode(data: &[u8]) {
    let (query, header) = input::split_first(data);
    let query = input::text(query);
    if let Ok(uri) = format!("/pullrequests?{query}").parse::<axum::http::Uri>() {
        for (k, v) in auth::query_pairs(&uri) {
            if !query.contains(['%', '+']) {
                assert!(
                    query.contains(&k) && query.contains(&v),
                    "nothing to decode"
                );
            }
        }
    }
    let mut builder = Request::builder().uri(format!("/pullrequests?{query}"));
    if !header.is_empty() {
        builder = builder.header("authorization", header);
    }
    // Inputs that are not a valid URI or header value never reach the handler.
    let Ok(request) = builder.body(()) else {
        return;
    };
    let (parts, ()) = request.into_parts();
    let expected = Secret::new("fuzz-token");
    let _ = auth::check(&parts, Some(&expected));
    assert!(auth::check(&parts, None).is_ok(), "no token configured");
}

/// The opaque listing cursor (`GET /pullrequests?cursor=`).
pub fn cursor_decode(data: &[u8]) {
    let s = input::text(data);
    if let Ok(id) = cursor::decode(&s) {
        assert_eq!(cursor::decode(&cursor::encode(id)).ok(), Some(id));
    }
}

/// `POST /webhooks/circleci` body: CircleCI's own webhook payload.
pub fn circleci_payload(data: &[u8]) {
    let Ok(event) = circleci::parse(data) else {
        return;
    };
    assert!(orb::is_valid_name(&event.project), "{:?}", event.project);
    assert_eq!(
        orb::parse_sha(&event.sha).as_deref(),
        Ok(event.sha.as_str()),
        "the SHA is normalised"
    );
    assert!(event.dedupe_key().starts_with("circleci_native:"));
    let _ = (event.succeeded(), NativeFilter::default().refusal(&event));
    derive(
        &event.project,
        event.org.as_deref(),
        &event.name,
        event.branch.as_deref(),
        &event.sha,
    );
}

/// The `circleci-signature` header. Input: header value, secret, body (NUL-separated).
/// Whatever the header holds, appending the true `v1` signature makes it verify exactly when the
/// header has room for one more signature under the cap, and a header that verifies names at
/// least one `v1` signature.
pub fn circleci_signature_header(data: &[u8]) {
    let (header, secret, body) = input::signature_input(data);
    let sigs = circleci::v1_signatures(&header);
    if circleci::verify(secret, body, &header) {
        assert!(
            sigs.as_ref().is_some_and(|s| !s.is_empty()),
            "verified without a v1 signature"
        );
    }
    let mut mac = <Hmac256 as KeyInit>::new_from_slice(secret).expect("HMAC takes any key");
    mac.update(body);
    let good = hex::encode(mac.finalize().into_bytes());
    let room = sigs.is_some_and(|s| s.len() < circleci::MAX_V1_SIGNATURES);
    assert_eq!(
        circleci::verify(secret, body, &format!("{header},v1={good}")),
        room,
        "a valid v1 entry after {header:?}: accepted must mean there was room under the cap"
    );
}

/// The example rules (`examples/rules.yaml`): CEL conditions over the event, evaluated on every
/// parsed fuzz input.
fn rules() -> &'static RuleSet {
    static RULES: OnceLock<RuleSet> = OnceLock::new();
    RULES.get_or_init(|| {
        RuleSet::from_yaml(include_str!("../../examples/rules.yaml"))
            .expect("the example rules load")
    })
}

/// `POST /webhooks/port` body: a Port changelog event (either context shape), then the rules.
/// The dedupe key does not depend on formatting: the event re-serialised has the same key.
pub fn port_payload(data: &[u8]) {
    let Ok(event) = port::parse(data) else {
        return;
    };
    assert!(!event.action.trim().is_empty() && !event.resource_type.trim().is_empty());
    if event.resource_type == "entity" {
        assert!(event.blueprint.is_some() && event.entity.is_some());
    }
    let again = port::parse(event.raw.to_string().as_bytes()).expect("re-serialised event parses");
    assert_eq!(
        again.dedupe_key(),
        event.dedupe_key(),
        "dedupe key depends on formatting"
    );
    let record = event.to_record(rules());
    assert_eq!(record.source, Source::Port);
    assert!(matches!(record.status, Status::Received | Status::Ignored));
    assert_eq!(record.rule.is_some(), record.status == Status::Received);
}

fn events_rules() -> &'static RuleSet {
    static RULES: OnceLock<RuleSet> = OnceLock::new();
    RULES.get_or_init(|| {
        RuleSet::from_yaml(include_str!("../../examples/events.yaml"))
            .expect("the example event rules load")
    })
}

/// `POST /events` body (and the `events` Lambda's payload): an EventBridge envelope or a schedule
/// run, then the rules. An accepted event has an id and is keyed by it; its envelope, parsed
/// again, is the same event (so a schedule run recorded and read back keeps its key).
pub fn events_payload(data: &[u8]) {
    let Ok(event) = events::parse(data) else {
        return;
    };
    assert!(!event.id.is_empty() && !event.source.is_empty() && !event.detail_type.is_empty());
    assert!(event.dedupe_key().ends_with(&format!(":{}", event.id)));
    let again = events::from_value(event.envelope.clone()).expect("the envelope parses");
    assert_eq!(
        (again.source.as_str(), again.detail_type.as_str()),
        (event.source.as_str(), event.detail_type.as_str())
    );
    assert_eq!(again.id, event.id);
    let record = event.to_record(events_rules());
    assert_eq!(record.source, Source::Eventbridge);
    assert!(matches!(record.status, Status::Received | Status::Ignored));
    assert_eq!(record.rule.is_some(), record.status == Status::Received);
}

/// The Port Kafka event source batch (`port-kafka` Lambda): any JSON document in; each record is
/// decoded or rejected, never a panic.
pub fn port_kafka_batch(data: &[u8]) {
    let Ok(value) = serde_json::from_slice::<serde_json::Value>(data) else {
        return;
    };
    let Ok(decoded) = kafka::decode(&value) else {
        return;
    };
    for d in decoded {
        match d {
            kafka::Decoded::Event { event, .. } => {
                let _ = event.to_record(rules());
            }
            kafka::Decoded::Run { run, .. } => {
                let _ = run.to_record(rules(), &Default::default(), &[]);
            }
            kafka::Decoded::Rejected { at, reason, value } => {
                let r = kafka::rejected_record(&at, &reason, value.as_deref());
                assert_eq!(r.status, Status::Rejected);
                if let Some(v) = value {
                    assert!(v.len() <= kafka::KEPT_VALUE_BYTES);
                }
            }
        }
    }
}

/// The `x-port-timestamp` / `x-port-signature` pair. Input: timestamp, signature header, secret,
/// body (NUL-separated; the body may contain NULs). The clock is fixed, so runs reproduce.
/// Whatever the headers hold, nothing panics; a delivery that passes has a timestamp within the
/// allowed skew; and the true signature over the given timestamp never counts as a mismatch.
pub fn port_signature_header(data: &[u8]) {
    let (timestamp, rest) = input::split_first(data);
    let (signature, rest) = input::split_first(rest);
    let (secret, body) = input::split_first(rest);
    let (timestamp, signature) = (input::text(timestamp), input::text(signature));
    let secret = Secret::new(input::text(secret));
    let now: DateTime<Utc> = DateTime::from_timestamp(1_713_277_889, 0).expect("a valid instant");
    let present = |s: &str| (!s.is_empty()).then_some(s.to_owned());
    let result = port::verify_signature(
        &secret,
        present(&timestamp).as_deref(),
        present(&signature).as_deref(),
        body,
        now,
    );
    if result.is_ok() {
        let t: i64 = timestamp
            .trim()
            .parse()
            .expect("a passing timestamp is a number");
        let secs = if t >= 100_000_000_000 { t / 1000 } else { t };
        assert!((now.timestamp() - secs).abs() <= port::MAX_SKEW_SECS);
    }
    let mut mac = <Hmac256 as KeyInit>::new_from_slice(secret.expose().as_bytes())
        .expect("HMAC takes any key");
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(body);
    let good = format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()));
    let with_good = port::verify_signature(&secret, Some(&timestamp), Some(&good), body, now);
    assert!(
        !matches!(
            with_good,
            Err(SignatureError::Mismatch | SignatureError::Malformed)
        ),
        "the true signature over {timestamp:?} was refused: {with_good:?}"
    );
}
