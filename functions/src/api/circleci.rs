//! `POST /webhooks/circleci`: CircleCI outbound webhooks, signed with HMAC-SHA256.
//!
//! Checked in this order, and nothing is recorded until all pass: configured (503), content type
//! and size (415, 413), signature over the raw bytes (401), payload (400). Then: a redelivery
//! (same event `id`) returns the existing record with 200; a non-success status or a filtered-out
//! workflow/job is recorded `ignored`; a success is recorded and launched (202).

use axum::extract::{Request, State};
use axum::response::Response;
use orchestrator_core::{Record, Source, Status, Tag};

use super::body::read_json_body;
use super::error::ApiError;
use super::pullrequests::{accepted_response, base_path};
use crate::AppState;
use crate::dispatch::record_and_launch;
use crate::intake::derive::Vars;
use crate::intake::{PayloadError, circleci};

pub async fn receive(State(state): State<AppState>, req: Request) -> Result<Response, ApiError> {
    let Some(secret) = state.intake.circleci_secret.as_ref() else {
        return Err(ApiError::NotConfigured(
            "CircleCI webhook intake (CIRCLECI_WEBHOOK_SECRET)",
        ));
    };
    let (parts, body) = req.into_parts();
    let signature = parts
        .headers
        .get("circleci-signature")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let bytes = read_json_body(&parts.headers, body).await?;
    if !circleci::verify(secret.expose().as_bytes(), &bytes, &signature) {
        return Err(ApiError::BadSignature);
    }
    let event = circleci::parse(&bytes)?;
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
    let derived = state.intake.derive.derive(&vars, &tag);
    let payload = serde_json::Value::Object(event.raw.clone());
    let refusal = if !event.succeeded() {
        Some(format!(
            "status is `{}`: only successful builds are rolled out",
            event.status.as_deref().unwrap_or("missing")
        ))
    } else {
        state.intake.circleci_filter.refusal(&event)
    };
    let mut record = match refusal {
        None => Record::received(Source::CircleciNative, payload, Some(derived?)),
        Some(reason) => {
            let mut r = Record::received(Source::CircleciNative, payload, derived.ok());
            r.status = Status::Ignored;
            r.status_reason = Some(reason);
            r
        }
    };
    record.dedupe_key = Some(event.dedupe_key());
    let accepted = record_and_launch(
        state.store.as_ref(),
        state.launcher.as_ref(),
        state.intake.retry,
        record,
    )
    .await?;
    accepted_response(&base_path(&parts), accepted)
}
