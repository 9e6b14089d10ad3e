//! `POST /webhooks/port`: Port changelog events, signed with the Port client secret.
//!
//! Checked in this order, and nothing is recorded until all pass: configured (503, with
//! `not_configured`, when `PORT_CLIENT_SECRET` or the rules are missing), content type and size
//! (415, 413), signature and timestamp over the raw bytes (401 `bad_signature`), payload (400).
//! Then the rules decide: a match is recorded with the rule and its actions and a remediation task
//! is launched (202); no match is recorded `ignored` with the reason (202); a redelivery of the
//! same event returns the existing record (200).

use axum::extract::{Request, State};
use axum::response::Response;

use super::body::read_json_body;
use super::error::ApiError;
use super::pullrequests::{accepted_response, base_path};
use crate::AppState;
use crate::dispatch::record_and_launch;
use crate::intake::port;

/// Receives a signed Port changelog delivery.
pub async fn receive(State(state): State<AppState>, req: Request) -> Result<Response, ApiError> {
    let settings = &state.intake.port;
    let (Some(secret), Some(rules)) = (settings.secret.as_ref(), settings.rules.as_ref()) else {
        return Err(ApiError::NotConfigured(
            "Port intake (PORT_CLIENT_SECRET, and RULES_FILE or RULES)",
        ));
    };
    let (parts, body) = req.into_parts();
    let bytes = read_json_body(&parts.headers, body).await?;
    let header = |name: &str| parts.headers.get(name).and_then(|v| v.to_str().ok());
    if let Err(e) = port::verify_signature(
        secret,
        header("x-port-timestamp"),
        header("x-port-signature"),
        &bytes,
        chrono::Utc::now(),
    ) {
        tracing::warn!(reason = %e, "Port delivery refused");
        return Err(ApiError::BadSignature);
    }
    let event = port::parse(&bytes)?;
    let record = event.to_record(rules);
    tracing::info!(
        action = %event.action,
        blueprint = event.blueprint.as_deref().unwrap_or(""),
        entity = event.entity.as_deref().unwrap_or(""),
        rule = record.rule.as_deref().unwrap_or(""),
        "Port event"
    );
    let accepted = record_and_launch(
        state.store.as_ref(),
        state.launcher.as_ref(),
        state.intake.retry,
        record,
    )
    .await?;
    accepted_response(&base_path(&parts), accepted)
}
