//! Unit tests of the Port signature check and event parsing.

use super::*;
use chrono::TimeZone;

fn fixture(rel: &str) -> Vec<u8> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fixtures")
        .join(rel);
    std::fs::read(path).unwrap()
}

fn sign(secret: &str, ts: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(ts.as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()))
}

fn at(secs: i64) -> DateTime<Utc> {
    Utc.timestamp_opt(secs, 0).unwrap()
}

#[test]
fn the_published_vector_passes() {
    let doc: serde_json::Value =
        serde_json::from_slice(&fixture("port/signature-vectors.json")).unwrap();
    let vectors = doc["vectors"].as_array().unwrap();
    assert!(!vectors.is_empty());
    for v in vectors {
        let ts = v["timestamp"].as_str().unwrap();
        let now = at(ts.parse().unwrap());
        let secret = Secret::new(v["secret"].as_str().unwrap());
        let body = v["body"].as_str().unwrap().as_bytes();
        let sig = v["signature"].as_str().unwrap();
        assert_eq!(
            verify_signature(&secret, Some(ts), Some(sig), body, now),
            Ok(())
        );
        assert_eq!(sign(secret.expose(), ts, body), sig);
        let mut tampered = body.to_vec();
        tampered.push(b' ');
        assert_eq!(
            verify_signature(&secret, Some(ts), Some(sig), &tampered, now),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify_signature(&Secret::new("wrong"), Some(ts), Some(sig), body, now),
            Err(SignatureError::Mismatch)
        );
    }
}

#[test]
fn timestamps_in_seconds_or_milliseconds_within_five_minutes() {
    let secret = Secret::new("s");
    let body = b"{}";
    let now = 1_713_277_889;
    for (ts, ok) in [
        (now.to_string(), true),
        ((now - 300).to_string(), true),
        ((now + 300).to_string(), true),
        ((now - 301).to_string(), false),
        ((now + 301).to_string(), false),
        ((now * 1000 + 999).to_string(), true),
        (((now - 301) * 1000).to_string(), false),
        (((now + 301) * 1000).to_string(), false),
    ] {
        let sig = sign("s", &ts, body);
        let got = verify_signature(&secret, Some(&ts), Some(&sig), body, at(now));
        assert_eq!(got.is_ok(), ok, "{ts}: {got:?}");
        if !ok {
            assert!(matches!(got, Err(SignatureError::Stale { .. })), "{got:?}");
        }
    }
}

#[test]
fn malformed_headers_are_refused_without_panicking() {
    let secret = Secret::new("s");
    let now = at(1_713_277_889);
    let ts = "1713277889";
    let good = sign("s", ts, b"{}");
    let cases: [(Option<&str>, Option<&str>, SignatureError); 9] = [
        (None, Some(&good), SignatureError::MissingTimestamp),
        (Some(" "), Some(&good), SignatureError::MissingTimestamp),
        (Some(ts), None, SignatureError::MissingSignature),
        (Some("-5"), Some(&good), SignatureError::BadTimestamp),
        (
            Some("99999999999999999999"),
            Some(&good),
            SignatureError::BadTimestamp,
        ),
        (Some("1e9"), Some(&good), SignatureError::BadTimestamp),
        (Some(ts), Some("v1"), SignatureError::Malformed),
        (Some(ts), Some("v1,@@@"), SignatureError::Malformed),
        (Some(ts), Some("v0,AAAA"), SignatureError::Malformed),
    ];
    for (t, s, want) in cases {
        assert_eq!(
            verify_signature(&secret, t, s, b"{}", now),
            Err(want),
            "{t:?} {s:?}"
        );
    }
    // A second, rotated-in signature is enough.
    let both = format!("v1,AAAA {good}");
    assert_eq!(
        verify_signature(&secret, Some(ts), Some(&both), b"{}", now),
        Ok(())
    );
    // The bare base64, without its version, is not accepted.
    let bare = good.trim_start_matches("v1,");
    assert!(verify_signature(&secret, Some(ts), Some(bare), b"{}", now).is_err());
}

#[test]
fn both_context_shapes_parse_to_the_same_entity() {
    let a = parse(&fixture("port/changelog-deployment-health-degraded.json")).unwrap();
    let b = parse(&fixture("port/automation-deployment-health-degraded.json")).unwrap();
    for e in [&a, &b] {
        assert_eq!(e.blueprint.as_deref(), Some("deploymentConfig"));
        assert_eq!(e.entity.as_deref(), Some("notification-service-prod"));
        assert_eq!(
            (e.action.as_str(), e.resource_type.as_str()),
            ("UPDATE", "entity")
        );
    }
    let create = parse(&fixture("port/changelog-vm-create.json")).unwrap();
    assert_eq!(create.raw["diff"]["before"], serde_json::Value::Null);
}

#[test]
fn invalid_events_name_the_field() {
    let cases: [(&str, PayloadError); 6] = [
        ("[]", PayloadError::NotAnObject),
        (
            r#"{"resourceType":"entity"}"#,
            PayloadError::MissingField("action"),
        ),
        (
            r#"{"action":"UPDATE"}"#,
            PayloadError::MissingField("resourceType"),
        ),
        (
            r#"{"action":"UPDATE","resourceType":"entity","context":{"blueprint":"vm"}}"#,
            PayloadError::MissingField("context"),
        ),
        (
            r#"{"action":1,"resourceType":"entity"}"#,
            PayloadError::InvalidField {
                field: "action",
                reason: "must be a string".into(),
            },
        ),
        (
            r#"{"action":"UPDATE","resourceType":"entity","context":{"blueprint":"vm","entity":"e"},"diff":{"after":3}}"#,
            PayloadError::InvalidField {
                field: "diff",
                reason: "`diff.after` must be an object or null".into(),
            },
        ),
    ];
    for (body, want) in cases {
        assert_eq!(parse(body.as_bytes()).unwrap_err(), want, "{body}");
    }
    assert!(matches!(parse(b"{"), Err(PayloadError::MalformedJson(_))));
}

#[test]
fn the_dedupe_key_ignores_formatting_and_key_order() {
    let a =
        parse(br#"{"action":"UPDATE","resourceType":"blueprint","context":{"blueprint":"vm"}}"#)
            .unwrap();
    let b = parse(
        br#"{ "context": {"blueprint": "vm"}, "resourceType": "blueprint", "action": "UPDATE" }"#,
    )
    .unwrap();
    let c =
        parse(br#"{"action":"DELETE","resourceType":"blueprint","context":{"blueprint":"vm"}}"#)
            .unwrap();
    assert_eq!(a.dedupe_key(), b.dedupe_key());
    assert_ne!(a.dedupe_key(), c.dedupe_key());
    assert!(a.dedupe_key().starts_with("port:"));
}
