//! GitHub REST client for the gitops pull request: open the PR (or update the open one for the
//! same branch), request reviewers, add labels. Over 500 lines and one idea: the five calls and
//! the retry and error rules they share (the decision below says why they are not a library's).
//!
//! # Why a small `reqwest` client and not octocrab
//!
//! Decision: a hand-written client on `reqwest` (already the HTTP stack of choice in the
//! workspace), not `octocrab`. The task needs five endpoints and nothing else, and for those we
//! want exact control over:
//!
//! - **retries**: GitHub's rate-limit rules (`Retry-After`, `x-ratelimit-reset`, "secondary rate
//!   limit" 403s) and the "already exists" 422 race are the behaviours this job must get right.
//!   Here they are ~100 lines we test against a mock server, not a plugin configuration;
//! - **headers**: API version pinned, the token sent only as a sensitive `Authorization` header,
//!   never in a URL, a log line or an error message;
//! - **one TLS stack**: every client in this binary (the AWS SDK's, this one) is rustls with
//!   ring, built in `orchestrator-clients`; two crypto providers make rustls refuse to choose
//!   one at the first handshake unless every feature flag is right, so
//!   `cargo tree -p gitops-task -e normal -i aws-lc-rs` stays empty;
//! - **binary size and build time**: no typed models for the whole API, no JWT, no tower stack.
//!
//! If the task ever needs many more endpoints (checks, contents, GitHub App token minting with
//! auto-refresh), revisit this and use octocrab with `default-features = false` and its
//! rustls-with-ring features.
//!
//! # Behaviour
//!
//! - Every request carries `Authorization: Bearer`, `Accept: application/vnd.github+json`,
//!   `X-GitHub-Api-Version: 2022-11-28` and a `User-Agent`; each has a timeout.
//! - Rate limits (429, or 403 with `Retry-After`, `x-ratelimit-remaining: 0` or a "secondary rate
//!   limit" message) and 5xx are retried a bounded number of times ([`RetryPolicy`]). The wait is
//!   `Retry-After`, else the time until `x-ratelimit-reset`, else exponential backoff. When GitHub
//!   asks for a longer wait than [`RetryPolicy::max_wait`] the client gives up at once rather than
//!   retry early (GitHub may ban integrations that keep calling while limited).
//! - Transport errors (connect, timeout) are retried too: every call here is safe to repeat.
//!   A repeated create that had in fact succeeded gets the "already exists" 422 and takes the
//!   update path.
//! - Other 4xx are not retried, except the 422 "Could not resolve to a node" that reviewer and
//!   label calls can get right after a PR is created (GitHub's eventual consistency).
//! - Each request is logged with its operation, method, path, status and attempt; headers never.

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures_util::future::{BoxFuture, FutureExt, Shared};
use orchestrator_core::Secret;
use reqwest::header::{ACCEPT, AUTHORIZATION, HeaderMap, HeaderValue, RETRY_AFTER};
use reqwest::{Method, StatusCode, Url};
use serde::Deserialize;
use serde_json::{Value, json};

/// The public GitHub API. GitHub Enterprise Server uses `https://HOST/api/v3`.
pub const DEFAULT_API_BASE: &str = "https://api.github.com";
/// The REST API version every request pins.
pub const API_VERSION: &str = "2022-11-28";

const ALREADY_EXISTS: &str = "A pull request already exists for";
const UNRESOLVED_NODE: &str = "Could not resolve to a node";
const MAX_MESSAGE_CHARS: usize = 500;

/// How hard to try when GitHub is rate limiting or failing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Requests per call, the first one included (values below 1 count as 1).
    pub max_attempts: u32,
    /// The longest single wait. A longer wait demanded by GitHub makes the call fail at once.
    pub max_wait: Duration,
    /// The first backoff when GitHub gives no wait; it doubles on each retry.
    pub initial_backoff: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 4,
            max_wait: Duration::from_secs(60),
            initial_backoff: Duration::from_secs(1),
        }
    }
}

/// Where and as whom to talk to GitHub. Build it with [`GithubConfig::new`] and override fields.
#[derive(Debug, Clone)]
pub struct GithubConfig {
    /// API root; its path prefix (GHE: `/api/v3`) is kept.
    pub api_base: String,
    pub token: Secret,
    /// The gitops repository; also the owner of the PR's head branch.
    pub owner: String,
    pub repo: String,
    pub user_agent: String,
    pub retry: RetryPolicy,
    /// Timeout of each request, body included.
    pub request_timeout: Duration,
}

