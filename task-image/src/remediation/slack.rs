//! `slack.post`: one message through a Slack incoming webhook (`POST <url>` with `{"text": ..}`).
//!
//! The webhook URL is a secret (anyone holding it can post): it is read from the environment,
//! held in a [`Secret`], and left out of every error message, log line and record.
//!
//! The default message names the entity and its blueprint, each changed property as
//! `name: before → after` (only the rule's `property` when it names one), the rule, and a link
//! to the record.

use orchestrator_core::{Record, Secret};
use serde_json::{Value, json};

use super::failure::StepFailure;

/// A property value as text: strings as they are, anything else as JSON, absent as `(none)`.
fn show(v: Option<&Value>) -> String {
    match v {
        None | Some(Value::Null) => "(none)".into(),
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
    }
}

/// `(name, before, after)` of every property that differs between the event's snapshots.
pub fn changed_properties(payload: &Value) -> Vec<(String, String, String)> {
    let props = |side: &str| {
        payload
            .pointer(&format!("/diff/{side}/properties"))
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default()
    };
    let (before, after) = (props("before"), props("after"));
    let mut names: Vec<&String> = before.keys().chain(after.keys()).collect();
    names.sort();
    names.dedup();
    names
        .into_iter()
        .filter(|n| before.get(*n) != after.get(*n))
        .map(|n| (n.clone(), show(before.get(n)), show(after.get(n))))
        .collect()
}

/// The message when the rule gives no `text`.
pub fn default_message(
    record: &Record,
    property: Option<&str>,
    record_url: Option<&str>,
) -> String {
    let payload = &record.payload;
    let (blueprint, entity) = match &record.entity {
        Some(e) => (e.blueprint.clone(), e.entity.clone()),
        None => (
            show(payload.pointer("/context/blueprint")),
            show(payload.pointer("/context/entity")),
        ),
    };
    let mut lines = vec![format!("*{entity}* ({blueprint})")];
    let changes: Vec<_> = changed_properties(payload)
        .into_iter()
        .filter(|(n, _, _)| property.is_none_or(|p| p == n))
        .collect();
    match (changes.is_empty(), property) {
        (false, _) => lines.extend(
            changes
                .into_iter()
                .map(|(n, b, a)| format!("• {n}: {b} → {a}")),
        ),
        (true, Some(p)) => {
            let now = payload.pointer(&format!("/diff/after/properties/{p}"));
            lines.push(format!("• {p}: {}", show(now)));
        }
        (true, None) => lines.push(format!("• {}", show(payload.get("action")))),
    }
    let rule = record.rule.as_deref().unwrap_or("(no rule)");
    lines.push(match record_url {
        Some(url) => format!("Rule `{rule}` · <{url}|record {}>", record.id),
        None => format!("Rule `{rule}` · record {}", record.id),
    });
    lines.join("\n")
}

/// Posts `text` to the webhook.
pub async fn post(http: &reqwest::Client, url: &Secret, text: &str) -> Result<Value, StepFailure> {
    let detail = |status: Option<u16>| json!({"text": text, "http_status": status});
    let resp = http
        .post(url.expose())
        .json(&json!({ "text": text }))
        .send()
        .await
        .map_err(|e| {
            StepFailure::with_detail(
                format!("Slack webhook request failed: {}", e.without_url()),
                detail(None),
            )
        })?;
    let status = resp.status();
    if status.is_success() {
        return Ok(detail(Some(status.as_u16())));
    }
    let body: String = url
        .redact(&resp.text().await.unwrap_or_default())
        .chars()
        .take(200)
        .collect();
    Err(StepFailure::with_detail(
        format!("Slack answered HTTP {}: {body}", status.as_u16()),
        detail(Some(status.as_u16())),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use orchestrator_core::{EntityRef, Source};

    #[test]
    fn the_default_message_names_the_entity_and_the_change() {
        let payload = json!({
            "action": "UPDATE",
            "context": {"blueprintIdentifier": "deploymentConfig", "entityIdentifier": "svc"},
            "diff": {
                "before": {"properties": {"healthStatus": "Healthy", "cpu": 1}},
                "after": {"properties": {"healthStatus": "Degraded", "cpu": 2}}
            }
        });
        let mut r = Record::received(Source::Port, payload, None);
        r.entity = Some(EntityRef {
            blueprint: "deploymentConfig".into(),
            entity: "svc".into(),
        });
        r.rule = Some("health".into());
        let m = default_message(
            &r,
            Some("healthStatus"),
            Some("https://o.example/pullrequests/1"),
        );
        assert!(m.starts_with("*svc* (deploymentConfig)\n"), "{m}");
        assert!(m.contains("• healthStatus: Healthy → Degraded"), "{m}");
        assert!(!m.contains("cpu"), "{m}");
        assert!(
            m.contains("<https://o.example/pullrequests/1|record "),
            "{m}"
        );
        let all = default_message(&r, None, None);
        assert!(
            all.contains("• cpu: 1 → 2") && all.contains("• healthStatus"),
            "{all}"
        );
    }
}
