//! The GitHub client against a wiremock server: the exact requests it sends (method, path, query,
//! headers, JSON body, count), the "already exists" race, rate limits and retries, GHE base
//! URLs, and that the token never shows up in errors or logs.

use std::io;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use gitops_task::gitops::github::{
    GithubClient, GithubConfig, GithubError, PullRequest, PullRequestSpec, RetryPolicy,
};
use orchestrator_core::Secret;
use serde_json::{Value, json};
use wiremock::matchers::{body_json, header, method, path};
use wiremock::{Mock, MockBuilder, MockServer, Request, ResponseTemplate};

const TOKEN: &str = "ghp_canary-token-0123456789";
const UA: &str = "gitops-task-test/1";
const HEAD: &str = "gitops/web/prod/1.2.3";
const PR_URL: &str = "https://github.com/acme/deploy/pull/42";

/// The query string, decoded, must be exactly these pairs in this order (nothing else).
struct ExactQuery(Vec<(&'static str, &'static str)>);

impl wiremock::Match for ExactQuery {
    fn matches(&self, request: &Request) -> bool {
        let got: Vec<(String, String)> = request
            .url
            .query_pairs()
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        got.len() == self.0.len()
            && got
                .iter()
                .zip(&self.0)
                .all(|((gk, gv), (k, v))| gk == k && gv == v)
    }
}

/// A request with every header GitHub requires and the given method, path and exact query.
fn github(
    http_method: &str,
    full_path: &str,
    query: Vec<(&'static str, &'static str)>,
) -> MockBuilder {
    Mock::given(method(http_method))
        .and(path(full_path))
        .and(ExactQuery(query))
        .and(header("authorization", format!("Bearer {TOKEN}").as_str()))
        .and(header("accept", "application/vnd.github+json"))
        .and(header("x-github-api-version", "2022-11-28"))
        .and(header("user-agent", UA))
}

fn open_query() -> Vec<(&'static str, &'static str)> {
    vec![("head", "acme:gitops/web/prod/1.2.3"), ("state", "open")]
}

fn config(api_base: String) -> GithubConfig {
    install_log_capture();
    let mut cfg = GithubConfig::new("acme", "deploy", Secret::new(TOKEN));
    cfg.api_base = api_base;
    cfg.user_agent = UA.to_owned();
    cfg.retry = RetryPolicy {
        max_attempts: 4,
        max_wait: Duration::from_secs(2),
        initial_backoff: Duration::from_millis(10),
    };
    cfg.request_timeout = Duration::from_secs(5);
    cfg
}

fn client(server: &MockServer) -> GithubClient {
    GithubClient::new(config(server.uri())).unwrap()
}

fn spec() -> PullRequestSpec {
    PullRequestSpec {
        head_branch: HEAD.to_owned(),
        base_branch: "main".to_owned(),
        title: "web: deploy 1.2.3 to prod".to_owned(),
        body: "Sets image web to 1.2.3.".to_owned(),
        ..Default::default()
    }
}

fn pr_json(number: u64, base: &str) -> Value {
    json!({
        "number": number,
        "html_url": format!("https://github.com/acme/deploy/pull/{number}"),
        "state": "open",
        "head": { "ref": HEAD },
        "base": { "ref": base },
    })
}

fn json_response(status: u16, body: Value) -> ResponseTemplate {
    ResponseTemplate::new(status).set_body_json(body)
}

/// "METHOD path?query" of every request the server saw, in order.
async fn seen(server: &MockServer) -> Vec<String> {
    server
        .received_requests()
        .await
        .unwrap()
        .iter()
        .map(|r| match r.url.query() {
            Some(q) => format!("{} {}?{q}", r.method, r.url.path()),
            None => format!("{} {}", r.method, r.url.path()),
        })
        .collect()
}

const LIST: &str =
    "GET /repos/acme/deploy/pulls?head=acme%3Agitops%2Fweb%2Fprod%2F1.2.3&state=open";

async fn mount_no_open_pr(server: &MockServer) {
    github("GET", "/repos/acme/deploy/pulls", open_query())
        .respond_with(json_response(200, json!([])))
        .expect(1)
        .mount(server)
        .await;
}