impl GithubConfig {
    /// api.github.com, a `gitops-task/<version>` user agent, default retries, 30 s timeout.
    pub fn new(owner: impl Into<String>, repo: impl Into<String>, token: Secret) -> Self {
        Self {
            api_base: DEFAULT_API_BASE.to_owned(),
            token,
            owner: owner.into(),
            repo: repo.into(),
            user_agent: concat!("gitops-task/", env!("CARGO_PKG_VERSION")).to_owned(),
            retry: RetryPolicy::default(),
            request_timeout: Duration::from_secs(30),
        }
    }
}

/// The pull request to open. The head branch lives in the configured repository.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PullRequestSpec {
    pub head_branch: String,
    pub base_branch: String,
    pub title: String,
    pub body: String,
    /// User logins.
    pub reviewers: Vec<String>,
    /// Team slugs (need a token with organisation read access).
    pub team_reviewers: Vec<String>,
    pub labels: Vec<String>,
}

/// The PR that is now open.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PullRequest {
    pub number: u64,
    pub html_url: String,
    /// `false` when an open PR for the branch existed and was updated.
    pub created: bool,
}

/// Errors of the GitHub client. None of them carries the token.
#[derive(Debug, thiserror::Error)]
pub enum GithubError {
    #[error("invalid GitHub client configuration: {0}")]
    Config(String),
    #[error("invalid pull request spec: {0}")]
    InvalidSpec(String),
    #[error("{op}: request to GitHub failed after {attempts} attempt(s): {detail}")]
    Transport {
        op: &'static str,
        attempts: u32,
        detail: String,
    },
    #[error("{op}: GitHub answered {status}: {message}")]
    Status {
        op: &'static str,
        status: StatusCode,
        message: String,
    },
    #[error("{op}: GitHub answered {status} and asks to wait {}s, more than the {}s allowed: {message}", .wait.as_secs(), .max_wait.as_secs())]
    RateLimited {
        op: &'static str,
        status: StatusCode,
        wait: Duration,
        max_wait: Duration,
        message: String,
    },
    #[error("{op}: gave up after {attempts} attempts, GitHub last answered {status}: {message}")]
    RetriesExhausted {
        op: &'static str,
        attempts: u32,
        status: StatusCode,
        message: String,
    },
    #[error("{op}: unexpected response from GitHub: {detail}")]
    Decode { op: &'static str, detail: String },
    /// A GraphQL request answered 200 with `errors` (GraphQL reports failures in the body).
    #[error("{op}: GitHub's GraphQL API answered: {message}")]
    GraphQl { op: &'static str, message: String },
    #[error(
        "create pull request: GitHub says an open pull request for {head} exists, but none into {base} was found"
    )]
    ExistingNotFound { head: String, base: String },
    /// The PR is open, but requesting reviewers or adding labels failed.
    #[error("pull request #{number} ({html_url}) is open, but {cause}")]
    FollowUp {
        number: u64,
        html_url: String,
        cause: Box<GithubError>,
    },
}

impl GithubError {
    /// The HTTP status GitHub last answered, when there was one.
    pub fn status(&self) -> Option<StatusCode> {
        match self {
            Self::Status { status, .. }
            | Self::RateLimited { status, .. }
            | Self::RetriesExhausted { status, .. } => Some(*status),
            Self::FollowUp { cause, .. } => cause.status(),
            _ => None,
        }
    }
}

/// The HTTP client, built on a blocking thread from the moment the [`GithubClient`] is made and
/// awaited at its first request: building one reads the platform's root certificates (about 3 ms
/// here), which the clone before the first request hides.
type Http = Shared<BoxFuture<'static, Result<reqwest::Client, String>>>;

/// A client for one repository.
pub struct GithubClient {
    http: Http,
    base: Url,
    auth: HeaderValue,
    token: Secret,
    owner: String,
    repo: String,
    retry: RetryPolicy,
}

impl fmt::Debug for GithubClient {
    // Hand-written: reqwest's Client Debug prints its default headers.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GithubClient")
            .field("base", &self.base.as_str())
            .field("owner", &self.owner)
            .field("repo", &self.repo)
            .field("retry", &self.retry)
            .finish_non_exhaustive()
    }
}

