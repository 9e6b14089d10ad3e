//! `POST /events`: AWS events as EventBridge delivers them (the envelope), and EventBridge
//! Scheduler runs, authenticated with the intake token (`Authorization: Bearer`, or `?token=`).
//! On AWS the `events` function receives the same bodies from EventBridge rules and schedules
//! (see [`crate::events`]); this route lets the whole flow run on one machine, and lets an
//! EventBridge API destination post to the API. Parsed by [`crate::intake::events`]; the same
//! rules decide.

use axum::http::request::Parts;
use orchestrator_core::Record;

use super::{Refusal, WebhookSource};
use crate::IntakeSettings;
use crate::api::auth;
use crate::intake::PayloadError;
use crate::intake::events::{self, AwsEvent};
use crate::rules::RuleSet;

/// The EventBridge source.
#[derive(Debug)]
pub struct Events;

/// What the source needs: the intake token and the checked rules.
#[derive(Debug)]
pub struct EventsConfig<'a> {
    settings: &'a IntakeSettings,
    rules: &'a RuleSet,
}

impl WebhookSource for Events {
    type Config<'a> = EventsConfig<'a>;
    type Event = AwsEvent;

    fn configured(settings: &IntakeSettings) -> Result<Self::Config<'_>, Refusal> {
        match settings.port.rules.as_deref() {
            Some(rules) => Ok(EventsConfig { settings, rules }),
            None => Err(Refusal::NotConfigured(
                "EventBridge intake (RULES_FILE or RULES)",
            )),
        }
    }

    fn authenticate(config: &Self::Config<'_>, head: &Parts) -> Result<(), Refusal> {
        if auth::authorized(head, config.settings.token.as_ref()) {
            Ok(())
        } else {
            Err(Refusal::Unauthorized)
        }
    }

    fn decode(body: &[u8]) -> Result<Self::Event, PayloadError> {
        events::parse(body)
    }

    fn dedupe_key(event: &Self::Event) -> String {
        event.dedupe_key()
    }

    fn record(config: &Self::Config<'_>, event: Self::Event) -> Result<Record, PayloadError> {
        let record = event.to_record(config.rules);
        tracing::info!(
            source = %event.source,
            detail_type = %event.detail_type,
            event_id = %event.id,
            rule = record.rule.as_deref().unwrap_or(""),
            "AWS event"
        );
        Ok(record)
    }
}
