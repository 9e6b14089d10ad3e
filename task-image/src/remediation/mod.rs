//! The remediation job: run the actions of the rule a Port event or an AWS event (EventBridge,
//! a schedule run) matched, in order, and report each step to the record.
//!
//! The launch contract carries only the record id (`ORCH_JOB_KIND=remediation`); the event, the
//! rule's name and its actions are read from the record, never from the environment overrides.
//!
//! - [`steps`]: the sequence: render each step's `{{ CEL }}` templates against the event and the
//!   earlier steps' results, run it, stop at the first failure, and describe every step.
//! - [`exec`]: an operator command from the image's command directory, with the event in its
//!   environment, a time limit, and its `key=value` / JSON output lines as outputs.
//! - [`port`]: Port's REST API (client-credentials token, PATCH entity).
//! - [`slack`]: a Slack incoming-webhook message.
//! - [`gitops`]: `gitops.set_image`, through the gitops pull request flow ([`crate::gitops::Flow`]).
//! - [`ec2`]: `aws.ec2.snapshot_instance`, `.reboot_instance`, `.reset_instance` (AWS SDK), on
//!   instances carrying the opt-in tag only.
//! - [`failure`] and [`settings`]: the step failure type and the checked settings every action
//!   uses. Dependencies point one way: `mod` → [`steps`] → the actions → [`failure`], [`settings`].
//!
//! A record Port invoked (an automation or a self-service action: `port_run`) is also reported
//! to its Port run ([`crate::port_run`]): `IN_PROGRESS`, a log line per step, then `SUCCESS` or
//! `FAILURE` with the failed step named and links to the pull request and the record.
//!
//! A dry run (the contract's or the record's `dry_run`) renders every step's parameters and runs
//! none ([`steps::Runner::plan_reported`]): each step is `planned` with its rendered parameters in
//! `detail`, and the record ends `planned`. A Port run is told `SUCCESS`, labelled a dry run.
//!
//! The record moves `dispatched → running → succeeded | failed | planned`; its `outcome` lists every step
//! (status, exit code, output tail, outputs, HTTP status, the request sent) and `failed_step` names
//! the one that failed. The last stdout line is the same outcome as one JSON line.
//!
//! Secrets (Port client secret, Slack webhook URL) come from the task's environment (in ECS, the
//! task definition's `secrets`), are held in [`Secret`], and are never logged, recorded or passed
//! to `exec` commands: a command gets a clean environment, cannot read the task's through `/proc`
//! (the task is non-dumpable, see [`exec`]), and leaves nothing running behind it. Event data is
//! checked where it crosses into another language: a command's arguments (no option by
//! accident), Port's URL path (one identifier per segment), Slack's markup (escaped).

pub mod ec2;
pub mod exec;
pub mod failure;
pub mod gitops;
pub mod port;
pub mod settings;
pub mod slack;
pub mod steps;

use std::time::Instant;

use orchestrator_core::store::{RecordStore, Transition};
use orchestrator_core::{LaunchContract, Record, Source, Status};

use crate::gitops::RunArgs;
use crate::port_run::RunReport;
pub use failure::StepFailure;
pub use gitops::{GitopsFlow, ImageUpdate, ImageUpdater};
use port_runs::RunStatus;
pub use settings::{DEFAULT_EXEC_DIR, PORT_API_EU, PORT_API_US, RemediationArgs, Settings};
pub use steps::{Outcome, StepReport, StepStatus};

/// What one run did.
#[derive(Debug)]
pub struct JobRun {
    pub outcome: Outcome,
    /// `Err` when the outcome could not be written to the record.
    pub reported: Result<(), String>,
}

impl JobRun {
    /// Whether the process should exit 0.
    pub fn ok(&self) -> bool {
        self.reported.is_ok() && matches!(self.outcome.status, Status::Succeeded | Status::Planned)
    }
}

fn check_record(record: &Record) -> Result<(), String> {
    if !matches!(record.source, Source::Port | Source::Eventbridge) {
        return Err(format!(
            "record {} comes from {}, not from Port or EventBridge",
            record.id,
            record.source.as_str()
        ));
    }
    if record.actions.is_empty() {
        return Err(format!("record {} has no actions", record.id));
    }
    Ok(())
}

