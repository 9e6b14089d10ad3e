//! Reporting to a Port action run: the run an automation or a self-service action started, which
//! Port shows its users with a status, a label, links and log lines.
//!
//! - `PATCH /v1/actions/runs/{run_id}` with `status` (`IN_PROGRESS`, `SUCCESS`, `FAILURE`),
//!   `statusLabel` and `link` ([`RunReporter::status`]);
//! - `POST /v1/actions/runs/{run_id}/logs` with `message` ([`RunReporter::log`]);
//! - a client-credentials token first (`POST /v1/auth/access_token`), fetched once per reporter.
//!
//! A report never fails its caller: every method returns `()`, and what went wrong is kept in
//! [`RunReporter::problems`] for the caller to record. 429 and 5xx answers (and transport errors)
//! are retried with exponential backoff (honouring `Retry-After`), a bounded number of times. A
//! 404 (no such run) stops all further reports to the run; a 422 (an invalid update, or a run
//! Port marked synchronized, which cannot be changed by hand) and any other refusal are recorded
//! and that request is not retried. The client secret and the token are never logged or kept in a
//! problem.

use std::sync::Mutex;
use std::time::Duration;

use orchestrator_core::Secret;
/// The HTTP client this crate is built on, for callers that build the [`reqwest::Client`].
pub use reqwest;
use serde_json::{Value, json};

/// Characters of an answer kept in a problem.
const ANSWER_CHARS: usize = 300;

/// Where Port's API is and how to authenticate to it.
#[derive(Debug, Clone)]
pub struct PortApi {
    /// `https://api.port.io` (EU) or `https://api.us.port.io` (US).
    pub base: reqwest::Url,
    pub client_id: String,
    pub client_secret: Secret,
}

/// How a refused or failed request is retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retry {
    /// Attempts in all, the first included.
    pub attempts: u32,
    /// The first wait; each next one doubles.
    pub initial_backoff: Duration,
    /// No wait (not even a `Retry-After`) is longer.
    pub max_backoff: Duration,
}

impl Default for Retry {
    fn default() -> Self {
        Self {
            attempts: 4,
            initial_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(10),
        }
    }
}

/// A run's status, as Port names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunStatus {
    InProgress,
    Success,
    Failure,
}

impl RunStatus {
    pub fn as_str(&self) -> &'static str {
        match self {
            RunStatus::InProgress => "IN_PROGRESS",
            RunStatus::Success => "SUCCESS",
            RunStatus::Failure => "FAILURE",
        }
    }
}

#[derive(Debug, Default)]
struct State {
    token: Option<Secret>,
    /// Why nothing more is sent to this run.
    stopped: Option<String>,
    problems: Vec<String>,
}

/// Reports to one Port run.
pub struct RunReporter {
    http: reqwest::Client,
    api: PortApi,
    run_id: String,
    retry: Retry,
    state: Mutex<State>,
}

impl std::fmt::Debug for RunReporter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunReporter")
            .field("base", &self.api.base.as_str())
            .field("run_id", &self.run_id)
            .finish_non_exhaustive()
    }
}

/// What one request came to, after its retries.
enum Answer {
    Ok(String),
    Refused { status: u16, body: String },
    Failed(String),
}

fn short(s: &str) -> String {
    let mut out: String = s.chars().take(ANSWER_CHARS).collect();
    if out.len() < s.len() {
        out.push('…');
    }
    out
}

fn retry_after(resp: &reqwest::Response) -> Option<Duration> {
    resp.headers()
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse::<u64>()
        .ok()
        .map(Duration::from_secs)
}

impl RunReporter {
    pub fn new(http: reqwest::Client, api: PortApi, run_id: impl Into<String>) -> Self {
        Self {
            http,
            api,
            run_id: run_id.into(),
            retry: Retry::default(),
            state: Mutex::new(State::default()),
        }
    }

    pub fn with_retry(mut self, retry: Retry) -> Self {
        self.retry = retry;
        self
    }

    pub fn run_id(&self) -> &str {
        &self.run_id
    }

    /// What went wrong reporting, oldest first (empty when every report was accepted).
    pub fn problems(&self) -> Vec<String> {
        self.state
            .lock()
            .map(|s| s.problems.clone())
            .unwrap_or_default()
    }

    /// `PATCH /v1/actions/runs/{run_id}`: the run's status, its label, and links (the pull
    /// request, the record).
    pub async fn status(&self, status: RunStatus, label: &str, links: &[String]) {
        let mut body = json!({"status": status.as_str(), "statusLabel": label});
        if !links.is_empty() {
            body["link"] = json!(links);
        }
        let what = format!("PATCH run status {}", status.as_str());
        self.send(&what, reqwest::Method::PATCH, &[], &body).await;
    }

    /// `POST /v1/actions/runs/{run_id}/logs`: one line of the run's log.
    pub async fn log(&self, message: &str) {
        let body = json!({"message": message});
        self.send("POST run log", reqwest::Method::POST, &["logs"], &body)
            .await;
    }

