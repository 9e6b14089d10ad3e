//! Reporting a Port-invoked job to its Port action run (the record's `port_run`), through the
//! `port-runs` client: `IN_PROGRESS` when the job starts, one log line per step started and
//! finished, `SUCCESS` or `FAILURE` at the end with a label and links (the pull request, the
//! record). A report never fails the job: what Port refused is returned by [`RunReport::problems`]
//! and kept in the record's outcome (`port_report`).

use std::time::Duration;

use orchestrator_core::{PortRun, Record};
use port_runs::{PortApi, RunReporter, RunStatus};

/// What reporting to Port runs needs: the API and credentials (`None`: not configured), the
/// web app's URL for links, and how long one request may take.
#[derive(Debug, Clone)]
pub struct PortRunSettings {
    pub api: Option<PortApi>,
    pub app_url: String,
    pub timeout: Duration,
}

impl Default for PortRunSettings {
    fn default() -> Self {
        Self {
            api: None,
            app_url: crate::remediation::settings::PORT_APP_EU.to_owned(),
            timeout: Duration::from_secs(30),
        }
    }
}

/// The link to a run in Port's web app.
pub fn run_url(app_url: &str, run_id: &str) -> String {
    format!(
        "{}/organization/run?runId={run_id}",
        app_url.trim_end_matches('/')
    )
}

/// The report of one job to its run; inert for a record Port did not invoke.
#[derive(Debug)]
pub enum RunReport {
    /// The record has no Port run.
    None,
    /// The record has a run but nothing can reach it (why).
    Unreachable(String),
    Reporting(Box<RunReporter>),
}

impl RunReport {
    /// The report for `record`: a reporter when it has a run and `api` (credentials) is set.
    pub fn for_record(record: &Record, api: Option<PortApi>, timeout: Duration) -> Self {
        let Some(run) = &record.port_run else {
            return RunReport::None;
        };
        let Some(api) = api else {
            let why = format!(
                "Port run {} not reported: PORT_CLIENT_ID and PORT_CLIENT_SECRET are not both set",
                run.id
            );
            tracing::warn!(run_id = %run.id, "{why}");
            return RunReport::Unreachable(why);
        };
        let http = orchestrator_clients::http::builder()
            .timeout(timeout)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap_or_default();
        RunReport::Reporting(Box::new(RunReporter::new(http, api, run.id.clone())))
    }

    pub async fn status(&self, status: RunStatus, label: &str, links: &[String]) {
        if let RunReport::Reporting(r) = self {
            r.status(status, label, links).await;
        }
    }

    pub async fn log(&self, message: &str) {
        if let RunReport::Reporting(r) = self {
            r.log(message).await;
        }
    }

    /// What could not be reported (empty when all was, or when there is no run).
    pub fn problems(&self) -> Vec<String> {
        match self {
            RunReport::None => Vec::new(),
            RunReport::Unreachable(why) => vec![why.clone()],
            RunReport::Reporting(r) => r.problems(),
        }
    }
}

/// Who ran a run and where to see it, for a pull request body.
pub fn describe(run: &PortRun, app_url: &str) -> (Option<String>, String) {
    (run.user.clone(), run_url(app_url, &run.id))
}
