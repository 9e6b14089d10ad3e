//! The API Gateway Lambda: the shared Router over DynamoDB and ECS, served by `lambda_http`.
//! Works behind a REST API with a stage (set `AWS_LAMBDA_HTTP_IGNORE_STAGE_IN_PATH=true`, as
//! `template.yaml` does) and behind an HTTP API. Configuration: see `orchestrator serve --help`
//! and `docs/settings.md`; every setting is an environment variable. A configuration it cannot
//! use is reported to the Runtime API as an init error (`orchestrator::init_error`).

use std::sync::Arc;

use clap::Parser;
use orchestrator::api::access::AccessArgs;
use orchestrator::api::console::ConsoleArgs;
use orchestrator::config::{DynamoArgs, EcsArgs, IntakeArgs};
use orchestrator::launch::ecs::EcsLauncher;
use orchestrator::secrets::{self, SecretArns};
use orchestrator::{AppState, init_error, lambda_app, telemetry};
use orchestrator_notify::Notifying;

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
    /// Tokens for the audit routes; usually unset on AWS, where API Gateway authorizes those
    /// routes with IAM (SigV4) and the function trusts the identity it verified.
    #[command(flatten)]
    access: AccessArgs,
    /// What the console links to (the task's CloudWatch log stream).
    #[command(flatten)]
    console: ConsoleArgs,
    #[command(flatten)]
    notify: orchestrator::notifications::NotifyConfig,
}

/// Reads and checks the configuration, resolves the secrets, and builds the state. `Err` is the
/// reason the function cannot start.
async fn configure() -> Result<AppState, String> {
    let config = Config::try_parse().map_err(|e| format!("configuration: {e}"))?;
    let mut intake = config.intake.settings()?;
    let aws = orchestrator_clients::aws::config().await;
    let sm = aws_sdk_secretsmanager::Client::new(&aws);
    let arns = &config.secrets;
    let mut access_args = config.access.clone();
    // The other clients are built on another thread while the secrets are fetched: each one
    // parses its endpoint rules (about 0.7 ms apiece), work that need not wait for the network.
    let clients = {
        let aws = aws.clone();
        tokio::task::spawn_blocking(move || {
            (
                aws_sdk_dynamodb::Client::new(&aws),
                aws_sdk_ecs::Client::new(&aws),
            )
        })
    };
    // Every named secret at once, the notifications' too: the cold start waits for one Secrets
    // Manager round trip, not one per secret. The console's credentials come from here too (a
    // browser cannot sign SigV4).
    let (token, circleci, port, audit, admin, notifier) = tokio::try_join!(
        secrets::resolve(
            &sm,
            arns.intake_token_secret_arn.as_deref(),
            intake.token.take()
        ),
        secrets::resolve(
            &sm,
            arns.circleci_webhook_secret_arn.as_deref(),
            intake.circleci_secret.take(),
        ),
        secrets::resolve(
            &sm,
            arns.port_client_secret_arn.as_deref(),
            intake.port.secret.take()
        ),
        secrets::resolve(
            &sm,
            arns.audit_token_secret_arn.as_deref(),
            access_args.audit_token.take(),
        ),
        secrets::resolve(
            &sm,
            arns.admin_token_secret_arn.as_deref(),
            access_args.admin_token.take(),
        ),
        config.notify.notifier_with(Some(&sm)),
    )?;
    let (dynamodb, ecs) = clients
        .await
        .map_err(|e| format!("building the AWS clients: {e}"))?;
    (intake.token, intake.circleci_secret, intake.port.secret) = (token, circleci, port);
    (access_args.audit_token, access_args.admin_token) = (audit, admin);
    // As for PORT_CLIENT_SECRET (config.rs): a Port intake without rules would ignore everything.
    if intake.port.secret.is_some() && intake.port.rules.is_none() {
        return Err(
            "PORT_CLIENT_SECRET_ARN is set but no rules are: set RULES (or RULES_FILE)".into(),
        );
    }
    if intake.token.is_none() {
        return Err(
            "INTAKE_TOKEN_SECRET_ARN (or INTAKE_TOKEN) must be set: the Lambda never runs unauthenticated"
                .into(),
        );
    }
    let access = access_args.settings(intake.token.as_ref())?;
    // Dispatch failures are notified from here.
    let store = Notifying::wrap(Arc::new(config.dynamo.store(dynamodb)), notifier);
    Ok(AppState {
        store,
        launcher: Arc::new(EcsLauncher::new(ecs, config.ecs.settings())),
        intake: Arc::new(intake),
        access: Arc::new(access),
        console: Arc::new(config.console.settings()),
    })
}

/// One thread: Lambda sends one invocation at a time, and a cold start need not start a worker
/// per core.
#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_http::Error> {
    telemetry::init(true);
    let state = init_error::or_report(configure().await).await?;
    lambda_http::run(lambda_app(state)).await
}
