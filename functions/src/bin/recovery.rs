//! The recovery Lambda: run by an EventBridge schedule, one sweeper pass per invocation (see
//! `orchestrator::recovery`). Configuration: TABLE_NAME (+ index names), the ECS settings the
//! api function uses, the launch retry settings and the recovery thresholds, from the environment;
//! a configuration it cannot use is reported to the Runtime API as an init error. The answer is
//! the pass's report; a pass with records it could not handle fails the invocation, so the
//! schedule's retries and dead-letter queue see it.

use std::sync::Arc;

use clap::Parser;
use lambda_http::lambda_runtime::{self, LambdaEvent, service_fn};
use orchestrator::config::{DynamoArgs, EcsArgs, RecoveryArgs, RetryArgs};
use orchestrator::launch::ecs::EcsLauncher;
use orchestrator::recovery::{self, RecoveryPolicy};
use orchestrator::{init_error, telemetry};
use orchestrator_core::store::dynamodb::DynamoStore;
use serde_json::Value;

#[derive(Debug, Parser)]
#[command(about = "Recovery sweeper Lambda (configured by environment)")]
struct Config {
    #[command(flatten)]
    dynamo: DynamoArgs,
    #[command(flatten)]
    ecs: EcsArgs,
    #[command(flatten)]
    retry: RetryArgs,
    #[command(flatten)]
    recovery: RecoveryArgs,
    #[command(flatten)]
    notify: orchestrator::notifications::NotifyConfig,
}

/// One thread: Lambda sends one invocation at a time.
#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_runtime::Error> {
    telemetry::init(true);
    let config =
        init_error::or_report(Config::try_parse().map_err(|e| format!("configuration: {e}")))
            .await?;
    let aws = orchestrator_clients::aws::config().await;
    let store = DynamoStore::new(aws_sdk_dynamodb::Client::new(&aws), config.dynamo.names());
    // Retries given up and dead tasks are notified from here.
    let store = init_error::or_report(config.notify.store(Arc::new(store)).await).await?;
    let store = store.as_ref();
    let tasks = Arc::new(EcsLauncher::new(
        aws_sdk_ecs::Client::new(&aws),
        config.ecs.settings(),
    ));
    let policy: RecoveryPolicy = config.recovery.policy(config.retry.policy());
    lambda_runtime::run(service_fn(|_event: LambdaEvent<Value>| {
        let tasks = tasks.clone();
        async move {
            let report = recovery::sweep(
                store,
                tasks.as_ref(),
                &policy,
                orchestrator_core::record::now(),
            )
            .await;
            if !report.errors.is_empty() {
                return Err(lambda_runtime::Error::from(format!(
                    "{} record(s) could not be handled: {}",
                    report.errors.len(),
                    report.errors.join("; ")
                )));
            }
            Ok::<_, lambda_runtime::Error>(report)
        }
    }))
    .await
}
