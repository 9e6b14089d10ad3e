//! Finding records for people (the console): the store's own filters (service, status, source,
//! a cursor) plus those the store cannot answer, applied here, in the application layer, with no
//! HTTP in it: the environment (a field of the job) and a time window (`from`, `to`).
//!
//! `to` costs nothing: record ids are time-ordered (UUID v7), so the listing starts at the first
//! id after `to`. `from` stops the walk at the first older record (the listing is newest first).
//! The environment filter reads store pages until the page is full, at most
//! [`MAX_STORE_PAGES`] of them per call; a page that comes back short then still carries a cursor,
//! so the next page goes on where this one stopped.

use chrono::{DateTime, Duration, Utc};
use orchestrator_core::store::{ListQuery, MAX_PAGE, RecordStore, StoreError, cursor};
use orchestrator_core::{Record, RecordId};

/// How many store pages one [`find`] reads at most.
pub const MAX_STORE_PAGES: usize = 10;

/// What a person asks for: the store's query, and the filters applied here.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Find {
    /// Service, status, source, page size and cursor: answered by the store.
    pub store: ListQuery,
    /// Only records whose job is for this environment.
    pub environment: Option<String>,
    /// Only records received at or after this time.
    pub from: Option<DateTime<Utc>>,
    /// Only records received at or before this time.
    pub to: Option<DateTime<Utc>>,
}

/// A page of found records, newest first.
#[derive(Debug, Clone, PartialEq)]
pub struct Found {
    pub records: Vec<Record>,
    /// Pass back as the cursor for the next page; `None` on the last page.
    pub next_cursor: Option<String>,
}

fn keeps(find: &Find, r: &Record) -> bool {
    find.environment.as_deref().is_none_or(|env| {
        r.job
            .as_ref()
            .is_some_and(|j| j.environment.as_str() == env)
    }) && find.to.is_none_or(|to| r.received_at <= to)
}

/// Records matching `find`, newest first, at most `find.store.limit`.
pub async fn find(store: &dyn RecordStore, find: &Find) -> Result<Found, StoreError> {
    let limit = find.store.limit.clamp(1, MAX_PAGE) as usize;
    let mut q = find.store.clone();
    if q.after.is_none()
        && let Some(to) = find.to
    {
        // Every record received at or before `to` has a smaller id than this one.
        q.after = Some(RecordId::first_at(to + Duration::milliseconds(1)));
    }
    let mut records = Vec::new();
    for _ in 0..MAX_STORE_PAGES {
        let page = store.list(&q).await?;
        let mut last = None;
        for r in page.records {
            last = Some(r.id);
            if find.from.is_some_and(|from| r.received_at < from) {
                // Newest first: everything after this one is older still.
                return Ok(Found {
                    records,
                    next_cursor: None,
                });
            }
            if keeps(find, &r) {
                records.push(r);
                if records.len() == limit {
                    return Ok(Found {
                        next_cursor: last.map(cursor::encode),
                        records,
                    });
                }
            }
        }
        match (page.next_cursor, last) {
            (Some(_), Some(last)) => q.after = Some(last),
            _ => {
                return Ok(Found {
                    records,
                    next_cursor: None,
                });
            }
        }
    }
    Ok(Found {
        next_cursor: q.after.map(cursor::encode),
        records,
    })
}
