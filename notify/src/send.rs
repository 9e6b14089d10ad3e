//! Sending: [`Notifier`] posts an event's message to each target its rules name, at once, each
//! with a short timeout. A failure is logged (target, status or error, never the URL) and
//! returned, never raised: the work a notification reports on has already happened.
//!
//! The webhook is signed like the Port deliveries this project verifies on intake:
//! `x-orchestrator-timestamp: <unix seconds>` and
//! `x-orchestrator-signature: v1,<base64 HMAC-SHA256(secret, "<timestamp>.<raw body>")>`
//! ([`sign`]); `idempotency-key: <record id>:<status>:<attempt>` and `x-orchestrator-event`
//! name the transition. Slack gets the same `idempotency-key` header.

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, KeyInit, Mac};
use orchestrator_core::{Record, Secret};
use sha2::Sha256;

use crate::config::{ConfigError, Rules, TargetKind};
use crate::event::Event;
use crate::message::{Notification, subject};

/// Header carrying the idempotency key.
pub const IDEMPOTENCY_KEY: &str = "idempotency-key";
/// Header carrying the event name.
pub const EVENT_HEADER: &str = "x-orchestrator-event";
/// Header carrying the signing time (unix seconds).
pub const TIMESTAMP_HEADER: &str = "x-orchestrator-timestamp";
/// Header carrying the signature.
pub const SIGNATURE_HEADER: &str = "x-orchestrator-signature";

/// `v1,<base64 HMAC-SHA256(secret, "<timestamp>.<body>")>`.
pub fn sign(secret: &Secret, timestamp: i64, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.expose().as_bytes())
        .expect("HMAC takes a key of any length");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()))
}

/// The signed JSON webhook.
#[derive(Debug, Clone)]
pub struct WebhookTarget {
    pub url: reqwest::Url,
    pub secret: Secret,
}

/// What became of one target's message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    pub target: TargetKind,
    /// The HTTP status of an accepted message, or why it was not.
    pub result: Result<u16, String>,
}

/// Sends the messages of events to the targets the rules name.
#[derive(Debug, Clone)]
pub struct Notifier {
    rules: Rules,
    slack: Option<Secret>,
    webhook: Option<WebhookTarget>,
    console_base_url: Option<String>,
    http: reqwest::Client,
}

/// Checks that `text` is an http(s) URL; the error never quotes it (it may be a secret).
pub fn parse_url(setting: &str, text: &str) -> Result<reqwest::Url, ConfigError> {
    reqwest::Url::parse(text.trim())
        .ok()
        .filter(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some())
        .ok_or_else(|| ConfigError(format!("{setting}: is not an http(s) URL")))
}

impl Notifier {
    /// A notifier for `rules`. Every target a rule names must be configured: the Slack webhook
    /// URL for `slack`, the webhook URL and its signing secret for `webhook`.
    pub fn new(
        rules: Rules,
        slack: Option<Secret>,
        webhook: Option<WebhookTarget>,
        console_base_url: Option<String>,
        timeout: Duration,
    ) -> Result<Self, ConfigError> {
        if let Some(url) = &slack {
            parse_url("NOTIFY_SLACK_WEBHOOK_URL", url.expose())?;
        }
        for (target, rule) in rules.named_targets() {
            let missing = match target {
                TargetKind::Slack if slack.is_none() => "NOTIFY_SLACK_WEBHOOK_URL is not set",
                TargetKind::Webhook if webhook.is_none() => {
                    "NOTIFY_WEBHOOK_URL and NOTIFY_WEBHOOK_SECRET are not both set"
                }
                _ => continue,
            };
            return Err(ConfigError(format!(
                "rules[{rule}].targets: `{}` is named but {missing}",
                target.as_str()
            )));
        }
        let http = orchestrator_clients::http::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .build()
            .map_err(|e| ConfigError(format!("HTTP client: {e}")))?;
        Ok(Self {
            rules,
            slack,
            webhook,
            console_base_url: console_base_url
                .map(|u| u.trim().trim_end_matches('/').to_owned())
                .filter(|u| !u.is_empty()),
            http,
        })
    }

