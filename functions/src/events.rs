//! The `events` function's application layer: one EventBridge event (from an EventBridge rule) or
//! one EventBridge Scheduler run, decoded by [`crate::intake::events`], decided by the rules,
//! recorded and launched through [`crate::dispatch`], the same path `POST /events` takes. Also
//! what `orchestrator schedule fire` runs locally ([`fire`]).
//!
//! A redelivery (same event id, or same execution id) returns the first record and launches
//! nothing; one whose record is still `received` (the invocation that wrote it ended before the
//! launch) is launched then ([`dispatch::relaunch`]: its live task adopted, or a new attempt).

use orchestrator_core::RecordId;
use orchestrator_core::Status;
use orchestrator_core::store::{RecordStore, StoreError};
use serde::Serialize;
use serde_json::Value;

use crate::dispatch::{self, Accepted, DispatchError, RetryPolicy, contract_for};
use crate::intake::PayloadError;
use crate::intake::events::{self, Schedule};
use crate::launch::Tasks;
use crate::rules::RuleSet;

/// Why an event was not handled: the caller (EventBridge, Lambda's async retries) should deliver
/// it again only for [`EventsError::Store`].
#[derive(Debug, thiserror::Error)]
pub enum EventsError {
    #[error("not an EventBridge event or a schedule run: {0}")]
    Payload(#[from] PayloadError),
    #[error("no schedule named `{0}` is declared (SCHEDULES)")]
    UnknownSchedule(String),
    #[error("the record could not be written: {0}")]
    Store(#[from] StoreError),
}

/// What became of one event.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EventReport {
    pub record_id: RecordId,
    /// The dedupe key (`eventbridge:<id>` or `schedule:<execution id>`).
    pub key: String,
    /// The record's status (`dispatched`, `ignored`, `dispatch_failed`, ...).
    pub status: Status,
    pub duplicate: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// Records (and launches) one event.
pub async fn handle(
    store: &dyn RecordStore,
    launcher: &dyn Tasks,
    policy: RetryPolicy,
    rules: &RuleSet,
    payload: Value,
) -> Result<EventReport, EventsError> {
    let event = events::from_value(payload)?;
    let key = event.dedupe_key();
    let record = event.to_record(rules);
    tracing::info!(
        source = %event.source,
        detail_type = %event.detail_type,
        %key,
        rule = record.rule.as_deref().unwrap_or(""),
        "AWS event"
    );
    let outcome = match dispatch::record_and_launch(store, launcher, policy, record).await {
        Ok(Accepted::Duplicate(r))
            if r.status == Status::Received && contract_for(&r).is_some() =>
        {
            tracing::info!(record_id = %r.id, "redelivered event was never launched; dispatching it");
            dispatch::relaunch(store, launcher, policy, &r, "redelivered, never launched")
                .await
                .map(Accepted::Duplicate)
        }
        other => other,
    };
    let report = |r: orchestrator_core::Record, duplicate: bool| EventReport {
        record_id: r.id,
        key: key.clone(),
        status: r.status,
        duplicate,
        rule: r.rule,
        reason: r.status_reason,
    };
    match outcome {
        Ok(Accepted::New(r)) => Ok(report(r, false)),
        Ok(Accepted::Duplicate(r)) => Ok(report(r, true)),
        // Recorded `dispatch_failed` with the reason: delivering the event again would only
        // find that record.
        Err(DispatchError::LaunchFailed { record_id, reason }) => Ok(EventReport {
            record_id,
            key,
            status: Status::DispatchFailed,
            duplicate: false,
            rule: None,
            reason: Some(reason),
        }),
        Err(DispatchError::Store(e)) => Err(e.into()),
        Err(DispatchError::NotFound(id)) => Err(StoreError::Backend(format!(
            "record {id} vanished while it was being launched"
        ))
        .into()),
        Err(DispatchError::Conflict(c)) => Err(StoreError::Backend(c).into()),
    }
}

/// Fires the schedule named `name` once, as EventBridge Scheduler would: its input with a fresh
/// execution id (or `execution_id`, to replay a run) and the current time.
pub async fn fire(
    store: &dyn RecordStore,
    launcher: &dyn Tasks,
    policy: RetryPolicy,
    rules: &RuleSet,
    schedules: &[Schedule],
    name: &str,
    execution_id: Option<&str>,
) -> Result<EventReport, EventsError> {
    let schedule = schedules
        .iter()
        .find(|s| s.name == name)
        .ok_or_else(|| EventsError::UnknownSchedule(name.to_owned()))?;
    let execution_id = execution_id
        .map(str::to_owned)
        .unwrap_or_else(|| uuid::Uuid::now_v7().simple().to_string());
    let now = orchestrator_core::record::rfc3339::format(&chrono::Utc::now());
    let input = events::run_input(schedule, &execution_id, &now);
    handle(store, launcher, policy, rules, input).await
}
