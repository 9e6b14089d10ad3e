//! The one handler of every webhook source ([`crate::sources`]): configured, authenticated, body
//! read, signature verified, decoded, turned into a record, then handed to the application layer
//! ([`crate::dispatch::record_and_launch`]). Nothing is recorded until every check passed.
//!
//! 202 with the record for a new event, 200 with the existing record for a redelivery; a
//! `Location` header either way.
//!
//! Every source takes a `dry_run` query parameter (`?dry_run=true`): the record is a dry run
//! ([`crate::intake::dry_run`]), as it is for a service `DRY_RUN_SERVICES` names.

use axum::Json;
use axum::extract::{Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use orchestrator_core::Record;

use super::body::read_json_body;
use super::error::ApiError;
use crate::dispatch::{Accepted, record_and_launch};
use crate::intake::dry_run;
use crate::sources::WebhookSource;
use crate::{AppState, api_stage};

/// Receives one delivery of source `S`.
pub async fn receive<S: WebhookSource>(
    State(state): State<AppState>,
    req: Request,
) -> Result<Response, ApiError> {
    let (parts, body) = req.into_parts();
    let record = {
        let config = S::configured(&state.intake)?;
        S::authenticate(&config, &parts)?;
        let bytes = read_json_body(&parts.headers, body).await?;
        S::verify(&config, &parts, &bytes)?;
        let event = S::decode(&bytes)?;
        let dedupe_key = S::dedupe_key(&event);
        let mut record = S::record(&config, event)?;
        let asked = match super::auth::query_param(&parts.uri, "dry_run") {
            Some(v) => dry_run::parse_flag("dry_run", &v)?,
            None => false,
        };
        dry_run::apply(
            &mut record,
            asked,
            &state.intake.dry_run_services,
            dedupe_key,
        );
        record
    };
    let accepted = record_and_launch(
        state.store.as_ref(),
        state.launcher.as_ref(),
        state.intake.retry,
        record,
    )
    .await?;
    Ok(accepted_response(&base_path(&parts), accepted))
}

/// The path prefix the client used (an API Gateway REST stage such as `/dev`), for `Location`.
pub fn base_path(parts: &Parts) -> String {
    api_stage(&parts.extensions).map_or_else(String::new, |s| format!("/{s}"))
}

/// The record as JSON with `status`, and its `Location`.
pub fn record_response(status: StatusCode, base: &str, record: &Record) -> Response {
    let mut resp = (status, Json(record)).into_response();
    if let Ok(v) = HeaderValue::from_str(&format!("{base}/pullrequests/{}", record.id)) {
        resp.headers_mut().insert(header::LOCATION, v);
    }
    resp
}

/// 202 for a new record, 200 for a redelivery of a recorded event; `Location` either way.
pub fn accepted_response(base: &str, accepted: Accepted) -> Response {
    match accepted {
        Accepted::New(r) => record_response(StatusCode::ACCEPTED, base, &r),
        Accepted::Duplicate(r) => record_response(StatusCode::OK, base, &r),
    }
}
