//! The message of an event: what it says ([`Notification`], the webhook's JSON body) and how
//! Slack shows it ([`Notification::slack_text`]).
//!
//! Each message names the service and environment, old → new tag (or, for a remediation, the
//! rule and the entity), the pull request, the record (a console link when `CONSOLE_BASE_URL`
//! is set), the reason on a failure, and its idempotency key (`<record id>:<status>:<attempt>`).

use orchestrator_core::Record;
use orchestrator_core::record::rfc3339;
use serde::Serialize;

use crate::event::Event;

/// What a message says. Serialised as is, it is the webhook's body.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Notification {
    pub event: Event,
    /// `<record id>:<status>:<attempt>`: the same transition always has the same key.
    pub idempotency_key: String,
    pub record_id: String,
    /// `<CONSOLE_BASE_URL>/console/records/<id>`, when the console's address is configured.
    pub record_url: Option<String>,
    pub status: String,
    pub attempt: u32,
    pub source: String,
    /// The service (gitops), or the Port entity's identifier, or the rule's name (remediation).
    pub service: String,
    /// The environment (gitops); empty for a remediation.
    pub environment: String,
    pub image: Option<String>,
    /// The tag the overlay ran before (when the task read it).
    pub old_tag: Option<String>,
    pub new_tag: Option<String>,
    /// The rule a remediation ran.
    pub rule: Option<String>,
    /// The Port entity a remediation is about, `<blueprint>/<identifier>`.
    pub entity: Option<String>,
    pub pr_url: Option<String>,
    /// Why, on a failure (`task_failed`, `dispatch_failed`, `gave_up`, `remediation_failed`).
    pub reason: Option<String>,
    /// When the transition was written (RFC 3339).
    pub at: String,
}

/// The service and environment of `record`, as rules match them.
pub fn subject(record: &Record) -> (String, String) {
    match &record.job {
        Some(job) => (job.service.to_string(), job.environment.to_string()),
        None => (
            record
                .entity
                .as_ref()
                .map(|e| e.entity.clone())
                .or_else(|| record.rule.clone())
                .unwrap_or_default(),
            String::new(),
        ),
    }
}

impl Notification {
    /// The message of `event` about `record` (the record as the transition left it).
    pub fn new(event: Event, record: &Record, console_base_url: Option<&str>) -> Self {
        let (service, environment) = subject(record);
        let outcome_str = |k: &str| {
            record
                .outcome
                .as_ref()
                .and_then(|o| o.get(k))
                .and_then(serde_json::Value::as_str)
                .map(str::to_owned)
        };
        let reason = event.is_failure().then(|| {
            record
                .status_reason
                .clone()
                .unwrap_or_else(|| "no reason recorded".into())
        });
        Notification {
            event,
            idempotency_key: event.idempotency_key(record),
            record_id: record.id.to_string(),
            record_url: console_base_url
                .map(|b| format!("{}/console/records/{}", b.trim_end_matches('/'), record.id)),
            status: record.status.as_str().to_owned(),
            attempt: record.attempt,
            source: record.source.as_str().to_owned(),
            service,
            environment,
            image: record.job.as_ref().map(|j| j.image.to_string()),
            old_tag: outcome_str("old_tag"),
            new_tag: record.job.as_ref().map(|j| j.tag.as_str().to_owned()),
            rule: record.rule.clone(),
            entity: record
                .entity
                .as_ref()
                .map(|e| format!("{}/{}", e.blueprint, e.entity)),
            pr_url: record.pr_url.clone(),
            reason,
            at: rfc3339::format(&record.updated_at),
        }
    }

    fn is_remediation(&self) -> bool {
        self.image.is_none()
    }

