//! The record store port: a narrow trait with two real adapters.
//!
//! - [`dynamodb::DynamoStore`]: AWS. Listing is a `Query` on a GSI, never a `Scan`.
//! - [`sqlite::SqliteStore`]: local mode, embedded, durable (WAL), shared by the local server and
//!   the task processes it starts.
//!
//! Both run the same behavioural suite ([`suite`], feature `test-support`).

use async_trait::async_trait;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Serialize;

use chrono::{DateTime, Utc};

use crate::record::{
    HISTORY_LIMIT, HistoryEntry, Record, RecordId, Source, Status, TransitionError,
};

#[cfg(feature = "dynamodb")]
pub mod dynamodb;
#[cfg(feature = "sqlite")]
pub mod sqlite;
#[cfg(feature = "test-support")]
pub mod suite;

/// Largest page a listing returns.
pub const MAX_PAGE: u32 = 100;
/// Page size when the caller gives none.
pub const DEFAULT_PAGE: u32 = 25;

/// The outcome of [`RecordStore::create`].
#[derive(Debug, Clone, PartialEq)]
pub enum Created {
    /// The record is new and was written.
    New,
    /// Another record already holds this record's dedupe key; nothing was written.
    Duplicate(Box<Record>),
}

/// Largest outcome a record keeps, as JSON text. With the largest payload the intake accepts
/// (256 KiB), a reason of [`MAX_REASON_BYTES`] and a full history, a record stays under DynamoDB's 400 KB item
/// limit, so a task's report is never refused for its size (a step that succeeded never ends
/// `failed` because its output was long).
pub const MAX_OUTCOME_BYTES: usize = 64 * 1024;
/// Largest status reason a record keeps.
pub const MAX_REASON_BYTES: usize = 8 * 1024;
/// Largest note a history entry keeps: with [`crate::record::HISTORY_LIMIT`] entries the history
/// stays near 20 KB, inside the item limit's margin.
pub const MAX_NOTE_BYTES: usize = 512;
/// Longest string kept whole inside a capped outcome (longer ones keep their end).
const CAPPED_STRING_BYTES: usize = 1024;

/// The key a capped outcome carries: `{"original_bytes": <size of the outcome as reported>}`.
pub const TRUNCATED_MARKER: &str = "_truncated";

/// The end of `s`: at most `max` bytes, cut at a character boundary, after a `…`.
fn tail(s: &str, max: usize) -> String {
    let mut start = s.len().saturating_sub(max);
    while !s.is_char_boundary(start) {
        start += 1;
    }
    format!("…{}", &s[start..])
}

/// The start of `s`: at most `max` bytes, cut at a character boundary, before a `…`.
fn head(s: &str, max: usize) -> String {
    let mut end = max.min(s.len());
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

fn shorten_strings(v: &mut serde_json::Value) {
    match v {
        serde_json::Value::String(s) if s.len() > CAPPED_STRING_BYTES => {
            *s = tail(s, CAPPED_STRING_BYTES);
        }
        serde_json::Value::Array(a) => a.iter_mut().for_each(shorten_strings),
        serde_json::Value::Object(o) => o.values_mut().for_each(shorten_strings),
        _ => {}
    }
}

/// `outcome` as a record keeps it: unchanged when its JSON fits in [`MAX_OUTCOME_BYTES`];
/// otherwise with every long string cut to its end (output tails say most), and if that is
/// still too big, the start of its JSON text as `head`. A capped outcome says so:
/// [`TRUNCATED_MARKER`] with the original size.
pub fn cap_outcome(outcome: &serde_json::Value) -> serde_json::Value {
    let original = outcome.to_string().len();
    if original <= MAX_OUTCOME_BYTES {
        return outcome.clone();
    }
    let marker = serde_json::json!({ "original_bytes": original });
    // Room for the marker and the wrapping.
    let budget = MAX_OUTCOME_BYTES - 256;
    let mut short = outcome.clone();
    shorten_strings(&mut short);
    let text = short.to_string();
    if text.len() <= budget {
        return match short {
            serde_json::Value::Object(mut o) => {
                o.insert(TRUNCATED_MARKER.into(), marker);
                serde_json::Value::Object(o)
            }
            other => serde_json::json!({ TRUNCATED_MARKER: marker, "value": other }),
        };
    }
    // JSON-escaping the head may grow it (quotes, backslashes): a quarter of the room is safe.
    serde_json::json!({ TRUNCATED_MARKER: marker, "head": head(&text, budget / 4) })
}

/// A status change and the fields that come with it. `None` fields are left as they are.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Transition {
    pub to: Option<Status>,
    pub reason: Option<String>,
    pub task_arn: Option<String>,
    pub pr_url: Option<String>,
    pub branch: Option<String>,
    pub outcome: Option<serde_json::Value>,
    /// An ECS state-change version: the change is refused as stale unless it is newer than the
    /// record's.
    pub task_version: Option<i64>,
    pub task_stop: Option<serde_json::Value>,
    /// The change only lands while the record's current attempt is this one: a task or a
    /// recovery step of a superseded attempt is refused ([`StoreError::Superseded`]).
    pub expect_attempt: Option<u32>,
    /// Starts a new launch attempt: must be the current attempt + 1.
    pub attempt: Option<u32>,
    /// Sets (`Some(Some(t))`) or clears (`Some(None)`) the pending retry of a `dispatch_failed`
    /// record.
    pub retry_at: Option<Option<DateTime<Utc>>>,
    /// A recovery decision to keep in the history (a history entry is written for every status
    /// change, with or without one).
    pub note: Option<String>,
}