#[derive(Deserialize)]
struct PrJson {
    number: u64,
    html_url: String,
    #[serde(default)]
    base: Option<BaseJson>,
}

#[derive(Deserialize)]
struct BaseJson {
    #[serde(rename = "ref")]
    ref_name: String,
}

/// What to do after a failed response.
enum Wait {
    /// GitHub said how long (`Retry-After`, or until `x-ratelimit-reset`).
    Server(Duration),
    /// No hint: exponential backoff.
    Backoff,
}

impl GithubClient {
    pub fn new(cfg: GithubConfig) -> Result<Self, GithubError> {
        let config = |m: &str| GithubError::Config(m.to_owned());
        // The URL parse error never echoes the input, which could hold credentials.
        let base = Url::parse(cfg.api_base.trim())
            .map_err(|e| GithubError::Config(format!("api_base is not a valid URL ({e})")))?;
        if !matches!(base.scheme(), "https" | "http") || base.cannot_be_a_base() {
            return Err(config("api_base must be an http(s) URL"));
        }
        if !base.username().is_empty() || base.password().is_some() {
            return Err(config("api_base must not carry credentials"));
        }
        if base.query().is_some() || base.fragment().is_some() {
            return Err(config("api_base must not have a query or fragment"));
        }
        for (name, value) in [("owner", &cfg.owner), ("repo", &cfg.repo)] {
            if value.is_empty() || value.contains('/') {
                return Err(GithubError::Config(format!(
                    "{name} must be one non-empty path segment"
                )));
            }
        }
        if cfg.token.expose().trim().is_empty() {
            return Err(config("token is empty"));
        }
        let mut auth = HeaderValue::from_str(&format!("Bearer {}", cfg.token.expose()))
            .map_err(|_| config("token contains characters not allowed in an HTTP header"))?;
        auth.set_sensitive(true);
        let user_agent = HeaderValue::from_str(cfg.user_agent.trim())
            .ok()
            .filter(|v| !v.is_empty())
            .ok_or_else(|| config("user_agent must be a non-empty header value"))?;

        let mut headers = HeaderMap::new();
        headers.insert(
            ACCEPT,
            HeaderValue::from_static("application/vnd.github+json"),
        );
        headers.insert(
            "x-github-api-version",
            HeaderValue::from_static(API_VERSION),
        );
        let builder = orchestrator_clients::http::builder()
            .user_agent(user_agent)
            .default_headers(headers)
            .timeout(cfg.request_timeout)
            .connect_timeout(cfg.request_timeout.min(Duration::from_secs(10)));
        let build = move || builder.build().map_err(|e| e.to_string());
        let http: Http = match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                let building = runtime.spawn_blocking(build);
                async move { building.await.map_err(|e| e.to_string())? }
                    .boxed()
                    .shared()
            }
            // No runtime (a synchronous caller): build it now.
            Err(_) => std::future::ready(build()).boxed().shared(),
        };

        let mut retry = cfg.retry;
        retry.max_attempts = retry.max_attempts.max(1);
        Ok(Self {
            http,
            base,
            auth,
            token: cfg.token,
            owner: cfg.owner,
            repo: cfg.repo,
            retry,
        })
    }

    /// Opens the PR, or when an open PR for `head_branch` into `base_branch` already exists
    /// updates its title and body instead. Then requests reviewers and adds labels (skipped when
    /// empty; both idempotent on GitHub's side), so running it again converges.
    pub async fn open_or_update(&self, spec: &PullRequestSpec) -> Result<PullRequest, GithubError> {
        for (name, value) in [
            ("head_branch", &spec.head_branch),
            ("base_branch", &spec.base_branch),
            ("title", &spec.title),
        ] {
            if value.trim().is_empty() {
                return Err(GithubError::InvalidSpec(format!("{name} is empty")));
            }
        }

        let pr = match self.find_open(spec).await? {
            Some(number) => self.update(number, spec).await?,
            None => match self.create(spec).await {
                Ok(pr) => pr,
                Err(GithubError::Status {
                    status, message, ..
                }) if status == StatusCode::UNPROCESSABLE_ENTITY
                    && message.contains(ALREADY_EXISTS) =>
                {
                    // Another run opened it between our query and our create.
                    tracing::info!(
                        head = %spec.head_branch,
                        "pull request already exists; updating it instead"
                    );
                    match self.find_open(spec).await? {
                        Some(number) => self.update(number, spec).await?,
                        None => {
                            return Err(GithubError::ExistingNotFound {
                                head: self.head(spec),
                                base: spec.base_branch.clone(),
                            });
                        }
                    }
                }
                Err(e) => return Err(e),
            },
        };
        tracing::info!(
            number = pr.number,
            url = %pr.html_url,
            created = pr.created,
            "pull request open"
        );

        self.follow_ups(&pr, spec)
            .await
            .map_err(|cause| GithubError::FollowUp {
                number: pr.number,
                html_url: pr.html_url.clone(),
                cause: Box::new(cause),
            })?;
        Ok(pr)
    }

    /// One REST call on the repository, `{api_base}/repos/{owner}/{repo}/{tail..}`, with the
    /// retry policy; returns the body of the 2xx response. For the no-clone mode's Git Database
    /// calls ([`super::gitdata`]).
    pub async fn rest(
        &self,
        op: &'static str,
        method: Method,
        tail: &[&str],
        body: Option<&Value>,
    ) -> Result<String, GithubError> {
        self.send(op, method, self.url(tail), body, false).await
    }

    /// One GraphQL request (`{api_base}/graphql`; GitHub Enterprise: `https://HOST/api/graphql`)
    /// with the retry policy; returns `data`, or [`GithubError::GraphQl`] when the answer has
    /// `errors`.
    pub async fn graphql(
        &self,
        op: &'static str,
        query: &str,
        variables: Value,
    ) -> Result<Value, GithubError> {
        let body = json!({ "query": query, "variables": variables });
        let text = self
            .send(op, Method::POST, self.graphql_url(), Some(&body), false)
            .await?;
        let answer: Value = decode(op, &text)?;
        if let Some(errors) = answer.get("errors").and_then(Value::as_array)
            && !errors.is_empty()
        {
            let message = errors
                .iter()
                .map(|e| e.get("message").and_then(Value::as_str).unwrap_or("error"))
                .collect::<Vec<_>>()
                .join("; ");
            return Err(GithubError::GraphQl {
                op,
                message: self.redact(&message),
            });
        }
        Ok(answer.get("data").cloned().unwrap_or(Value::Null))
    }

    /// `{api_base}/graphql`, or `https://HOST/api/graphql` for a GitHub Enterprise Server
    /// `https://HOST/api/v3`.
    fn graphql_url(&self) -> Url {
        let mut url = self.base.clone();
        let v3 = url.path().trim_end_matches('/').ends_with("/api/v3");
        if let Ok(mut segments) = url.path_segments_mut() {
            segments.pop_if_empty();
            if v3 {
                segments.pop().pop().extend(["api", "graphql"]);
            } else {
                segments.push("graphql");
            }
        }
        url
    }

    fn head(&self, spec: &PullRequestSpec) -> String {
        format!("{}:{}", self.owner, spec.head_branch)
    }

    /// `{api_base}/repos/{owner}/{repo}/{tail..}`, each segment percent-encoded.
    fn url(&self, tail: &[&str]) -> Url {
        let mut url = self.base.clone();
        if let Ok(mut segments) = url.path_segments_mut() {
            segments
                .pop_if_empty()
                .extend(["repos", self.owner.as_str(), self.repo.as_str()])
                .extend(tail);
        }
        url
    }

    async fn find_open(&self, spec: &PullRequestSpec) -> Result<Option<u64>, GithubError> {
        const OP: &str = "find open pull request";
        let mut url = self.url(&["pulls"]);
        url.query_pairs_mut()
            .append_pair("head", &self.head(spec))
            .append_pair("state", "open");
        let text = self.send(OP, Method::GET, url, None, false).await?;
        let prs: Vec<PrJson> = decode(OP, &text)?;
        // A branch may have open PRs into several bases; only ours counts.
        Ok(prs
            .into_iter()
            .find(|pr| {
                pr.base
                    .as_ref()
                    .is_some_and(|b| b.ref_name == spec.base_branch)
            })
            .map(|pr| pr.number))
    }

    async fn create(&self, spec: &PullRequestSpec) -> Result<PullRequest, GithubError> {
        const OP: &str = "create pull request";
        // `maintainer_can_modify` is left out: it only applies to PRs from forks, and the head
        // branch is always in the gitops repository itself.
        let body = json!({
            "title": spec.title,
            "head": spec.head_branch,
            "base": spec.base_branch,
            "body": spec.body,
        });
        let text = self
            .send(OP, Method::POST, self.url(&["pulls"]), Some(&body), false)
            .await?;
        let pr: PrJson = decode(OP, &text)?;
        Ok(PullRequest {
            number: pr.number,
            html_url: pr.html_url,
            created: true,
        })
    }

    async fn update(
        &self,
        number: u64,
        spec: &PullRequestSpec,
    ) -> Result<PullRequest, GithubError> {
        const OP: &str = "update pull request";
        let body = json!({ "title": spec.title, "body": spec.body });
        let n = number.to_string();
        let text = self
            .send(
                OP,
                Method::PATCH,
                self.url(&["pulls", &n]),
                Some(&body),
                false,
            )
            .await?;
        let pr: PrJson = decode(OP, &text)?;
        Ok(PullRequest {
            number: pr.number,
            html_url: pr.html_url,
            created: false,
        })
    }

    async fn follow_ups(
        &self,
        pr: &PullRequest,
        spec: &PullRequestSpec,
    ) -> Result<(), GithubError> {
        let n = pr.number.to_string();
        // Right after creation GitHub may not resolve the new PR yet: retry that 422 then only.
        let settling = pr.created;
        if !spec.reviewers.is_empty() || !spec.team_reviewers.is_empty() {
            let body = json!({
                "reviewers": spec.reviewers,
                "team_reviewers": spec.team_reviewers,
            });
            let url = self.url(&["pulls", &n, "requested_reviewers"]);
            self.send(
                "request reviewers",
                Method::POST,
                url,
                Some(&body),
                settling,
            )
            .await?;
        }
        if !spec.labels.is_empty() {
            let body = json!({ "labels": spec.labels });
            let url = self.url(&["issues", &n, "labels"]);
            self.send("add labels", Method::POST, url, Some(&body), settling)
                .await?;
        }
        Ok(())
    }

    /// Sends one call with the retry policy; returns the body of the 2xx response.
    async fn send(
        &self,
        op: &'static str,
        method: Method,
        url: Url,
        body: Option<&Value>,
        retry_unresolved_node: bool,
    ) -> Result<String, GithubError> {
        let max_attempts = self.retry.max_attempts;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let http =
                self.http.clone().await.map_err(|e| {
                    GithubError::Config(format!("cannot build the HTTP client: {e}"))
                })?;
            let mut request = http
                .request(method.clone(), url.clone())
                .header(AUTHORIZATION, self.auth.clone());
            if let Some(body) = body {
                request = request.json(body);
            }
            let response = match request.send().await {
                Ok(response) => response,
                Err(e) => {
                    let detail = self.redact(&error_chain(&e));
                    tracing::warn!(op, method = %method, path = %url.path(), attempt, error = %detail, "GitHub request failed");
                    if e.is_builder() || attempt >= max_attempts {
                        return Err(GithubError::Transport {
                            op,
                            attempts: attempt,
                            detail,
                        });
                    }
                    tokio::time::sleep(self.backoff(attempt)).await;
                    continue;
                }
            };
            let status = response.status();
            let headers = response.headers().clone();
            tracing::info!(op, method = %method, path = %url.path(), status = status.as_u16(), attempt, "GitHub request");
            let text = match response.text().await {
                Ok(text) => text,
                Err(e) => {
                    let detail = self.redact(&error_chain(&e));
                    if attempt >= max_attempts {
                        return Err(GithubError::Transport {
                            op,
                            attempts: attempt,
                            detail,
                        });
                    }
                    tracing::warn!(op, attempt, error = %detail, "reading GitHub's response failed");
                    tokio::time::sleep(self.backoff(attempt)).await;
                    continue;
                }
            };
            if status.is_success() {
                return Ok(text);
            }

            let message = self.redact(&error_message(status, &text));
            let wait = match classify(
                status,
                &headers,
                &message,
                retry_unresolved_node,
                SystemTime::now(),
            ) {
                None => {
                    return Err(GithubError::Status {
                        op,
                        status,
                        message,
                    });
                }
                Some(Wait::Server(wait)) if wait > self.retry.max_wait => {
                    return Err(GithubError::RateLimited {
                        op,
                        status,
                        wait,
                        max_wait: self.retry.max_wait,
                        message,
                    });
                }
                Some(Wait::Server(wait)) => wait,
                Some(Wait::Backoff) => self.backoff(attempt),
            };
            if attempt >= max_attempts {
                return Err(GithubError::RetriesExhausted {
                    op,
                    attempts: attempt,
                    status,
                    message,
                });
            }
            tracing::warn!(
                op,
                status = status.as_u16(),
                attempt,
                wait_ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX),
                "GitHub asked us to slow down or failed; retrying"
            );
            tokio::time::sleep(wait).await;
        }
    }

    /// `initial_backoff * 2^(attempt-1)`, at most `max_wait`.
    fn backoff(&self, attempt: u32) -> Duration {
        let factor = 1u32 << attempt.saturating_sub(1).min(16);
        self.retry
            .initial_backoff
            .saturating_mul(factor)
            .min(self.retry.max_wait)
    }

    /// Belt and braces: GitHub never echoes the token, but nothing we print may contain it.
    fn redact(&self, text: &str) -> String {
        self.token.redact(text)
    }
}

