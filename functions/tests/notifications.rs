//! Notifications from the functions' writers of transitions, each through the real SQLite store
//! wrapped as the binaries wrap theirs, to wiremock Slack and webhook servers: the lifecycle
//! function's `task_failed` (an event delivered twice: one message), dispatch's
//! `dispatch_failed` and the sweeper's `gave_up` (one each, however many passes), and the
//! settings checked at start.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{RecordingLauncher, dispatched_record, ecs_event};
use orchestrator::dispatch::{RetryPolicy, record_and_launch};
use orchestrator::launch::LaunchError;
use orchestrator::lifecycle::{Applied, apply};
use orchestrator::notifications::NotifyConfig;
use orchestrator::recovery::{RecoveryPolicy, sweep};
use orchestrator_core::store::RecordStore;
use orchestrator_core::store::sqlite::SqliteStore;
use orchestrator_core::{Job, Record, Secret, Source, Status};
use orchestrator_notify::NotifyArgs;
use serde_json::{Value, json};
use wiremock::matchers::method;
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

const RULES: &str = "rules:\n  - match: {service: circleci-samples}\n    events: [task_failed, dispatch_failed, gave_up]\n    targets: [slack, webhook]\n";

struct Setup {
    slack: MockServer,
    hook: MockServer,
    store: Arc<dyn RecordStore>,
    _dir: tempfile::TempDir,
}

async fn setup() -> Setup {
    let slack = MockServer::start().await;
    let hook = MockServer::start().await;
    for s in [&slack, &hook] {
        Mock::given(method("POST"))
            .respond_with(ResponseTemplate::new(200))
            .mount(s)
            .await;
    }
    let config = NotifyConfig {
        notify: NotifyArgs {
            notify_rules: Some(RULES.into()),
            notify_slack_webhook_url: Some(Secret::new(format!("{}/services/T/B/x", slack.uri()))),
            notify_webhook_url: Some(format!("{}/hook", hook.uri())),
            notify_webhook_secret: Some(Secret::new("hook-secret")),
            notify_timeout_ms: 2000,
            console_base_url: Some("https://console.example".into()),
            ..NotifyArgs::default()
        },
        ..NotifyConfig::default()
    };
    let dir = tempfile::tempdir().unwrap();
    let inner = SqliteStore::open(&SqliteStore::file_in(dir.path())).unwrap();
    let store = config.store(Arc::new(inner)).await.unwrap();
    Setup {
        slack,
        hook,
        store,
        _dir: dir,
    }
}

async fn texts(server: &MockServer) -> Vec<String> {
    server
        .received_requests()
        .await
        .unwrap()
        .iter()
        .map(|r: &Request| {
            let v: Value = serde_json::from_slice(&r.body).unwrap();
            v["text"].as_str().unwrap_or_default().to_owned()
        })
        .collect()
}

async fn bodies(server: &MockServer) -> Vec<Value> {
    server
        .received_requests()
        .await
        .unwrap()
        .iter()
        .map(|r| serde_json::from_slice(&r.body).unwrap())
        .collect()
}

const CLUSTER: Option<&str> = Some("orchestrator");

#[tokio::test]
async fn a_task_that_died_is_told_once_when_its_event_is_delivered_twice() {
    let s = setup().await;
    let r = dispatched_record(s.store.as_ref()).await;
    let stopped = ecs_event("task-state-change-stopped.json", &r, 5);
    let first = apply(s.store.as_ref(), &stopped, CLUSTER).await.unwrap();
    assert_eq!(first, Applied::Updated(Status::Failed));
    let again = apply(s.store.as_ref(), &stopped, CLUSTER).await.unwrap();
    assert!(matches!(again, Applied::Skipped(_)), "{again:?}");
    // A newer event of the same task (ECS sends several after STOPPED): still one message.
    let later = apply(
        s.store.as_ref(),
        &ecs_event("task-state-change-stopped.json", &r, 6),
        CLUSTER,
    )
    .await
    .unwrap();
    assert!(
        matches!(later, Applied::Updated(Status::Failed)),
        "{later:?}"
    );

    let record = s.store.get(r.id).await.unwrap().unwrap();
    let reason = record.status_reason.unwrap();
    let id = r.id;
    assert_eq!(
        texts(&s.slack).await,
        vec![format!(
            "Task failed: *circleci-samples* in *dev*: `?` → `8f59df9`\n\
             Reason: {}\n\
             Record: <https://console.example/console/records/{id}|{id}>",
            reason
                .replace('&', "&amp;")
                .replace('<', "&lt;")
                .replace('>', "&gt;")
        )]
    );
    let hooks = bodies(&s.hook).await;
    assert_eq!(hooks.len(), 1);
    assert_eq!(hooks[0]["event"], "task_failed");
    assert_eq!(hooks[0]["idempotency_key"], format!("{id}:failed:1"));
    assert_eq!(hooks[0]["reason"], reason);
}