impl Transition {
    pub fn to(status: Status) -> Self {
        Self {
            to: Some(status),
            ..Self::default()
        }
    }

    pub fn reason(mut self, reason: impl Into<String>) -> Self {
        self.reason = Some(reason.into());
        self
    }

    pub fn task_arn(mut self, arn: impl Into<String>) -> Self {
        self.task_arn = Some(arn.into());
        self
    }

    /// Only while the record's attempt is `attempt`.
    pub fn at_attempt(mut self, attempt: u32) -> Self {
        self.expect_attempt = Some(attempt);
        self
    }

    pub fn note(mut self, note: impl Into<String>) -> Self {
        self.note = Some(note.into());
        self
    }

    /// Applies the change to `record`, refusing a move the state machine forbids and an ECS event
    /// older than one already applied.
    pub fn apply(&self, record: &Record) -> Result<Record, StoreError> {
        let mut next = record.clone();
        if let Some(want) = self.expect_attempt
            && want != record.attempt
        {
            return Err(StoreError::Superseded {
                current: record.attempt,
                got: want,
            });
        }
        if let Some(a) = self.attempt {
            // A new attempt starts only for a record no task is working on.
            if !matches!(record.status, Status::Received | Status::DispatchFailed) {
                return Err(StoreError::Conflict(TransitionError {
                    from: record.status,
                    to: Status::Dispatched,
                }));
            }
            if a != record.attempt + 1 {
                return Err(StoreError::Superseded {
                    current: record.attempt,
                    got: a,
                });
            }
            next.attempt = a;
            // ECS numbers each task's events from 1: the new attempt's task starts afresh.
            next.task_version = None;
        }
        if let Some(v) = self.task_version {
            if let Some(current) = record.task_version.filter(|c| *c >= v) {
                return Err(StoreError::Stale { current, got: v });
            }
            next.task_version = Some(v);
        }
        if let Some(v) = &self.task_stop {
            next.task_stop = Some(v.clone());
        }
        if let Some(to) = self.to {
            if !record.status.can_become(to) {
                return Err(StoreError::Conflict(TransitionError {
                    from: record.status,
                    to,
                }));
            }
            next.status = to;
        }
        if let Some(r) = &self.reason {
            next.status_reason = Some(if r.len() > MAX_REASON_BYTES {
                head(r, MAX_REASON_BYTES)
            } else {
                r.clone()
            });
        }
        if let Some(v) = &self.task_arn {
            next.task_arn = Some(v.clone());
        }
        if let Some(v) = &self.pr_url {
            next.pr_url = Some(v.clone());
        }
        if let Some(v) = &self.branch {
            next.branch = Some(v.clone());
        }
        if let Some(v) = &self.outcome {
            next.outcome = Some(cap_outcome(v));
        }
        if let Some(v) = self.retry_at {
            next.retry_at = v;
        } else if next.status != Status::DispatchFailed {
            next.retry_at = None;
        }
        next.updated_at = crate::record::now().max(record.updated_at);
        if next.status != record.status || self.note.is_some() || next.attempt != record.attempt {
            let note = self
                .note
                .clone()
                .or_else(|| {
                    (next.status != record.status)
                        .then(|| self.reason.clone())
                        .flatten()
                })
                .map(|n| {
                    if n.len() > MAX_NOTE_BYTES {
                        head(&n, MAX_NOTE_BYTES)
                    } else {
                        n
                    }
                });
            next.history.push(HistoryEntry {
                at: next.updated_at,
                status: next.status,
                attempt: next.attempt,
                note,
            });
            let excess = next.history.len().saturating_sub(HISTORY_LIMIT);
            next.history.drain(..excess);
        }
        Ok(next)
    }
}

