//! `POST /pullrequests`: the CircleCI webhook orb (`eddiewebb/webhook`). The orb can send no
//! header, so the intake token rides in the URL (`?token=`, or `Authorization: Bearer` for
//! clients that can); the body is parsed by [`crate::intake::orb`]. A failed build is recorded
//! `ignored` for the audit trail and never rolled out.

use axum::http::request::Parts;
use orchestrator_core::{Record, Source, Status, Tag};

use super::{Refusal, WebhookSource};
use crate::IntakeSettings;
use crate::api::auth;
use crate::intake::derive::Vars;
use crate::intake::{PayloadError, orb};

/// The webhook orb source.
#[derive(Debug)]
pub struct Orb;

impl WebhookSource for Orb {
    type Config<'a> = &'a IntakeSettings;
    type Event = orb::OrbEvent;

    fn configured(settings: &IntakeSettings) -> Result<Self::Config<'_>, Refusal> {
        Ok(settings)
    }

    fn authenticate(settings: &Self::Config<'_>, head: &Parts) -> Result<(), Refusal> {
        if auth::authorized(head, settings.token.as_ref()) {
            Ok(())
        } else {
            Err(Refusal::Unauthorized)
        }
    }

    fn decode(body: &[u8]) -> Result<Self::Event, PayloadError> {
        orb::parse(body)
    }

    fn dedupe_key(event: &Self::Event) -> String {
        event.dedupe_key()
    }

    fn record(settings: &Self::Config<'_>, event: Self::Event) -> Result<Record, PayloadError> {
        let org = event.org();
        let vars = Vars {
            reponame: &event.reponame,
            org: org.as_deref(),
            job: &event.job,
            branch: event.branch.as_deref(),
        };
        let tag =
            Tag::parse(event.vcs_revision.as_str()).map_err(|e| PayloadError::InvalidField {
                field: "vcs_revision",
                reason: e.to_string(),
            })?;
        let derived = settings.derive.derive(&vars, &tag);
        let payload = serde_json::Value::Object(event.raw.clone());
        let mut record = if event.succeeded() {
            Record::received(Source::CircleciOrb, payload, Some(derived?))
        } else {
            // Failed builds are recorded for the audit trail, and never rolled out.
            let mut r = Record::received(Source::CircleciOrb, payload, derived.ok());
            r.status = Status::Ignored;
            r.status_reason = Some(format!(
                "build status is `{}`: only successful builds are rolled out",
                event.status.as_deref().unwrap_or_default()
            ));
            r
        };
        record.dry_run = event.dry_run;
        Ok(record)
    }
}
