//! The events Lambda: the target of the EventBridge rules and EventBridge Scheduler schedules
//! that `template.yaml` declares. Each invocation is one event (an EventBridge envelope) or one
//! schedule run (the schedule's input); it goes through the same rules and records as
//! `POST /events` (see `orchestrator::events`). Configuration, all from the environment:
//! RULES_FILE or RULES, TABLE_NAME (+ index names), the ECS settings, the dispatch retry
//! settings; one it cannot use is reported to the Runtime API as an init error.
//!
//! A store failure fails the invocation, so Lambda's asynchronous retries deliver the event
//! again (the event id makes that safe); an event that cannot be read fails it too, and lands
//! in the dead-letter queue after the retries.

use std::time::Duration;

use clap::Parser;
use lambda_http::lambda_runtime::{self, LambdaEvent, service_fn};
use orchestrator::config::{DynamoArgs, EcsArgs, PortArgs};
use orchestrator::dispatch::RetryPolicy;
use orchestrator::launch::ecs::EcsLauncher;
use orchestrator::rules::RuleSet;
use orchestrator::{events, init_error, telemetry};
use orchestrator_core::store::dynamodb::DynamoStore;
use serde_json::Value;

#[derive(Debug, Parser)]
#[command(
    about = "EventBridge events Lambda for the gitops orchestrator (configured by environment)"
)]
struct Config {
    #[command(flatten)]
    rules: PortArgs,
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
    #[command(flatten)]
    notify: orchestrator::notifications::NotifyConfig,
}

fn configure() -> Result<(Config, RuleSet, RetryPolicy), String> {
    let config = Config::try_parse().map_err(|e| format!("configuration: {e}"))?;
    let rules = config
        .rules
        .rule_set()?
        .ok_or("RULES_FILE or RULES must be set: the events function needs rules")?;
    let policy = RetryPolicy {
        max_attempts: config.dispatch_max_attempts.max(1),
        budget: Duration::from_secs(config.dispatch_budget_secs),
        ..RetryPolicy::default()
    };
    Ok((config, rules, policy))
}

/// One thread: Lambda sends one invocation at a time.
#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_runtime::Error> {
    telemetry::init(true);
    let (config, rules, policy) = init_error::or_report(configure()).await?;
    tracing::info!(rules = rules.len(), "rules loaded");
    let aws = orchestrator_clients::aws::config().await;
    let store = DynamoStore::new(aws_sdk_dynamodb::Client::new(&aws), config.dynamo.names());
    let store =
        init_error::or_report(config.notify.store(std::sync::Arc::new(store)).await).await?;
    let store = store.as_ref();
    let launcher = EcsLauncher::new(aws_sdk_ecs::Client::new(&aws), config.ecs.settings());
    lambda_runtime::run(service_fn(|event: LambdaEvent<Value>| {
        let (launcher, rules) = (&launcher, &rules);
        async move {
            let report = events::handle(store, launcher, policy, rules, event.payload)
                .await
                .map_err(|e| lambda_runtime::Error::from(e.to_string()))?;
            tracing::info!(record_id = %report.record_id, status = %report.status, duplicate = report.duplicate, "event handled");
            Ok::<_, lambda_runtime::Error>(serde_json::to_value(&report)?)
        }
    }))
    .await
}
