//! Logging for every binary (the Lambda functions, the local server, the task): JSON lines on
//! Lambda and in containers, human-readable in a terminal.
//! `RUST_LOG` sets the filter (default `info`), except that the libraries in [`AT_MOST_DEBUG`]
//! never log at trace: at trace they write whole events and HTTP bodies, which carry the intake
//! token (an API Gateway event's query string) and secret values (Secrets Manager answers).

use tracing_subscriber::filter::filter_fn;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

/// Library crates whose trace events carry payloads: dropped whatever `RUST_LOG` says.
pub const AT_MOST_DEBUG: &[&str] = &[
    "lambda_runtime",
    "lambda_runtime_api_client",
    "lambda_http",
    "aws_smithy_runtime",
    "aws_smithy_runtime_api",
    "aws_smithy_http_client",
    "aws_sdk_secretsmanager",
    "aws_sdk_dynamodb",
    "aws_sdk_ecs",
    "aws_config",
    "hyper",
    "hyper_util",
    "h2",
    "reqwest",
    "rustls",
];

/// Whether an event may be logged: anything but a trace event of the crates above.
fn payload_free(level: tracing::Level, target: &str) -> bool {
    level != tracing::Level::TRACE || {
        let krate = target.split("::").next().unwrap_or_default();
        !AT_MOST_DEBUG.contains(&krate)
    }
}

/// Installs the global subscriber. `json` picks machine-readable output.
pub fn init(json: bool) {
    let env = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let fmt = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let format = if json {
        fmt.json()
            .flatten_event(true)
            .with_current_span(false)
            .boxed()
    } else {
        fmt.compact().boxed()
    };
    // A second init (tests) keeps the first subscriber.
    let _ = tracing_subscriber::registry()
        .with(
            format
                .with_filter(env)
                .with_filter(filter_fn(|m| payload_free(*m.level(), m.target()))),
        )
        .try_init();
}

/// JSON when running on Lambda (or when `LOG_FORMAT=json`).
pub fn wants_json() -> bool {
    std::env::var_os("AWS_LAMBDA_FUNCTION_NAME").is_some()
        || std::env::var("LOG_FORMAT").is_ok_and(|v| v.eq_ignore_ascii_case("json"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tracing::Level;

    #[test]
    fn library_trace_events_are_dropped_and_nothing_else() {
        assert!(!payload_free(
            Level::TRACE,
            "lambda_runtime::layers::api_response"
        ));
        assert!(!payload_free(Level::TRACE, "aws_smithy_runtime"));
        assert!(payload_free(
            Level::DEBUG,
            "lambda_runtime::layers::api_response"
        ));
        assert!(payload_free(Level::TRACE, "orchestrator::dispatch"));
        assert!(payload_free(Level::TRACE, "lambda_runtime_like::x"));
    }
}
