//! The task launcher port: start the task binary for one job.
//!
//! - [`ecs::EcsLauncher`]: `RunTask` on Fargate, the contract in container environment overrides.
//! - [`process::ProcessLauncher`]: local mode, the task binary as a child process with the same
//!   contract variables in its environment.

use async_trait::async_trait;
use orchestrator_core::LaunchContract;

pub mod ecs;
pub mod process;

/// Why a launch failed, and whether trying again could help.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason}")]
pub struct LaunchError {
    pub retryable: bool,
    pub reason: String,
}

impl LaunchError {
    pub fn permanent(reason: impl Into<String>) -> Self {
        Self {
            retryable: false,
            reason: reason.into(),
        }
    }

    pub fn retryable(reason: impl Into<String>) -> Self {
        Self {
            retryable: true,
            reason: reason.into(),
        }
    }
}

/// A started task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Launched {
    /// The ECS task ARN, or `local:<pid>`.
    pub task_arn: String,
}

#[async_trait]
pub trait TaskLauncher: Send + Sync + std::fmt::Debug {
    /// Starts the task; returns once it is started, not when it ends.
    async fn launch(&self, contract: &LaunchContract) -> Result<Launched, LaunchError>;
}
