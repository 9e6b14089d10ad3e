//! The webhook intake and audit API.
//!
//! [`app`] builds the one axum [`Router`] that serves every deployment: the Lambda binary
//! (`bin/api.rs`, through `lambda_http`), the local server (`bin/orchestrator.rs serve`) and the
//! tests (`tower::ServiceExt::oneshot`). Handlers see only [`AppState`]: a record store and a task
//! launcher behind narrow traits, and the intake settings.
//!
//! Code map:
//! - [`intake`]: payload parsing and job derivation (pure).
//! - [`api`]: handlers, auth, body limits, the one error type.
//! - [`dispatch`]: record, launch, record the launch.
//! - [`launch`]: the launcher port and its ECS and local-process adapters.
//! - [`config`]: settings from flags and environment, read once at start.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::Request;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use orchestrator_core::Secret;
use orchestrator_core::store::RecordStore;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::trace::TraceLayer;

pub mod api;
pub mod config;
pub mod dispatch;
pub mod intake;
pub mod launch;
pub mod telemetry;

use api::error::ApiError;
use intake::derive::DeriveConfig;
use launch::TaskLauncher;

/// How long a request may take before it is answered with 408.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(25);

/// What the intake needs to know, beside its adapters.
#[derive(Debug, Clone, Default)]
pub struct IntakeSettings {
    /// The shared token; `None` disables authentication (local mode only).
    pub token: Option<Secret>,
    pub derive: DeriveConfig,
}

/// Everything a handler may use.
#[derive(Debug, Clone)]
pub struct AppState {
    pub store: Arc<dyn RecordStore>,
    pub launcher: Arc<dyn TaskLauncher>,
    pub intake: Arc<IntakeSettings>,
}

async fn no_route() -> ApiError {
    ApiError::NoRoute
}

async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed
}

async fn with_timeout(req: Request, next: Next) -> Response {
    match tokio::time::timeout(REQUEST_TIMEOUT, next.run(req)).await {
        Ok(resp) => resp,
        Err(_) => ApiError::Timeout.into_response(),
    }
}

fn panic_response(_: Box<dyn std::any::Any + Send + 'static>) -> Response {
    ApiError::Internal("handler panicked".into()).into_response()
}

/// The one Router.
pub fn app(state: AppState) -> Router {
    // Spans carry the method and path only: the query string may hold the intake token.
    let trace = TraceLayer::new_for_http().make_span_with(|req: &Request| {
        tracing::info_span!("request", method = %req.method(), path = %req.uri().path())
    });
    Router::new()
        .route(
            "/pullrequests",
            post(api::pullrequests::create).get(api::pullrequests::list),
        )
        .route(
            "/pullrequests/{id}",
            get(api::pullrequests::show).delete(api::pullrequests::delete),
        )
        .fallback(no_route)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(state)
        .layer(middleware::from_fn(with_timeout))
        .layer(CatchPanicLayer::custom(panic_response))
        .layer(trace)
}
