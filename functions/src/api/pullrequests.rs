//! `/pullrequests`: the audit endpoints (GET, and DELETE, which redacts) and launching a stuck record again, each
//! behind the audit or admin credential ([`access`]). The orb intake (POST) is a webhook source
//! (`sources::orb`), which the intake token opens.

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use orchestrator_core::record::rfc3339;
use orchestrator_core::store::{DEFAULT_PAGE, ListQuery, MAX_PAGE, cursor};
use orchestrator_core::{EntityRef, Job, Record, RecordId, Source, Status};

use super::access::{self, Power};
use super::auth;
use super::error::ApiError;
use super::webhook::{base_path, record_response};
use crate::AppState;
use crate::dispatch::redispatch;

/// `POST /pullrequests/{id}/dispatch`: launch a record again that is `received` (a crash between
/// recording and launching) or `dispatch_failed`: a live task of its current attempt is adopted,
/// otherwise a new attempt is launched. 409 for any other status.
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

/// Longest text a [`Summary`] carries in one field (longer ones end with `…`).
pub const SUMMARY_TEXT_MAX: usize = 512;

/// A record as a listing shows it: what a table of records needs, each text clipped to
/// [`SUMMARY_TEXT_MAX`] bytes, never the payload, the outcome or the actions (the whole record is
/// `GET /pullrequests/{id}`). A page of [`MAX_PAGE`] summaries is a few hundred KB at most,
/// whatever the records hold: far below Lambda's 6 MB response limit.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Summary {
    pub id: RecordId,
    pub source: Source,
    pub received_at: String,
    pub updated_at: String,
    pub status: Status,
    pub status_reason: Option<String>,
    pub job: Option<Job>,
    pub task_arn: Option<String>,
    pub pr_url: Option<String>,
    pub entity: Option<EntityRef>,
    pub rule: Option<String>,
    pub redacted_at: Option<String>,
}

/// `s`, cut at a character boundary to at most [`SUMMARY_TEXT_MAX`] bytes (`…` included).
fn clip(s: &str) -> String {
    if s.len() <= SUMMARY_TEXT_MAX {
        return s.to_owned();
    }
    let mut end = SUMMARY_TEXT_MAX - '…'.len_utf8();
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

impl Summary {
    pub fn of(r: &Record) -> Self {
        let clip_opt = |v: &Option<String>| v.as_deref().map(clip);
        Summary {
            id: r.id,
            source: r.source,
            received_at: rfc3339::format(&r.received_at),
            updated_at: rfc3339::format(&r.updated_at),
            status: r.status,
            status_reason: clip_opt(&r.status_reason),
            // Parsed identifiers: each at most 255 bytes (`orchestrator_core::ident`).
            job: r.job.clone(),
            task_arn: clip_opt(&r.task_arn),
            pr_url: clip_opt(&r.pr_url),
            entity: r.entity.as_ref().map(|e| EntityRef {
                blueprint: clip(&e.blueprint),
                entity: clip(&e.entity),
            }),
            rule: clip_opt(&r.rule),
            redacted_at: r.redacted_at.as_ref().map(rfc3339::format),
        }
    }
}

/// A page of summaries.
#[derive(Debug, serde::Serialize)]
struct SummaryPage {
    records: Vec<Summary>,
    next_cursor: Option<String>,
}

/// `GET /pullrequests`: newest first, filtered, paginated with an opaque cursor; summaries.
pub async fn list(State(state): State<AppState>, req: Request) -> Result<Response, ApiError> {
    let (parts, _) = req.into_parts();
    access::authorize(&parts, &state.access, Power::Audit)?;
    let q = parse_list_query(auth::query_pairs(&parts.uri))?;
    let page = state.store.list(&q).await?;
    Ok(Json(SummaryPage {
        records: page.records.iter().map(Summary::of).collect(),
        next_cursor: page.next_cursor,
    })
    .into_response())
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
    fn clipping_keeps_short_text_and_cuts_long_text_at_a_character_boundary() {
        assert_eq!(clip("short"), "short");
        let long = "é".repeat(SUMMARY_TEXT_MAX);
        let c = clip(&long);
        assert!(
            c.len() <= SUMMARY_TEXT_MAX && c.ends_with('…'),
            "{}",
            c.len()
        );
        assert!(c.len() > SUMMARY_TEXT_MAX - 4);
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
