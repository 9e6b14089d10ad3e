//! A Lambda Runtime API emulator (the part of Lambda a custom runtime talks to), so the real
//! compiled function binaries run as child processes, exactly as `provided.al2023` runs them.
//!
//! - `GET  /2018-06-01/runtime/invocation/next`: long-polls the queue; answers the event with
//!   `Lambda-Runtime-Aws-Request-Id`, `-Deadline-Ms` (now + 30 s), `-Invoked-Function-Arn`,
//!   `-Trace-Id`.
//! - `POST /2018-06-01/runtime/invocation/{id}/response` and `/error`: recorded, 202.
//! - `POST /2018-06-01/runtime/init/error`: recorded, 202.
#![allow(dead_code)]

use std::collections::{HashMap, VecDeque};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use tokio::sync::{Mutex, Notify};

/// The command that runs the compiled Lambda binary `bin` as function `function_name` against
/// this emulator (`runtime_api`, host:port), as `provided.al2023` would: a clean environment with
/// `PATH`, the Lambda variables, `aws_endpoint` as every AWS endpoint with test credentials in
/// us-east-1, and `RUST_LOG=warn`; stdout dropped, stderr shown. Add the function's own settings
/// with `.env`/`.envs`.
pub fn lambda_command(
    bin: &str,
    function_name: &str,
    runtime_api: &str,
    aws_endpoint: &str,
) -> Command {
    let mut cmd = Command::new(bin);
    cmd.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("AWS_LAMBDA_RUNTIME_API", runtime_api)
        .env("AWS_LAMBDA_FUNCTION_NAME", function_name)
        .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "256")
        .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        .env("AWS_ENDPOINT_URL", aws_endpoint)
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit());
    cmd
}

/// What the function answered for one invocation.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Response(serde_json::Value),
    Error(serde_json::Value),
}

#[derive(Debug, Default)]
struct Inner {
    queue: VecDeque<(String, String)>,
    results: HashMap<String, Vec<Outcome>>,
    init_errors: Vec<String>,
    first_next_at: Option<Instant>,
    first_result_at: Option<Instant>,
}

#[derive(Debug, Clone, Default)]
pub struct RuntimeApi {
    inner: Arc<Mutex<Inner>>,
    queued: Arc<Notify>,
    answered: Arc<Notify>,
}

impl RuntimeApi {
    /// Starts the emulator on 127.0.0.1:0; returns it and its `host:port`.
    pub async fn start() -> (Self, String) {
        let api = Self::default();
        let app = Router::new()
            .route("/2018-06-01/runtime/invocation/next", get(next))
            .route(
                "/2018-06-01/runtime/invocation/{id}/response",
                post(response),
            )
            .route("/2018-06-01/runtime/invocation/{id}/error", post(error))
            .route("/2018-06-01/runtime/init/error", post(init_error))
            .with_state(api.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        (api, addr)
    }

    /// Queues an event; returns its request id.
    pub async fn invoke(&self, event: &serde_json::Value) -> String {
        let id = uuid::Uuid::now_v7().to_string();
        self.inner
            .lock()
            .await
            .queue
            .push_back((id.clone(), event.to_string()));
        self.queued.notify_waiters();
        self.queued.notify_one();
        id
    }

    /// Waits (bounded) for the answer to `id`; panics if none or more than one came.
    pub async fn outcome(&self, id: &str, timeout: Duration) -> Outcome {
        let deadline = Instant::now() + timeout;
        loop {
            // Registered before the check, so an answer arriving in between is not missed (the
            // warm-invocation figures depend on waking at once).
            let answered = self.answered.notified();
            tokio::pin!(answered);
            answered.as_mut().enable();
            {
                let inner = self.inner.lock().await;
                if let Some(r) = inner.results.get(id) {
                    assert_eq!(r.len(), 1, "invocation {id} got {} answers: {r:?}", r.len());
                    return r[0].clone();
                }
            }
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(
                !left.is_zero(),
                "no answer for invocation {id} within {timeout:?}"
            );
            let _ = tokio::time::timeout(left.min(Duration::from_millis(50)), answered).await;
        }
    }

    /// Every request id answered, with how many answers each got.
    pub async fn answer_counts(&self) -> HashMap<String, usize> {
        self.inner
            .lock()
            .await
            .results
            .iter()
            .map(|(k, v)| (k.clone(), v.len()))
            .collect()
    }

    pub async fn init_errors(&self) -> Vec<String> {
        self.inner.lock().await.init_errors.clone()
    }

    /// When the function first asked for work, and when it first answered.
    pub async fn timings(&self) -> (Option<Instant>, Option<Instant>) {
        let i = self.inner.lock().await;
        (i.first_next_at, i.first_result_at)
    }
}

async fn next(State(api): State<RuntimeApi>) -> impl IntoResponse {
    loop {
        {
            let mut inner = api.inner.lock().await;
            inner.first_next_at.get_or_insert_with(Instant::now);
            if let Some((id, event)) = inner.queue.pop_front() {
                let deadline = (std::time::SystemTime::now() + Duration::from_secs(30))
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_millis();
                let mut h = HeaderMap::new();
                h.insert("lambda-runtime-aws-request-id", id.parse().unwrap());
                h.insert(
                    "lambda-runtime-deadline-ms",
                    deadline.to_string().parse().unwrap(),
                );
                h.insert(
                    "lambda-runtime-invoked-function-arn",
                    "arn:aws:lambda:us-east-1:123456789012:function:test"
                        .parse()
                        .unwrap(),
                );
                h.insert(
                    "lambda-runtime-trace-id",
                    "Root=1-5759e988-bd862e3fe1be46a994272793;Sampled=1"
                        .parse()
                        .unwrap(),
                );
                h.insert("content-type", "application/json".parse().unwrap());
                return (StatusCode::OK, h, event);
            }
        }
        // Long poll, as Lambda does; re-check periodically in case a notification was missed.
        let _ = tokio::time::timeout(Duration::from_millis(100), api.queued.notified()).await;
    }
}

async fn record(api: &RuntimeApi, id: String, outcome: Outcome) -> StatusCode {
    let mut inner = api.inner.lock().await;
    inner.first_result_at.get_or_insert_with(Instant::now);
    inner.results.entry(id).or_default().push(outcome);
    drop(inner);
    api.answered.notify_waiters();
    StatusCode::ACCEPTED
}

fn json_or_string(body: &Bytes) -> serde_json::Value {
    serde_json::from_slice(body)
        .unwrap_or_else(|_| serde_json::Value::String(String::from_utf8_lossy(body).into_owned()))
}

async fn response(
    State(api): State<RuntimeApi>,
    Path(id): Path<String>,
    body: Bytes,
) -> StatusCode {
    record(&api, id, Outcome::Response(json_or_string(&body))).await
}

async fn error(State(api): State<RuntimeApi>, Path(id): Path<String>, body: Bytes) -> StatusCode {
    record(&api, id, Outcome::Error(json_or_string(&body))).await
}

async fn init_error(State(api): State<RuntimeApi>, body: Bytes) -> StatusCode {
    api.inner
        .lock()
        .await
        .init_errors
        .push(String::from_utf8_lossy(&body).into_owned());
    StatusCode::ACCEPTED
}

/// Peak resident memory of a process in KiB (`VmHWM`), on Linux.
pub fn peak_rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}
