//! ECS "Task State Change" events (EventBridge) → record status.
//!
//! - `RUNNING`: a `dispatched` record becomes `running`; so does a `received` one (its launch was
//!   never recorded), taking the event's task ARN.
//! - `STOPPED`: the exit code, stop code and reason are kept on the record. A record the task
//!   already finished (`succeeded`, `no_change`, `failed`, `planned`) keeps its outcome; one still
//!   `received`/`dispatched`/`running` (the task died before reporting) becomes `failed` with the
//!   stop reason.
//! - Only the task of the record's current launch attempt (`ORCH_ATTEMPT` in its overrides) moves
//!   the record: a task of a superseded attempt does no work, and its events change nothing.
//! - Duplicate and out-of-order events are dropped: each event carries `detail.version`, and a
//!   record only accepts a version newer than the last one applied (checked inside the store's
//!   atomic update, so concurrent deliveries cannot both win).
//! - Events for other clusters, for tasks we did not start (`startedBy` is the record id, or the
//!   name earlier versions used), or without our record id are ignored.
//! - A record Port invoked (`port_run`) that this function fails is reported to its Port run
//!   ([`apply_and_report`]): a log line with the stop reason and `FAILURE` with the record's link;
//!   what Port refused goes to the record's `outcome.port_report`, and never fails the event.

use orchestrator_core::contract::vars;
use orchestrator_core::store::{RecordStore, StoreError, Transition};
use orchestrator_core::{RecordId, Status};
use serde_json::{Value, json};

use crate::launch::ecs::{STARTED_BY, started_by};

/// What an event did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Applied {
    /// The record changed (its new status).
    Updated(Status),
    /// Nothing to do, and why.
    Skipped(String),
}

/// An event that is not an ECS task state change at all.
#[derive(Debug, thiserror::Error)]
pub enum LifecycleError {
    #[error("not an ECS Task State Change event: {0}")]
    NotAnEcsEvent(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The value of contract variable `name` in the task's overrides.
fn contract_var<'a>(detail: &'a Value, name: &str) -> Option<&'a str> {
    detail["overrides"]["containerOverrides"]
        .as_array()?
        .iter()
        .filter_map(|c| c["environment"].as_array())
        .flatten()
        .find(|kv| kv["name"] == name)
        .and_then(|kv| kv["value"].as_str())
}

fn record_id(detail: &Value) -> Option<RecordId> {
    contract_var(detail, vars::RECORD_ID).and_then(|v| v.parse().ok())
}

fn cluster_matches(detail: &Value, cluster: Option<&str>) -> bool {
    let Some(want) = cluster else { return true };
    let got = detail["clusterArn"].as_str().unwrap_or_default();
    // The setting may be a name or an ARN.
    got == want || got.rsplit('/').next() == Some(want)
}

