//! What every Lambda binary does with a configuration it cannot use: log it, post it to the Lambda
//! Runtime API as an init error (`POST /runtime/init/error`, through the runtime's own
//! `lambda_runtime_api_client`), and exit, so Lambda fails the invocation with the reason instead
//! of waiting for a function that never asks for work. `lambda_runtime` only reports its own init
//! failures, not ours.

use std::time::Duration;

use lambda_http::lambda_runtime;
use lambda_runtime_api_client::body::Body;
use lambda_runtime_api_client::{PooledClient, build_request};

/// How long the report may take; the process exits either way.
const REPORT_TIMEOUT: Duration = Duration::from_secs(5);

/// Passes `Ok` through; an `Err` is logged, reported as an init error, and returned for `main`
/// to exit with.
pub async fn or_report<T>(configured: Result<T, String>) -> Result<T, lambda_runtime::Error> {
    match configured {
        Ok(v) => Ok(v),
        Err(message) => {
            tracing::error!(error = %message, "cannot start");
            report(&message).await;
            Err(message.into())
        }
    }
}

/// Posts `message` as `Runtime.InitError`. Best effort, bounded: a failure to report is logged.
/// Outside Lambda (no `AWS_LAMBDA_RUNTIME_API`) there is nobody to tell.
pub async fn report(message: &str) {
    let Some(api) = std::env::var("AWS_LAMBDA_RUNTIME_API")
        .ok()
        .filter(|a| !a.is_empty())
    else {
        return;
    };
    let Ok(endpoint) = format!("http://{api}").parse() else {
        tracing::error!(%api, "AWS_LAMBDA_RUNTIME_API is not an address");
        return;
    };
    let body = serde_json::json!({
        "errorType": "Runtime.InitError",
        "errorMessage": message,
        "stackTrace": [],
    })
    .to_string();
    let request = build_request()
        .method("POST")
        .uri("/2018-06-01/runtime/init/error")
        .header("content-type", "application/json")
        .header("lambda-runtime-function-error-type", "Runtime.InitError")
        .body(Body::from(body));
    let request = match request {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(error = %e, "cannot build the init error report");
            return;
        }
    };
    let client = PooledClient::builder().with_endpoint(endpoint).build();
    match tokio::time::timeout(REPORT_TIMEOUT, client.call(request)).await {
        Ok(Ok(answer)) if answer.status() == 202 => {}
        Ok(Ok(answer)) => {
            tracing::error!(status = %answer.status(), "the Runtime API did not accept the init error")
        }
        Ok(Err(e)) => tracing::error!(error = %e, "cannot report the init error"),
        Err(_) => tracing::error!("reporting the init error timed out"),
    }
}
