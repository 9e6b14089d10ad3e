//! The gitops pull request job: change one service's image tag in one environment's kustomize
//! overlay, push that as a branch of the gitops repository, open (or update) the pull request,
//! and report the outcome to the record.
//!
//! - [`config`]: settings from flags / environment, checked at start.
//! - [`git`]: the git CLI, isolated, with the token in its environment only.
//! - [`github`]: the GitHub REST client (open or update the PR, reviewers, labels).
//! - [`flow`]: clone, edit, decide, commit, push, PR.
//! - [`sparse`]: the partial, sparse clone that fetches only what the edit reads.
//! - [`gitdata`]: no clone at all (`GITOPS_CLONE=github-api`): read and commit through GitHub's
//!   API, so that a GitHub App's commits are signed by GitHub.
//! - [`report`]: `running` at start, the final status, the JSON summary line.
//! - [`plan`]: `gitops-task plan`, a dry run by hand: the diff on stdout, nothing pushed.
//!
//! A dry run (the contract's or the record's `dry_run`) clones, edits and runs the preflight as
//! a real run does, then records the diff and the images before and after, and ends `planned`:
//! nothing is committed or pushed and no pull request is opened.
//!
//! # Branch and pull request scheme
//!
//! One branch per service and environment: `update-image/<environment>/<service>`, and so at most
//! one open pull request per service and environment. Every run builds the branch afresh: one
//! commit on top of the base branch's current tip, and force-pushes it with
//! `--force-with-lease` against the branch sha it fetched. So:
//!
//! - a newer build of the same service and environment replaces the older commit on the same
//!   branch, and the one open PR (updated, not duplicated) proposes the newest image: no PR per
//!   build, no stale PR, no merge conflicts from an old base;
//! - running the same job twice changes nothing: when the branch already has exactly the tree we
//!   would push (base tip + edit), no commit is made and nothing is pushed; the PR is only ensured;
//! - when the base branch already runs the tag, the job ends `no_change`; if an update branch for
//!   an older tag is still there, it is deleted (merging it would roll back), which closes its PR;
//! - an older event arriving late never overwrites the branch of a newer one: each commit names
//!   its record in an `Orchestrator-Record:` trailer, and record ids (UUID v7) order events by
//!   arrival;
//! - a push that loses a race (someone moved the branch between our fetch and our push) starts
//!   over from a fresh clone, a bounded number of times.
//!
//! The branch belongs to the orchestrator: commits pushed to it by hand are replaced by the next
//! build. Commits carry a DCO sign-off by the configured author.
//!
//! # Exit status
//!
//! 0 for `succeeded`, `no_change` and `planned`, 1 for `failed` or when the outcome could not be reported.
//! The last line on stdout is a JSON summary ([`report::Summary`]); logs are JSON lines on stderr.

pub mod config;
pub mod flow;
pub mod git;
pub mod gitdata;
pub mod github;
pub mod plan;
pub mod report;
pub mod sparse;

use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use orchestrator_core::contract::JobKind;
use orchestrator_core::store::RecordStore;
use orchestrator_core::store::dynamodb::{DynamoStore, TableNames};
use orchestrator_core::store::sqlite::SqliteStore;
use orchestrator_core::{Job, LaunchContract, Record};
use port_runs::RunStatus;

use crate::port_run::{PortRunSettings, RunReport};

pub use config::{ConfigError, RunArgs, Settings, StoreArgs, StoreKind};
pub use flow::{Flow, FlowOptions, FlowOutcome, FlowRequest, ImageChange, OutcomeKind, PortRunRef};
pub use report::Summary;

/// Opens the record store the task reports to.
pub async fn open_store(args: &StoreArgs) -> anyhow::Result<Arc<dyn RecordStore>> {
    match args.kind {
        None => anyhow::bail!("ORCH_STORE: is missing (sqlite or dynamodb)"),
        Some(StoreKind::Sqlite) => {
            let dir = args
                .data_dir
                .as_ref()
                .filter(|d| !d.as_os_str().is_empty())
                .context("DATA_DIR: is required with ORCH_STORE=sqlite")?;
            let path = SqliteStore::file_in(dir);
            let store = SqliteStore::open(&path)
                .with_context(|| format!("DATA_DIR: cannot open {}", path.display()))?;
            Ok(Arc::new(store))
        }
        Some(StoreKind::Dynamodb) => {
            let table = args
                .table_name
                .as_deref()
                .map(str::trim)
                .filter(|t| !t.is_empty())
                .context("TABLE_NAME: is required with ORCH_STORE=dynamodb")?;
            let aws = orchestrator_clients::aws::config().await;
            Ok(Arc::new(DynamoStore::new(
                aws_sdk_dynamodb::Client::new(&aws),
                TableNames::with_defaults(table),
            )))
        }
    }
}