    fn redact(&self, text: &str, token: Option<&Secret>) -> String {
        let text = self.api.client_secret.redact(text);
        match token {
            Some(t) => t.redact(&text),
            None => text,
        }
    }

    fn note(&self, problem: String, stop: bool) {
        tracing::warn!(run_id = %self.run_id, %problem, "Port run report not accepted");
        if let Ok(mut s) = self.state.lock() {
            if stop {
                s.stopped = Some(problem.clone());
            }
            s.problems.push(problem);
        }
    }

    fn url(&self, tail: &[&str]) -> Option<reqwest::Url> {
        let mut url = self.api.base.clone();
        url.path_segments_mut()
            .ok()?
            .pop_if_empty()
            .extend(["v1", "actions", "runs", self.run_id.as_str()])
            .extend(tail);
        Some(url)
    }

    /// One request, retried on 429, 5xx and transport errors.
    async fn call(
        &self,
        method: reqwest::Method,
        url: reqwest::Url,
        bearer: Option<&Secret>,
        body: &Value,
    ) -> Answer {
        let mut backoff = self.retry.initial_backoff;
        let mut last = String::new();
        let attempts = self.retry.attempts.max(1);
        for attempt in 1..=attempts {
            let mut req = self.http.request(method.clone(), url.clone()).json(body);
            if let Some(t) = bearer {
                req = req.bearer_auth(t.expose());
            }
            let mut wait = backoff;
            match req.send().await {
                Ok(resp) if resp.status().is_success() => {
                    return Answer::Ok(resp.text().await.unwrap_or_default());
                }
                Ok(resp) => {
                    let status = resp.status().as_u16();
                    let after = retry_after(&resp);
                    let text = short(&self.redact(&resp.text().await.unwrap_or_default(), bearer));
                    if status != 429 && !(500..=599).contains(&status) {
                        return Answer::Refused { status, body: text };
                    }
                    last = format!("HTTP {status}: {text}");
                    wait = after.unwrap_or(backoff);
                }
                Err(e) => last = e.without_url().to_string(),
            }
            if attempt < attempts {
                tokio::time::sleep(wait.min(self.retry.max_backoff)).await;
                backoff = backoff.saturating_mul(2);
            }
        }
        Answer::Failed(format!("gave up after {attempts} attempt(s): {last}"))
    }

    async fn token(&self) -> Result<Secret, String> {
        if let Some(t) = self.state.lock().ok().and_then(|s| s.token.clone()) {
            return Ok(t);
        }
        let mut url = self.api.base.clone();
        url.path_segments_mut()
            .map_err(|()| "the Port API URL cannot be a base URL".to_owned())?
            .pop_if_empty()
            .extend(["v1", "auth", "access_token"]);
        let body = json!({
            "clientId": self.api.client_id,
            "clientSecret": self.api.client_secret.expose(),
        });
        let token = match self.call(reqwest::Method::POST, url, None, &body).await {
            Answer::Ok(text) => serde_json::from_str::<Value>(&text)
                .ok()
                .and_then(|v| v["accessToken"].as_str().map(Secret::new))
                .filter(|t| !t.expose().is_empty())
                .ok_or_else(|| "Port's token answer has no accessToken".to_owned())?,
            Answer::Refused { status, body } => {
                return Err(format!(
                    "Port refused the client credentials: HTTP {status}: {body}"
                ));
            }
            Answer::Failed(e) => return Err(format!("Port token request: {e}")),
        };
        if let Ok(mut s) = self.state.lock() {
            s.token = Some(token.clone());
        }
        Ok(token)
    }

    async fn send(&self, what: &str, method: reqwest::Method, tail: &[&str], body: &Value) {
        if self
            .state
            .lock()
            .map(|s| s.stopped.is_some())
            .unwrap_or(true)
        {
            return;
        }
        let Some(url) = self.url(tail) else {
            self.note(
                format!("{what}: the Port API URL cannot be a base URL"),
                true,
            );
            return;
        };
        let token = match self.token().await {
            Ok(t) => t,
            Err(e) => {
                // Without a token no report can get through: stop trying.
                self.note(format!("{what}: {e}"), true);
                return;
            }
        };
        match self.call(method, url, Some(&token), body).await {
            Answer::Ok(_) => {}
            Answer::Refused { status: 404, body } => self.note(
                format!("{what}: Port answered 404, the run does not exist: {body}"),
                true,
            ),
            Answer::Refused { status: 422, body } => self.note(
                format!(
                    "{what}: Port answered 422 (an invalid update, or a run Port marked \
                     synchronized): {body}"
                ),
                false,
            ),
            Answer::Refused { status, body } => self.note(
                format!("{what}: Port answered HTTP {status}: {body}"),
                false,
            ),
            Answer::Failed(e) => self.note(format!("{what}: {e}"), false),
        }
    }
}
