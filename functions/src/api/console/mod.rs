//! The audit console: server-rendered HTML pages under `/console` in the one Router, for a person
//! with a browser. It owns the HTML and the browser's auth (a login form, a signed session cookie,
//! CSRF tokens: [`session`]); what it shows and does comes from the application layer
//! ([`crate::audit::find`], [`crate::dispatch::redispatch`], the store's `redact`), as for the
//! JSON routes. No JavaScript, no asset from elsewhere: one inline stylesheet route.
//!
//! - `GET /console`: the records, newest first, filtered and paged;
//! - `GET /console/records/{id}`: one record, its timeline, outcome and links;
//! - `GET|POST /console/records/{id}/dispatch` and `.../redact`: the admin actions, a
//!   confirmation page (GET) and the action (POST, with the session's CSRF token);
//! - `GET|POST /console/login`, `POST /console/logout`, `GET /console/style.css`.
//!
//! A credential never travels in a URL: login is a POST, the session is a cookie.

pub mod pages;
pub mod session;

use axum::Router;
use axum::extract::{Form, FromRequest, Path, Request, State};
use axum::http::header::{
    CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE, LOCATION, REFERRER_POLICY, SET_COOKIE,
    X_CONTENT_TYPE_OPTIONS,
};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use chrono::{DateTime, NaiveDateTime, Utc};
use clap::Args;
use orchestrator_core::store::{DEFAULT_PAGE, ListQuery, MAX_PAGE, cursor};
use orchestrator_core::{Record, RecordId, Source, Status};
use serde::Deserialize;

use self::session::{COOKIE_NAME, SESSION_SECS, Session};
use super::access::Power;
use super::auth;
use super::error::ApiError;
use super::webhook::base_path;
use crate::AppState;
use crate::audit::{self, Find};
use crate::dispatch::redispatch;

/// Where the task's logs are, to link a record to its CloudWatch log stream (the awslogs driver
/// names streams `<prefix>/<container>/<task id>`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConsoleSettings {
    /// The task definition's `awslogs-group`; `None` (locally): no log link.
    pub task_log_group: Option<String>,
    /// Its `awslogs-stream-prefix`.
    pub task_log_stream_prefix: String,
    /// The task's container name.
    pub task_log_container: String,
}

/// The console's settings, from the environment (`template.yaml` sets them to the task
/// definition's log configuration).
#[derive(Debug, Clone, Args)]
pub struct ConsoleArgs {
    /// The task's CloudWatch log group (the task definition's `awslogs-group`). Unset: the
    /// console shows no log link.
    #[arg(long, env = "TASK_LOG_GROUP")]
    pub task_log_group: Option<String>,
    /// The task definition's `awslogs-stream-prefix`.
    #[arg(long, env = "TASK_LOG_STREAM_PREFIX", default_value = "task")]
    pub task_log_stream_prefix: String,
    /// The task's container name (the middle part of its log stream's name).
    #[arg(long, env = "TASK_LOG_CONTAINER", default_value = "gitops-task")]
    pub task_log_container: String,
}

impl ConsoleArgs {
    pub fn settings(&self) -> ConsoleSettings {
        ConsoleSettings {
            task_log_group: self.task_log_group.clone().filter(|g| !g.trim().is_empty()),
            task_log_stream_prefix: self.task_log_stream_prefix.clone(),
            task_log_container: self.task_log_container.clone(),
        }
    }
}

/// The console's routes, merged into the one Router.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/console", get(list))
        .route("/console/login", get(login_form).post(login))
        .route("/console/logout", axum::routing::post(logout))
        .route("/console/style.css", get(stylesheet))
        .route("/console/records/{id}", get(record))
        .route(
            "/console/records/{id}/dispatch",
            get(confirm_dispatch).post(do_dispatch),
        )
        .route(
            "/console/records/{id}/redact",
            get(confirm_redact).post(do_redact),
        )
}

