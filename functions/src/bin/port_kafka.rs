//! The Port Kafka Lambda: self-managed Kafka event sources (Port's topics `ORG_ID.runs` and the
//! legacy `ORG_ID.change.log`, SASL/SCRAM-512) deliver batches of automation and self-service
//! action invocations, and of changelog events; each goes through the same rules and records as
//! `POST /webhooks/port/runs` and `POST /webhooks/port` (see `orchestrator::intake::port::kafka`).
//! A deploy action (`PORT_DEPLOY_ACTIONS`) takes its image from its `image` input, or from
//! `IMAGE_TEMPLATE` (`{reponame}` is the service, `{org}` is `DEFAULT_ORG`). Configuration, all
//! from the environment: RULES_FILE or RULES, TABLE_NAME (+ index names), the ECS settings, and the
//! dispatch retry settings.
//!
//! The event source mapping has `ReportBatchItemFailures` on (template.yaml): the answer's
//! `batchItemFailures` names, per partition, the first record not done (a store error, or not
//! started because the invocation's time was running out), and Kafka delivers the partition again
//! from there, never the whole batch from its start. Unreadable records are recorded `rejected`
//! and are done. The answer's `records` is the per-record report, for the log and for operators.
//! The invocation fails as a whole only when a record not done has no usable coordinates.
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
    /// Template of a deploy action's image when it has no `image` input (`{reponame}` is the
    /// service; `{org}` is DEFAULT_ORG).
    #[arg(long, env = "IMAGE_TEMPLATE", default_value = "{org}/{reponame}")]
    image_template: orchestrator::intake::derive::Template,
    /// Organisation for `{org}` in IMAGE_TEMPLATE.
    #[arg(long, env = "DEFAULT_ORG")]
    default_org: Option<String>,
    #[command(flatten)]
    notify: orchestrator::notifications::NotifyConfig,
}

/// Time kept back at the end of an invocation, beside one launch's retry budget: no record is
/// started later than this (plus the budget) before the deadline, so the last one finishes, and
/// the answer is sent, in time.
const DEADLINE_MARGIN: Duration = Duration::from_secs(15);

/// When to stop starting records, for an invocation that must be answered by `deadline`.
fn stop_by(deadline: std::time::SystemTime, budget: Duration) -> tokio::time::Instant {
    let left = deadline
        .duration_since(std::time::SystemTime::now())
        .unwrap_or_default();
    tokio::time::Instant::now() + left.saturating_sub(budget + DEADLINE_MARGIN)
}

/// The checked configuration: everything but the AWS clients.
fn configure() -> Result<(Config, RuleSet, RetryPolicy, dispatch::RunsIntake), String> {
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
    let runs = dispatch::RunsIntake {
        derive: orchestrator::intake::derive::DeriveConfig {
            image: config.image_template.clone(),
            default_org: config.default_org.clone(),
            ..Default::default()
        },
        deploy_actions: config.port.settings_deploy_actions(),
    };
    Ok((config, rules, policy, runs))
}

/// One thread: Lambda sends one invocation at a time.
#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_runtime::Error> {
    telemetry::init(true);
    let (config, rules, policy, runs) = init_error::or_report(configure()).await?;
    tracing::info!(rules = rules.len(), "Port rules loaded");
    let aws = orchestrator_clients::aws::config().await;
    let store = config.dynamo.store(aws_sdk_dynamodb::Client::new(&aws));
    // Dispatch failures are notified from here.
    let store = init_error::or_report(config.notify.store(Arc::new(store)).await).await?;
    let store = store.as_ref();
    let launcher = EcsLauncher::new(aws_sdk_ecs::Client::new(&aws), config.ecs.settings());
    let rules = Arc::new(rules);
    lambda_runtime::run(service_fn(|event: LambdaEvent<Value>| {
        let (launcher, rules, runs) = (&launcher, rules.clone(), &runs);
        async move {
            let stop = stop_by(event.context.deadline(), policy.budget);
            let report = dispatch::process_batch_with(
                store,
                launcher,
                policy,
                &rules,
                runs,
                &event.payload,
                Some(stop),
            )
            .await
            .map_err(|e| lambda_runtime::Error::from(e.to_string()))?;
            let unwritten = report.unwritten();
            let deferred = report.count(dispatch::ITEM_DEFERRED);
            tracing::info!(
                records = report.records.len(),
                rejected = report.count("rejected"),
                unwritten,
                deferred,
                "Kafka batch handled"
            );
            let Some(failures) = report.item_failures() else {
                return Err(lambda_runtime::Error::from(format!(
                    "{unwritten} record(s) could not be written, one without usable Kafka \
                     coordinates; the batch will be delivered again"
                )));
            };
            if !failures.is_empty() {
                tracing::warn!(
                    ?failures,
                    "records not done; their partitions will be delivered again from these offsets"
                );
            }
            let mut answer = serde_json::to_value(&report)?;
            answer["batchItemFailures"] = failures
                .into_iter()
                .map(|f| serde_json::json!({ "itemIdentifier": f }))
                .collect();
            Ok::<_, lambda_runtime::Error>(answer)
        }
    }))
    .await
}
