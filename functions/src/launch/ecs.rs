//! `RunTask` on Fargate.
//!
//! - Overrides carry the [`LaunchContract`] only (identifiers; no secret, no payload).
//! - `clientToken` is the record id, so a repeated launch of one record starts one task.
//! - A 200 answer with `failures` and no task is a failure, not a success.

use async_trait::async_trait;
use aws_sdk_ecs::Client;
use aws_sdk_ecs::error::{DisplayErrorContext, SdkError};
use aws_sdk_ecs::types::{
    AssignPublicIp, AwsVpcConfiguration, ContainerOverride, KeyValuePair, LaunchType,
    NetworkConfiguration, TaskOverride,
};
use orchestrator_core::LaunchContract;

use super::{LaunchError, Launched, TaskLauncher};

/// The `startedBy` value of every task we start (find them with `ListTasks --started-by`).
pub const STARTED_BY: &str = "gitops-orchestrator";

/// Where and how tasks run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EcsSettings {
    pub cluster: String,
    pub task_definition: String,
    pub subnets: Vec<String>,
    pub security_groups: Vec<String>,
    pub assign_public_ip: bool,
    pub container_name: String,
}

#[derive(Debug, Clone)]
pub struct EcsLauncher {
    client: Client,
    settings: EcsSettings,
}

impl EcsLauncher {
    pub fn new(client: Client, settings: EcsSettings) -> Self {
        Self { client, settings }
    }
}

/// Failures worth retrying: capacity and throttling. Everything else (parameters, permissions,
/// missing resources) will fail the same way again.
fn is_retryable_reason(reason: &str) -> bool {
    let r = reason.to_ascii_lowercase();
    ["capacity", "throttl", "rate exceeded", "resource:"]
        .iter()
        .any(|k| r.contains(k))
}

fn classify<E, R>(e: SdkError<E, R>) -> LaunchError
where
    E: std::error::Error + aws_sdk_ecs::error::ProvideErrorMetadata + 'static,
    R: std::fmt::Debug,
{
    let text = format!("RunTask: {}", DisplayErrorContext(&e));
    let retryable = match &e {
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => {
            true
        }
        SdkError::ServiceError(se) => {
            let code = se.err().code().unwrap_or_default();
            code.contains("Throttl") || code == "ServerException" || code == "ServiceUnavailable"
        }
        _ => false,
    };
    LaunchError {
        retryable,
        reason: text,
    }
}

#[async_trait]
impl TaskLauncher for EcsLauncher {
    async fn launch(&self, contract: &LaunchContract) -> Result<Launched, LaunchError> {
        let s = &self.settings;
        let env = contract
            .to_env()
            .into_iter()
            .map(|(k, v)| KeyValuePair::builder().name(k).value(v).build())
            .collect::<Vec<_>>();
        let vpc = AwsVpcConfiguration::builder()
            .set_subnets(Some(s.subnets.clone()))
            .set_security_groups(Some(s.security_groups.clone()))
            .assign_public_ip(if s.assign_public_ip {
                AssignPublicIp::Enabled
            } else {
                AssignPublicIp::Disabled
            })
            .build()
            .map_err(|e| LaunchError::permanent(format!("network configuration: {e}")))?;
        let out = self
            .client
            .run_task()
            .cluster(&s.cluster)
            .task_definition(&s.task_definition)
            .launch_type(LaunchType::Fargate)
            .count(1)
            .network_configuration(
                NetworkConfiguration::builder()
                    .awsvpc_configuration(vpc)
                    .build(),
            )
            .overrides(
                TaskOverride::builder()
                    .container_overrides(
                        ContainerOverride::builder()
                            .name(&s.container_name)
                            .set_environment(Some(env))
                            .build(),
                    )
                    .build(),
            )
            .client_token(contract.record_id.to_string())
            .started_by(STARTED_BY)
            .send()
            .await
            .map_err(classify)?;
        if let Some(arn) = out.tasks().iter().find_map(|t| t.task_arn()) {
            return Ok(Launched {
                task_arn: arn.to_owned(),
            });
        }
        let reasons: Vec<String> = out
            .failures()
            .iter()
            .map(|f| {
                let mut s = f.reason().unwrap_or("unknown reason").to_owned();
                if let Some(d) = f.detail() {
                    s.push_str(&format!(" ({d})"));
                }
                if let Some(a) = f.arn() {
                    s.push_str(&format!(" [{a}]"));
                }
                s
            })
            .collect();
        if reasons.is_empty() {
            return Err(LaunchError::permanent(
                "RunTask started no task and reported no failure",
            ));
        }
        let retryable = out
            .failures()
            .iter()
            .all(|f| is_retryable_reason(f.reason().unwrap_or_default()));
        Err(LaunchError {
            retryable,
            reason: format!("RunTask started no task: {}", reasons.join("; ")),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capacity_is_retryable_and_missing_resources_are_not() {
        assert!(is_retryable_reason("Capacity is unavailable at this time."));
        assert!(is_retryable_reason("RESOURCE:MEMORY"));
        assert!(!is_retryable_reason("MISSING"));
        assert!(!is_retryable_reason("AccessDeniedException"));
    }
}