fn now() -> i64 {
    Utc::now().timestamp()
}

/// Every console answer: HTML, never cached, no inline script or style allowed, no referrer.
fn html(status: StatusCode, body: String) -> Response {
    let mut resp = (status, body).into_response();
    let h = resp.headers_mut();
    h.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    secure_headers(h);
    resp
}

fn secure_headers(h: &mut axum::http::HeaderMap) {
    h.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; \
             frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    h.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(REFERRER_POLICY, HeaderValue::from_static("same-origin"));
}

fn see_other(to: &str) -> Response {
    let mut resp = StatusCode::SEE_OTHER.into_response();
    if let Ok(v) = HeaderValue::from_str(to) {
        resp.headers_mut().insert(LOCATION, v);
    }
    secure_headers(resp.headers_mut());
    resp
}

fn session_cookie(base: &str, value: &str, max_age: i64) -> HeaderValue {
    HeaderValue::from_str(&format!(
        "{COOKIE_NAME}={value}; Path={base}/console; Max-Age={max_age}; HttpOnly; Secure; SameSite=Strict"
    ))
    .unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// The page's context: where the console lives and who is signed in.
#[derive(Debug)]
pub struct Ctx<'a> {
    pub base: String,
    pub session: Option<Session>,
    pub csrf: String,
    pub state: &'a AppState,
}

impl<'a> Ctx<'a> {
    fn new(state: &'a AppState, parts: &Parts) -> Self {
        let session = Session::from_headers(&state.access, &parts.headers, now());
        let csrf = session
            .as_ref()
            .map(|s| s.csrf(&state.access))
            .unwrap_or_default();
        Ctx {
            base: base_path(parts),
            session,
            csrf,
            state,
        }
    }

    /// The console's root path.
    pub fn root(&self) -> String {
        format!("{}/console", self.base)
    }

    pub fn is_admin(&self) -> bool {
        self.session
            .as_ref()
            .is_some_and(|s| s.power == Power::Admin)
    }

    fn login_redirect(&self) -> Response {
        see_other(&format!("{}/login", self.root()))
    }

    fn error(&self, status: StatusCode, message: &str) -> Response {
        html(status, pages::error(self, status, message).into_string())
    }

    /// Any other error: its status and the status's name; 5xx internals went to the log (the
    /// error's own `IntoResponse` logs them).
    fn api_error(&self, e: ApiError) -> Response {
        let status = e.into_response().status();
        self.error(status, status.canonical_reason().unwrap_or("Error"))
    }
}

/// An error the console shows with its own message (a conflict, a record not found).
fn shown(ctx: &Ctx<'_>, e: ApiError) -> Response {
    match &e {
        ApiError::Conflict(m) => ctx.error(StatusCode::CONFLICT, m),
        ApiError::NotFound(m) => ctx.error(StatusCode::NOT_FOUND, &format!("{m} not found")),
        ApiError::DispatchFailed { record_id, .. } => ctx.error(
            StatusCode::BAD_GATEWAY,
            &format!(
                "The task could not be launched; record {record_id} (now dispatch_failed) says why."
            ),
        ),
        ApiError::InvalidQuery { param, reason } => ctx.error(
            StatusCode::BAD_REQUEST,
            &format!("Filter `{param}` is invalid: {reason}"),
        ),
        _ => ctx.api_error(e),
    }
}

async fn stylesheet() -> Response {
    let mut resp = pages::STYLE.into_response();
    resp.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/css; charset=utf-8"),
    );
    resp.headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("max-age=300"));
    resp.headers_mut()
        .insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    resp
}

async fn login_form(State(state): State<AppState>, req: Request) -> Response {
    let (parts, _) = req.into_parts();
    let ctx = Ctx::new(&state, &parts);
    if ctx.session.is_some() {
        return see_other(&ctx.root());
    }
    html(StatusCode::OK, pages::login(&ctx, None).into_string())
}