    /// Sends the message of `event` about `record` to every target the rules name for it, at
    /// once, and says what became of each. Failures are logged here.
    pub async fn send(&self, event: Event, record: &Record) -> Vec<Delivery> {
        let (service, environment) = subject(record);
        let targets = self.rules.targets_for(event, &service, &environment);
        if targets.is_empty() {
            return Vec::new();
        }
        let message = Notification::new(event, record, self.console_base_url.as_deref());
        let sends = targets.into_iter().map(|t| {
            let message = &message;
            async move {
                Delivery {
                    target: t,
                    result: self.deliver(t, message).await,
                }
            }
        });
        let deliveries = futures_util::future::join_all(sends).await;
        for d in &deliveries {
            match &d.result {
                Ok(status) => tracing::info!(
                    record_id = %record.id,
                    event = event.as_str(),
                    target = d.target.as_str(),
                    idempotency_key = %message.idempotency_key,
                    status,
                    "notification sent"
                ),
                Err(error) => tracing::warn!(
                    record_id = %record.id,
                    event = event.as_str(),
                    target = d.target.as_str(),
                    idempotency_key = %message.idempotency_key,
                    %error,
                    "notification not sent"
                ),
            }
        }
        deliveries
    }

    async fn deliver(&self, target: TargetKind, message: &Notification) -> Result<u16, String> {
        let request = match target {
            TargetKind::Slack => {
                let url = self.slack.as_ref().ok_or("no Slack webhook URL")?;
                let url = parse_url("NOTIFY_SLACK_WEBHOOK_URL", url.expose())
                    .map_err(|e| e.to_string())?;
                self.http.post(url).json(&message.slack_body())
            }
            TargetKind::Webhook => {
                let hook = self.webhook.as_ref().ok_or("no webhook configured")?;
                let body = message.webhook_body();
                let now = chrono::Utc::now().timestamp();
                self.http
                    .post(hook.url.clone())
                    .header(reqwest::header::CONTENT_TYPE, "application/json")
                    .header(TIMESTAMP_HEADER, now.to_string())
                    .header(SIGNATURE_HEADER, sign(&hook.secret, now, &body))
                    .header(EVENT_HEADER, message.event.as_str())
                    .body(body)
            }
        };
        let response = request
            .header(IDEMPOTENCY_KEY, &message.idempotency_key)
            .send()
            .await
            // The URL is left out: Slack's is a secret.
            .map_err(|e| e.without_url().to_string())?;
        let status = response.status();
        if status.is_success() {
            Ok(status.as_u16())
        } else {
            Err(format!("answered HTTP {}", status.as_u16()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signature_is_port_style_over_timestamp_dot_body() {
        // Computed independently: printf '1700000000.{"a":1}' | openssl dgst -sha256 -hmac
        // 'whsec-test' -binary | base64
        let s = sign(&Secret::new("whsec-test"), 1_700_000_000, br#"{"a":1}"#);
        assert_eq!(s, "v1,/tehpseZpjZ9c3JNdrxwwWZ4kIoyqHnNHe1lZawFzs4=");
    }

    #[test]
    fn every_named_target_must_be_configured() {
        let rules = Rules::parse(
            "rules:\n  - events: [no_change]\n    targets: [webhook]\n  - events: [gave_up]\n    targets: [slack]\n",
        )
        .unwrap();
        let t = Duration::from_secs(1);
        let hook = WebhookTarget {
            url: "https://hooks.example.com/x".parse().unwrap(),
            secret: Secret::new("s"),
        };
        let err = Notifier::new(rules.clone(), None, Some(hook.clone()), None, t).unwrap_err();
        assert_eq!(
            err.to_string(),
            "rules[1].targets: `slack` is named but NOTIFY_SLACK_WEBHOOK_URL is not set"
        );
        let err = Notifier::new(
            rules.clone(),
            Some(Secret::new("https://hooks.slack.com/services/T/B/canary")),
            None,
            None,
            t,
        )
        .unwrap_err();
        assert!(
            err.to_string().starts_with("rules[0].targets: `webhook`"),
            "{err}"
        );
        let err = Notifier::new(
            rules.clone(),
            Some(Secret::new("not a url canary")),
            Some(hook.clone()),
            None,
            t,
        )
        .unwrap_err();
        assert!(!err.to_string().contains("canary"), "{err}");
        assert!(
            Notifier::new(
                rules,
                Some(Secret::new("https://hooks.slack.com/services/T/B/X")),
                Some(hook),
                None,
                t
            )
            .is_ok()
        );
    }
}
