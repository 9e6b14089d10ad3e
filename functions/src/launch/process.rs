//! Local mode: the task binary as a child process.
//!
//! The child inherits the server's environment (in ECS that role is played by the task
//! definition's environment and secrets) plus exactly the contract variables the ECS launcher
//! puts in the overrides. Its output goes to `<data dir>/tasks/<record id>.log`. The request never
//! waits for it: a background task reaps the child and logs its exit status.

use std::path::PathBuf;
use std::process::Stdio;

use async_trait::async_trait;
use orchestrator_core::LaunchContract;
use tokio::process::Command;

use super::{LaunchError, Launched, TaskLauncher};

#[derive(Debug, Clone)]
pub struct ProcessLauncher {
    program: PathBuf,
    log_dir: PathBuf,
    /// Extra variables for the child (the store location), beside the contract.
    extra_env: Vec<(String, String)>,
}

impl ProcessLauncher {
    pub fn new(program: PathBuf, log_dir: PathBuf, extra_env: Vec<(String, String)>) -> Self {
        Self {
            program,
            log_dir,
            extra_env,
        }
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
        let log_path = self.log_dir.join(format!("{}.log", contract.record_id));
        let log = std::fs::File::create(&log_path).map_err(|e| {
            LaunchError::permanent(format!("cannot create {}: {e}", log_path.display()))
        })?;
        let log_err = log
            .try_clone()
            .map_err(|e| LaunchError::permanent(format!("cannot open task log: {e}")))?;
        let mut cmd = Command::new(&self.program);
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
        tokio::spawn(async move {
            match child.wait().await {
                Ok(status) => tracing::info!(%record_id, pid, %status, "local task exited"),
                Err(e) => {
                    tracing::warn!(%record_id, pid, error = %e, "local task could not be awaited")
                }
            }
        });
        tracing::info!(%record_id, pid, log = %log_path.display(), "local task started");
        Ok(Launched {
            task_arn: format!("local:{pid}"),
        })
    }
}
