//! `/pullrequests`: the audit endpoints (GET, and DELETE, which redacts) and launching a stuck record again, each
//! behind the audit or admin credential ([`access`]). The orb intake (POST) is a webhook source
//! (`sources::orb`), which the intake token opens.

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use orchestrator_core::store::{DEFAULT_PAGE, ListQuery, MAX_PAGE, cursor};
use orchestrator_core::{RecordId, Source, Status};

use super::access::{self, Power};
use super::auth;
use super::error::ApiError;
use super::webhook::{base_path, record_response};
use crate::AppState;
use crate::dispatch::redispatch;

/// `POST /pullrequests/{id}/dispatch`: launch a record stuck in `received` (after a crash between
/// recording and launching). 409 for any other status.
pub async fn dispatch_again(
    State(state): State<AppState>,
    Path(raw): Path<String>,
    req: Request<Body>,
) -> Result<Response, ApiError> {
    let (parts, _) = req.into_parts();
    let caller = access::authorize(&parts, &state.access, Power::Admin)?;
    let id = parse_id(&raw)?;
    tracing::info!(record_id = %id, caller = %caller.label(), "re-dispatch requested");
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

/// The listing's query parameters (as [`auth::query_pairs`] reads them); unknown ones are ignored.
fn parse_list_query(pairs: Vec<(String, String)>) -> Result<ListQuery, ApiError> {
    let mut q = ListQuery::default();
    for (k, v) in pairs {
        match k.as_str() {
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
    access::authorize(&parts, &state.access, Power::Audit)?;
    let q = parse_list_query(auth::query_pairs(&parts.uri))?;
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
    access::authorize(&parts, &state.access, Power::Audit)?;
    let id = parse_id(&raw)?;
    match state.store.get(id).await? {
        Some(r) => Ok(Json(r).into_response()),
        None => Err(ApiError::NotFound(format!("record {id}"))),
    }
}

/// `DELETE /pullrequests/{id}`: redacts the record (nothing is deleted: the payload and outcome
/// are cleared, a tombstone stays, and its dedupe key keeps replays out); 200 with the tombstone,
/// 409 while its task may be running.
pub async fn delete(
    State(state): State<AppState>,
    Path(raw): Path<String>,
    req: Request<Body>,
) -> Result<Response, ApiError> {
    let (parts, _) = req.into_parts();
    let caller = access::authorize(&parts, &state.access, Power::Admin)?;
    let id = parse_id(&raw)?;
    let tomb = state.store.redact(id, &caller.label()).await?;
    tracing::info!(record_id = %id, caller = %caller.label(), "record redacted");
    Ok(Json(tomb).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(q: &str) -> Vec<(String, String)> {
        auth::query_pairs(&format!("/pullrequests?{q}").parse().unwrap())
    }

    #[test]
    fn list_query_defaults_and_errors() {
        let q = parse_list_query(auth::query_pairs(&"/pullrequests".parse().unwrap())).unwrap();
        assert_eq!(q.limit, DEFAULT_PAGE);
        let q = parse_list_query(query("limit=100&service=a%2Db&status=ignored&token=x")).unwrap();
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
                    parse_list_query(query(bad)),
                    Err(ApiError::InvalidQuery { .. })
                ),
                "{bad}"
            );
        }
    }
}