/// The tombstone of `record`, redacted by `by` at `at`: the payload and the outcome (the task's
/// report, which may quote it) are cleared; the id, status, reason, job, dedupe key, task and PR
/// references and every other field stay. A record whose task may still be running (`received`,
/// `dispatched`, `running`) is refused: its task would write an outcome into the tombstone. A
/// record already redacted is returned as it is (the first redaction's author and time stay).
pub fn redact(
    record: &Record,
    by: &str,
    at: chrono::DateTime<chrono::Utc>,
) -> Result<Record, StoreError> {
    if record.redacted_at.is_some() {
        return Ok(record.clone());
    }
    // A task may be running (`received`, `dispatched`, `running`), or the recovery sweeper will
    // launch one (`dispatch_failed` with a retry pending).
    if !record.is_settled() {
        return Err(StoreError::InFlight {
            id: record.id,
            status: record.status,
        });
    }
    let mut tomb = record.clone();
    tomb.payload = serde_json::Value::Null;
    tomb.outcome = None;
    tomb.redacted_by = Some(by.to_owned());
    tomb.redacted_at = Some(at);
    tomb.updated_at = at.max(record.updated_at);
    tomb.history.push(HistoryEntry {
        at: tomb.updated_at,
        status: tomb.status,
        attempt: tomb.attempt,
        note: Some(format!("redacted by {by}")),
    });
    let excess = tomb.history.len().saturating_sub(HISTORY_LIMIT);
    tomb.history.drain(..excess);
    Ok(tomb)
}

/// A listing request. Newest first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListQuery {
    pub limit: u32,
    /// Start after this record (from a previous page's cursor).
    pub after: Option<RecordId>,
    pub service: Option<String>,
    pub status: Option<Status>,
    pub source: Option<Source>,
}

impl Default for ListQuery {
    fn default() -> Self {
        Self {
            limit: DEFAULT_PAGE,
            after: None,
            service: None,
            status: None,
            source: None,
        }
    }
}

/// One page of a listing.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Page {
    pub records: Vec<Record>,
    /// Pass back as `cursor` for the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

/// Opaque listing cursors: clients must not build or read them.
pub mod cursor {
    use super::*;

    const PREFIX: &str = "r1:";

    pub fn encode(last: RecordId) -> String {
        URL_SAFE_NO_PAD.encode(format!("{PREFIX}{last}"))
    }

    pub fn decode(s: &str) -> Result<RecordId, StoreError> {
        let bytes = URL_SAFE_NO_PAD
            .decode(s)
            .map_err(|_| StoreError::InvalidCursor)?;
        let text = String::from_utf8(bytes).map_err(|_| StoreError::InvalidCursor)?;
        text.strip_prefix(PREFIX)
            .and_then(|id| id.parse().ok())
            .ok_or(StoreError::InvalidCursor)
    }
}

/// What can go wrong in a store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("record {0} not found")]
    NotFound(RecordId),
    #[error(transparent)]
    Conflict(#[from] TransitionError),
    #[error("event version {got} is not newer than the applied version {current}")]
    Stale { current: i64, got: i64 },
    /// The change was made for another launch attempt than the record's current one.
    #[error("attempt {got} is not the record's current attempt {current}")]
    Superseded { current: u32, got: u32 },
    #[error(
        "record {id} is `{status}`: its task may be running, or a launch retry is pending, so it cannot be redacted yet"
    )]
    InFlight { id: RecordId, status: Status },
    #[error("the cursor is not one this API issued")]
    InvalidCursor,
    #[error("store backend error: {0}")]
    Backend(String),
}

/// The record store port.
#[async_trait]
pub trait RecordStore: Send + Sync + std::fmt::Debug {
    /// Writes a new record. When `record.dedupe_key` is set and another record already holds it,
    /// writes nothing and returns that record.
    async fn create(&self, record: &Record) -> Result<Created, StoreError>;