/// The CI build link in a record's payload (orb: `build_url`; native webhooks: the workflow).
pub fn build_url(record: &Record) -> Option<String> {
    let p = &record.payload;
    ["/build_url", "/workflow_url", "/workflow/url", "/job/url"]
        .iter()
        .find_map(|ptr| p.pointer(ptr).and_then(|v| v.as_str()))
        .map(str::to_owned)
}

/// What one run of the job did.
#[derive(Debug)]
pub struct JobRun {
    pub summary: Summary,
    /// `Err` when the outcome could not be written to the record.
    pub reported: Result<(), String>,
    /// Every git argv the run spawned.
    pub git_invocations: Vec<Vec<String>>,
}

impl JobRun {
    /// Whether the process should exit 0.
    pub fn ok(&self) -> bool {
        self.reported.is_ok() && self.summary.outcome != OutcomeKind::Failed
    }
}

/// Runs the job for `contract` and reports it to `store`. `settings` is the result of checking
/// the configuration, so that a bad setting is reported as the job's failure.
pub async fn run_job(
    contract: &LaunchContract,
    settings: Result<Settings, ConfigError>,
    store: &dyn RecordStore,
    options: FlowOptions,
) -> JobRun {
    run_job_reported(
        contract,
        settings,
        store,
        options,
        &PortRunSettings::default(),
    )
    .await
}

/// [`run_job`], also reporting to the record's Port action run (a self-service deploy action):
/// `IN_PROGRESS` at start, a log line when the pull request job starts and ends, `SUCCESS` or
/// `FAILURE` with links to the pull request and the record. The PR body names the Port user and
/// links the run.
pub async fn run_job_reported(
    contract: &LaunchContract,
    settings: Result<Settings, ConfigError>,
    store: &dyn RecordStore,
    options: FlowOptions,
    port: &PortRunSettings,
) -> JobRun {
    let started = Instant::now();
    let id = contract.record_id;
    let field = |f: fn(&Job) -> &str| contract.job.as_ref().map_or("", f);
    tracing::info!(
        record_id = %id,
        kind = contract.kind.as_str(),
        service = field(|j| j.service.as_str()),
        image = field(|j| j.image.as_str()),
        tag = field(|j| j.tag.as_str()),
        environment = field(|j| j.environment.as_str()),
        "job received"
    );
    let (JobKind::GitopsPr, Some(job)) = (contract.kind, &contract.job) else {
        // Another job's task (a remediation): not ours to run, and not ours to report on.
        let reason = format!(
            "job kind `{}` is not a gitops pull request; the record is left as it is",
            contract.kind.as_str()
        );
        return JobRun {
            summary: Summary::failed(id, reason.clone(), started.elapsed()),
            reported: Err(reason),
            git_invocations: Vec::new(),
        };
    };
    let record =
        match report::mark_running(store, id, contract.attempt, report::RECEIVED_WAIT).await {
            Ok(r) => r,
            Err(e) => {
                // Nothing to report to (or not allowed to): say it and stop.
                let reason = format!("cannot start: {e}");
                return JobRun {
                    summary: Summary::failed(id, reason.clone(), started.elapsed()),
                    reported: Err(reason),
                    git_invocations: Vec::new(),
                };
            }
        };

    // Clones go to a temporary directory removed only after the outcome is reported: removing a
    // clone takes a noticeable moment on some filesystems, and the record should not wait.
    let mut options = options;
    let mut scratch = None;
    if options.work_root.is_none() {
        match tempfile::Builder::new().prefix("gitops-task-").tempdir() {
            Ok(dir) => {
                options.work_root = Some(dir.path().to_owned());
                scratch = Some(dir);
            }
            // The flow makes its own and reports the problem if it cannot either.
            Err(e) => tracing::warn!(error = %e, "cannot create a work directory"),
        }
    }
    let report = RunReport::for_record(&record, port.api.clone(), port.timeout);
    let record_url = settings
        .as_ref()
        .ok()
        .and_then(|s| s.record_base_url.as_ref())
        .map(|base| format!("{base}/pullrequests/{id}"));
    let links = |pr: Option<&String>| -> Vec<String> {
        pr.into_iter().chain(record_url.as_ref()).cloned().collect()
    };
    let what = format!(
        "{} in {} to {}",
        job.service,
        job.environment,
        job.tag.as_str()
    );
    // Either side may ask for a dry run; neither can take one back.
    let dry_run = contract.dry_run || record.dry_run;
    let opening = if dry_run {
        format!("Dry run of the gitops pull request: {what}")
    } else {
        format!("Opening the gitops pull request: {what}")
    };
    // Port hears that the run started while the job runs (Port is a remote API: two calls the
    // job need not wait for); both are done before the outcome is reported.
    let started_said = async {
        report
            .status(RunStatus::InProgress, &opening, &links(None))
            .await;
        report
            .log(&format!("Gitops pull request started: {what}"))
            .await;
    };
    let run = async {
        match prepare(job, &record, settings, options) {
            Err(reason) => {
                tracing::error!(reason = %reason, "gitops job cannot run");
                (Summary::failed(id, reason, started.elapsed()), Vec::new())
            }
            Ok(flow) => {
                let req = FlowRequest {
                    record_id: id,
                    job,
                    build_url: build_url(&record),
                    port_run: record.port_run.as_ref().map(|r| PortRunRef {
                        user: r.user.clone(),
                        url: crate::port_run::run_url(&port.app_url, &r.id),
                    }),
                    dry_run,
                };
                let outcome = flow.execute(&req).await;
                (
                    Summary::from_flow(id, outcome, started.elapsed()),
                    flow.git_invocations(),
                )
            }
        }
    };
    let ((), (mut summary, git_invocations)) = tokio::join!(started_said, run);
    let (status, label, line) = match summary.outcome {
        OutcomeKind::Succeeded => (
            RunStatus::Success,
            format!("Pull request opened: {what}"),
            format!(
                "Gitops pull request finished: {}",
                summary.pr_url.as_deref().unwrap_or("branch pushed")
            ),
        ),
        OutcomeKind::NoChange => (
            RunStatus::Success,
            format!(
                "No change: {} already runs {}",
                job.environment,
                job.tag.as_str()
            ),
            "Gitops pull request finished: no change needed".to_owned(),
        ),
        // A dry run that worked is a success for Port (a run ends SUCCESS or FAILURE); the label
        // says nothing was pushed.
        OutcomeKind::Planned => (
            RunStatus::Success,
            format!("Dry run planned, nothing pushed: {what}"),
            format!(
                "Gitops dry run finished: {}",
                summary.reason.as_deref().unwrap_or("planned")
            ),
        ),
        OutcomeKind::Failed => {
            let reason = summary.reason.as_deref().unwrap_or("unknown reason");
            (
                RunStatus::Failure,
                "The gitops pull request failed".to_owned(),
                format!("Gitops pull request failed: {reason}"),
            )
        }
    };
    report.log(&line).await;
    report
        .status(status, &label, &links(summary.pr_url.as_ref()))
        .await;
    summary.port_report = report.problems();
    tracing::info!(
        outcome = summary.outcome.as_str(),
        branch = summary.branch.as_deref().unwrap_or(""),
        pr_url = summary.pr_url.as_deref().unwrap_or(""),
        reason = summary.reason.as_deref().unwrap_or(""),
        elapsed_ms = summary.elapsed_ms,
        "gitops job finished"
    );
    let reported = match report::finish(store, id, contract.attempt, &summary).await {
        Ok(_) => Ok(()),
        Err(e) => {
            tracing::error!(record_id = %id, error = %e, "cannot report the outcome to the record");
            Err(format!("cannot report the outcome: {e}"))
        }
    };
    drop(scratch);
    JobRun {
        summary,
        reported,
        git_invocations,
    }
}

