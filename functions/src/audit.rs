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

#[cfg(test)]
mod tests {
    use super::*;
    use orchestrator_core::store::sqlite::SqliteStore;
    use orchestrator_core::{Job, Source};

    async fn store_with(envs: &[&str]) -> (tempfile::TempDir, SqliteStore, Vec<Record>) {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&SqliteStore::file_in(dir.path())).unwrap();
        let mut made = Vec::new();
        for (i, env) in envs.iter().enumerate() {
            let job = Job::parse("svc", "acme/svc", env, &format!("{i:07x}")).unwrap();
            let r = Record::received(Source::CircleciOrb, serde_json::json!({}), Some(job));
            store.create(&r).await.unwrap();
            made.push(r);
            tokio::time::sleep(std::time::Duration::from_millis(3)).await;
        }
        made.reverse(); // newest first
        (dir, store, made)
    }

    fn ids(rs: &[Record]) -> Vec<RecordId> {
        rs.iter().map(|r| r.id).collect()
    }

    #[tokio::test]
    async fn the_environment_filter_pages_through_every_match_in_order() {
        let envs = ["prod", "dev", "dev", "prod", "dev", "prod", "dev"];
        let (_d, store, made) = store_with(&envs).await;
        let want: Vec<_> = made
            .iter()
            .filter(|r| r.job.as_ref().unwrap().environment.as_str() == "prod")
            .map(|r| r.id)
            .collect();
        let mut f = Find {
            environment: Some("prod".into()),
            ..Find::default()
        };
        f.store.limit = 2;
        let mut got = Vec::new();
        loop {
            let page = find(&store, &f).await.unwrap();
            assert!(page.records.len() <= 2);
            got.extend(ids(&page.records));
            match page.next_cursor {
                Some(c) => f.store.after = Some(cursor::decode(&c).unwrap()),
                None => break,
            }
        }
        assert_eq!(got, want);
    }

    #[tokio::test]
    async fn from_and_to_keep_the_records_received_in_the_window() {
        let (_d, store, made) = store_with(&["a1", "a2", "a3", "a4", "a5"]).await;
        // Newest first: made[1] .. made[3] are inside [made[3].received_at, made[1].received_at].
        let f = Find {
            from: Some(made[3].received_at),
            to: Some(made[1].received_at),
            ..Find::default()
        };
        let page = find(&store, &f).await.unwrap();
        assert_eq!(ids(&page.records), ids(&made[1..4]));
        assert_eq!(page.next_cursor, None);
        let all = find(&store, &Find::default()).await.unwrap();
        assert_eq!(ids(&all.records), ids(&made));
    }
}
