//! Port changelog events: the signature check, parsing both payload shapes, and the record the
//! rules decide on. Pure functions; the webhook handler is `api::port`, the Kafka batch
//! [`kafka`].
//!
//! - Signature: `x-port-signature: v1,<base64 HMAC-SHA256(client secret, "<x-port-timestamp>.<raw
//!   body>")>`, checked on the raw bytes in constant time (`Mac::verify_slice`). The timestamp is
//!   seconds or milliseconds and must be within [`MAX_SKEW_SECS`] of now, past or future.
//! - Payload: `action`, `resourceType`, `context` as `{blueprint, entity}` (changelog) or
//!   `{blueprintIdentifier, entityIdentifier}` (automations), `diff.before` / `diff.after`.
//! - Dedupe: the same event delivered twice (a retry, or by webhook and Kafka both) has the same
//!   key: a hash of the parsed event, whatever its key order or whitespace.

pub mod invocation;
pub mod kafka;

use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use chrono::{DateTime, Utc};
use hmac::{Hmac, KeyInit, Mac};
use orchestrator_core::{EntityRef, Record, Secret, Source, Status};
use sha2::{Digest, Sha256};

use super::PayloadError;
use crate::rules::{Decision, EventFacts, RuleSet};

/// Largest accepted distance between `x-port-timestamp` and now, in seconds, either way.
pub const MAX_SKEW_SECS: i64 = 300;

/// Timestamps at or above this are milliseconds (seconds reach it in the year 5138).
const MILLIS_THRESHOLD: i64 = 100_000_000_000;

/// The Port intake's settings.
#[derive(Debug, Clone, Default)]
pub struct PortSettings {
    /// The Port client secret that signs webhooks; `None` disables `POST /webhooks/port` (503).
    pub secret: Option<Secret>,
    /// The checked rules; `None` when no rules are configured (the endpoint answers 503).
    pub rules: Option<Arc<RuleSet>>,
    /// Self-service action identifiers that open the gitops pull request
    /// ([`invocation::Invocation::deploy_job`]) instead of consulting the rules.
    pub deploy_actions: Vec<String>,
}

/// Why a delivery's signature was refused. Never says anything about the secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("x-port-timestamp is missing")]
    MissingTimestamp,
    #[error("x-port-timestamp is not a number of seconds or milliseconds")]
    BadTimestamp,
    #[error("x-port-timestamp is {skew_secs} s away from now (at most {MAX_SKEW_SECS} s allowed)")]
    Stale { skew_secs: i64 },
    #[error("x-port-signature is missing")]
    MissingSignature,
    #[error("x-port-signature is not `v1,<base64>`")]
    Malformed,
    #[error("x-port-signature does not match")]
    Mismatch,
}

/// The timestamp as Unix seconds.
fn timestamp_secs(raw: &str) -> Result<i64, SignatureError> {
    let raw = raw.trim();
    if raw.is_empty() || raw.len() > 16 || !raw.bytes().all(|b| b.is_ascii_digit()) {
        return Err(SignatureError::BadTimestamp);
    }
    let n: i64 = raw.parse().map_err(|_| SignatureError::BadTimestamp)?;
    Ok(if n >= MILLIS_THRESHOLD { n / 1000 } else { n })
}

/// Checks a delivery's signature over the raw `body`, and its timestamp against `now`.
pub fn verify_signature(
    secret: &Secret,
    timestamp: Option<&str>,
    signature: Option<&str>,
    body: &[u8],
    now: DateTime<Utc>,
) -> Result<(), SignatureError> {
    let timestamp = timestamp
        .filter(|t| !t.trim().is_empty())
        .ok_or(SignatureError::MissingTimestamp)?;
    let signature = signature
        .filter(|s| !s.trim().is_empty())
        .ok_or(SignatureError::MissingSignature)?;
    let secs = timestamp_secs(timestamp)?;
    // Several space-separated `v1,<sig>` entries are accepted (secret rotation); one must match.
    let mut tags = Vec::new();
    for entry in signature.split_ascii_whitespace() {
        let (version, b64) = entry.split_once(',').ok_or(SignatureError::Malformed)?;
        if version != "v1" {
            continue;
        }
        tags.push(
            STANDARD
                .decode(b64)
                .map_err(|_| SignatureError::Malformed)?,
        );
    }
    if tags.is_empty() {
        return Err(SignatureError::Malformed);
    }
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.expose().as_bytes())
        .map_err(|_| SignatureError::Mismatch)?;
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(body);
    if !tags.iter().any(|tag| mac.clone().verify_slice(tag).is_ok()) {
        return Err(SignatureError::Mismatch);
    }
    let skew_secs = now.timestamp().saturating_sub(secs).saturating_abs();
    if skew_secs > MAX_SKEW_SECS {
        return Err(SignatureError::Stale { skew_secs });
    }
    Ok(())
}

/// A parsed Port changelog event.
#[derive(Debug, Clone, PartialEq)]
pub struct PortEvent {
    /// `CREATE`, `UPDATE`, `DELETE`.
    pub action: String,
    /// `entity`, `blueprint`, `run`, ...
    pub resource_type: String,
    pub blueprint: Option<String>,
    pub entity: Option<String>,
    /// The whole event as received.
    pub raw: serde_json::Value,
}

/// Longest identifier accepted in `action`, `resourceType` and `context`.
pub(crate) const MAX_IDENTIFIER: usize = 256;

