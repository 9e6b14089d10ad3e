//! The embedded store for local mode: SQLite (bundled) in WAL mode.
//!
//! One file (`<data dir>/records.sqlite3`) is shared by the local server and the task processes it
//! launches; SQLite's locking and a busy timeout make that safe. The record is stored as its JSON
//! document, with the columns that listings filter on beside it. Rows are never deleted (a
//! redaction rewrites the document); local mode has no retention (`RECORD_RETENTION_DAYS` is a
//! DynamoDB TTL and is ignored here).
//!
//! Every transaction that writes begins `IMMEDIATE`: it takes the write lock before its first
//! read, waiting up to [`BUSY_TIMEOUT`] for it. A deferred transaction that reads and then
//! writes cannot wait: when another process holds the lock or wrote since the read, SQLite
//! refuses the upgrade at once (`database is locked`) without calling the busy handler.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use rusqlite::{Connection, OptionalExtension, params};

use super::{Created, ListQuery, MAX_PAGE, Page, RecordStore, StoreError, Transition, cursor};
use crate::record::{Record, RecordId};

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS records (
    id          TEXT PRIMARY KEY,
    source      TEXT NOT NULL,
    status      TEXT NOT NULL,
    service     TEXT,
    dedupe_key  TEXT UNIQUE,
    doc         TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS records_by_service ON records(service, id);
CREATE INDEX IF NOT EXISTS records_by_status ON records(status, id);
CREATE INDEX IF NOT EXISTS records_by_source ON records(source, id);
";

/// How long a writer waits for another connection (the server or a task process) to release the
/// write lock before it fails. Write transactions last milliseconds; this bounds a pile-up, well
/// inside the HTTP request timeout.
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// SQLite-backed [`RecordStore`].
#[derive(Debug, Clone)]
pub struct SqliteStore {
    conn: Arc<Mutex<Connection>>,
    path: PathBuf,
}

impl SqliteStore {
    /// The database file inside a data directory.
    pub fn file_in(dir: &Path) -> PathBuf {
        dir.join("records.sqlite3")
    }

    /// Opens (creating if needed) the database at `path`.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|e| {
                StoreError::Backend(format!("cannot create {}: {e}", parent.display()))
            })?;
        }
        let conn = Connection::open(path).map_err(backend)?;
        conn.busy_timeout(BUSY_TIMEOUT).map_err(backend)?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(backend)?;
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(backend)?;
        conn.execute_batch(SCHEMA).map_err(backend)?;
        Ok(Self {
            conn: Arc::new(Mutex::new(conn)),
            path: path.to_owned(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    async fn with<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let conn = self.conn.clone();
        tokio::task::spawn_blocking(move || {
            let mut guard = conn
                .lock()
                .map_err(|_| StoreError::Backend("sqlite connection lock poisoned".into()))?;
            f(&mut guard)
        })
        .await
        .map_err(|e| StoreError::Backend(format!("sqlite worker failed: {e}")))?
    }
}

fn backend(e: rusqlite::Error) -> StoreError {
    StoreError::Backend(format!("sqlite: {e}"))
}

fn to_doc(r: &Record) -> Result<String, StoreError> {
    serde_json::to_string(r).map_err(|e| StoreError::Backend(format!("encode record: {e}")))
}

fn from_doc(doc: &str) -> Result<Record, StoreError> {
    serde_json::from_str(doc).map_err(|e| StoreError::Backend(format!("decode record: {e}")))
}

fn read(conn: &Connection, id: &str) -> Result<Option<Record>, StoreError> {
    conn.query_row("SELECT doc FROM records WHERE id = ?1", [id], |row| {
        row.get::<_, String>(0)
    })
    .optional()
    .map_err(backend)?
    .map(|d| from_doc(&d))
    .transpose()
}

#[async_trait]
impl RecordStore for SqliteStore {
    async fn create(&self, record: &Record) -> Result<Created, StoreError> {
        let r = record.clone();
        let doc = to_doc(&r)?;
        self.with(move |conn| {
            // IMMEDIATE: the dedupe lookup and the insert happen under the write lock (see the
            // module docs).
            let tx = conn
                .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
                .map_err(backend)?;
            if let Some(key) = &r.dedupe_key {
                let existing: Option<String> = tx
                    .query_row("SELECT doc FROM records WHERE dedupe_key = ?1", [key], |row| {
                        row.get(0)
                    })
                    .optional()
                    .map_err(backend)?;
                if let Some(doc) = existing {
                    return Ok(Created::Duplicate(Box::new(from_doc(&doc)?)));
                }
            }
            tx.execute(
                "INSERT INTO records (id, source, status, service, dedupe_key, doc) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![
                    r.id.to_string(),
                    r.source.as_str(),
                    r.status.as_str(),
                    r.job.as_ref().map(|j| j.service.clone()),
                    r.dedupe_key,
                    doc
                ],
            )
            .map_err(backend)?;
            tx.commit().map_err(backend)?;
            Ok(Created::New)
        })
        .await
    }

    async fn get(&self, id: RecordId) -> Result<Option<Record>, StoreError> {
        self.with(move |conn| read(conn, &id.to_string())).await
    }

    async fn list(&self, q: &ListQuery) -> Result<Page, StoreError> {
        let q = q.clone();
        self.with(move |conn| {
            let limit = q.limit.clamp(1, MAX_PAGE);
            let mut stmt = conn
                .prepare_cached(
                    "SELECT doc FROM records
                     WHERE (?1 IS NULL OR service = ?1)
                       AND (?2 IS NULL OR status = ?2)
                       AND (?3 IS NULL OR source = ?3)
                       AND (?4 IS NULL OR id < ?4)
                     ORDER BY id DESC LIMIT ?5",
                )
                .map_err(backend)?;
            let docs = stmt
                .query_map(
                    params![
                        q.service,
                        q.status.map(|s| s.as_str()),
                        q.source.map(|s| s.as_str()),
                        q.after.map(|a| a.to_string()),
                        i64::from(limit) + 1
                    ],
                    |row| row.get::<_, String>(0),
                )
                .map_err(backend)?
                .collect::<Result<Vec<_>, _>>()
                .map_err(backend)?;
            let mut records = docs
                .iter()
                .map(|d| from_doc(d))
                .collect::<Result<Vec<_>, _>>()?;
            let more = records.len() > limit as usize;
            records.truncate(limit as usize);
            let next_cursor = if more {
                records.last().map(|r| cursor::encode(r.id))
            } else {
                None
            };
            Ok(Page {
                records,
                next_cursor,
            })
        })
        .await
    }

    async fn redact(&self, id: RecordId, by: &str) -> Result<Record, StoreError> {
        let by = by.to_owned();
        self.update_with(id, move |r| super::redact(r, &by, crate::record::now()))
            .await
    }

    async fn transition(&self, id: RecordId, change: &Transition) -> Result<Record, StoreError> {
        let change = change.clone();
        self.update_with(id, move |r| change.apply(r)).await
    }
}