#[derive(Debug, Deserialize)]
struct LoginForm {
    #[serde(default)]
    token: String,
}

async fn login(State(state): State<AppState>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let ctx = Ctx::new(&state, &parts);
    if !session::origin_ok(&parts.headers) {
        return ctx.error(
            StatusCode::FORBIDDEN,
            "This form was posted from another site.",
        );
    }
    let Ok(Form(form)) =
        Form::<LoginForm>::from_request(Request::from_parts(parts, body), &()).await
    else {
        return ctx.error(StatusCode::BAD_REQUEST, "The login form could not be read.");
    };
    if state.access.audit_token.is_none() && state.access.admin_token.is_none() {
        return html(
            StatusCode::FORBIDDEN,
            pages::login(
                &ctx,
                Some("The console is closed: neither AUDIT_TOKEN nor ADMIN_TOKEN is configured."),
            )
            .into_string(),
        );
    }
    let Some(power) = session::power_of(&state.access, form.token.trim()) else {
        tracing::info!("console login refused: wrong credential");
        return html(
            StatusCode::UNAUTHORIZED,
            pages::login(&ctx, Some("That token is not the audit or admin token.")).into_string(),
        );
    };
    let Some(s) = Session::issue(&state.access, power, now()) else {
        return ctx.error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "No session could be made.",
        );
    };
    tracing::info!(
        role = if power == Power::Admin {
            "admin"
        } else {
            "audit"
        },
        "console login"
    );
    let mut resp = see_other(&ctx.root());
    resp.headers_mut().insert(
        SET_COOKIE,
        session_cookie(&ctx.base, s.value(), SESSION_SECS),
    );
    resp
}

#[derive(Debug, Deserialize)]
struct CsrfForm {
    #[serde(default)]
    csrf: String,
}

/// A POST from a signed-in browser: same origin, the session's CSRF token, and (for admin
/// actions) the admin session. `Err` is the answer to give instead.
async fn checked_post(
    ctx: &Ctx<'_>,
    parts: Parts,
    body: axum::body::Body,
    need: Power,
) -> Result<(), Response> {
    if !session::origin_ok(&parts.headers) {
        return Err(ctx.error(
            StatusCode::FORBIDDEN,
            "This form was posted from another site.",
        ));
    }
    let Some(s) = &ctx.session else {
        return Err(ctx.login_redirect());
    };
    if need == Power::Admin && s.power != Power::Admin {
        return Err(ctx.error(StatusCode::FORBIDDEN, "This needs the admin token."));
    }
    let form = Form::<CsrfForm>::from_request(Request::from_parts(parts, body), &()).await;
    match form {
        Ok(Form(f)) if s.csrf_ok(&ctx.state.access, &f.csrf) => Ok(()),
        _ => Err(ctx.error(
            StatusCode::FORBIDDEN,
            "The form's CSRF token is missing or wrong: reload the page and try again.",
        )),
    }
}

async fn logout(State(state): State<AppState>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let ctx = Ctx::new(&state, &parts);
    if let Err(resp) = checked_post(&ctx, parts, body, Power::Audit).await {
        return resp;
    }
    let mut resp = ctx.login_redirect();
    resp.headers_mut()
        .insert(SET_COOKIE, session_cookie(&ctx.base, "", 0));
    resp
}

/// The list's filters as the query string carries them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filters {
    pub service: String,
    pub environment: String,
    pub status: String,
    pub source: String,
    pub from: String,
    pub to: String,
    pub limit: String,
}

impl Filters {
    fn from_pairs(pairs: &[(String, String)]) -> Self {
        let get = |k: &str| {
            pairs
                .iter()
                .find(|(n, _)| n == k)
                .map(|(_, v)| v.trim().to_owned())
                .unwrap_or_default()
        };
        Filters {
            service: get("service"),
            environment: get("environment"),
            status: get("status"),
            source: get("source"),
            from: get("from"),
            to: get("to"),
            limit: get("limit"),
        }
    }