fn create_body() -> Value {
    json!({
        "title": "web: deploy 1.2.3 to prod",
        "head": HEAD,
        "base": "main",
        "body": "Sets image web to 1.2.3.",
    })
}

/// The open-PR query answers `response` once; later queries fall through to other mocks.
async fn mount_list_once(server: &MockServer, response: ResponseTemplate) {
    github("GET", "/repos/acme/deploy/pulls", open_query())
        .respond_with(response)
        .up_to_n_times(1)
        .expect(1)
        .mount(server)
        .await;
}

/// When each request reached the server (monotonic, and wall clock for `x-ratelimit-reset`), in
/// order: what the client waited is measured here, not guessed from the test's own clock.
#[derive(Clone, Default)]
struct Arrivals(Arc<Mutex<Vec<(Instant, SystemTime)>>>);

impl wiremock::Match for Arrivals {
    /// Records the request and never matches, so the mocks mounted after it answer.
    fn matches(&self, _: &Request) -> bool {
        self.0
            .lock()
            .unwrap()
            .push((Instant::now(), SystemTime::now()));
        false
    }
}

impl Arrivals {
    /// Records every request `server` receives from now on (checked before any other mock).
    async fn record(server: &MockServer) -> Self {
        let arrivals = Self::default();
        Mock::given(arrivals.clone())
            .respond_with(ResponseTemplate::new(500))
            .with_priority(1)
            .mount(server)
            .await;
        arrivals
    }

    fn all(&self) -> Vec<(Instant, SystemTime)> {
        self.0.lock().unwrap().clone()
    }

    /// The time between request `i` and request `i + 1`.
    fn gap(&self, i: usize) -> Duration {
        let all = self.all();
        all[i + 1].0 - all[i].0
    }
}

/// The `wait_ms` of every "retrying" event in `logs`, in order: the waits the client chose.
fn logged_waits(logs: &Arc<Mutex<Vec<u8>>>) -> Vec<u64> {
    let logs = String::from_utf8(logs.lock().unwrap().clone()).unwrap();
    logs.lines()
        .filter(|l| l.contains("retrying"))
        .map(|l| {
            let at = l.find("wait_ms=").expect("a retry event names its wait") + "wait_ms=".len();
            l[at..]
                .split(|c: char| !c.is_ascii_digit())
                .next()
                .unwrap()
                .parse()
                .unwrap()
        })
        .collect()
}

/// The open-PR query finds PR #42 into `main`, expected once.
async fn mount_open_pr(server: &MockServer) {
    github("GET", "/repos/acme/deploy/pulls", open_query())
        .respond_with(json_response(200, json!([pr_json(42, "main")])))
        .expect(1)
        .mount(server)
        .await;
}

/// Creating the PR with [`create_body`] answers 201 with PR #42, expected once.
async fn mount_create_pr(server: &MockServer) {
    github("POST", "/repos/acme/deploy/pulls", vec![])
        .and(body_json(create_body()))
        .respond_with(json_response(201, pr_json(42, "main")))
        .expect(1)
        .mount(server)
        .await;
}

/// Updating PR #42 with the spec's title and body answers 200, expected once.
async fn mount_update_pr(server: &MockServer) {
    github("PATCH", "/repos/acme/deploy/pulls/42", vec![])
        .and(body_json(json!({
            "title": "web: deploy 1.2.3 to prod",
            "body": "Sets image web to 1.2.3.",
        })))
        .respond_with(json_response(200, pr_json(42, "main")))
        .expect(1)
        .mount(server)
        .await;
}

/// Updating PR #42, whatever the body, answers 200, expected once.
async fn mount_update_pr_any_body(server: &MockServer) {
    github("PATCH", "/repos/acme/deploy/pulls/42", vec![])
        .respond_with(json_response(200, pr_json(42, "main")))
        .expect(1)
        .mount(server)
        .await;
}

/// A reviewers request for PR #42 (every GitHub header required), under `prefix`.
fn reviewers_request(prefix: &str) -> MockBuilder {
    github(
        "POST",
        &format!("{prefix}/repos/acme/deploy/pulls/42/requested_reviewers"),
        vec![],
    )
}