impl SqliteStore {
    /// Reads the record, changes it with `f` and writes it back, in one write transaction.
    async fn update_with(
        &self,
        id: RecordId,
        f: impl FnOnce(&Record) -> Result<Record, StoreError> + Send + 'static,
    ) -> Result<Record, StoreError> {
        self.with(move |conn| {
            // IMMEDIATE takes the write lock before the read: no other writer (server or task
            // process) can slip in between the check and the write.
            let tx = conn
                .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
                .map_err(backend)?;
            let current = read(&tx, &id.to_string())?.ok_or(StoreError::NotFound(id))?;
            let next = f(&current)?;
            tx.execute(
                "UPDATE records SET status = ?2, doc = ?3 WHERE id = ?1",
                params![id.to_string(), next.status.as_str(), to_doc(&next)?],
            )
            .map_err(backend)?;
            tx.commit().map_err(backend)?;
            Ok(next)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn reopening_keeps_records() {
        let dir = tempfile::tempdir().unwrap();
        let path = SqliteStore::file_in(dir.path());
        let rec = Record::received(
            crate::Source::CircleciOrb,
            serde_json::json!({"a": 1}),
            None,
        );
        SqliteStore::open(&path)
            .unwrap()
            .create(&rec)
            .await
            .unwrap();
        let again = SqliteStore::open(&path).unwrap();
        assert_eq!(again.get(rec.id).await.unwrap(), Some(rec));
    }
}