    /// The query string of these filters (no cursor), for paging links.
    pub fn query(&self) -> String {
        let mut s = url_form();
        for (k, v) in [
            ("service", &self.service),
            ("environment", &self.environment),
            ("status", &self.status),
            ("source", &self.source),
            ("from", &self.from),
            ("to", &self.to),
            ("limit", &self.limit),
        ] {
            if !v.is_empty() {
                s.append_pair(k, v);
            }
        }
        s.finish()
    }
}

fn url_form() -> form_urlencoded::Serializer<'static, String> {
    form_urlencoded::Serializer::new(String::new())
}

/// A time as the filter takes it: RFC 3339, or `datetime-local`'s `YYYY-MM-DDTHH:MM[:SS]`
/// read as UTC.
fn parse_time(param: &'static str, v: &str) -> Result<Option<DateTime<Utc>>, ApiError> {
    if v.is_empty() {
        return Ok(None);
    }
    if let Ok(t) = DateTime::parse_from_rfc3339(v) {
        return Ok(Some(t.with_timezone(&Utc)));
    }
    for f in ["%Y-%m-%dT%H:%M:%S", "%Y-%m-%dT%H:%M"] {
        if let Ok(t) = NaiveDateTime::parse_from_str(v, f) {
            return Ok(Some(t.and_utc()));
        }
    }
    Err(ApiError::InvalidQuery {
        param,
        reason: "must be a date and time (2026-01-31T14:00, UTC) or RFC 3339".into(),
    })
}

fn find_of(f: &Filters, cursor_param: Option<&str>) -> Result<Find, ApiError> {
    let mut store = ListQuery::default();
    if !f.limit.is_empty() {
        store.limit = f
            .limit
            .parse::<u32>()
            .ok()
            .filter(|n| (1..=MAX_PAGE).contains(n))
            .ok_or_else(|| ApiError::InvalidQuery {
                param: "limit",
                reason: format!("must be an integer from 1 to {MAX_PAGE} (default {DEFAULT_PAGE})"),
            })?;
    }
    if let Some(c) = cursor_param.filter(|c| !c.is_empty()) {
        store.after = Some(cursor::decode(c)?);
    }
    store.service = Some(f.service.clone()).filter(|s| !s.is_empty());
    if !f.status.is_empty() {
        store.status =
            Some(
                f.status
                    .parse::<Status>()
                    .map_err(|reason| ApiError::InvalidQuery {
                        param: "status",
                        reason,
                    })?,
            );
    }
    if !f.source.is_empty() {
        store.source =
            Some(
                f.source
                    .parse::<Source>()
                    .map_err(|reason| ApiError::InvalidQuery {
                        param: "source",
                        reason,
                    })?,
            );
    }
    Ok(Find {
        store,
        environment: Some(f.environment.clone()).filter(|s| !s.is_empty()),
        from: parse_time("from", &f.from)?,
        to: parse_time("to", &f.to)?,
    })
}

async fn list(State(state): State<AppState>, req: Request) -> Response {
    let (parts, _) = req.into_parts();
    let ctx = Ctx::new(&state, &parts);
    if ctx.session.is_none() {
        return ctx.login_redirect();
    }
    let pairs = auth::query_pairs(&parts.uri);
    let filters = Filters::from_pairs(&pairs);
    let cursor_param = pairs
        .iter()
        .find_map(|(k, v)| (k == "cursor").then_some(v.as_str()));
    let find = match find_of(&filters, cursor_param) {
        Ok(f) => f,
        Err(e) => return shown(&ctx, e),
    };
    match audit::find(state.store.as_ref(), &find).await {
        Ok(found) => html(
            StatusCode::OK,
            pages::list(&ctx, &filters, cursor_param.is_some(), &found).into_string(),
        ),
        Err(e) => shown(&ctx, e.into()),
    }
}

