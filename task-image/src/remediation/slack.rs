//! `slack.post`: one message through a Slack incoming webhook (`POST <url>` with `{"text": ..}`).
//!
//! The webhook URL is a secret (anyone holding it can post): it is read from the environment,
//! held in a [`Secret`], and left out of every error message, log line and record.
//!
//! The default message names the entity and its blueprint, each changed property as
//! `name: before → after` (only the rule's `property` when it names one), the rule, and a link
//! to the record.
//!
//! Event data is text, never markup: every value that comes from the event (and from a template's
//! `{{ }}`) has `&`, `<` and `>` escaped as Slack documents ([`escape`]), so a property value
//! cannot mention `<!channel>` or forge a `<url|label>` link; the rule's own text and the record
//! link are left as written. The message is sent without `link_names`, so a bare `@channel` is
//! plain text.

use orchestrator_core::expr::{Expression, Scope, Template};
use orchestrator_core::{Record, Secret};
use serde_json::{Value, json};

use super::failure::StepFailure;

/// `s` as Slack text: `&`, `<` and `>` as `&amp;`, `&lt;` and `&gt;` (Slack's control characters;
/// nothing else is to be escaped).
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            c => out.push(c),
        }
    }
    out
}

/// Renders a rule's `text` template: its text as written (the rule's own links and mentions
/// work), each `{{ expression }}`'s value escaped. The parts are split as [`Template::parse`]
/// splits them (it checks the template first).
pub fn render_text(template: &str, scope: &Scope) -> Result<String, StepFailure> {
    Template::parse(template)?;
    let mut out = String::new();
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after
            .find("}}")
            .ok_or_else(|| StepFailure::new("template: `{{` without a closing `}}`"))?;
        let value = Expression::compile(after[..end].trim())?.eval_string(scope)?;
        out.push_str(&escape(&value));
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    Ok(out)
}

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
    let (blueprint, entity) = (escape(&blueprint), escape(&entity));
    let mut lines = vec![format!("*{entity}* ({blueprint})")];
    let changes: Vec<_> = changed_properties(payload)
        .into_iter()
        .filter(|(n, _, _)| property.is_none_or(|p| p == n))
        .collect();
    match (changes.is_empty(), property) {
        (false, _) => lines.extend(
            changes
                .into_iter()
                .map(|(n, b, a)| format!("• {}: {} → {}", escape(&n), escape(&b), escape(&a))),
        ),
        (true, Some(p)) => {
            let now = payload.pointer(&format!("/diff/after/properties/{p}"));
            lines.push(format!("• {}: {}", escape(p), escape(&show(now))));
        }
        (true, None) => lines.push(format!("• {}", escape(&show(payload.get("action"))))),
    }
    let rule = escape(record.rule.as_deref().unwrap_or("(no rule)"));
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

    /// A property value that tries to ping the channel, forge a link and smuggle an entity.
    const HOSTILE: &str = "<!channel> <https://evil.example|the runbook> &lt;!here&gt;";

    #[test]
    fn event_data_cannot_ping_or_forge_a_link_in_the_default_message() {
        let payload = json!({
            "action": "UPDATE",
            "context": {"blueprint": "vm", "entity": "<!here>"},
            "diff": {
                "before": {"properties": {"note": "ok"}},
                "after": {"properties": {"note": HOSTILE}}
            }
        });
        let mut r = Record::received(Source::Port, payload, None);
        r.rule = Some("disk".into());
        let m = default_message(&r, None, Some("https://o.example/pullrequests/1"));
        assert!(
            m.contains(
                "• note: ok → &lt;!channel&gt; &lt;https://evil.example|the runbook&gt; &amp;lt;!here&amp;gt;"
            ),
            "{m}"
        );
        assert!(m.starts_with("*&lt;!here&gt;* (vm)\n"), "{m}");
        // The only `<` left is the record link's own.
        assert_eq!(m.matches('<').count(), 1, "{m}");
        assert!(
            m.contains("<https://o.example/pullrequests/1|record "),
            "{m}"
        );
    }

    #[test]
    fn a_rule_text_keeps_its_own_markup_and_escapes_the_values() {
        let scope = Scope::new().with("entity", &json!(HOSTILE)).with(
            "after",
            &json!({"properties": {"free": "3 < 10 & falling"}}),
        );
        let text = render_text(
            "<!here> {{ entity }}: free {{ after.properties.free }} <https://runbook.example/disk|runbook>",
            &scope,
        )
        .unwrap();
        assert_eq!(
            text,
            "<!here> &lt;!channel&gt; &lt;https://evil.example|the runbook&gt; &amp;lt;!here&amp;gt;: \
             free 3 &lt; 10 &amp; falling <https://runbook.example/disk|runbook>"
        );
        assert!(render_text("{{ entity", &scope).is_err());
    }

    #[test]
    fn escape_is_slacks_three_characters_only() {
        assert_eq!(
            escape("a&b<c>d*_~`@channel"),
            "a&amp;b&lt;c&gt;d*_~`@channel"
        );
    }
}
