//! The API Gateway Lambda: the shared Router over DynamoDB and ECS, served by `lambda_http`.
//! Works behind a REST API with a stage (set `AWS_LAMBDA_HTTP_IGNORE_STAGE_IN_PATH=true`, as
//! `template.yaml` does) and behind an HTTP API. Configuration: see `orchestrator serve --help`
//! and `docs/settings.md`; every setting is an environment variable.

use std::sync::Arc;

use clap::Parser;
use orchestrator::config::{DynamoArgs, EcsArgs, IntakeArgs};
use orchestrator::launch::ecs::EcsLauncher;
use orchestrator::secrets::{self, SecretArns};
use orchestrator::{AppState, lambda_app, telemetry};
use orchestrator_core::store::dynamodb::DynamoStore;

#[derive(Debug, Parser)]
#[command(about = "API Gateway Lambda for the gitops orchestrator (configured by environment)")]
struct Config {
    #[command(flatten)]
    intake: IntakeArgs,
    #[command(flatten)]
    dynamo: DynamoArgs,
    #[command(flatten)]
    ecs: EcsArgs,
    #[command(flatten)]
    secrets: SecretArns,
}

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    telemetry::init(true);
    let config = Config::try_parse().map_err(|e| anyhow::anyhow!("configuration: {e}"))?;
    let mut intake = config.intake.settings().map_err(anyhow::Error::msg)?;
    let aws = aws_config::load_from_env().await;
    let sm = aws_sdk_secretsmanager::Client::new(&aws);
    let arns = &config.secrets;
    intake.token = secrets::resolve(&sm, arns.intake_token_secret_arn.as_deref(), intake.token)
        .await
        .map_err(anyhow::Error::msg)?;
    intake.circleci_secret = secrets::resolve(
        &sm,
        arns.circleci_webhook_secret_arn.as_deref(),
        intake.circleci_secret,
    )
    .await
    .map_err(anyhow::Error::msg)?;
    intake.port.secret = secrets::resolve(
        &sm,
        arns.port_client_secret_arn.as_deref(),
        intake.port.secret,
    )
    .await
    .map_err(anyhow::Error::msg)?;
    // As for PORT_CLIENT_SECRET (config.rs): a Port intake without rules would ignore everything.
    if intake.port.secret.is_some() && intake.port.rules.is_none() {
        return Err(anyhow::anyhow!(
            "PORT_CLIENT_SECRET_ARN is set but no rules are: set RULES (or RULES_FILE)"
        )
        .into());
    }
    if intake.token.is_none() {
        return Err(anyhow::anyhow!(
            "INTAKE_TOKEN_SECRET_ARN (or INTAKE_TOKEN) must be set: the Lambda never runs unauthenticated"
        )
        .into());
    }
    let state = AppState {
        store: Arc::new(DynamoStore::new(
            aws_sdk_dynamodb::Client::new(&aws),
            config.dynamo.names(),
        )),
        launcher: Arc::new(EcsLauncher::new(
            aws_sdk_ecs::Client::new(&aws),
            config.ecs.settings(),
        )),
        intake: Arc::new(intake),
    };
    lambda_http::run(lambda_app(state)).await
}