fn decode<T: serde::de::DeserializeOwned>(op: &'static str, text: &str) -> Result<T, GithubError> {
    serde_json::from_str(text).map_err(|e| GithubError::Decode {
        op,
        detail: e.to_string(),
    })
}

/// Whether (and how long) to wait before retrying a non-2xx response; `None`: do not retry.
fn classify(
    status: StatusCode,
    headers: &HeaderMap,
    message: &str,
    retry_unresolved_node: bool,
    now: SystemTime,
) -> Option<Wait> {
    if status == StatusCode::TOO_MANY_REQUESTS || status == StatusCode::FORBIDDEN {
        if let Some(seconds) = header_u64(headers, RETRY_AFTER.as_str()) {
            return Some(Wait::Server(Duration::from_secs(seconds)));
        }
        if header_u64(headers, "x-ratelimit-remaining") == Some(0) {
            let now = now.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
            return Some(match header_u64(headers, "x-ratelimit-reset") {
                Some(reset) if reset > now => Wait::Server(Duration::from_secs(reset - now)),
                _ => Wait::Backoff,
            });
        }
        if status == StatusCode::TOO_MANY_REQUESTS
            || message
                .to_ascii_lowercase()
                .contains("secondary rate limit")
        {
            return Some(Wait::Backoff);
        }
        return None;
    }
    if status.is_server_error() {
        return Some(Wait::Backoff);
    }
    if status == StatusCode::UNPROCESSABLE_ENTITY
        && retry_unresolved_node
        && message.contains(UNRESOLVED_NODE)
    {
        return Some(Wait::Backoff);
    }
    None
}

