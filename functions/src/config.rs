//! Settings, read once at start from flags or environment variables (every flag has one), and
//! checked then: a bad template or branch rule stops the program with a message naming it.
//! The intake's own settings ([`IntakeArgs`], [`IntakeSettings`]) live with the sources they
//! configure, in `sources/`, and are re-exported here.

use std::path::PathBuf;
use std::sync::Arc;

use clap::Args;
use orchestrator_core::Secret;
use orchestrator_core::store::dynamodb::{DynamoStore, TableNames};

use crate::dispatch::RetryPolicy;
use crate::intake::port::PortSettings;
use crate::launch::ecs::EcsSettings;
use crate::recovery::RecoveryPolicy;
use crate::rules::RuleSet;
pub use crate::sources::{IntakeArgs, IntakeSettings};

/// The DynamoDB table. `AWS_ENDPOINT_URL` (read by the AWS SDK) points it elsewhere, e.g. moto.
#[derive(Debug, Clone, Args)]
pub struct DynamoArgs {
    /// Table name.
    #[arg(long, env = "TABLE_NAME")]
    pub table_name: String,
    /// Index over all records, newest first (hash `kind`, range `id`).
    #[arg(long, env = "INDEX_BY_TIME", default_value = "by_time")]
    pub index_by_time: String,
    /// Index by service (hash `service`, range `id`).
    #[arg(long, env = "INDEX_BY_SERVICE", default_value = "by_service")]
    pub index_by_service: String,
    /// Index by status (hash `status`, range `id`).
    #[arg(long, env = "INDEX_BY_STATUS", default_value = "by_status")]
    pub index_by_status: String,
    /// Days a record is kept: new records get an `expires_at` this far after they were received,
    /// the table's TTL attribute (DynamoDB then deletes them, with their dedupe marker). 0 keeps
    /// them forever. Records are never deleted otherwise (a DELETE redacts).
    #[arg(long, env = "RECORD_RETENTION_DAYS", default_value_t = 400)]
    pub record_retention_days: u32,
}

impl DynamoArgs {
    pub fn names(&self) -> TableNames {
        TableNames {
            table: self.table_name.clone(),
            by_time: self.index_by_time.clone(),
            by_service: self.index_by_service.clone(),
            by_status: self.index_by_status.clone(),
        }
    }

    /// The store these settings describe (table, indexes, retention).
    pub fn store(&self, client: aws_sdk_dynamodb::Client) -> DynamoStore {
        DynamoStore::new(client, self.names()).with_retention(self.record_retention_days)
    }
}

/// Where Fargate tasks run.
#[derive(Debug, Clone, Args)]
pub struct EcsArgs {
    /// Cluster name or ARN.
    #[arg(long, env = "ECS_CLUSTER")]
    pub ecs_cluster: String,
    /// Task definition family, `family:revision` or ARN.
    #[arg(long, env = "ECS_TASK_DEFINITION")]
    pub ecs_task_definition: String,
    /// Subnet ids, comma-separated.
    #[arg(long, env = "ECS_SUBNETS", value_delimiter = ',', required = true)]
    pub ecs_subnets: Vec<String>,
    /// Security group ids, comma-separated.
    #[arg(
        long,
        env = "ECS_SECURITY_GROUPS",
        value_delimiter = ',',
        required = true
    )]
    pub ecs_security_groups: Vec<String>,
    /// Give the task a public IP (needed in public subnets without a NAT gateway).
    #[arg(long, env = "ECS_ASSIGN_PUBLIC_IP", default_value_t = false, action = clap::ArgAction::Set)]
    pub ecs_assign_public_ip: bool,
    /// The container whose environment receives the job.
    #[arg(long, env = "ECS_CONTAINER_NAME", default_value = "gitops-task")]
    pub ecs_container_name: String,
}

impl EcsArgs {
    pub fn settings(&self) -> EcsSettings {
        let clean = |v: &[String]| {
            v.iter()
                .map(|s| s.trim().to_owned())
                .filter(|s| !s.is_empty())
                .collect()
        };
        EcsSettings {
            cluster: self.ecs_cluster.clone(),
            task_definition: self.ecs_task_definition.clone(),
            subnets: clean(&self.ecs_subnets),
            security_groups: clean(&self.ecs_security_groups),
            assign_public_ip: self.ecs_assign_public_ip,
            container_name: self.ecs_container_name.clone(),
        }
    }
}

/// How launch failures are retried: within the request, then by the recovery sweeper.
#[derive(Debug, Clone, Args)]
pub struct RetryArgs {
    /// RunTask calls per launch attempt for capacity or throttling failures, the first included.
    #[arg(long, env = "DISPATCH_MAX_ATTEMPTS", default_value_t = 4)]
    pub dispatch_max_attempts: u32,

    /// Total seconds one launch attempt may spend retrying (keep under the API Gateway timeout,
    /// 29 s).
    #[arg(long, env = "DISPATCH_BUDGET_SECS", default_value_t = 10)]
    pub dispatch_budget_secs: u64,

    /// Seconds before the recovery sweeper's first new attempt after a launch failure that may
    /// pass; the wait doubles with each attempt, up to 5 minutes.
    #[arg(long, env = "DISPATCH_RETRY_AFTER_SECS", default_value_t = 30)]
    pub dispatch_retry_after_secs: u64,

    /// Seconds after an event arrived when launch failures stop being retried: the record's
    /// `dispatch_failed` becomes final ("gave up after N launch attempts over T").
    #[arg(long, env = "DISPATCH_GIVE_UP_AFTER_SECS", default_value_t = 1800)]
    pub dispatch_give_up_after_secs: u64,
}

