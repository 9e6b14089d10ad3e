//! The `gitops.set_image` action: the gitops pull request flow ([`crate::gitops::Flow`]) behind
//! the narrow [`ImageUpdater`] port, so the step runner can be tested without git.

use orchestrator_core::{Job, RecordId};

use crate::gitops::{self, FlowOptions, FlowRequest, OutcomeKind, RunArgs};

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
                port_run: None,
                // A remediation dry run runs no step at all (`steps`), this one included.
                dry_run: false,
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
            OutcomeKind::Planned => Ok(update("planned")),
            OutcomeKind::Failed => Err(outcome
                .reason
                .clone()
                .unwrap_or_else(|| "the gitops flow failed".into())),
        }
    }
}