#[tokio::test]
async fn creates_the_pull_request_when_none_is_open() {
    let server = MockServer::start().await;
    mount_no_open_pr(&server).await;
    mount_create_pr(&server).await;

    let pr = client(&server).open_or_update(&spec()).await.unwrap();

    assert_eq!(
        pr,
        PullRequest {
            number: 42,
            html_url: PR_URL.to_owned(),
            created: true
        }
    );
    // No reviewers and no labels: those calls are skipped.
    assert_eq!(seen(&server).await, [LIST, "POST /repos/acme/deploy/pulls"]);
}

#[tokio::test]
async fn requests_reviewers_and_teams() {
    let server = MockServer::start().await;
    mount_no_open_pr(&server).await;
    mount_create_pr(&server).await;
    reviewers_request("")
        .and(body_json(json!({
            "reviewers": ["alice", "bob"],
            "team_reviewers": ["platform"],
        })))
        .respond_with(json_response(201, pr_json(42, "main")))
        .expect(1)
        .mount(&server)
        .await;

    let spec = PullRequestSpec {
        reviewers: vec!["alice".into(), "bob".into()],
        team_reviewers: vec!["platform".into()],
        ..spec()
    };
    let pr = client(&server).open_or_update(&spec).await.unwrap();

    assert!(pr.created);
    assert_eq!(
        seen(&server).await,
        [
            LIST,
            "POST /repos/acme/deploy/pulls",
            "POST /repos/acme/deploy/pulls/42/requested_reviewers"
        ]
    );
}

#[tokio::test]
async fn adds_labels() {
    let server = MockServer::start().await;
    mount_no_open_pr(&server).await;
    mount_create_pr(&server).await;
    github("POST", "/repos/acme/deploy/issues/42/labels", vec![])
        .and(body_json(json!({ "labels": ["gitops", "env:prod"] })))
        .respond_with(json_response(
            200,
            json!([{ "name": "gitops" }, { "name": "env:prod" }]),
        ))
        .expect(1)
        .mount(&server)
        .await;

    let spec = PullRequestSpec {
        labels: vec!["gitops".into(), "env:prod".into()],
        ..spec()
    };
    client(&server).open_or_update(&spec).await.unwrap();

    assert_eq!(
        seen(&server).await,
        [
            LIST,
            "POST /repos/acme/deploy/pulls",
            "POST /repos/acme/deploy/issues/42/labels"
        ]
    );
}

#[tokio::test]
async fn updates_the_open_pull_request_instead_of_creating_one() {
    let server = MockServer::start().await;
    // The branch also has an open PR into another base; only the one into `main` is ours.
    github("GET", "/repos/acme/deploy/pulls", open_query())
        .respond_with(json_response(
            200,
            json!([pr_json(7, "release"), pr_json(42, "main")]),
        ))
        .expect(1)
        .mount(&server)
        .await;
    mount_update_pr(&server).await;
    Mock::given(method("POST"))
        .and(path("/repos/acme/deploy/pulls"))
        .respond_with(ResponseTemplate::new(500))
        .expect(0)
        .mount(&server)
        .await;

    let pr = client(&server).open_or_update(&spec()).await.unwrap();

    assert_eq!(
        pr,
        PullRequest {
            number: 42,
            html_url: PR_URL.to_owned(),
            created: false
        }
    );
    assert_eq!(
        seen(&server).await,
        [LIST, "PATCH /repos/acme/deploy/pulls/42"]
    );
}

#[tokio::test]
async fn already_exists_on_create_requeries_and_updates() {
    let server = MockServer::start().await;
    // Another run opens the PR between our query and our create.
    mount_list_once(&server, json_response(200, json!([]))).await;
    mount_open_pr(&server).await;
    github("POST", "/repos/acme/deploy/pulls", vec![])
        .and(body_json(create_body()))
        .respond_with(json_response(
            422,
            json!({
                "message": "Validation Failed",
                "errors": [{
                    "resource": "PullRequest",
                    "code": "custom",
                    "message": "A pull request already exists for acme:gitops/web/prod/1.2.3."
                }],
                "documentation_url": "https://docs.github.com/rest/pulls/pulls#create-a-pull-request"
            }),
        ))
        .expect(1)
        .mount(&server)
        .await;
    mount_update_pr(&server).await;

    let pr = client(&server).open_or_update(&spec()).await.unwrap();

    assert_eq!(pr.number, 42);
    assert!(!pr.created);
    assert_eq!(
        seen(&server).await,
        [
            LIST,
            "POST /repos/acme/deploy/pulls",
            LIST,
            "PATCH /repos/acme/deploy/pulls/42"
        ]
    );
}