fn header_u64(headers: &HeaderMap, name: &str) -> Option<u64> {
    headers.get(name)?.to_str().ok()?.trim().parse().ok()
}

/// GitHub's error `message` plus the `errors[]` details (where "already exists" lives), or the
/// start of a non-JSON body, or the status reason.
fn error_message(status: StatusCode, text: &str) -> String {
    #[derive(Deserialize)]
    struct ErrorJson {
        message: Option<String>,
        #[serde(default)]
        errors: Vec<Value>,
    }
    let message = match serde_json::from_str::<ErrorJson>(text) {
        Ok(body) => {
            let details: Vec<String> = body
                .errors
                .iter()
                .filter_map(|e| match e {
                    Value::String(s) => Some(s.clone()),
                    Value::Object(o) => o
                        .get("message")
                        .and_then(Value::as_str)
                        .map(str::to_owned)
                        .or_else(|| {
                            let field = o.get("field").and_then(Value::as_str).unwrap_or("?");
                            let code = o.get("code").and_then(Value::as_str)?;
                            Some(format!("{field}: {code}"))
                        }),
                    _ => None,
                })
                .collect();
            let head = body.message.unwrap_or_default();
            match (head.is_empty(), details.is_empty()) {
                (_, true) => head,
                (true, false) => details.join("; "),
                (false, false) => format!("{head} ({})", details.join("; ")),
            }
        }
        Err(_) => text.trim().to_owned(),
    };
    let message = if message.is_empty() {
        status.canonical_reason().unwrap_or("no message").to_owned()
    } else {
        message
    };
    if message.chars().count() > MAX_MESSAGE_CHARS {
        let mut cut: String = message.chars().take(MAX_MESSAGE_CHARS).collect();
        cut.push('…');
        cut
    } else {
        message
    }
}

