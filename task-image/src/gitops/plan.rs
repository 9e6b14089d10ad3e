//! `gitops-task plan`: a dry run of the gitops job by hand. Clones the gitops repository (the
//! same partial, sparse clone as a run), edits the overlay, runs the preflight, renders the
//! built overlay's images before and after the edit, and prints the diff; commits nothing,
//! pushes nothing, opens no pull request, and reports to no record.

use clap::Args;
use orchestrator_core::{Job, RecordId};

use super::config::{RunArgs, Settings};
use super::flow::{Flow, FlowOptions, FlowOutcome, FlowRequest, OutcomeKind};

/// What `gitops-task plan` reads: the job (the same variables as the launch contract) and the
/// gitops repository's settings (the same as `run`; the store settings are not used).
#[derive(Debug, Clone, Args)]
pub struct PlanArgs {
    /// The service whose overlay changes.
    #[arg(long, env = "ORCH_SERVICE")]
    pub service: String,
    /// The image repository (the kustomize `images[].name`), e.g. `acme/shop-api`.
    #[arg(long, env = "ORCH_IMAGE")]
    pub image: String,
    /// The environment overlay.
    #[arg(long, env = "ORCH_ENVIRONMENT")]
    pub environment: String,
    /// The new image tag (usually the commit SHA).
    #[arg(long, env = "ORCH_TAG")]
    pub tag: String,
    /// Print the outcome as one JSON object (`outcome`, `reason`, `diff`, `images`, `old_tag`,
    /// `new_tag`, ...) instead of the diff.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub gitops: RunArgs,
}

/// Runs the dry run. `Err` is a job or setting that cannot be read; a run that fails (clone,
/// edit, preflight) is an outcome `failed` with its reason.
pub async fn plan(args: &PlanArgs) -> Result<FlowOutcome, String> {
    let job = Job::parse(&args.service, &args.image, &args.environment, &args.tag)
        .map_err(|e| e.to_string())?;
    let settings = Settings::from_args(&args.gitops).map_err(|e| e.to_string())?;
    let flow = Flow::new(settings, FlowOptions::default()).map_err(|e| e.to_string())?;
    let req = FlowRequest {
        record_id: RecordId::new(),
        job: &job,
        build_url: None,
        port_run: None,
        dry_run: true,
    };
    Ok(flow.execute(&req).await)
}

/// The outcome for a person: the diff, the images before and after, and the reason.
pub fn human(outcome: &FlowOutcome) -> String {
    let mut out = String::new();
    if let Some(diff) = outcome.diff.as_deref().filter(|d| !d.is_empty()) {
        out.push_str(diff);
        if !diff.ends_with('\n') {
            out.push('\n');
        }
    }
    if !outcome.images.is_empty() {
        out.push_str("\nImages of the built overlay (before -> after):\n");
        for i in &outcome.images {
            let mark = if i.before == i.after {
                " (unchanged)"
            } else {
                ""
            };
            out.push_str(&format!(
                "  {}: {} -> {}{mark}\n",
                i.name, i.before, i.after
            ));
        }
    }
    out.push_str(&format!(
        "\n{}: {}\n",
        outcome.outcome.as_str(),
        outcome.reason.as_deref().unwrap_or("")
    ));
    out
}

/// Whether `gitops-task plan` exits 0.
pub fn ok(outcome: &FlowOutcome) -> bool {
    outcome.outcome == OutcomeKind::Planned
}