fn prepare(
    job: &Job,
    record: &Record,
    settings: Result<Settings, ConfigError>,
    options: FlowOptions,
) -> Result<Flow, String> {
    // The job comes from the launcher; the record is the source of truth. They must agree.
    match &record.job {
        Some(recorded) if recorded == job => {}
        Some(_) => {
            return Err(format!(
                "the launch contract does not match record {}'s job",
                record.id
            ));
        }
        None => return Err(format!("record {} has no job", record.id)),
    }
    let settings = settings.map_err(|e| format!("configuration: {e}"))?;
    Flow::new(settings, options).map_err(|e| format!("configuration: {e}"))
}

/// `gitops-task run`: open the store, run the job, print the summary line. `Err` means exit 1.
/// With `notify`, the outcome's transition is notified after it is written.
pub async fn run(
    contract: &LaunchContract,
    args: &RunArgs,
    port: &PortRunSettings,
    notify: Option<crate::Notifier>,
) -> anyhow::Result<()> {
    let started = Instant::now();
    let store = match open_store(&args.store).await {
        Ok(s) => s,
        Err(e) => {
            let summary = Summary::failed(contract.record_id, format!("{e:#}"), started.elapsed());
            println!("{}", summary.to_line());
            return Err(e.context("cannot open the record store; the outcome is not reported"));
        }
    };
    let store = orchestrator_notify::Notifying::wrap(store, notify);
    let run = run_job_reported(
        contract,
        Settings::from_args(args),
        store.as_ref(),
        FlowOptions::default(),
        port,
    )
    .await;
    println!("{}", run.summary.to_line());
    if let Err(e) = &run.reported {
        anyhow::bail!("{e}");
    }
    if run.summary.outcome == OutcomeKind::Failed {
        anyhow::bail!(
            "{}",
            run.summary.reason.as_deref().unwrap_or("the job failed")
        );
    }
    Ok(())
}
