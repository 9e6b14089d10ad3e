//! `POST /webhooks/port`: Port changelog events, signed with the Port client secret
//! (`x-port-timestamp`, `x-port-signature` over the raw body); parsed by
//! [`crate::intake::port`]. The rules decide: a match is recorded with the rule and its actions
//! (a remediation task is launched), no match is recorded `ignored` with the reason.

use axum::http::request::Parts;
use orchestrator_core::{Record, Secret};

use super::{Refusal, WebhookSource};
use crate::IntakeSettings;
use crate::intake::PayloadError;
use crate::intake::port::{self, PortEvent};
use crate::rules::RuleSet;

/// The Port webhook source.
#[derive(Debug)]
pub struct Port;

/// What the source needs: the client secret and the checked rules.
#[derive(Debug)]
pub struct PortConfig<'a> {
    secret: &'a Secret,
    rules: &'a RuleSet,
}

impl WebhookSource for Port {
    type Config<'a> = PortConfig<'a>;
    type Event = PortEvent;

    fn configured(settings: &IntakeSettings) -> Result<Self::Config<'_>, Refusal> {
        let port = &settings.port;
        match (port.secret.as_ref(), port.rules.as_deref()) {
            (Some(secret), Some(rules)) => Ok(PortConfig { secret, rules }),
            _ => Err(Refusal::NotConfigured(
                "Port intake (PORT_CLIENT_SECRET, and RULES_FILE or RULES)",
            )),
        }
    }

    fn verify(config: &Self::Config<'_>, head: &Parts, body: &[u8]) -> Result<(), Refusal> {
        let header = |name: &str| head.headers.get(name).and_then(|v| v.to_str().ok());
        port::verify_signature(
            config.secret,
            header("x-port-timestamp"),
            header("x-port-signature"),
            body,
            chrono::Utc::now(),
        )
        .map_err(|e| {
            tracing::warn!(reason = %e, "Port delivery refused");
            Refusal::BadSignature
        })
    }

    fn decode(body: &[u8]) -> Result<Self::Event, PayloadError> {
        port::parse(body)
    }

    fn dedupe_key(event: &Self::Event) -> String {
        event.dedupe_key()
    }

    fn record(config: &Self::Config<'_>, event: Self::Event) -> Result<Record, PayloadError> {
        let record = event.to_record(config.rules);
        tracing::info!(
            action = %event.action,
            blueprint = event.blueprint.as_deref().unwrap_or(""),
            entity = event.entity.as_deref().unwrap_or(""),
            rule = record.rule.as_deref().unwrap_or(""),
            "Port event"
        );
        Ok(record)
    }
}