#[tokio::test]
async fn other_validation_failures_are_errors_with_githubs_message() {
    let server = MockServer::start().await;
    mount_no_open_pr(&server).await;
    github("POST", "/repos/acme/deploy/pulls", vec![])
        .and(body_json(create_body()))
        .respond_with(json_response(
            422,
            json!({
                "message": "Validation Failed",
                "errors": [{ "resource": "PullRequest", "field": "base", "code": "invalid" }],
            }),
        ))
        .expect(1) // not retried
        .mount(&server)
        .await;

    let err = client(&server).open_or_update(&spec()).await.unwrap_err();

    assert!(matches!(err, GithubError::Status { .. }), "{err:?}");
    assert_eq!(err.status().map(|s| s.as_u16()), Some(422));
    assert_eq!(
        err.to_string(),
        "create pull request: GitHub answered 422 Unprocessable Entity: Validation Failed (base: invalid)"
    );
}

#[tokio::test]
async fn secondary_rate_limit_waits_for_retry_after() {
    let logs = capture_logs();
    let server = MockServer::start().await;
    let arrivals = Arrivals::record(&server).await;
    mount_list_once(
        &server,
        json_response(
            403,
            json!({
                "message": "You have exceeded a secondary rate limit. Please wait a few minutes before you try again.",
                "documentation_url": "https://docs.github.com/rest/overview/rate-limits-for-the-rest-api"
            }),
        )
        .insert_header("retry-after", "1"),
    )
    .await;
    mount_open_pr(&server).await;
    mount_update_pr_any_body(&server).await;

    let pr = client(&server).open_or_update(&spec()).await.unwrap();

    assert_eq!(pr.number, 42);
    assert_eq!(
        seen(&server).await,
        [LIST, LIST, "PATCH /repos/acme/deploy/pulls/42"]
    );
    // It chose GitHub's wait, and the retry reached GitHub no sooner.
    assert_eq!(logged_waits(&logs), [1000]);
    let waited = arrivals.gap(0);
    assert!(waited >= Duration::from_secs(1), "retried after {waited:?}");
}

#[tokio::test]
async fn primary_rate_limit_waits_until_reset() {
    let logs = capture_logs();
    let server = MockServer::start().await;
    let arrivals = Arrivals::record(&server).await;
    let unix = |t: SystemTime| t.duration_since(UNIX_EPOCH).unwrap();
    let reset = unix(SystemTime::now()).as_secs() + 2;
    mount_list_once(
        &server,
        json_response(
            403,
            json!({ "message": "API rate limit exceeded for installation." }),
        )
        .insert_header("x-ratelimit-remaining", "0")
        .insert_header("x-ratelimit-reset", reset.to_string().as_str()),
    )
    .await;
    mount_open_pr(&server).await;
    mount_update_pr_any_body(&server).await;

    client(&server).open_or_update(&spec()).await.unwrap();

    let all = arrivals.all();
    assert_eq!(all.len(), 3, "list, list again, update");
    // The wait it chose is the time from the 403 (whole seconds, as GitHub counts) to the reset.
    let first = unix(all[0].1).as_secs();
    let waits = logged_waits(&logs);
    assert_eq!(waits.len(), 1, "{waits:?}");
    assert!(
        [reset.saturating_sub(first), reset.saturating_sub(first + 1)].contains(&(waits[0] / 1000))
            && waits[0].is_multiple_of(1000),
        "waited {} ms for a reset {reset} at {first}",
        waits[0]
    );
    // The retry reached GitHub once the reset second had started, after at least that wait.
    let retried = unix(all[1].1);
    assert!(
        retried >= Duration::from_secs(reset),
        "retried at {retried:?}, before the reset at {reset} s"
    );
    assert!(arrivals.gap(0) >= Duration::from_millis(waits[0]));
}