async fn load(ctx: &Ctx<'_>, raw: &str) -> Result<Record, Response> {
    let not_found = || ctx.error(StatusCode::NOT_FOUND, &format!("Record `{raw}` not found."));
    let id: RecordId = raw.parse().map_err(|_| not_found())?;
    match ctx.state.store.get(id).await {
        Ok(Some(r)) => Ok(r),
        Ok(None) => Err(not_found()),
        Err(e) => Err(shown(ctx, e.into())),
    }
}

async fn record(State(state): State<AppState>, Path(raw): Path<String>, req: Request) -> Response {
    let (parts, _) = req.into_parts();
    let ctx = Ctx::new(&state, &parts);
    if ctx.session.is_none() {
        return ctx.login_redirect();
    }
    match load(&ctx, &raw).await {
        Ok(r) => {
            let done = auth::query_param(&parts.uri, "done");
            html(
                StatusCode::OK,
                pages::record(&ctx, &r, done.as_deref()).into_string(),
            )
        }
        Err(resp) => resp,
    }
}

/// An admin action on a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Dispatch,
    Redact,
}

async fn confirm(state: AppState, raw: String, req: Request, action: Action) -> Response {
    let (parts, _) = req.into_parts();
    let ctx = Ctx::new(&state, &parts);
    let Some(s) = &ctx.session else {
        return ctx.login_redirect();
    };
    if s.power != Power::Admin {
        return ctx.error(
            StatusCode::FORBIDDEN,
            "This needs the admin token: sign out and sign in with ADMIN_TOKEN.",
        );
    }
    match load(&ctx, &raw).await {
        Ok(r) => html(
            StatusCode::OK,
            pages::confirm(&ctx, &r, action).into_string(),
        ),
        Err(resp) => resp,
    }
}

async fn act(state: AppState, raw: String, req: Request, action: Action) -> Response {
    let (parts, body) = req.into_parts();
    let ctx = Ctx::new(&state, &parts);
    if let Err(resp) = checked_post(&ctx, parts, body, Power::Admin).await {
        return resp;
    }
    let record = match load(&ctx, &raw).await {
        Ok(r) => r,
        Err(resp) => return resp,
    };
    let by = super::access::Caller::AdminToken.label();
    let result = match action {
        Action::Dispatch => {
            tracing::info!(record_id = %record.id, caller = %by, "re-dispatch requested (console)");
            redispatch(
                state.store.as_ref(),
                state.launcher.as_ref(),
                state.intake.retry,
                record.id,
            )
            .await
            .map(|_| "dispatched")
            .map_err(ApiError::from)
        }
        Action::Redact => state
            .store
            .redact(record.id, &by)
            .await
            .map(|_| {
                tracing::info!(record_id = %record.id, caller = %by, "record redacted (console)");
                "redacted"
            })
            .map_err(ApiError::from),
    };
    match result {
        Ok(done) => see_other(&format!("{}/records/{}?done={done}", ctx.root(), record.id)),
        Err(e) => shown(&ctx, e),
    }
}

async fn confirm_dispatch(
    State(state): State<AppState>,
    Path(raw): Path<String>,
    req: Request,
) -> Response {
    confirm(state, raw, req, Action::Dispatch).await
}

async fn do_dispatch(
    State(state): State<AppState>,
    Path(raw): Path<String>,
    req: Request,
) -> Response {
    act(state, raw, req, Action::Dispatch).await
}

async fn confirm_redact(
    State(state): State<AppState>,
    Path(raw): Path<String>,
    req: Request,
) -> Response {
    confirm(state, raw, req, Action::Redact).await
}

async fn do_redact(
    State(state): State<AppState>,
    Path(raw): Path<String>,
    req: Request,
) -> Response {
    act(state, raw, req, Action::Redact).await
}