fn policy(give_up_after: Duration) -> RecoveryPolicy {
    RecoveryPolicy {
        received_after: Duration::from_secs(60),
        stuck_after: Duration::from_secs(600),
        retry: RetryPolicy {
            max_attempts: 1,
            initial_backoff: Duration::from_millis(1),
            budget: Duration::from_secs(1),
            retry_after: Duration::from_secs(10),
            max_retry_delay: Duration::from_secs(300),
            give_up_after,
        },
        max_pages: 10,
        concurrency: 4,
    }
}

#[tokio::test]
async fn a_launch_that_fails_then_gives_up_is_told_twice_in_all() {
    let s = setup().await;
    let tasks = RecordingLauncher::default();
    *tasks.fail_with.lock().unwrap() = Some(LaunchError::retryable(
        "RunTask started no task: Capacity is unavailable",
    ));
    let job = Job::parse(
        "circleci-samples",
        "eddiewebb/circleci-samples",
        "dev",
        "8f59df9",
    )
    .unwrap();
    let record = Record::received(Source::CircleciOrb, json!({}), Some(job));
    let id = record.id;
    record_and_launch(
        s.store.as_ref(),
        &tasks,
        policy(Duration::from_secs(600)).retry,
        record,
    )
    .await
    .expect("a failure that will be retried is not an error");
    let hooks = bodies(&s.hook).await;
    assert_eq!(hooks.len(), 1);
    assert_eq!(hooks[0]["event"], "dispatch_failed");
    assert_eq!(
        hooks[0]["idempotency_key"],
        format!("{id}:dispatch_failed:1")
    );
    assert!(
        hooks[0]["reason"]
            .as_str()
            .unwrap()
            .contains("launch attempt 1 failed, attempt 2 at"),
        "{}",
        hooks[0]["reason"]
    );

    // Due, past the retry window: the sweeper's attempt 2 fails and it gives up. Later passes
    // find nothing to do and tell nobody.
    let later = orchestrator_core::record::now() + chrono::Duration::seconds(60);
    for pass in 0..3 {
        let report = sweep(s.store.as_ref(), &tasks, &policy(Duration::ZERO), later).await;
        assert_eq!(report.gave_up, usize::from(pass == 0), "{report:?}");
    }
    let r = s.store.get(id).await.unwrap().unwrap();
    assert!(r.is_settled() && r.attempt == 2, "{r:?}");
    let hooks = bodies(&s.hook).await;
    assert_eq!(hooks.len(), 2, "{hooks:?}");
    assert_eq!(hooks[1]["event"], "gave_up");
    assert_eq!(hooks[1]["idempotency_key"], format!("{id}:gave_up:2"));
    assert_eq!(hooks[1]["status"], "dispatch_failed");
    assert_eq!(hooks[1]["reason"], r.status_reason.clone().unwrap());
    let slack = texts(&s.slack).await;
    assert_eq!(slack.len(), 2);
    assert!(
        slack[1].starts_with("Gave up launching: *circleci-samples* in *dev*: `?` → `8f59df9`\nReason: RunTask started no task: Capacity is unavailable")
            && slack[1].contains("gave up after 2 launch attempt(s)"),
        "{}",
        slack[1]
    );
}

#[tokio::test]
async fn settings_are_checked_at_start() {
    let with = |rules: &str, slack: bool| NotifyConfig {
        notify: NotifyArgs {
            notify_rules: Some(rules.into()),
            notify_slack_webhook_url: slack
                .then(|| Secret::new("https://hooks.slack.com/services/T/B/canary")),
            notify_timeout_ms: 2000,
            ..NotifyArgs::default()
        },
        ..NotifyConfig::default()
    };
    let err = with(
        "rules:\n  - events: [task_failed]\n    targets: [webhook]\n",
        true,
    )
    .notifier()
    .await
    .unwrap_err();
    assert_eq!(
        err,
        "notifications: rules[0].targets: `webhook` is named but NOTIFY_WEBHOOK_URL and NOTIFY_WEBHOOK_SECRET are not both set"
    );
    let err = with(
        "rules:\n  - events: [task_faild]\n    targets: [slack]\n",
        true,
    )
    .notifier()
    .await
    .unwrap_err();
    assert!(
        err.starts_with(
            "notifications: NOTIFY_RULES: rules[0].events[0]: unknown variant `task_faild`"
        ) && err.contains("line 2"),
        "{err}"
    );
    assert!(!err.contains("canary"));
    assert!(
        NotifyConfig::default().notifier().await.unwrap().is_none(),
        "no rules, no notifications"
    );
    assert!(
        with(RULES.replace("webhook", "slack").as_str(), true)
            .notifier()
            .await
            .unwrap()
            .is_some()
    );
}