/// Runs the remediation of `record_id` and reports it to `store`. `settings` is the result of
/// checking the configuration, so that a bad setting is reported as the job's failure.
pub async fn run_job(
    contract: &LaunchContract,
    store: &dyn RecordStore,
    settings: Result<Settings, String>,
    images: &dyn ImageUpdater,
) -> JobRun {
    let started = Instant::now();
    let record_id = contract.record_id;
    tracing::info!(%record_id, attempt = contract.attempt, kind = "remediation", "job received");
    let record = match crate::gitops::report::mark_running(
        store,
        record_id,
        contract.attempt,
        crate::gitops::report::RECEIVED_WAIT,
    )
    .await
    {
        Ok(r) => r,
        Err(e) => {
            let reason = format!("cannot start: {e}");
            return JobRun {
                outcome: Outcome::failed_before_start(record_id, None, reason.clone(), started),
                reported: Err(reason),
            };
        }
    };
    let port = settings
        .as_ref()
        .map(Settings::port_run_settings)
        .unwrap_or_default();
    let report = RunReport::for_record(&record, port.api, port.timeout);
    let record_url = settings.as_ref().ok().and_then(|s| s.record_url(record_id));
    let links = |pr: Option<&String>| -> Vec<String> {
        pr.into_iter().chain(record_url.as_ref()).cloned().collect()
    };
    // Either side may ask for a dry run; neither can take one back.
    let dry_run = contract.dry_run || record.dry_run;
    report
        .status(
            RunStatus::InProgress,
            &format!(
                "{} rule `{}`: {} step(s)",
                if dry_run { "Dry run of" } else { "Running" },
                record.rule.as_deref().unwrap_or("?"),
                record.actions.len()
            ),
            &links(None),
        )
        .await;
    let mut outcome = match settings.and_then(|s| check_record(&record).map(|()| s)) {
        Err(reason) => {
            tracing::error!(%reason, "remediation cannot run");
            report.log(&format!("Cannot run: {reason}")).await;
            Outcome::failed_before_start(record_id, record.rule.clone(), reason, started)
        }
        Ok(settings) if dry_run => {
            steps::Runner::new(&settings, images)
                .plan_reported(&record, started, &report)
                .await
        }
        Ok(settings) => {
            steps::Runner::new(&settings, images)
                .run_reported(&record, started, &report)
                .await
        }
    };
    let (status, label) = match (outcome.status, &outcome.failed_step) {
        // Port ends a run SUCCESS or FAILURE; a dry run that rendered its steps is a success,
        // and the label says that nothing ran.
        (Status::Planned, _) => (
            RunStatus::Success,
            format!(
                "Dry run: {} step(s) rendered, none run",
                outcome.steps.len()
            ),
        ),
        (Status::Succeeded, _) => (
            RunStatus::Success,
            format!("Remediated: {} step(s) succeeded", outcome.steps.len()),
        ),
        (_, Some(step)) => (RunStatus::Failure, format!("Failed at step `{step}`")),
        (_, None) => (RunStatus::Failure, "Failed before any step ran".to_owned()),
    };
    report
        .status(status, &label, &links(outcome.pr_url.as_ref()))
        .await;
    outcome.port_report = report.problems();
    tracing::info!(
        status = outcome.status.as_str(),
        failed_step = outcome.failed_step.as_deref().unwrap_or(""),
        elapsed_ms = outcome.elapsed_ms,
        "remediation finished"
    );
    let change = Transition {
        to: Some(outcome.status),
        reason: outcome.reason.clone(),
        pr_url: outcome.pr_url.clone(),
        branch: outcome.branch.clone(),
        outcome: serde_json::to_value(&outcome).ok(),
        expect_attempt: Some(contract.attempt),
        ..Transition::default()
    };
    let reported = match store.transition(record_id, &change).await {
        Ok(_) => Ok(()),
        Err(e) => {
            tracing::error!(%record_id, error = %e, "cannot report the outcome to the record");
            Err(format!("cannot report the outcome: {e}"))
        }
    };
    JobRun { outcome, reported }
}

/// `gitops-task run` for a remediation: open the store, run, print the outcome line. `Err`
/// means exit 1.
/// With `notify`, the outcome's transition is notified after it is written.
pub async fn run(
    contract: &LaunchContract,
    gitops_args: &RunArgs,
    args: &RemediationArgs,
    notify: Option<crate::Notifier>,
) -> anyhow::Result<()> {
    let started = Instant::now();
    let store = match crate::gitops::open_store(&gitops_args.store).await {
        Ok(s) => s,
        Err(e) => {
            let o =
                Outcome::failed_before_start(contract.record_id, None, format!("{e:#}"), started);
            println!("{}", o.to_line());
            return Err(e.context("cannot open the record store; the outcome is not reported"));
        }
    };
    let store = orchestrator_notify::Notifying::wrap(store, notify);
    let settings = Settings::from_args(args, gitops_args.record_base_url.as_deref());
    let images = GitopsFlow::new(gitops_args.clone());
    let run = run_job(contract, store.as_ref(), settings, &images).await;
    println!("{}", run.outcome.to_line());
    if let Err(e) = &run.reported {
        anyhow::bail!("{e}");
    }
    if !matches!(run.outcome.status, Status::Succeeded | Status::Planned) {
        anyhow::bail!(
            "{}",
            run.outcome
                .reason
                .as_deref()
                .unwrap_or("the remediation failed")
        );
    }
    Ok(())
}