#[tokio::test]
async fn retry_after_beyond_the_cap_fails_without_retrying() {
    let logs = capture_logs();
    let server = MockServer::start().await;
    let arrivals = Arrivals::record(&server).await;
    github("GET", "/repos/acme/deploy/pulls", open_query())
        .respond_with(
            json_response(429, json!({ "message": "Too many requests" }))
                .insert_header("retry-after", "600"),
        )
        .expect(1)
        .mount(&server)
        .await;

    // A cap far above the time the test takes: a client that slept toward GitHub's 600 s, or up
    // to the cap, before giving up would be measured below.
    let mut cfg = config(server.uri());
    cfg.retry.max_wait = Duration::from_secs(30);
    let err = GithubClient::new(cfg)
        .unwrap()
        .open_or_update(&spec())
        .await
        .unwrap_err();
    let returned = Instant::now();

    assert!(matches!(err, GithubError::RateLimited { .. }), "{err:?}");
    assert_eq!(
        err.to_string(),
        "find open pull request: GitHub answered 429 Too Many Requests and asks to wait 600s, more than the 30s allowed: Too many requests"
    );
    // No wait chosen, one request, and the error came back well within the cap after it.
    assert_eq!(logged_waits(&logs), Vec::<u64>::new());
    let all = arrivals.all();
    assert_eq!(all.len(), 1);
    let after_answer = returned - all[0].0;
    assert!(
        after_answer < Duration::from_secs(30),
        "gave up {after_answer:?} after GitHub's answer"
    );
}

#[tokio::test]
async fn too_many_requests_without_retry_after_backs_off_then_succeeds() {
    let server = MockServer::start().await;
    mount_list_once(&server, ResponseTemplate::new(429)).await;
    mount_no_open_pr(&server).await;
    mount_create_pr(&server).await;

    let pr = client(&server).open_or_update(&spec()).await.unwrap();

    assert!(pr.created);
    assert_eq!(
        seen(&server).await,
        [LIST, LIST, "POST /repos/acme/deploy/pulls"]
    );
}

#[tokio::test]
async fn too_many_requests_gives_up_after_max_attempts() {
    let logs = capture_logs();
    let server = MockServer::start().await;
    let arrivals = Arrivals::record(&server).await;
    github("GET", "/repos/acme/deploy/pulls", open_query())
        .respond_with(json_response(429, json!({ "message": "slow down" })))
        .expect(3)
        .mount(&server)
        .await;

    let mut cfg = config(server.uri());
    cfg.retry.max_attempts = 3;
    let err = GithubClient::new(cfg)
        .unwrap()
        .open_or_update(&spec())
        .await
        .unwrap_err();

    // Backoff 10 ms then 20 ms, and each retry reached GitHub no sooner.
    assert_eq!(logged_waits(&logs), [10, 20]);
    assert_eq!(arrivals.all().len(), 3);
    assert!(arrivals.gap(0) >= Duration::from_millis(10));
    assert!(arrivals.gap(1) >= Duration::from_millis(20));
    assert!(
        matches!(err, GithubError::RetriesExhausted { attempts: 3, .. }),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        "find open pull request: gave up after 3 attempts, GitHub last answered 429 Too Many Requests: slow down"
    );
}

#[tokio::test]
async fn server_errors_are_retried() {
    let server = MockServer::start().await;
    mount_no_open_pr(&server).await;
    github("POST", "/repos/acme/deploy/pulls", vec![])
        .respond_with(ResponseTemplate::new(502).set_body_string("<html>Bad gateway</html>"))
        .up_to_n_times(2)
        .expect(2)
        .mount(&server)
        .await;
    mount_create_pr(&server).await;

    let pr = client(&server).open_or_update(&spec()).await.unwrap();
    assert!(pr.created);
}

#[tokio::test]
async fn unresolved_node_right_after_creation_is_retried() {
    let server = MockServer::start().await;
    mount_no_open_pr(&server).await;
    github("POST", "/repos/acme/deploy/pulls", vec![])
        .respond_with(json_response(201, pr_json(42, "main")))
        .expect(1)
        .mount(&server)
        .await;
    reviewers_request("")
        .respond_with(json_response(
            422,
            json!({ "message": "Could not resolve to a node with the global id of 'PR_kwDO'." }),
        ))
        .up_to_n_times(1)
        .expect(1)
        .mount(&server)
        .await;
    reviewers_request("")
        .and(body_json(
            json!({ "reviewers": ["alice"], "team_reviewers": [] }),
        ))
        .respond_with(json_response(201, pr_json(42, "main")))
        .expect(1)
        .mount(&server)
        .await;

    let spec = PullRequestSpec {
        reviewers: vec!["alice".into()],
        ..spec()
    };
    client(&server).open_or_update(&spec).await.unwrap();
}