    /// The headline of the event.
    pub fn headline(&self) -> &'static str {
        match self.event {
            Event::PrOpened => "Pull request opened",
            Event::PrUpdated => "Pull request updated",
            Event::NoChange => "No change",
            Event::TaskFailed => "Task failed",
            Event::DispatchFailed => "Dispatch failed",
            Event::GaveUp => "Gave up launching",
            Event::RemediationFailed => "Remediation failed",
            Event::Planned => "Dry run planned",
        }
    }

    /// The Slack message text (mrkdwn). Every value from a record is escaped ([`escape`]), so an
    /// event's data cannot mention `<!channel>` or forge a link.
    pub fn slack_text(&self) -> String {
        let mut lines = Vec::new();
        let what = if self.is_remediation() {
            format!(
                "rule *{}* on *{}*",
                escape(self.rule.as_deref().unwrap_or("(no rule)")),
                escape(self.entity.as_deref().unwrap_or(&self.service))
            )
        } else {
            format!(
                "*{}* in *{}*: `{}` → `{}`",
                escape(&self.service),
                escape(&self.environment),
                escape(self.old_tag.as_deref().unwrap_or("?")),
                escape(self.new_tag.as_deref().unwrap_or("?"))
            )
        };
        lines.push(format!("{}: {what}", self.headline()));
        if let Some(reason) = &self.reason {
            lines.push(format!("Reason: {}", escape(reason)));
        }
        if let Some(pr) = &self.pr_url {
            lines.push(format!("Pull request: <{}>", escape(pr)));
        }
        lines.push(match &self.record_url {
            Some(url) => format!("Record: <{}|{}>", escape(url), self.record_id),
            None => format!("Record: {}", self.record_id),
        });
        lines.join("\n")
    }

    /// The Slack incoming webhook's body.
    pub fn slack_body(&self) -> serde_json::Value {
        serde_json::json!({ "text": self.slack_text() })
    }

    /// The webhook's body: this message as JSON, the bytes that are signed.
    pub fn webhook_body(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }
}

/// `s` as Slack text: `&`, `<` and `>` as `&amp;`, `&lt;` and `&gt;`, Slack's control characters.
pub fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;
    use orchestrator_core::store::Transition;
    use orchestrator_core::{EntityRef, Job, Source, Status};

    #[test]
    fn a_gitops_failure_names_everything() {
        let job = Job::parse("shop-api", "acme/shop-api", "prod", "abc1234").unwrap();
        let r = Record::received(Source::CircleciOrb, serde_json::json!({}), Some(job));
        let r = Transition::to(Status::Failed)
            .reason("push refused: <!channel> & co")
            .apply(&r)
            .unwrap();
        let n = Notification::new(Event::TaskFailed, &r, Some("https://gitops.example.com/"));
        assert_eq!(n.idempotency_key, format!("{}:failed:1", r.id));
        assert_eq!(
            n.slack_text(),
            format!(
                "Task failed: *shop-api* in *prod*: `?` → `abc1234`\n\
                 Reason: push refused: &lt;!channel&gt; &amp; co\n\
                 Record: <https://gitops.example.com/console/records/{id}|{id}>",
                id = r.id
            )
        );
        let body: serde_json::Value = serde_json::from_slice(&n.webhook_body()).unwrap();
        assert_eq!(body["event"], "task_failed");
        assert_eq!(body["reason"], "push refused: <!channel> & co");
        assert_eq!(body["image"], "acme/shop-api");
    }

    #[test]
    fn a_remediation_names_its_rule_and_entity() {
        let mut r = Record::received(Source::Port, serde_json::json!({}), None);
        r.rule = Some("free-storage".into());
        r.entity = Some(EntityRef {
            blueprint: "vm".into(),
            entity: "vm-7".into(),
        });
        let r = Transition::to(Status::Failed)
            .reason("step `extend` failed")
            .apply(&r)
            .unwrap();
        let n = Notification::new(Event::RemediationFailed, &r, None);
        assert_eq!((n.service.as_str(), n.environment.as_str()), ("vm-7", ""));
        assert_eq!(
            n.slack_text(),
            format!(
                "Remediation failed: rule *free-storage* on *vm/vm-7*\nReason: step `extend` failed\nRecord: {}",
                r.id
            )
        );
    }
}