impl RetryArgs {
    pub fn policy(&self) -> RetryPolicy {
        use std::time::Duration;
        RetryPolicy {
            max_attempts: self.dispatch_max_attempts.max(1),
            budget: Duration::from_secs(self.dispatch_budget_secs),
            retry_after: Duration::from_secs(self.dispatch_retry_after_secs),
            give_up_after: Duration::from_secs(self.dispatch_give_up_after_secs),
            ..RetryPolicy::default()
        }
    }
}

/// When the recovery sweeper acts (see `recovery`).
#[derive(Debug, Clone, Args)]
pub struct RecoveryArgs {
    /// Seconds a record may stay `received` (no launch recorded) before the sweeper adopts its
    /// live task or launches it again.
    #[arg(long, env = "RECOVERY_RECEIVED_AFTER_SECS", default_value_t = 120)]
    pub recovery_received_after_secs: u64,

    /// Seconds a `dispatched` or `running` record may go without a change (the task's time limit)
    /// before the sweeper describes its task and ends the record `failed` if the task is gone.
    #[arg(long, env = "RECOVERY_STUCK_AFTER_SECS", default_value_t = 3600)]
    pub recovery_stuck_after_secs: u64,
}

impl RecoveryArgs {
    pub fn policy(&self, retry: RetryPolicy) -> RecoveryPolicy {
        use std::time::Duration;
        RecoveryPolicy {
            received_after: Duration::from_secs(self.recovery_received_after_secs),
            stuck_after: Duration::from_secs(self.recovery_stuck_after_secs),
            retry,
            ..RecoveryPolicy::default()
        }
    }
}

/// The local server.
#[derive(Debug, Clone, Args)]
pub struct LocalArgs {
    /// Port on 127.0.0.1; 0 picks a free one (printed at start).
    #[arg(long, env = "PORT", default_value_t = 3000)]
    pub port: u16,
    /// Address to bind. Keep the loopback default unless you mean to expose the server.
    #[arg(long, env = "BIND_ADDRESS", default_value = "127.0.0.1")]
    pub bind: std::net::IpAddr,
    /// Where the embedded store and task logs live.
    #[arg(long, env = "DATA_DIR", default_value = ".data")]
    pub data_dir: PathBuf,
    /// The task binary to run for each job (default: `gitops-task` beside this program).
    #[arg(long, env = "TASK_BINARY")]
    pub task_binary: Option<PathBuf>,
    /// Seconds between two passes of the recovery sweeper (0: no sweeper).
    #[arg(long, env = "RECOVERY_INTERVAL_SECS", default_value_t = 30)]
    pub recovery_interval_secs: u64,
    #[command(flatten)]
    pub recovery: RecoveryArgs,
}

/// Port changelog intake: the webhook secret and the rules (read and checked at start: a rule
/// that does not parse or compile stops the program, naming the rule).
#[derive(Debug, Clone, Args)]
pub struct PortArgs {
    /// Port client secret: verifies `x-port-signature` on `POST /webhooks/port`. Unset: that
    /// endpoint answers 503 `not_configured`.
    #[arg(long, env = "PORT_CLIENT_SECRET", hide_env_values = true)]
    pub port_client_secret: Option<Secret>,

    /// Rules file (YAML) mapping Port events to remediation actions; format in docs/rules.md.
    #[arg(long, env = "RULES_FILE", conflicts_with = "rules")]
    pub rules_file: Option<PathBuf>,

    /// The rules inline (YAML or JSON), instead of RULES_FILE: for a Lambda, which ships no file.
    #[arg(long, env = "RULES")]
    pub rules: Option<String>,

    /// Port self-service actions that open the gitops pull request (comma-separated
    /// identifiers; inputs `service`, `environment`, `tag`, optional `image`). Empty: none.
    #[arg(
        long,
        env = "PORT_DEPLOY_ACTIONS",
        value_delimiter = ',',
        default_value = "deploy_image"
    )]
    pub port_deploy_actions: Vec<String>,
}

impl PortArgs {
    /// The checked rules, if any are configured.
    pub fn rule_set(&self) -> Result<Option<RuleSet>, String> {
        let file = self
            .rules_file
            .as_ref()
            .filter(|p| !p.as_os_str().is_empty());
        let inline = self.rules.as_deref().filter(|r| !r.trim().is_empty());
        match (file, inline) {
            (Some(_), Some(_)) => Err("set RULES_FILE or RULES, not both".into()),
            (Some(path), None) => RuleSet::load(path)
                .map(Some)
                .map_err(|e| format!("RULES_FILE: {e}")),
            (None, Some(text)) => RuleSet::from_yaml(text)
                .map(Some)
                .map_err(|e| format!("RULES: {e}")),
            (None, None) => Ok(None),
        }
    }

    /// The webhook settings. With a secret, rules are required: a Port intake without rules
    /// would ignore every event.
    pub fn settings(&self) -> Result<PortSettings, String> {
        let rules = self.rule_set()?;
        if self.port_client_secret.is_some() && rules.is_none() {
            return Err(
                "PORT_CLIENT_SECRET is set but no rules are: set RULES_FILE or RULES \
                 (`rules: []` records every Port event as ignored)"
                    .into(),
            );
        }
        if let Some(r) = &rules {
            tracing::info!(rules = r.len(), "Port rules loaded");
        }
        Ok(PortSettings {
            secret: self.port_client_secret.clone(),
            rules: rules.map(Arc::new),
            deploy_actions: self.settings_deploy_actions(),
        })
    }

    /// The deploy action identifiers, trimmed, without empty entries.
    pub fn settings_deploy_actions(&self) -> Vec<String> {
        self.port_deploy_actions
            .iter()
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty())
            .collect()
    }
}
