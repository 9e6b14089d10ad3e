//! `POST /webhooks/port/runs`: Port automation and self-service action invocations (the way Port
//! delivers events since it removed the changelog destination), signed like the changelog
//! webhook (`x-port-timestamp`, `x-port-signature` over the raw body, with the Port client
//! secret); parsed by [`crate::intake::port::invocation`]. A deploy action becomes the gitops
//! pull request job; anything else goes through the rules. The run id is the dedupe key.

use axum::http::request::Parts;
use orchestrator_core::Record;

use super::{Refusal, WebhookSource, port::Port};
use crate::IntakeSettings;
use crate::intake::PayloadError;
use crate::intake::port::invocation::{self, Invocation};

/// The Port invocation source.
#[derive(Debug)]
pub struct PortRuns;

impl WebhookSource for PortRuns {
    type Config<'a> = &'a IntakeSettings;
    type Event = Invocation;

    fn configured(settings: &IntakeSettings) -> Result<Self::Config<'_>, Refusal> {
        // The same settings as the changelog webhook: the client secret and the rules.
        Port::configured(settings).map(|_| settings)
    }

    fn verify(settings: &Self::Config<'_>, head: &Parts, body: &[u8]) -> Result<(), Refusal> {
        Port::verify(&Port::configured(settings)?, head, body)
    }

    fn decode(body: &[u8]) -> Result<Self::Event, PayloadError> {
        invocation::parse(body)
    }

    fn dedupe_key(event: &Self::Event) -> String {
        event.dedupe_key()
    }

    fn record(settings: &Self::Config<'_>, event: Self::Event) -> Result<Record, PayloadError> {
        let port = &settings.port;
        let empty = crate::rules::RuleSet::empty();
        let rules = port.rules.as_deref().unwrap_or(&empty);
        let record = event.to_record(rules, &settings.derive, &port.deploy_actions)?;
        tracing::info!(
            run_id = %event.run.id,
            kind = event.run.kind.as_str(),
            identifier = event.run.identifier.as_deref().unwrap_or(""),
            trigger = %event.trigger,
            blueprint = event.blueprint.as_deref().unwrap_or(""),
            entity = event.entity.as_deref().unwrap_or(""),
            rule = record.rule.as_deref().unwrap_or(""),
            deploy = record.job.is_some(),
            "Port invocation"
        );
        Ok(record)
    }
}