#[tokio::test]
async fn a_failed_follow_up_names_the_open_pull_request() {
    let server = MockServer::start().await;
    github("GET", "/repos/acme/deploy/pulls", open_query())
        .respond_with(json_response(200, json!([pr_json(42, "main")])))
        .mount(&server)
        .await;
    github("PATCH", "/repos/acme/deploy/pulls/42", vec![])
        .respond_with(json_response(200, pr_json(42, "main")))
        .mount(&server)
        .await;
    reviewers_request("")
        .respond_with(json_response(
            422,
            json!({ "message": "Review cannot be requested from pull request author." }),
        ))
        .expect(1) // a PR that was not just created: no retry
        .mount(&server)
        .await;

    let spec = PullRequestSpec {
        reviewers: vec!["gitops-bot".into()],
        labels: vec!["gitops".into()],
        ..spec()
    };
    let err = client(&server).open_or_update(&spec).await.unwrap_err();

    assert!(
        matches!(err, GithubError::FollowUp { number: 42, .. }),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        format!(
            "pull request #42 ({PR_URL}) is open, but request reviewers: GitHub answered 422 Unprocessable Entity: Review cannot be requested from pull request author."
        )
    );
}

#[tokio::test]
async fn enterprise_base_url_keeps_its_path_prefix() {
    let server = MockServer::start().await;
    github("GET", "/api/v3/repos/acme/deploy/pulls", open_query())
        .respond_with(json_response(200, json!([])))
        .expect(2)
        .mount(&server)
        .await;
    github("POST", "/api/v3/repos/acme/deploy/pulls", vec![])
        .and(body_json(create_body()))
        .respond_with(json_response(201, pr_json(42, "main")))
        .expect(2)
        .mount(&server)
        .await;
    reviewers_request("/api/v3")
        .and(body_json(
            json!({ "reviewers": [], "team_reviewers": ["platform"] }),
        ))
        .respond_with(json_response(201, pr_json(42, "main")))
        .expect(2)
        .mount(&server)
        .await;
    github("POST", "/api/v3/repos/acme/deploy/issues/42/labels", vec![])
        .and(body_json(json!({ "labels": ["gitops"] })))
        .respond_with(json_response(200, json!([])))
        .expect(2)
        .mount(&server)
        .await;

    let spec = PullRequestSpec {
        team_reviewers: vec!["platform".into()],
        labels: vec!["gitops".into()],
        ..spec()
    };
    // With and without a trailing slash.
    for base in [
        format!("{}/api/v3", server.uri()),
        format!("{}/api/v3/", server.uri()),
    ] {
        let pr = GithubClient::new(config(base))
            .unwrap()
            .open_or_update(&spec)
            .await
            .unwrap();
        assert_eq!(pr.number, 42);
    }
}

thread_local! {
    static CAPTURE: std::cell::RefCell<Option<Arc<Mutex<Vec<u8>>>>> = const { std::cell::RefCell::new(None) };
}

/// Writes to this thread's capture buffer, if any (a `#[tokio::test]` runs its client and the
/// tasks it spawns on its own thread).
struct ThreadWriter;

impl io::Write for ThreadWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        CAPTURE.with(|c| {
            if let Some(sink) = c.borrow().as_ref() {
                sink.lock().unwrap().extend_from_slice(buf);
            }
        });
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// One global subscriber for the whole test binary, installed before any test sends a request.
/// (A thread-scoped `set_default` races with tracing's per-callsite interest cache when tests run
/// in parallel, and then loses events.)
fn install_log_capture() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_ansi(false)
            .with_writer(|| ThreadWriter)
            .init();
    });
}

/// Starts capturing this thread's log output.
fn capture_logs() -> Arc<Mutex<Vec<u8>>> {
    install_log_capture();
    let sink = Arc::new(Mutex::new(Vec::new()));
    CAPTURE.with(|c| *c.borrow_mut() = Some(sink.clone()));
    sink
}

