//! The gitops pull request job. (Being implemented; see issue 3.)

pub mod github;
use orchestrator_core::LaunchContract;

/// Runs the job described by `contract`. Until issue 3 lands it only logs the job.
pub async fn run(contract: &LaunchContract) -> anyhow::Result<()> {
    tracing::info!(
        record_id = %contract.record_id,
        kind = contract.kind.as_str(),
        service = %contract.job.service,
        image = %contract.job.image,
        tag = %contract.job.tag,
        environment = %contract.job.environment,
        "job received"
    );
    Ok(())
}
