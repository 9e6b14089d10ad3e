//! `POST /webhooks/circleci`: CircleCI's own outbound webhooks, signed with HMAC-SHA256 over the
//! raw body (`circleci-signature`); parsed by [`crate::intake::circleci`]. A redelivery has the
//! same event `id`; a non-success status or a workflow or job the filter leaves out is recorded
//! `ignored`.

use axum::http::request::Parts;
use orchestrator_core::{Record, Secret, Source, Status, Tag};

use super::{Refusal, WebhookSource};
use crate::IntakeSettings;
use crate::intake::PayloadError;
use crate::intake::circleci::{self, NativeEvent, NativeFilter};
use crate::intake::derive::{DeriveConfig, Vars};

/// The CircleCI outbound webhook source.
#[derive(Debug)]
pub struct Native;

/// What the source needs: the signing secret, the job derivation and the workflow/job filter.
#[derive(Debug)]
pub struct NativeConfig<'a> {
    secret: &'a Secret,
    derive: &'a DeriveConfig,
    filter: &'a NativeFilter,
}

impl WebhookSource for Native {
    type Config<'a> = NativeConfig<'a>;
    type Event = NativeEvent;

    fn configured(settings: &IntakeSettings) -> Result<Self::Config<'_>, Refusal> {
        let secret = settings
            .circleci_secret
            .as_ref()
            .ok_or(Refusal::NotConfigured(
                "CircleCI webhook intake (CIRCLECI_WEBHOOK_SECRET)",
            ))?;
        Ok(NativeConfig {
            secret,
            derive: &settings.derive,
            filter: &settings.circleci_filter,
        })
    }

    fn verify(config: &Self::Config<'_>, head: &Parts, body: &[u8]) -> Result<(), Refusal> {
        let signature = head
            .headers
            .get("circleci-signature")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        if circleci::verify(config.secret.expose().as_bytes(), body, signature) {
            Ok(())
        } else {
            Err(Refusal::BadSignature)
        }
    }

    fn decode(body: &[u8]) -> Result<Self::Event, PayloadError> {
        circleci::parse(body)
    }

    fn dedupe_key(event: &Self::Event) -> String {
        event.dedupe_key()
    }

    fn record(config: &Self::Config<'_>, event: Self::Event) -> Result<Record, PayloadError> {
        let vars = Vars {
            reponame: &event.project,
            org: event.org.as_deref(),
            job: &event.name,
            branch: event.branch.as_deref(),
        };
        let tag = Tag::parse(event.sha.as_str()).map_err(|e| PayloadError::InvalidField {
            field: "pipeline.vcs.revision",
            reason: e.to_string(),
        })?;
        let derived = config.derive.derive(&vars, &tag);
        let payload = serde_json::Value::Object(event.raw.clone());
        let refusal = if !event.succeeded() {
            Some(format!(
                "status is `{}`: only successful builds are rolled out",
                event.status.as_deref().unwrap_or("missing")
            ))
        } else {
            config.filter.refusal(&event)
        };
        Ok(match refusal {
            None => Record::received(Source::CircleciNative, payload, Some(derived?)),
            Some(reason) => {
                let mut r = Record::received(Source::CircleciNative, payload, derived.ok());
                r.status = Status::Ignored;
                r.status_reason = Some(reason);
                r
            }
        })
    }
}