/// An error and its causes, `": "`-joined (reqwest's own message alone rarely says why).
fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        out.push_str(": ");
        out.push_str(&cause.to_string());
        source = cause.source();
    }
    out
}

/// `owner/repo` of a GitHub (or GHE) repository URL: `https://github.com/o/r(.git)`,
/// `git@github.com:o/r.git`, `ssh://git@github.com/o/r.git`, `https://ghe.example.com/o/r`.
/// `None` unless the path is exactly two plausible segments.
pub fn owner_repo_from_url(url: &str) -> Option<(String, String)> {
    let url = url.trim();
    let path = if url.contains("://") {
        let parsed = Url::parse(url).ok()?;
        if !matches!(parsed.scheme(), "https" | "http" | "ssh" | "git") {
            return None;
        }
        parsed.host_str()?;
        parsed.path().to_owned()
    } else {
        // scp-like: [user@]host:owner/repo
        let (host, path) = url.split_once(':')?;
        let host = host.rsplit('@').next()?;
        if host.is_empty() || host.contains('/') {
            return None;
        }
        path.to_owned()
    };
    let path = path.trim_matches('/');
    let path = path.strip_suffix(".git").unwrap_or(path);
    let (owner, repo) = path.split_once('/')?;
    let owner_ok = !owner.is_empty()
        && owner
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_'));
    let repo_ok = !repo.is_empty()
        && repo != "."
        && repo != ".."
        && repo
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    (owner_ok && repo_ok).then(|| (owner.to_owned(), repo.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair(o: &str, r: &str) -> Option<(String, String)> {
        Some((o.to_owned(), r.to_owned()))
    }

    #[test]
    fn owner_repo_from_common_url_forms() {
        for url in [
            "https://github.com/acme/deploy",
            "https://github.com/acme/deploy.git",
            "https://github.com/acme/deploy/",
            "http://github.com/acme/deploy",
            "git@github.com:acme/deploy.git",
            "git@github.com:acme/deploy",
            "ssh://git@github.com/acme/deploy.git",
            "ssh://git@github.com:22/acme/deploy.git",
            "https://x-access-token:abc@github.com/acme/deploy.git",
            "https://ghe.example.com/acme/deploy",
            "https://ghe.example.com:8443/acme/deploy.git",
            "  https://github.com/acme/deploy.git\n",
        ] {
            assert_eq!(owner_repo_from_url(url), pair("acme", "deploy"), "{url}");
        }
        assert_eq!(
            owner_repo_from_url("https://github.com/my-org/k8s.gitops"),
            pair("my-org", "k8s.gitops")
        );
        assert_eq!(
            owner_repo_from_url("git@github.com:my_org/repo.name.git"),
            pair("my_org", "repo.name")
        );
    }

    #[test]
    fn owner_repo_rejects_other_shapes() {
        for url in [
            "",
            "github.com",
            "https://github.com",
            "https://github.com/acme",
            "https://github.com/acme/",
            "https://github.com/acme/deploy/tree/main",
            "https://github.com/acme/..",
            "git@github.com:acme",
            "git@github.com:/deploy.git",
            "file:///srv/acme/deploy.git",
            "/srv/acme/deploy",
            "acme/deploy",
            "https://github.com/ac me/deploy",
        ] {
            assert_eq!(owner_repo_from_url(url), None, "{url}");
        }
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    fn wait_of(w: Option<Wait>) -> Option<Option<Duration>> {
        w.map(|w| match w {
            Wait::Server(d) => Some(d),
            Wait::Backoff => None,
        })
    }

    #[test]
    fn classifies_rate_limits_and_failures() {
        let now = UNIX_EPOCH + Duration::from_secs(1_000);
        let c = |status: u16, h: &[(&'static str, &str)], msg: &str| {
            wait_of(classify(
                StatusCode::from_u16(status).unwrap(),
                &headers(h),
                msg,
                false,
                now,
            ))
        };
        let secs = |s| Some(Some(Duration::from_secs(s)));
        assert_eq!(c(429, &[("retry-after", "7")], ""), secs(7));
        assert_eq!(c(429, &[], ""), Some(None));
        assert_eq!(c(403, &[("retry-after", "3")], "x"), secs(3));
        assert_eq!(
            c(
                403,
                &[
                    ("x-ratelimit-remaining", "0"),
                    ("x-ratelimit-reset", "1030")
                ],
                "API rate limit exceeded"
            ),
            secs(30)
        );
        // Reset already past or missing: backoff.
        assert_eq!(
            c(
                403,
                &[("x-ratelimit-remaining", "0"), ("x-ratelimit-reset", "900")],
                ""
            ),
            Some(None)
        );
        assert_eq!(
            c(
                403,
                &[],
                "You have exceeded a Secondary Rate Limit. Please wait"
            ),
            Some(None)
        );
        // A plain permission 403 is final.
        assert_eq!(
            c(
                403,
                &[("x-ratelimit-remaining", "4999")],
                "Resource not accessible by integration"
            ),
            None
        );
        assert_eq!(c(502, &[], ""), Some(None));
        assert_eq!(c(404, &[], "Not Found"), None);
        assert_eq!(c(422, &[], "Could not resolve to a node"), None);
        assert!(matches!(
            classify(
                StatusCode::UNPROCESSABLE_ENTITY,
                &HeaderMap::new(),
                "Could not resolve to a node with the global id of 'PR_x'",
                true,
                now
            ),
            Some(Wait::Backoff)
        ));
    }

    #[test]
    fn error_message_includes_details_and_is_bounded() {
        let body = r#"{"message":"Validation Failed","errors":[{"resource":"PullRequest","code":"custom","message":"A pull request already exists for acme:b."}],"documentation_url":"https://docs.github.com"}"#;
        assert_eq!(
            error_message(StatusCode::UNPROCESSABLE_ENTITY, body),
            "Validation Failed (A pull request already exists for acme:b.)"
        );
        let body = r#"{"message":"Validation Failed","errors":[{"resource":"PullRequest","field":"base","code":"invalid"}]}"#;
        assert_eq!(
            error_message(StatusCode::UNPROCESSABLE_ENTITY, body),
            "Validation Failed (base: invalid)"
        );
        assert_eq!(error_message(StatusCode::BAD_GATEWAY, ""), "Bad Gateway");
        let long = "x".repeat(2_000);
        assert_eq!(
            error_message(StatusCode::BAD_GATEWAY, &long)
                .chars()
                .count(),
            MAX_MESSAGE_CHARS + 1
        );
    }

    #[test]
    fn backoff_doubles_and_is_capped() {
        let mut cfg = GithubConfig::new("o", "r", Secret::new("t"));
        cfg.retry = RetryPolicy {
            max_attempts: 10,
            max_wait: Duration::from_secs(5),
            initial_backoff: Duration::from_secs(1),
        };
        let client = GithubClient::new(cfg).unwrap();
        let b: Vec<u64> = (1..=6).map(|a| client.backoff(a).as_secs()).collect();
        assert_eq!(b, [1, 2, 4, 5, 5, 5]);
        assert_eq!(client.backoff(u32::MAX), Duration::from_secs(5));
    }

    #[test]
    fn the_graphql_endpoint_follows_the_rest_root() {
        let url = |base: &str| {
            let mut cfg = GithubConfig::new("o", "r", Secret::new("t"));
            cfg.api_base = base.to_owned();
            GithubClient::new(cfg).unwrap().graphql_url().to_string()
        };
        assert_eq!(
            url("https://api.github.com"),
            "https://api.github.com/graphql"
        );
        assert_eq!(
            url("https://ghe.example.com/api/v3/"),
            "https://ghe.example.com/api/graphql"
        );
        assert_eq!(
            url("http://127.0.0.1:8080"),
            "http://127.0.0.1:8080/graphql"
        );
    }

    #[test]
    fn config_errors_never_echo_secrets() {
        let mut cfg = GithubConfig::new("o", "r", Secret::new("tok-123"));
        cfg.api_base = "https://user:tok-123@ghe.example.com/api/v3".into();
        let err = GithubClient::new(cfg).unwrap_err().to_string();
        assert!(err.contains("credentials"), "{err}");
        assert!(!err.contains("tok-123"));

        let cfg = GithubConfig::new("o", "r", Secret::new("bad\ntok-123"));
        let err = GithubClient::new(cfg).unwrap_err();
        assert!(!format!("{err} {err:?}").contains("tok-123"));

        let client =
            GithubClient::new(GithubConfig::new("o", "r", Secret::new("tok-123"))).unwrap();
        assert!(!format!("{client:?}").contains("tok-123"));
    }
}
