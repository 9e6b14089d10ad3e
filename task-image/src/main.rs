//! The task binary run in the Fargate container (or as a local process).
//!
//! Until the gitops pull request lands (issue 3), it only reads the launch contract, logs the job
//! and exits 0.

use anyhow::Context;
use clap::Parser;
use orchestrator_core::LaunchContract;

/// Gitops task: reads the job from the launch contract (ORCH_* environment variables).
///
/// This build only parses the contract, logs the job and exits 0; it does not yet open pull
/// requests.
#[derive(Debug, Parser)]
#[command(version)]
struct Cli {}

fn main() -> anyhow::Result<()> {
    let _cli = Cli::parse();
    tracing_subscriber::fmt()
        .json()
        .flatten_event(true)
        .with_writer(std::io::stderr)
        .init();
    let contract = LaunchContract::from_env().context("reading the launch contract")?;
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