/// The CloudWatch console's page of a task's log stream, for an ECS task ARN
/// (`arn:aws:ecs:<region>:<account>:task/<cluster>/<task id>`); `None` without a log group, or
/// for a local task (`local:<pid>`) or another partition.
pub fn log_stream_url(settings: &ConsoleSettings, task_arn: &str) -> Option<String> {
    let group = settings.task_log_group.as_deref()?;
    let mut fields = task_arn.split(':');
    let (arn, partition, service, region) = (
        fields.next()?,
        fields.next()?,
        fields.next()?,
        fields.next()?,
    );
    if arn != "arn" || partition != "aws" || service != "ecs" || region.is_empty() {
        return None;
    }
    let task_id = task_arn.rsplit('/').next().filter(|t| !t.contains(':'))?;
    let stream = format!(
        "{}/{}/{task_id}",
        settings.task_log_stream_prefix, settings.task_log_container
    );
    // The console's fragment encodes each name twice, then writes `%` as `$`.
    let enc = |s: &str| {
        let once: String = form_urlencoded::byte_serialize(s.as_bytes()).collect();
        let twice: String = form_urlencoded::byte_serialize(once.as_bytes()).collect();
        twice.replace('%', "$")
    };
    Some(format!(
        "https://{region}.console.aws.amazon.com/cloudwatch/home?region={region}#logsV2:log-groups/log-group/{}/log-events/{}",
        enc(group),
        enc(&stream)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> ConsoleSettings {
        ConsoleSettings {
            task_log_group: Some("/ecs/stack-gitops-task".into()),
            task_log_stream_prefix: "task".into(),
            task_log_container: "gitops-task".into(),
        }
    }

    #[test]
    fn log_links_name_the_task_stream_of_an_ecs_task() {
        let url = log_stream_url(
            &settings(),
            "arn:aws:ecs:eu-west-1:123456789012:task/stack-cluster/0123456789abcdef0123456789abcdef",
        )
        .unwrap();
        assert_eq!(
            url,
            "https://eu-west-1.console.aws.amazon.com/cloudwatch/home?region=eu-west-1#logsV2:log-groups/log-group/$252Fecs$252Fstack-gitops-task/log-events/task$252Fgitops-task$252F0123456789abcdef0123456789abcdef"
        );
    }

    #[test]
    fn no_log_link_locally_or_without_a_group() {
        assert_eq!(log_stream_url(&settings(), "local:4242"), None);
        assert_eq!(log_stream_url(&settings(), "arn:aws:ecs:eu-west-1:1:task/c"), Some(
            "https://eu-west-1.console.aws.amazon.com/cloudwatch/home?region=eu-west-1#logsV2:log-groups/log-group/$252Fecs$252Fstack-gitops-task/log-events/task$252Fgitops-task$252Fc".into()
        ));
        assert_eq!(
            log_stream_url(
                &ConsoleSettings::default(),
                "arn:aws:ecs:eu-west-1:1:task/c/abc"
            ),
            None
        );
    }

    #[test]
    fn filters_parse_and_refuse_what_they_cannot_read() {
        let f = Filters {
            environment: "prod".into(),
            from: "2026-01-31T14:00".into(),
            status: "failed".into(),
            ..Filters::default()
        };
        let find = find_of(&f, None).unwrap();
        assert_eq!(find.environment.as_deref(), Some("prod"));
        assert_eq!(find.store.status, Some(Status::Failed));
        assert_eq!(find.from.unwrap().to_rfc3339(), "2026-01-31T14:00:00+00:00");
        for bad in [
            Filters {
                status: "nope".into(),
                ..Filters::default()
            },
            Filters {
                to: "yesterday".into(),
                ..Filters::default()
            },
            Filters {
                limit: "0".into(),
                ..Filters::default()
            },
        ] {
            assert!(find_of(&bad, None).is_err(), "{bad:?}");
        }
        assert!(find_of(&Filters::default(), Some("forged")).is_err());
    }
}
