//! The remediation job: run the actions of the rule a Port event matched, in order, and report
//! each step to the record.
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
//! - `gitops.set_image` goes through the gitops pull request flow ([`crate::gitops::Flow`]).
//!
//! The record moves `dispatched → running → succeeded | failed`; its `outcome` lists every step
//! (status, exit code, output tail, outputs, HTTP status, the request sent) and `failed_step` names
//! the one that failed. The last stdout line is the same outcome as one JSON line.
//!
//! Secrets (Port client secret, Slack webhook URL) come from the task's environment (in ECS, the
//! task definition's `secrets`), are held in [`Secret`], and are never logged, recorded or passed
//! to `exec` commands (which get a clean environment).

pub mod exec;
pub mod port;
pub mod slack;
pub mod steps;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::Args;
use orchestrator_core::store::{RecordStore, Transition};
use orchestrator_core::{Job, LaunchContract, Record, RecordId, Secret, Source, Status};

use crate::gitops::{self, FlowOptions, FlowRequest, OutcomeKind, RunArgs};
pub use steps::{Outcome, StepReport, StepStatus};

/// Port's EU API (the default).
pub const PORT_API_EU: &str = "https://api.port.io";
/// Port's US API.
pub const PORT_API_US: &str = "https://api.us.port.io";
/// Where `exec` commands live in the task image.
pub const DEFAULT_EXEC_DIR: &str = "/opt/remediation/bin";

/// Settings of the remediation actions (flags or environment variables).
#[derive(Debug, Clone, Args)]
pub struct RemediationArgs {
    /// Port REST API base URL: https://api.port.io (EU, default) or https://api.us.port.io (US).
    #[arg(long, env = "PORT_API_URL", default_value = PORT_API_EU)]
    pub port_api_url: String,

    /// Port client id, for `port.patch_entity`.
    #[arg(long, env = "PORT_CLIENT_ID")]
    pub port_client_id: Option<String>,

    /// Port client secret, for `port.patch_entity`.
    #[arg(long, env = "PORT_CLIENT_SECRET", hide_env_values = true)]
    pub port_client_secret: Option<Secret>,

    /// Slack incoming webhook URL, for `slack.post` (a step may name another variable).
    #[arg(long, env = "SLACK_WEBHOOK_URL", hide_env_values = true)]
    pub slack_webhook_url: Option<Secret>,

    /// Directory of the commands `exec` steps may run (plain file names in it).
    #[arg(long, env = "EXEC_COMMANDS_DIR", default_value = DEFAULT_EXEC_DIR)]
    pub exec_commands_dir: PathBuf,

    /// Seconds one Port or Slack request may take.
    #[arg(long, env = "REMEDIATION_HTTP_TIMEOUT_SECS", default_value_t = 30)]
    pub http_timeout_secs: u64,
}

/// The checked settings.
#[derive(Debug, Clone)]
pub struct Settings {
    pub port_api_url: reqwest::Url,
    pub port_client_id: Option<String>,
    pub port_client_secret: Option<Secret>,
    pub slack_webhook_url: Option<Secret>,
    pub exec_dir: PathBuf,
    pub http_timeout: Duration,
    /// The orchestrator API, for links to the record (`<base>/pullrequests/<id>`).
    pub record_base_url: Option<String>,
}

impl Settings {
    pub fn from_args(
        args: &RemediationArgs,
        record_base_url: Option<&str>,
    ) -> Result<Self, String> {
        let port_api_url = reqwest::Url::parse(args.port_api_url.trim())
            .ok()
            .filter(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some())
            .ok_or_else(|| {
                format!(
                    "PORT_API_URL: `{}` is not an http(s) URL",
                    args.port_api_url
                )
            })?;
        if !(1..=600).contains(&args.http_timeout_secs) {
            return Err("REMEDIATION_HTTP_TIMEOUT_SECS: must be from 1 to 600".into());
        }
        Ok(Self {
            port_api_url,
            port_client_id: args.port_client_id.clone().filter(|s| !s.trim().is_empty()),
            port_client_secret: args.port_client_secret.clone(),
            slack_webhook_url: args.slack_webhook_url.clone(),
            exec_dir: args.exec_commands_dir.clone(),
            http_timeout: Duration::from_secs(args.http_timeout_secs),
            record_base_url: record_base_url
                .map(|u| u.trim().trim_end_matches('/').to_owned())
                .filter(|u| !u.is_empty()),
        })
    }

