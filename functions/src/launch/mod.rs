//! The task launcher port: start the task binary for one job.
//!
//! - [`ecs::EcsLauncher`]: `RunTask` on Fargate, the contract in container environment overrides.
//! - [`process::ProcessLauncher`]: local mode, the task binary as a child process with the same
//!   contract variables in its environment.
//!
//! Both also implement [`TaskInspector`], what the recovery sweeper asks about tasks: is one of a
//! record's tasks still alive, and what became of a given task.

use async_trait::async_trait;
use orchestrator_core::{LaunchContract, RecordId};

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

/// A task of a record that has not stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveTask {
    pub task_arn: String,
    /// The launch attempt it was started for (from its contract); `None` when it does not say.
    pub attempt: Option<u32>,
}

/// What became of a task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TaskState {
    /// Provisioning, pending or running: its last status.
    Live(String),
    /// Stopped: how, as ECS (or the local process's exit status) says.
    Stopped(String),
    /// Unknown to the launcher (ECS forgets stopped tasks after about an hour).
    Gone(String),
}

/// Questions the recovery sweeper asks about tasks. Errors are [`LaunchError`]s: retryable when
/// asking again later may work.
#[async_trait]
pub trait TaskInspector: Send + Sync + std::fmt::Debug {
    /// The tasks started for `record` that have not stopped.
    async fn live_tasks(&self, record: RecordId) -> Result<Vec<LiveTask>, LaunchError>;
    /// The state of the task `task_arn`.
    async fn describe(&self, task_arn: &str) -> Result<TaskState, LaunchError>;
}

/// A launcher that can also answer for its tasks: what the application layer and the recovery
/// sweeper need. Implemented by every type that is both.
pub trait Tasks: TaskLauncher + TaskInspector {}

impl<T: TaskLauncher + TaskInspector> Tasks for T {}
