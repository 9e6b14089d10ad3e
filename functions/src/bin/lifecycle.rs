//! The task lifecycle Lambda: EventBridge "ECS Task State Change" events for our cluster update
//! the records (see `orchestrator::lifecycle`). Configuration: TABLE_NAME (+ index names) and
//! ECS_CLUSTER, from the environment; a configuration it cannot use is reported to the Runtime API
//! as an init error (`orchestrator::init_error`).

use clap::Parser;
use lambda_http::lambda_runtime::{self, LambdaEvent, service_fn};
use orchestrator::config::DynamoArgs;
use orchestrator::{init_error, lifecycle, telemetry};
use orchestrator_core::store::dynamodb::DynamoStore;
use serde_json::{Value, json};

#[derive(Debug, Parser)]
#[command(about = "ECS task lifecycle Lambda (configured by environment)")]
struct Config {
    #[command(flatten)]
    dynamo: DynamoArgs,
    /// Only events of this cluster (name or ARN) are applied.
    #[arg(long, env = "ECS_CLUSTER")]
    ecs_cluster: Option<String>,
}

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    telemetry::init(true);
    let config =
        init_error::or_report(Config::try_parse().map_err(|e| format!("configuration: {e}")))
            .await?;
    let aws = aws_config::load_from_env().await;
    let store = DynamoStore::new(aws_sdk_dynamodb::Client::new(&aws), config.dynamo.names());
    let cluster = config.ecs_cluster;
    lambda_runtime::run(service_fn(|event: LambdaEvent<Value>| {
        let (store, cluster) = (&store, cluster.as_deref());
        async move {
            let applied = lifecycle::apply(store, &event.payload, cluster)
                .await
                .map_err(|e| lambda_runtime::Error::from(e.to_string()))?;
            tracing::info!(?applied, "task state change handled");
            Ok::<_, lambda_runtime::Error>(json!({ "applied": format!("{applied:?}") }))
        }
    }))
    .await
}
