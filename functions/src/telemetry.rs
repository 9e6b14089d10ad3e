//! Logging: JSON lines on Lambda and in containers, human-readable in a terminal.
//! `RUST_LOG` sets the filter (default `info`).

use tracing_subscriber::EnvFilter;

/// Installs the global subscriber. `json` picks machine-readable output.
pub fn init(json: bool) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let result = if json {
        builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .try_init()
    } else {
        builder.compact().try_init()
    };
    // A second init (tests) keeps the first subscriber.
    let _ = result;
}

/// JSON when running on Lambda (or when `LOG_FORMAT=json`).
pub fn wants_json() -> bool {
    std::env::var_os("AWS_LAMBDA_FUNCTION_NAME").is_some()
        || std::env::var("LOG_FORMAT").is_ok_and(|v| v.eq_ignore_ascii_case("json"))
}