    async fn get(&self, id: RecordId) -> Result<Option<Record>, StoreError>;

    /// Newest first, filtered, at most `query.limit` (capped at [`MAX_PAGE`]) records.
    async fn list(&self, query: &ListQuery) -> Result<Page, StoreError>;

    /// Replaces the record with its tombstone ([`redact`]), atomically like [`transition`]
    /// (a concurrent status change is re-read and re-checked). Nothing is ever deleted: the
    /// dedupe key stays held, so a replay of the delivery is still a duplicate. Retention is the
    /// store's business (DynamoDB: a TTL attribute).
    ///
    /// [`transition`]: RecordStore::transition
    async fn redact(&self, id: RecordId, by: &str) -> Result<Record, StoreError>;

    /// Applies `change` atomically: the write only lands if the record still has the status it
    /// was read with, so concurrent writers never lose an outcome. Returns the new record.
    async fn transition(&self, id: RecordId, change: &Transition) -> Result<Record, StoreError>;

    /// [`transition`](Self::transition) for a caller that holds the record as it was last
    /// written (it has just created or changed it): a store may skip reading it again. The write
    /// still lands only if the stored record is exactly `current`; otherwise the store re-reads
    /// it and applies `change` to what it finds, as `transition` does.
    async fn transition_from(
        &self,
        current: &Record,
        change: &Transition,
    ) -> Result<Record, StoreError> {
        self.transition(current.id, change).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_outcomes_are_kept_as_they_are() {
        let v = serde_json::json!({"outcome": "succeeded", "output": "x".repeat(60 * 1024)});
        assert_eq!(cap_outcome(&v), v);
    }

    #[test]
    fn a_big_outcome_keeps_its_shape_and_the_ends_of_its_strings() {
        let output = format!("{}THE END", "a".repeat(1024 * 1024));
        let v = serde_json::json!({"outcome": "succeeded", "pr_url": "https://x/pr/1", "steps": [{"id": "s1", "output": output}]});
        let c = cap_outcome(&v);
        assert!(
            c.to_string().len() <= MAX_OUTCOME_BYTES,
            "{}",
            c.to_string().len()
        );
        assert_eq!(c["outcome"], "succeeded");
        assert_eq!(c["pr_url"], "https://x/pr/1");
        assert_eq!(c["steps"][0]["id"], "s1");
        assert!(
            c["steps"][0]["output"]
                .as_str()
                .unwrap()
                .ends_with("THE END")
        );
        assert_eq!(c[TRUNCATED_MARKER]["original_bytes"], v.to_string().len());
    }

    #[test]
    fn an_outcome_of_many_small_parts_keeps_its_start() {
        let v = serde_json::json!(
            (0..20_000)
                .map(|i| format!("\"line {i}\""))
                .collect::<Vec<_>>()
        );
        let c = cap_outcome(&v);
        assert!(
            c.to_string().len() <= MAX_OUTCOME_BYTES,
            "{}",
            c.to_string().len()
        );
        assert!(
            c["head"].as_str().unwrap().starts_with("[\"\\\"line 0"),
            "{}",
            &c["head"]
        );
        assert!(c[TRUNCATED_MARKER]["original_bytes"].as_u64().unwrap() > MAX_OUTCOME_BYTES as u64);
    }

    #[test]
    fn long_reasons_are_cut() {
        let r = Record::received(Source::CircleciOrb, serde_json::json!({}), None);
        let next = Transition::to(Status::DispatchFailed)
            .reason("é".repeat(MAX_REASON_BYTES))
            .apply(&r)
            .unwrap();
        let reason = next.status_reason.unwrap();
        assert!(reason.len() <= MAX_REASON_BYTES + '…'.len_utf8() && reason.ends_with('…'));
    }

    #[test]
    fn cursors_round_trip_and_reject_forgeries() {
        let id = RecordId::new();
        assert_eq!(cursor::decode(&cursor::encode(id)).unwrap(), id);
        for bad in [
            "",
            "abc",
            "%%%",
            &URL_SAFE_NO_PAD.encode("r1:not-a-uuid"),
            &URL_SAFE_NO_PAD.encode(id.to_string()),
        ] {
            assert!(
                matches!(cursor::decode(bad), Err(StoreError::InvalidCursor)),
                "{bad}"
            );
        }
    }
}
