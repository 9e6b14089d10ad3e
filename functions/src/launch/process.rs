//! Local mode: the task binary as a child process.
//!
//! The child inherits the server's environment (in ECS that role is played by the task
//! definition's environment and secrets), minus the server's own credentials ([`SERVER_ONLY`]),
//! plus exactly the contract variables the ECS launcher puts in the overrides. Its output goes to `<data dir>/tasks/<record id>.log` (`<record id>.attempt-<n>.log` for a
//! later attempt). The request never
//! waits for it: a background task reaps the child and logs its exit status.
//!
//! The launcher remembers the children it started (record, attempt, pid, exit status) for the
//! recovery sweeper's questions ([`TaskInspector`]); a task started by an earlier server process
//! is unknown to it (`Gone`).

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use orchestrator_core::{LaunchContract, RecordId};
use tokio::process::Command;

use super::{LaunchError, Launched, LiveTask, TaskInspector, TaskLauncher, TaskState};

/// The server's own credentials: the task never needs them, so its process never gets them (in
/// ECS the task definition does not hold them either).
pub const SERVER_ONLY: [&str; 4] = [
    "INTAKE_TOKEN",
    "AUDIT_TOKEN",
    "ADMIN_TOKEN",
    "CIRCLECI_WEBHOOK_SECRET",
];

/// A child this launcher started.
#[derive(Debug, Clone)]
struct Child {
    record_id: RecordId,
    attempt: u32,
    /// `None` while it runs; how it ended once reaped.
    exit: Option<String>,
}

#[derive(Debug, Clone)]
pub struct ProcessLauncher {
    program: PathBuf,
    log_dir: PathBuf,
    /// Extra variables for the child (the store location), beside the contract.
    extra_env: Vec<(String, String)>,
    /// By task ARN (`local:<pid>`).
    children: Arc<Mutex<HashMap<String, Child>>>,
}

impl ProcessLauncher {
    pub fn new(program: PathBuf, log_dir: PathBuf, extra_env: Vec<(String, String)>) -> Self {
        Self {
            program,
            log_dir,
            extra_env,
            children: Arc::default(),
        }
    }

    fn children(&self) -> std::sync::MutexGuard<'_, HashMap<String, Child>> {
        // A poisoned map is still a map: the guard's data stays consistent (single inserts).
        self.children
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub fn program(&self) -> &std::path::Path {
        &self.program
    }
}

#[async_trait]
impl TaskLauncher for ProcessLauncher {
    async fn launch(&self, contract: &LaunchContract) -> Result<Launched, LaunchError> {
        tokio::fs::create_dir_all(&self.log_dir)
            .await
            .map_err(|e| {
                LaunchError::permanent(format!("cannot create {}: {e}", self.log_dir.display()))
            })?;
        // A later attempt keeps the earlier attempts' logs.
        let log_path = self.log_dir.join(match contract.attempt {
            1 => format!("{}.log", contract.record_id),
            n => format!("{}.attempt-{n}.log", contract.record_id),
        });
        let log = std::fs::File::create(&log_path).map_err(|e| {
            LaunchError::permanent(format!("cannot create {}: {e}", log_path.display()))
        })?;
        let log_err = log
            .try_clone()
            .map_err(|e| LaunchError::permanent(format!("cannot open task log: {e}")))?;
        let mut cmd = Command::new(&self.program);
        for name in SERVER_ONLY {
            cmd.env_remove(name);
        }
        // The contract is exactly what `to_env` writes: an `ORCH_DRY_RUN` (or any other contract
        // variable) in the server's own environment must not reach a real run's task.
        for name in orchestrator_core::contract::vars::ALL {
            cmd.env_remove(name);
        }
        cmd.envs(self.extra_env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .envs(contract.to_env())
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err);
        let mut child = cmd.spawn().map_err(|e| {
            LaunchError::permanent(format!("cannot start {}: {e}", self.program.display()))
        })?;
        let pid = child.id().unwrap_or_default();
        let record_id = contract.record_id;
        let task_arn = format!("local:{pid}");
        self.children().insert(
            task_arn.clone(),
            Child {
                record_id,
                attempt: contract.attempt,
                exit: None,
            },
        );
        let children = self.children.clone();
        let arn = task_arn.clone();
        tokio::spawn(async move {
            let exit = match child.wait().await {
                Ok(status) => {
                    tracing::info!(%record_id, pid, %status, "local task exited");
                    format!("the process exited: {status}")
                }
                Err(e) => {
                    tracing::warn!(%record_id, pid, error = %e, "local task could not be awaited");
                    format!("the process could not be awaited: {e}")
                }
            };
            let mut map = children
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if let Some(c) = map.get_mut(&arn) {
                c.exit = Some(exit);
            }
        });
        tracing::info!(%record_id, pid, log = %log_path.display(), "local task started");
        Ok(Launched { task_arn })
    }
}

#[async_trait]
impl TaskInspector for ProcessLauncher {
    async fn live_tasks(&self, record: RecordId) -> Result<Vec<LiveTask>, LaunchError> {
        Ok(self
            .children()
            .iter()
            .filter(|(_, c)| c.record_id == record && c.exit.is_none())
            .map(|(arn, c)| LiveTask {
                task_arn: arn.clone(),
                attempt: Some(c.attempt),
            })
            .collect())
    }

    async fn describe(&self, task_arn: &str) -> Result<TaskState, LaunchError> {
        Ok(match self.children().get(task_arn) {
            Some(Child { exit: None, .. }) => TaskState::Live("RUNNING".into()),
            Some(Child {
                exit: Some(exit), ..
            }) => TaskState::Stopped(exit.clone()),
            None => TaskState::Gone(format!(
                "{task_arn} was not started by this server process (it restarted since?)"
            )),
        })
    }
}