/// Applies one EventBridge event to the store.
pub async fn apply(
    store: &dyn RecordStore,
    event: &Value,
    cluster: Option<&str>,
) -> Result<Applied, LifecycleError> {
    if event["source"] != "aws.ecs" || event["detail-type"] != "ECS Task State Change" {
        return Err(LifecycleError::NotAnEcsEvent(format!(
            "source {} detail-type {}",
            event["source"], event["detail-type"]
        )));
    }
    let detail = &event["detail"];
    if !cluster_matches(detail, cluster) {
        return Ok(Applied::Skipped("another cluster".into()));
    }
    let Some(id) = record_id(detail) else {
        return Ok(Applied::Skipped(
            "no record id in the task overrides".into(),
        ));
    };
    let by = detail["startedBy"].as_str().unwrap_or_default();
    if by != STARTED_BY && by != started_by(id) {
        return Ok(Applied::Skipped(
            "task not started by the orchestrator".into(),
        ));
    }
    // A task launched before attempts existed carries none: it was attempt 1.
    let attempt = contract_var(detail, vars::ATTEMPT)
        .and_then(|v| v.parse::<u32>().ok())
        .unwrap_or(1);
    let Some(version) = detail["version"].as_i64() else {
        return Err(LifecycleError::NotAnEcsEvent(
            "detail.version is missing".into(),
        ));
    };
    let Some(record) = store.get(id).await? else {
        return Ok(Applied::Skipped(format!("record {id} no longer exists")));
    };
    if attempt != record.attempt {
        return Ok(Applied::Skipped(format!(
            "task of attempt {attempt}; record {id} is at attempt {}",
            record.attempt
        )));
    }
    let last = detail["lastStatus"].as_str().unwrap_or_default();
    let mut change = Transition {
        task_version: Some(version),
        expect_attempt: Some(attempt),
        ..Transition::default()
    };
    match last {
        "RUNNING" if matches!(record.status, Status::Received | Status::Dispatched) => {
            change.to = Some(Status::Running);
            if record.task_arn.is_none() {
                change.task_arn = detail["taskArn"].as_str().map(str::to_owned);
            }
        }
        "STOPPED" => {
            let container = detail["containers"]
                .as_array()
                .and_then(|cs| cs.iter().find(|c| c["exitCode"].is_number()).or(cs.first()));
            let exit_code = container.and_then(|c| c["exitCode"].as_i64());
            let stop = json!({
                "exit_code": exit_code,
                "stop_code": detail["stopCode"],
                "stopped_reason": detail["stoppedReason"],
                "container_reason": container.map(|c| c["reason"].clone()).unwrap_or(Value::Null),
            });
            change.task_stop = Some(stop);
            if matches!(
                record.status,
                Status::Received | Status::Dispatched | Status::Running
            ) {
                change.to = Some(Status::Failed);
                change.reason = Some(format!(
                    "the task stopped before reporting an outcome: {} ({}), exit code {}",
                    detail["stopCode"].as_str().unwrap_or("unknown stop code"),
                    detail["stoppedReason"]
                        .as_str()
                        .unwrap_or("no reason given"),
                    exit_code.map_or_else(|| "unknown".to_owned(), |c| c.to_string()),
                ));
            }
        }
        _ => {}
    }
    match store.transition(id, &change).await {
        Ok(r) => Ok(Applied::Updated(r.status)),
        Err(StoreError::Stale { current, got }) => Ok(Applied::Skipped(format!(
            "stale event: version {got}, record already at {current}"
        ))),
        // The task reported first (e.g. `running` arrived after `succeeded`): keep its outcome.
        Err(StoreError::Conflict(e)) => Ok(Applied::Skipped(e.to_string())),
        Err(e @ StoreError::Superseded { .. }) => Ok(Applied::Skipped(e.to_string())),
        Err(e) => Err(e.into()),
    }
}

/// Where the lifecycle function reports a Port run its task died in.
#[derive(Debug, Clone)]
pub struct PortReports {
    pub http: port_runs::reqwest::Client,
    pub api: port_runs::PortApi,
    /// The orchestrator API, for the record's link (`<base>/pullrequests/<id>`).
    pub record_base_url: Option<String>,
    pub retry: port_runs::Retry,
}

/// [`apply`], then, when this event failed a record Port invoked (its task stopped before
/// reporting), `FAILURE` to the record's Port run. The report never fails the event.
pub async fn apply_and_report(
    store: &dyn RecordStore,
    event: &Value,
    cluster: Option<&str>,
    port: Option<&PortReports>,
) -> Result<Applied, LifecycleError> {
    let id = record_id(&event["detail"]);
    let before = match id {
        Some(id) => store.get(id).await?.map(|r| r.status),
        None => None,
    };
    let applied = apply(store, event, cluster).await?;
    let failed_here = applied == Applied::Updated(Status::Failed)
        && matches!(
            before,
            Some(Status::Received | Status::Dispatched | Status::Running)
        );
    let (true, Some(id)) = (failed_here, id) else {
        return Ok(applied);
    };
    let Some(record) = store.get(id).await? else {
        return Ok(applied);
    };
    let Some(run) = &record.port_run else {
        return Ok(applied);
    };
    let Some(port) = port else {
        tracing::warn!(record_id = %id, run_id = %run.id, "Port run not reported: no Port credentials");
        return Ok(applied);
    };
    let reporter = port_runs::RunReporter::new(port.http.clone(), port.api.clone(), run.id.clone())
        .with_retry(port.retry);
    let reason = record
        .status_reason
        .clone()
        .unwrap_or_else(|| "the task stopped before reporting an outcome".into());
    reporter.log(&format!("The task stopped: {reason}")).await;
    let links: Vec<String> = port
        .record_base_url
        .iter()
        .map(|b| format!("{}/pullrequests/{id}", b.trim_end_matches('/')))
        .collect();
    reporter
        .status(
            port_runs::RunStatus::Failure,
            "The task stopped before finishing",
            &links,
        )
        .await;
    let problems = reporter.problems();
    if !problems.is_empty() {
        let keep = Transition {
            outcome: Some(json!({ "port_report": problems })),
            ..Transition::default()
        };
        if let Err(e) = store.transition(id, &keep).await {
            tracing::warn!(record_id = %id, error = %e, "cannot keep the Port report problems");
        }
    }
    Ok(applied)
}