fn required_str(
    obj: &serde_json::Map<String, serde_json::Value>,
    field: &'static str,
) -> Result<String, PayloadError> {
    match obj.get(field) {
        None | Some(serde_json::Value::Null) => Err(PayloadError::MissingField(field)),
        Some(serde_json::Value::String(s)) if s.trim().is_empty() => {
            Err(PayloadError::MissingField(field))
        }
        Some(serde_json::Value::String(s)) if s.len() > MAX_IDENTIFIER => {
            Err(PayloadError::InvalidField {
                field,
                reason: format!("longer than {MAX_IDENTIFIER} bytes"),
            })
        }
        Some(serde_json::Value::String(s)) => Ok(s.clone()),
        Some(_) => Err(PayloadError::InvalidField {
            field,
            reason: "must be a string".into(),
        }),
    }
}

/// The first of `names` present in `context` as a string.
fn context_id(
    ctx: &serde_json::Map<String, serde_json::Value>,
    names: [&str; 2],
) -> Result<Option<String>, PayloadError> {
    for name in names {
        match ctx.get(name) {
            None | Some(serde_json::Value::Null) => continue,
            Some(serde_json::Value::String(s)) if s.trim().is_empty() => continue,
            Some(serde_json::Value::String(s)) if s.len() <= MAX_IDENTIFIER => {
                return Ok(Some(s.clone()));
            }
            Some(_) => {
                return Err(PayloadError::InvalidField {
                    field: "context",
                    reason: format!(
                        "`context.{name}` must be a string of at most {MAX_IDENTIFIER} bytes"
                    ),
                });
            }
        }
    }
    Ok(None)
}

/// Parses a changelog event (either context shape).
pub fn parse(bytes: &[u8]) -> Result<PortEvent, PayloadError> {
    let value: serde_json::Value =
        serde_json::from_slice(bytes).map_err(|e| PayloadError::MalformedJson(e.to_string()))?;
    parse_value(value)
}

/// Parses an already decoded event.
pub fn parse_value(value: serde_json::Value) -> Result<PortEvent, PayloadError> {
    let obj = value.as_object().ok_or(PayloadError::NotAnObject)?;
    let action = required_str(obj, "action")?;
    let resource_type = required_str(obj, "resourceType")?;
    let (blueprint, entity) = match obj.get("context") {
        None | Some(serde_json::Value::Null) => (None, None),
        Some(serde_json::Value::Object(ctx)) => (
            context_id(ctx, ["blueprint", "blueprintIdentifier"])?,
            context_id(ctx, ["entity", "entityIdentifier"])?,
        ),
        Some(_) => {
            return Err(PayloadError::InvalidField {
                field: "context",
                reason: "must be an object".into(),
            });
        }
    };
    if resource_type == "entity" && (blueprint.is_none() || entity.is_none()) {
        return Err(PayloadError::MissingField("context"));
    }
    for side in ["before", "after"] {
        match value.pointer(&format!("/diff/{side}")) {
            None | Some(serde_json::Value::Null) | Some(serde_json::Value::Object(_)) => {}
            Some(_) => {
                return Err(PayloadError::InvalidField {
                    field: "diff",
                    reason: format!("`diff.{side}` must be an object or null"),
                });
            }
        }
    }
    Ok(PortEvent {
        action,
        resource_type,
        blueprint,
        entity,
        raw: value,
    })
}

impl PortEvent {
    /// The facts rules look at.
    pub fn facts(&self) -> EventFacts<'_> {
        EventFacts {
            resource_type: &self.resource_type,
            action: &self.action,
            blueprint: self.blueprint.as_deref(),
            entity: self.entity.as_deref(),
            payload: &self.raw,
            trigger: None,
            identifier: None,
        }
    }

    /// Identifies the event, whatever channel or formatting delivered it.
    pub fn dedupe_key(&self) -> String {
        let canonical = canonical_json(&self.raw);
        format!("port:{}", hex::encode(Sha256::digest(canonical.as_bytes())))
    }

    /// The record: `received` with the matched rule and its actions, or `ignored` with why.
    pub fn to_record(&self, rules: &RuleSet) -> Record {
        let mut record = Record::received(Source::Port, self.raw.clone(), None);
        record.dedupe_key = Some(self.dedupe_key());
        record.entity = match (&self.blueprint, &self.entity) {
            (Some(b), Some(e)) => Some(EntityRef {
                blueprint: b.clone(),
                entity: e.clone(),
            }),
            _ => None,
        };
        match rules.decide(&self.facts()) {
            Decision::Matched { rule, actions } => {
                record.rule = Some(rule);
                record.actions = actions;
            }
            Decision::NoMatch { reason } => {
                record.status = Status::Ignored;
                record.status_reason = Some(reason);
            }
        }
        record
    }
}

/// JSON with object keys sorted at every level, no whitespace.
fn canonical_json(v: &serde_json::Value) -> String {
    fn write(v: &serde_json::Value, out: &mut String) {
        match v {
            serde_json::Value::Object(o) => {
                let mut keys: Vec<&String> = o.keys().collect();
                keys.sort();
                out.push('{');
                for (i, k) in keys.into_iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    out.push_str(&serde_json::Value::String(k.clone()).to_string());
                    out.push(':');
                    if let Some(x) = o.get(k) {
                        write(x, out);
                    }
                }
                out.push('}');
            }
            serde_json::Value::Array(a) => {
                out.push('[');
                for (i, x) in a.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    write(x, out);
                }
                out.push(']');
            }
            other => out.push_str(&other.to_string()),
        }
    }
    let mut out = String::new();
    write(v, &mut out);
    out
}

#[cfg(test)]
mod tests;
