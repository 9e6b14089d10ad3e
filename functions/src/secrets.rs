//! Secrets for the Lambda functions, read from AWS Secrets Manager once, at cold start.
//!
//! A deployment names secrets by ARN (`*_SECRET_ARN` variables); the values never sit in the
//! function's environment, its logs or its configuration. Locally the plain variables
//! (`INTAKE_TOKEN`, `CIRCLECI_WEBHOOK_SECRET`, `PORT_CLIENT_SECRET`) are used instead.

use aws_sdk_secretsmanager::Client;
use aws_sdk_secretsmanager::error::DisplayErrorContext;
use clap::Args;
use orchestrator_core::Secret;

/// Secret ARNs; each, when set, overrides the matching plain setting.
#[derive(Debug, Clone, Default, Args)]
pub struct SecretArns {
    /// Secrets Manager ARN of the intake token (a plain string secret).
    #[arg(long, env = "INTAKE_TOKEN_SECRET_ARN")]
    pub intake_token_secret_arn: Option<String>,
    /// Secrets Manager ARN of the CircleCI webhook signing secret.
    #[arg(long, env = "CIRCLECI_WEBHOOK_SECRET_ARN")]
    pub circleci_webhook_secret_arn: Option<String>,
    /// Secrets Manager ARN of the Port client secret (verifies `POST /webhooks/port`).
    #[arg(long, env = "PORT_CLIENT_SECRET_ARN")]
    pub port_client_secret_arn: Option<String>,
    /// Secrets Manager ARN of the audit token (the console's read-only sign-in).
    #[arg(long, env = "AUDIT_TOKEN_SECRET_ARN")]
    pub audit_token_secret_arn: Option<String>,
    /// Secrets Manager ARN of the admin token (the console's sign-in that can re-dispatch and
    /// redact).
    #[arg(long, env = "ADMIN_TOKEN_SECRET_ARN")]
    pub admin_token_secret_arn: Option<String>,
}

/// Reads one secret string. The error names the ARN, never the value.
pub async fn fetch(client: &Client, arn: &str) -> Result<Secret, String> {
    let out = client
        .get_secret_value()
        .secret_id(arn)
        .send()
        .await
        .map_err(|e| format!("reading secret {arn}: {}", DisplayErrorContext(&e)))?;
    let value = out
        .secret_string()
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .ok_or_else(|| format!("secret {arn} has no string value"))?;
    Ok(Secret::new(value))
}

/// Resolves `arn` when given, else keeps `plain`.
pub async fn resolve(
    client: &Client,
    arn: Option<&str>,
    plain: Option<Secret>,
) -> Result<Option<Secret>, String> {
    match arn.filter(|a| !a.is_empty()) {
        Some(arn) => fetch(client, arn).await.map(Some),
        None => Ok(plain),
    }
}