    /// The record's link, when the API's base URL is known.
    pub fn record_url(&self, id: RecordId) -> Option<String> {
        self.record_base_url
            .as_ref()
            .map(|b| format!("{b}/pullrequests/{id}"))
    }
}

/// What a `gitops.set_image` step did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageUpdate {
    /// `succeeded` or `no_change`.
    pub outcome: &'static str,
    pub branch: Option<String>,
    pub pr_url: Option<String>,
    pub reason: Option<String>,
}

/// The gitops pull request flow, as a `gitops.set_image` step uses it.
#[async_trait::async_trait]
pub trait ImageUpdater: Send + Sync {
    async fn set_image(&self, record_id: RecordId, job: &Job) -> Result<ImageUpdate, String>;
}

/// [`ImageUpdater`] over [`gitops::Flow`], configured like the gitops job (GITOPS_REPO_URL, ...).
#[derive(Debug)]
pub struct GitopsFlow {
    args: RunArgs,
}

impl GitopsFlow {
    pub fn new(args: RunArgs) -> Self {
        Self { args }
    }
}

#[async_trait::async_trait]
impl ImageUpdater for GitopsFlow {
    async fn set_image(&self, record_id: RecordId, job: &Job) -> Result<ImageUpdate, String> {
        let settings = gitops::Settings::from_args(&self.args)
            .map_err(|e| format!("gitops configuration: {e}"))?;
        let flow = gitops::Flow::new(settings, FlowOptions::default())
            .map_err(|e| format!("gitops configuration: {e}"))?;
        let outcome = flow
            .execute(&FlowRequest {
                record_id,
                job,
                build_url: None,
            })
            .await;
        let update = |kind| ImageUpdate {
            outcome: kind,
            branch: outcome.branch.clone(),
            pr_url: outcome.pr_url.clone(),
            reason: outcome.reason.clone(),
        };
        match outcome.outcome {
            OutcomeKind::Succeeded => Ok(update("succeeded")),
            OutcomeKind::NoChange => Ok(update("no_change")),
            OutcomeKind::Failed => Err(outcome
                .reason
                .clone()
                .unwrap_or_else(|| "the gitops flow failed".into())),
        }
    }
}

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
        self.reported.is_ok() && self.outcome.status == Status::Succeeded
    }
}

fn check_record(record: &Record) -> Result<(), String> {
    if record.source != Source::Port {
        return Err(format!(
            "record {} comes from {}, not from Port",
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
    record_id: RecordId,
    store: &dyn RecordStore,
    settings: Result<Settings, String>,
    images: &dyn ImageUpdater,
) -> JobRun {
    let started = Instant::now();
    tracing::info!(%record_id, kind = "remediation", "job received");
    let record =
        match gitops::report::mark_running(store, record_id, gitops::report::RECEIVED_WAIT).await {
            Ok(r) => r,
            Err(e) => {
                let reason = format!("cannot start: {e}");
                return JobRun {
                    outcome: Outcome::failed_before_start(record_id, None, reason.clone(), started),
                    reported: Err(reason),
                };
            }
        };
    let outcome = match settings.and_then(|s| check_record(&record).map(|()| s)) {
        Err(reason) => {
            tracing::error!(%reason, "remediation cannot run");
            Outcome::failed_before_start(record_id, record.rule.clone(), reason, started)
        }
        Ok(settings) => {
            steps::Runner::new(&settings, images)
                .run(&record, started)
                .await
        }
    };
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
pub async fn run(
    contract: &LaunchContract,
    gitops_args: &RunArgs,
    args: &RemediationArgs,
) -> anyhow::Result<()> {
    let started = Instant::now();
    let store = match gitops::open_store(&gitops_args.store).await {
        Ok(s) => s,
        Err(e) => {
            let o =
                Outcome::failed_before_start(contract.record_id, None, format!("{e:#}"), started);
            println!("{}", o.to_line());
            return Err(e.context("cannot open the record store; the outcome is not reported"));
        }
    };
    let settings = Settings::from_args(args, gitops_args.record_base_url.as_deref());
    let images = GitopsFlow::new(gitops_args.clone());
    let run = run_job(contract.record_id, store.as_ref(), settings, &images).await;
    println!("{}", run.outcome.to_line());
    if let Err(e) = &run.reported {
        anyhow::bail!("{e}");
    }
    if run.outcome.status != Status::Succeeded {
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
