//! [`Notifying`]: a record store that tells [`Notify`] about each transition its inner store
//! accepted, after the write and only then.
//!
//! Every writer of a transition (the task after its outcome, the lifecycle function, the
//! sweeper, dispatch) holds its store through this wrapper, so a message is sent from where the
//! transition happens. The store's conditional write decides: a change refused (already in that
//! state, superseded by another attempt, a stale ECS event) returns an error and sends nothing,
//! so a reporter that retries, or an event delivered twice, makes one message.
//!
//! Sending waits for the targets (each bounded by the notifier's short timeout), then returns
//! the transition's own result unchanged: a failing target never changes the work's outcome.

use std::sync::Arc;

use async_trait::async_trait;
use orchestrator_core::store::{Created, ListQuery, Page, RecordStore, StoreError, Transition};
use orchestrator_core::{Record, RecordId};

use crate::event::Event;
use crate::send::Notifier;

/// Something told about events. Never fails: it logs what it could not do.
#[async_trait]
pub trait Notify: Send + Sync + std::fmt::Debug {
    async fn notify(&self, event: Event, record: &Record);
}

#[async_trait]
impl Notify for Notifier {
    async fn notify(&self, event: Event, record: &Record) {
        self.send(event, record).await;
    }
}

/// A [`RecordStore`] that notifies after each accepted transition.
#[derive(Debug)]
pub struct Notifying {
    inner: Arc<dyn RecordStore>,
    notify: Arc<dyn Notify>,
}

impl Notifying {
    pub fn new(inner: Arc<dyn RecordStore>, notify: Arc<dyn Notify>) -> Self {
        Self { inner, notify }
    }

    /// `inner`, notifying through `notify` when there is one.
    pub fn wrap(
        inner: Arc<dyn RecordStore>,
        notify: Option<Arc<dyn Notify>>,
    ) -> Arc<dyn RecordStore> {
        match notify {
            Some(n) => Arc::new(Self::new(inner, n)),
            None => inner,
        }
    }
}

#[async_trait]
impl RecordStore for Notifying {
    async fn create(&self, record: &Record) -> Result<Created, StoreError> {
        self.inner.create(record).await
    }

    async fn get(&self, id: RecordId) -> Result<Option<Record>, StoreError> {
        self.inner.get(id).await
    }

    async fn list(&self, query: &ListQuery) -> Result<Page, StoreError> {
        self.inner.list(query).await
    }

    async fn redact(&self, id: RecordId, by: &str) -> Result<Record, StoreError> {
        self.inner.redact(id, by).await
    }

    async fn transition(&self, id: RecordId, change: &Transition) -> Result<Record, StoreError> {
        let record = self.inner.transition(id, change).await?;
        if let Some(event) = Event::of(change, &record) {
            self.notify.notify(event, &record).await;
        }
        Ok(record)
    }
}
