//! The task lifecycle Lambda: EventBridge "ECS Task State Change" events for our cluster update
//! the records (see `orchestrator::lifecycle`). Configuration: TABLE_NAME (+ index names) and
//! ECS_CLUSTER, from the environment; a configuration it cannot use is reported to the Runtime API
//! as an init error (`orchestrator::init_error`). With Port credentials (PORT_CLIENT_ID or
//! PORT_CLIENT_ID_SECRET_ARN, PORT_CLIENT_SECRET or PORT_CLIENT_SECRET_ARN; PORT_API_URL), a task
//! that dies on a record Port invoked ends its Port run `FAILURE` (`lifecycle::apply_and_report`).

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
    /// Port REST API, for reports to the Port run of a record whose task died.
    #[arg(long, env = "PORT_API_URL", default_value = "https://api.port.io")]
    port_api_url: String,
    /// Port client id (or PORT_CLIENT_ID_SECRET_ARN).
    #[arg(long, env = "PORT_CLIENT_ID")]
    port_client_id: Option<String>,
    /// Secrets Manager ARN of the Port client id.
    #[arg(long, env = "PORT_CLIENT_ID_SECRET_ARN")]
    port_client_id_secret_arn: Option<String>,
    /// Port client secret (or PORT_CLIENT_SECRET_ARN).
    #[arg(long, env = "PORT_CLIENT_SECRET", hide_env_values = true)]
    port_client_secret: Option<orchestrator_core::Secret>,
    /// Secrets Manager ARN of the Port client secret.
    #[arg(long, env = "PORT_CLIENT_SECRET_ARN")]
    port_client_secret_arn: Option<String>,
    /// The orchestrator API's base URL, for the record's link in the Port run.
    #[arg(long, env = "RECORD_BASE_URL")]
    record_base_url: Option<String>,
    #[command(flatten)]
    notify: orchestrator::notifications::NotifyConfig,
}

/// The Port run reports, when both credentials are configured.
async fn port_reports(
    config: &Config,
    aws: &aws_config::SdkConfig,
) -> Result<Option<lifecycle::PortReports>, String> {
    let sm = aws_sdk_secretsmanager::Client::new(aws);
    let id = orchestrator::secrets::resolve(
        &sm,
        config.port_client_id_secret_arn.as_deref(),
        config
            .port_client_id
            .clone()
            .map(orchestrator_core::Secret::new),
    )
    .await?;
    let secret = orchestrator::secrets::resolve(
        &sm,
        config.port_client_secret_arn.as_deref(),
        config.port_client_secret.clone(),
    )
    .await?;
    let (Some(id), Some(secret)) = (id, secret) else {
        return Ok(None);
    };
    let base = config
        .port_api_url
        .trim()
        .parse()
        .map_err(|e| format!("PORT_API_URL: {e}"))?;
    let http = orchestrator_clients::http::builder()
        .timeout(std::time::Duration::from_secs(5))
        .build()
        .map_err(|e| format!("HTTP client: {e}"))?;
    Ok(Some(lifecycle::PortReports {
        http,
        api: port_runs::PortApi {
            base,
            client_id: id.expose().to_owned(),
            client_secret: secret,
        },
        record_base_url: config
            .record_base_url
            .clone()
            .filter(|u| !u.trim().is_empty()),
        // Within the function's 30 s: a few short retries.
        retry: port_runs::Retry {
            attempts: 3,
            initial_backoff: std::time::Duration::from_millis(500),
            max_backoff: std::time::Duration::from_secs(2),
        },
    }))
}

/// One thread: Lambda sends one invocation at a time.
#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_runtime::Error> {
    telemetry::init(true);
    let config =
        init_error::or_report(Config::try_parse().map_err(|e| format!("configuration: {e}")))
            .await?;
    let aws = orchestrator_clients::aws::config().await;
    let port = init_error::or_report(port_reports(&config, &aws).await).await?;
    let store = DynamoStore::new(aws_sdk_dynamodb::Client::new(&aws), config.dynamo.names());
    // A task that died (`failed`) is notified from here.
    let store =
        init_error::or_report(config.notify.store(std::sync::Arc::new(store)).await).await?;
    let store = store.as_ref();
    let cluster = config.ecs_cluster;
    lambda_runtime::run(service_fn(|event: LambdaEvent<Value>| {
        let (cluster, port) = (cluster.as_deref(), port.as_ref());
        async move {
            let applied = lifecycle::apply_and_report(store, &event.payload, cluster, port)
                .await
                .map_err(|e| lambda_runtime::Error::from(e.to_string()))?;
            tracing::info!(?applied, "task state change handled");
            Ok::<_, lambda_runtime::Error>(json!({ "applied": format!("{applied:?}") }))
        }
    }))
    .await
}
