//! `/pullrequests`: the CircleCI orb intake (POST) and the audit endpoints (GET, DELETE).

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use orchestrator_core::store::{DEFAULT_PAGE, ListQuery, MAX_PAGE, cursor};
use orchestrator_core::{Record, RecordId, Source, Status, Tag};

use super::auth;
use super::body::read_json_body;
use super::error::ApiError;
use crate::AppState;
use crate::dispatch::{Accepted, record_and_launch, redispatch};
use crate::intake::{PayloadError, derive::Vars, orb};

/// The path prefix the client used (an API Gateway REST stage such as `/dev`), for `Location`.
pub fn base_path(parts: &Parts) -> String {
    use lambda_http::request::RequestContext;
    let stage = match parts.extensions.get::<RequestContext>() {
        Some(RequestContext::ApiGatewayV1(c)) => c.stage.clone(),
        Some(RequestContext::ApiGatewayV2(c)) => c.stage.clone(),
        _ => None,
    };
    match stage {
        Some(s) if !s.is_empty() && s != "$default" => format!("/{s}"),
        _ => String::new(),
    }
}

fn record_response(status: StatusCode, base: &str, record: &Record) -> Response {
    let mut resp = (status, Json(record)).into_response();
    if let Ok(v) = HeaderValue::from_str(&format!("{base}/pullrequests/{}", record.id)) {
        resp.headers_mut().insert(header::LOCATION, v);
    }
    resp
}

/// `POST /pullrequests`: a CircleCI webhook-orb delivery.
pub async fn create(State(state): State<AppState>, req: Request) -> Result<Response, ApiError> {
    let (parts, body) = req.into_parts();
    auth::check(&parts, state.intake.token.as_ref())?;
    let bytes = read_json_body(&parts.headers, body).await?;
    let event = orb::parse(&bytes)?;
    let org = event.org();
    let vars = Vars {
        reponame: &event.reponame,
        org: org.as_deref(),
        job: &event.job,
        branch: event.branch.as_deref(),
    };
    let tag = Tag::parse(event.vcs_revision.as_str()).map_err(|e| PayloadError::InvalidField {
        field: "vcs_revision",
        reason: e.to_string(),
    })?;
    let derived = state.intake.derive.derive(&vars, &tag);
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
    record.dedupe_key = Some(event.dedupe_key());
    let base = base_path(&parts);
    accepted_response(
        &base,
        record_and_launch(
            state.store.as_ref(),
            state.launcher.as_ref(),
            state.intake.retry,
            record,
        )
        .await?,
    )
}

/// 202 for a new record, 200 for a redelivery of a recorded event; `Location` either way.
pub fn accepted_response(base: &str, accepted: Accepted) -> Result<Response, ApiError> {
    Ok(match accepted {
        Accepted::New(r) => record_response(StatusCode::ACCEPTED, base, &r),
        Accepted::Duplicate(r) => record_response(StatusCode::OK, base, &r),
    })
}

/// `POST /pullrequests/{id}/dispatch`: launch a record stuck in `received` (after a crash between
/// recording and launching). 409 for any other status.
pub async fn dispatch_again(
    State(state): State<AppState>,
    Path(raw): Path<String>,
    req: Request<Body>,
) -> Result<Response, ApiError> {
    let (parts, _) = req.into_parts();
    auth::check(&parts, state.intake.token.as_ref())?;
    let id = parse_id(&raw)?;
    let record = redispatch(
        state.store.as_ref(),
        state.launcher.as_ref(),
        state.intake.retry,
        id,
    )
    .await?;
    Ok(record_response(
        StatusCode::ACCEPTED,
        &base_path(&parts),
        &record,
    ))
}

fn parse_list_query(query: Option<&str>) -> Result<ListQuery, ApiError> {
    let mut q = ListQuery::default();
    for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let v = auth::percent_decode(v);
        match k {
            "limit" => {
                q.limit = v
                    .parse::<u32>()
                    .ok()
                    .filter(|n| (1..=MAX_PAGE).contains(n))
                    .ok_or_else(|| ApiError::InvalidQuery {
                        param: "limit",
                        reason: format!(
                            "must be an integer from 1 to {MAX_PAGE} (default {DEFAULT_PAGE})"
                        ),
                    })?;
            }
            "cursor" if !v.is_empty() => q.after = Some(cursor::decode(&v)?),
            "service" if !v.is_empty() => q.service = Some(v),
            "status" if !v.is_empty() => {
                q.status = Some(
                    v.parse::<Status>()
                        .map_err(|reason| ApiError::InvalidQuery {
                            param: "status",
                            reason,
                        })?,
                )
            }
            "source" if !v.is_empty() => {
                q.source = Some(
                    v.parse::<Source>()
                        .map_err(|reason| ApiError::InvalidQuery {
                            param: "source",
                            reason,
                        })?,
                )
            }
            _ => {}
        }
    }
    Ok(q)
}

/// `GET /pullrequests`: newest first, filtered, paginated with an opaque cursor.
pub async fn list(State(state): State<AppState>, req: Request) -> Result<Response, ApiError> {
    let (parts, _) = req.into_parts();
    auth::check(&parts, state.intake.token.as_ref())?;
    let q = parse_list_query(parts.uri.query())?;
    let page = state.store.list(&q).await?;
    Ok(Json(page).into_response())
}

fn parse_id(raw: &str) -> Result<RecordId, ApiError> {
    raw.parse()
        .map_err(|_| ApiError::NotFound(format!("record `{raw}`")))
}

/// `GET /pullrequests/{id}`.
pub async fn show(
    State(state): State<AppState>,
    Path(raw): Path<String>,
    req: Request<Body>,
) -> Result<Response, ApiError> {
    let (parts, _) = req.into_parts();
    auth::check(&parts, state.intake.token.as_ref())?;
    let id = parse_id(&raw)?;
    match state.store.get(id).await? {
        Some(r) => Ok(Json(r).into_response()),
        None => Err(ApiError::NotFound(format!("record {id}"))),
    }
}

/// `DELETE /pullrequests/{id}`: 204 when deleted.
pub async fn delete(
    State(state): State<AppState>,
    Path(raw): Path<String>,
    req: Request<Body>,
) -> Result<Response, ApiError> {
    let (parts, _) = req.into_parts();
    auth::check(&parts, state.intake.token.as_ref())?;
    let id = parse_id(&raw)?;
    if state.store.delete(id).await? {
        tracing::info!(record_id = %id, "record deleted");
        Ok(StatusCode::NO_CONTENT.into_response())
    } else {
        Err(ApiError::NotFound(format!("record {id}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_query_defaults_and_errors() {
        let q = parse_list_query(None).unwrap();
        assert_eq!(q.limit, DEFAULT_PAGE);
        let q = parse_list_query(Some("limit=100&service=a%2Db&status=ignored&token=x")).unwrap();
        assert_eq!(
            (q.limit, q.service.as_deref(), q.status),
            (100, Some("a-b"), Some(Status::Ignored))
        );
        for bad in [
            "limit=0",
            "limit=101",
            "limit=x",
            "status=bogus",
            "cursor=abc",
            "source=nope",
        ] {
            assert!(
                matches!(
                    parse_list_query(Some(bad)),
                    Err(ApiError::InvalidQuery { .. })
                ),
                "{bad}"
            );
        }
    }
}
