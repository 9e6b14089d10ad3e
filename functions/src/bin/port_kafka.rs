//! The Port Kafka Lambda: a self-managed Kafka event source (Port's topic `ORG_ID.change.log`,
//! SASL/SCRAM-512) delivers batches of changelog events; each goes through the same rules and
//! records as `POST /webhooks/port` (see `orchestrator::intake::port::kafka`). Configuration, all
//! from the environment: RULES_FILE or RULES, TABLE_NAME (+ index names), the ECS settings, and the
//! dispatch retry settings.
//!
//! The invocation fails (so the batch is delivered again) only when records could not be written;
//! unreadable records are recorded `rejected` and do not fail it.
//!
//! A configuration that cannot be used (a missing setting, no rules, a rule that does not compile)
//! is reported to the Lambda Runtime API as an init error before the process exits
//! (`orchestrator::init_error`), so Lambda fails the invocation with the reason instead of waiting
//! for it.

use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use lambda_http::lambda_runtime::{self, LambdaEvent, service_fn};
use orchestrator::config::{DynamoArgs, EcsArgs, PortArgs};
use orchestrator::dispatch::{self, RetryPolicy};
use orchestrator::launch::ecs::EcsLauncher;
use orchestrator::rules::RuleSet;
use orchestrator::{init_error, telemetry};
use orchestrator_core::store::dynamodb::DynamoStore;
use serde_json::Value;

#[derive(Debug, Parser)]
#[command(about = "Port Kafka Lambda for the gitops orchestrator (configured by environment)")]
struct Config {
    #[command(flatten)]
    port: PortArgs,
    #[command(flatten)]
    dynamo: DynamoArgs,
    #[command(flatten)]
    ecs: EcsArgs,
    /// Launch attempts for capacity or throttling failures, the first included.
    #[arg(long, env = "DISPATCH_MAX_ATTEMPTS", default_value_t = 4)]
    dispatch_max_attempts: u32,
    /// Total seconds one launch may spend retrying.
    #[arg(long, env = "DISPATCH_BUDGET_SECS", default_value_t = 10)]
    dispatch_budget_secs: u64,
}

/// The checked configuration: everything but the AWS clients.
fn configure() -> Result<(Config, RuleSet, RetryPolicy), String> {
    let config = Config::try_parse().map_err(|e| format!("configuration: {e}"))?;
    let rules = config
        .port
        .rule_set()?
        .ok_or("RULES_FILE or RULES must be set: the Port Kafka function needs rules")?;
    let policy = RetryPolicy {
        max_attempts: config.dispatch_max_attempts.max(1),
        budget: Duration::from_secs(config.dispatch_budget_secs),
        ..RetryPolicy::default()
    };
    Ok((config, rules, policy))
}

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    telemetry::init(true);
    let (config, rules, policy) = init_error::or_report(configure()).await?;
    tracing::info!(rules = rules.len(), "Port rules loaded");
    let aws = aws_config::load_from_env().await;
    let store = DynamoStore::new(aws_sdk_dynamodb::Client::new(&aws), config.dynamo.names());
    let launcher = EcsLauncher::new(aws_sdk_ecs::Client::new(&aws), config.ecs.settings());
    let rules = Arc::new(rules);
    lambda_runtime::run(service_fn(|event: LambdaEvent<Value>| {
        let (store, launcher, rules) = (&store, &launcher, rules.clone());
        async move {
            let report = dispatch::process_batch(store, launcher, policy, &rules, &event.payload)
                .await
                .map_err(|e| lambda_runtime::Error::from(e.to_string()))?;
            let unwritten = report.unwritten();
            tracing::info!(
                records = report.records.len(),
                rejected = report.count("rejected"),
                unwritten,
                "Kafka batch handled"
            );
            if unwritten > 0 {
                return Err(lambda_runtime::Error::from(format!(
                    "{unwritten} record(s) could not be written; the batch will be delivered again"
                )));
            }
            Ok::<_, lambda_runtime::Error>(serde_json::to_value(&report)?)
        }
    }))
    .await
}
