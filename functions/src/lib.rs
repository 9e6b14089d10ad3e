//! The webhook intake and audit API.
//!
//! [`app`] builds the one axum [`Router`] that serves every deployment: the Lambda binary
//! (`bin/api.rs`, through `lambda_http`), the local server (`bin/orchestrator.rs serve`) and the
//! tests (`tower::ServiceExt::oneshot`). Handlers see only [`AppState`]: a record store and a task
//! launcher behind narrow traits, the intake settings and the audit credentials.
//!
//! Code map:
//! - [`intake`]: payload parsing and job derivation (pure).
//! - [`sources`]: the webhook sources behind one trait, and the list that registers their routes.
//! - [`api`]: the audit handlers, the one webhook handler, auth, body limits, the one error type;
//!   the audit console's HTML pages (`api::console`).
//! - [`audit`]: finding records for the console, with the filters the store cannot apply.
//! - [`dispatch`]: the application layer, no HTTP: record, launch, record the launch (webhooks
//!   and the Kafka batch loop alike), with its own error type.
//! - [`launch`]: the launcher port and its ECS and local-process adapters.
//! - [`lifecycle`]: ECS task state changes applied to records (the `lifecycle` Lambda).
//! - [`recovery`]: the sweeper that brings stuck records to a final state (the `recovery` Lambda,
//!   and a timer in the local server).
//! - [`events`]: AWS events and schedule runs (the `events` Lambda, `orchestrator schedule fire`).
//! - [`records_client`]: the audit API's client, behind `orchestrator records` (token or SigV4).
//! - [`rules`]: which Port events need a remediation, and its actions (CEL conditions).
//! - [`config`]: settings from flags and environment, read once at start.
//! - [`init_error`]: a Lambda binary's unusable configuration, reported to the Runtime API.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::Request;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use orchestrator_core::store::RecordStore;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::trace::{DefaultOnResponse, TraceLayer};

pub mod api;
pub mod audit;
pub mod config;
pub mod dispatch;
pub mod events;
pub mod init_error;
pub mod intake;
pub mod launch;
pub mod lifecycle;
pub mod notifications;
pub mod records_client;
pub mod recovery;
pub mod rules;
pub mod secrets;
pub mod sources;

use api::access::AccessSettings;
use api::console::ConsoleSettings;
use api::error::ApiError;
pub use config::IntakeSettings;
use launch::Tasks;
/// Logging set-up, shared with the task binary.
pub use orchestrator_core::telemetry;

/// How long a request may take before it is answered with 408.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(25);

/// Everything a handler may use.
#[derive(Debug, Clone)]
pub struct AppState {
    pub store: Arc<dyn RecordStore>,
    pub launcher: Arc<dyn Tasks>,
    pub intake: Arc<IntakeSettings>,
    /// Who may read and operate the audit trail.
    pub access: Arc<AccessSettings>,
    /// What the console links to (the task's log stream).
    pub console: Arc<ConsoleSettings>,
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

/// The API Gateway stage a request came through (`dev` for a REST API's `/dev` stage), from the
/// context `lambda_http` attaches; `None` locally, and for an HTTP API's `$default` stage.
pub fn api_stage(extensions: &axum::http::Extensions) -> Option<String> {
    use lambda_http::request::RequestContext;
    let stage = match extensions.get::<RequestContext>() {
        Some(RequestContext::ApiGatewayV1(c)) => c.stage.clone(),
        Some(RequestContext::ApiGatewayV2(c)) => c.stage.clone(),
        _ => None,
    };
    stage.filter(|s| !s.is_empty() && s != "$default")
}

/// Removes an API Gateway stage prefix (`/dev/pullrequests` -> `/pullrequests`) that
/// `lambda_http` adds for REST APIs when `AWS_LAMBDA_HTTP_IGNORE_STAGE_IN_PATH` is not set, so the
/// function works behind a REST stage and an HTTP API alike, whatever that variable says.
pub fn strip_stage<B>(mut req: axum::http::Request<B>) -> axum::http::Request<B> {
    let Some(stage) = api_stage(req.extensions()) else {
        return req;
    };
    let prefix = format!("/{stage}");
    let path = req.uri().path();
    let rest = match path.strip_prefix(&prefix) {
        Some(rest) if rest.is_empty() || rest.starts_with('/') => rest,
        _ => return req,
    };
    let rest = if rest.is_empty() { "/" } else { rest };
    let new = match req.uri().query() {
        Some(q) => format!("{rest}?{q}"),
        None => rest.to_owned(),
    };
    if let Ok(pq) = new.parse::<axum::http::uri::PathAndQuery>() {
        let mut parts = req.uri().clone().into_parts();
        parts.path_and_query = Some(pq);
        if let Ok(uri) = axum::http::Uri::from_parts(parts) {
            *req.uri_mut() = uri;
        }
    }
    req
}

/// The Router as the Lambda serves it: stage prefixes stripped first.
pub fn lambda_app(
    state: AppState,
) -> tower::util::MapRequest<Router, fn(lambda_http::Request) -> lambda_http::Request> {
    use tower::ServiceExt;
    app(state).map_request(strip_stage::<lambda_http::Body> as fn(_) -> _)
}

/// The one Router.
pub fn app(state: AppState) -> Router {
    // Spans carry the method and path only: the query string may hold the intake token. One
    // INFO line per response (status and latency) inside that span.
    let trace = TraceLayer::new_for_http()
        .make_span_with(|req: &Request| {
            tracing::info_span!("request", method = %req.method(), path = %req.uri().path())
        })
        .on_response(DefaultOnResponse::new().level(tracing::Level::INFO));
    let router = Router::new()
        .route("/pullrequests", get(api::pullrequests::list))
        .route(
            "/pullrequests/{id}",
            get(api::pullrequests::show).delete(api::pullrequests::delete),
        )
        .route(
            "/pullrequests/{id}/dispatch",
            post(api::pullrequests::dispatch_again),
        )
        .route("/openapi.json", get(api::openapi::document))
        .merge(api::console::routes());
    sources::register(router)
        .fallback(no_route)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(state)
        .layer(middleware::from_fn(with_timeout))
        .layer(CatchPanicLayer::custom(panic_response))
        .layer(trace)
}
