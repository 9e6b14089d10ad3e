//! Record first, then launch, then record the launch: the one path every intake source takes.

use orchestrator_core::store::{Created, RecordStore, Transition};
use orchestrator_core::{LaunchContract, Record, Status};

use crate::api::error::ApiError;
use crate::launch::TaskLauncher;

/// What became of an accepted delivery.
#[derive(Debug)]
pub enum Accepted {
    /// A new record; launched (or ignored, when the record says so).
    New(Record),
    /// A redelivery of an event already recorded: nothing was launched.
    Duplicate(Record),
}

/// Writes `record`; when it is `received` with a job, launches the task and records the outcome.
/// A launch failure is recorded as `dispatch_failed` and returned as [`ApiError::DispatchFailed`].
pub async fn record_and_launch(
    store: &dyn RecordStore,
    launcher: &dyn TaskLauncher,
    record: Record,
) -> Result<Accepted, ApiError> {
    if let Created::Duplicate(existing) = store.create(&record).await? {
        tracing::info!(record_id = %existing.id, "duplicate delivery; nothing launched");
        return Ok(Accepted::Duplicate(*existing));
    }
    tracing::info!(record_id = %record.id, source = record.source.as_str(), status = %record.status, "recorded");
    let (Status::Received, Some(job)) = (record.status, record.job.clone()) else {
        return Ok(Accepted::New(record));
    };
    let contract = LaunchContract::gitops_pr(record.id, job);
    match launcher.launch(&contract).await {
        Ok(launched) => {
            let updated = store
                .transition(
                    record.id,
                    &Transition::to(Status::Dispatched).task_arn(launched.task_arn),
                )
                .await?;
            tracing::info!(record_id = %record.id, task = updated.task_arn.as_deref().unwrap_or(""), "dispatched");
            Ok(Accepted::New(updated))
        }
        Err(e) => {
            tracing::warn!(record_id = %record.id, reason = %e.reason, retryable = e.retryable, "dispatch failed");
            store
                .transition(
                    record.id,
                    &Transition::to(Status::DispatchFailed).reason(e.reason.clone()),
                )
                .await?;
            Err(ApiError::DispatchFailed {
                record_id: record.id,
                reason: e.reason,
            })
        }
    }
}