#[tokio::test]
async fn the_token_never_appears_in_errors_or_logs() {
    let logs = capture_logs();

    let server = MockServer::start().await;
    let mut errors: Vec<GithubError> = Vec::new();

    // 401 whose body (unlike GitHub's) echoes the token.
    github("GET", "/repos/acme/deploy/pulls", open_query())
        .respond_with(json_response(
            401,
            json!({ "message": format!("Bad credentials: {TOKEN}") }),
        ))
        .up_to_n_times(1)
        .expect(1) // not retried
        .mount(&server)
        .await;
    errors.push(client(&server).open_or_update(&spec()).await.unwrap_err());

    // Retries exhausted on a 5xx whose non-JSON body echoes the token.
    github("GET", "/repos/acme/deploy/pulls", open_query())
        .respond_with(ResponseTemplate::new(503).set_body_string(format!("upstream {TOKEN}")))
        .up_to_n_times(4)
        .expect(4)
        .mount(&server)
        .await;
    errors.push(client(&server).open_or_update(&spec()).await.unwrap_err());

    // A follow-up failure wrapping a 404.
    mount_no_open_pr(&server).await;
    github("POST", "/repos/acme/deploy/pulls", vec![])
        .respond_with(json_response(201, pr_json(42, "main")))
        .mount(&server)
        .await;
    github("POST", "/repos/acme/deploy/issues/42/labels", vec![])
        .respond_with(json_response(404, json!({ "message": "Not Found" })))
        .expect(1)
        .mount(&server)
        .await;
    let spec_with_labels = PullRequestSpec {
        labels: vec!["gitops".into()],
        ..spec()
    };
    errors.push(
        client(&server)
            .open_or_update(&spec_with_labels)
            .await
            .unwrap_err(),
    );

    // Nothing listening: a transport error, retried and then given up.
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap()
    };
    errors.push(
        GithubClient::new(config(format!("http://{closed}")))
            .unwrap()
            .open_or_update(&spec())
            .await
            .unwrap_err(),
    );

    // Bad configuration.
    let mut cfg = config(server.uri());
    cfg.api_base = format!("https://x-access-token:{TOKEN}@github.com");
    errors.push(GithubClient::new(cfg).unwrap_err());

    assert!(
        matches!(errors[0], GithubError::Status { .. }),
        "{:?}",
        errors[0]
    );
    assert!(
        matches!(errors[1], GithubError::RetriesExhausted { attempts: 4, .. }),
        "{:?}",
        errors[1]
    );
    assert!(
        matches!(errors[2], GithubError::FollowUp { .. }),
        "{:?}",
        errors[2]
    );
    assert!(
        matches!(errors[3], GithubError::Transport { attempts: 4, .. }),
        "{:?}",
        errors[3]
    );
    assert!(
        matches!(errors[4], GithubError::Config(_)),
        "{:?}",
        errors[4]
    );
    for err in &errors {
        let shown = format!("{err} | {err:?}");
        assert!(!shown.contains(TOKEN), "token leaked: {shown}");
    }
    assert!(errors[0].to_string().contains("Bad credentials: ***"));

    let client = client(&server);
    assert!(!format!("{client:?}").contains(TOKEN));
    let cfg = config(server.uri());
    assert!(!format!("{cfg:?}").contains(TOKEN));

    // Every request was logged with method, path and status; the token never.
    let logs = String::from_utf8(logs.lock().unwrap().clone()).unwrap();
    assert!(
        logs.contains("method=GET path=/repos/acme/deploy/pulls status=401"),
        "{logs}"
    );
    assert!(
        logs.contains("method=POST path=/repos/acme/deploy/pulls status=201"),
        "{logs}"
    );
    assert!(!logs.contains(TOKEN), "token leaked into logs: {logs}");
}

#[tokio::test]
async fn rejects_an_incomplete_spec_without_calling_github() {
    let server = MockServer::start().await;
    let spec = PullRequestSpec {
        title: " ".into(),
        ..spec()
    };
    let err = client(&server).open_or_update(&spec).await.unwrap_err();
    assert_eq!(err.to_string(), "invalid pull request spec: title is empty");
    assert!(seen(&server).await.is_empty());
}
