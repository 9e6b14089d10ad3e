//! Messages as the targets receive them, through the real SQLite store wrapped in
//! [`Notifying`], to wiremock Slack and webhook servers: exact bodies and headers, a signature a
//! receiver verifies, one message per transition however often it is reported, and the work's
//! result unchanged when a target fails or hangs.

use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine;
use hmac::{Hmac, KeyInit, Mac};
use orchestrator_core::store::sqlite::SqliteStore;
use orchestrator_core::store::{RecordStore, StoreError, Transition};
use orchestrator_core::{Job, Record, Secret, Source, Status};
use orchestrator_notify::{Notifier, Notifying, Rules, WebhookTarget};
use serde_json::{Value, json};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

const SECRET: &str = "whsec-canary-5f2a";

struct Targets {
    slack: MockServer,
    hook: MockServer,
}

impl Targets {
    async fn new(slack_status: u16, delay: Duration) -> Self {
        let slack = MockServer::start().await;
        Mock::given(method("POST"))
            .and(path("/services/T0/B0/slack-canary"))
            .respond_with(ResponseTemplate::new(slack_status).set_delay(delay))
            .mount(&slack)
            .await;
        let hook = MockServer::start().await;
        Mock::given(method("POST"))
            .and(path("/gitops-events"))
            .respond_with(ResponseTemplate::new(204))
            .mount(&hook)
            .await;
        Self { slack, hook }
    }

    fn notifier(&self, rules: &str, timeout: Duration) -> Notifier {
        Notifier::new(
            Rules::parse(rules).unwrap(),
            Some(Secret::new(format!(
                "{}/services/T0/B0/slack-canary",
                self.slack.uri()
            ))),
            Some(WebhookTarget {
                url: format!("{}/gitops-events", self.hook.uri())
                    .parse()
                    .unwrap(),
                secret: Secret::new(SECRET),
            }),
            Some("https://gitops.example.com/".into()),
            timeout,
        )
        .unwrap()
    }

    async fn slack_bodies(&self) -> Vec<Request> {
        self.slack.received_requests().await.unwrap()
    }

    async fn hook_bodies(&self) -> Vec<Request> {
        self.hook.received_requests().await.unwrap()
    }
}

const ALL: &str = "rules:\n  - match: {service: \"shop-*\", environment: prod}\n    events: [pr_opened, pr_updated, no_change, task_failed, dispatch_failed, gave_up]\n    targets: [slack, webhook]\n";

fn store() -> (tempfile::TempDir, Arc<dyn RecordStore>) {
    let dir = tempfile::tempdir().unwrap();
    let s = SqliteStore::open(&SqliteStore::file_in(dir.path())).unwrap();
    (dir, Arc::new(s))
}

async fn running(store: &dyn RecordStore, service: &str) -> Record {
    let job = Job::parse(service, "acme/shop-api", "prod", "9f8e7d6").unwrap();
    let r = Record::received(Source::CircleciOrb, json!({"build_num": 7}), Some(job));
    store.create(&r).await.unwrap();
    store
        .transition(r.id, &Transition::to(Status::Dispatched))
        .await
        .unwrap();
    store
        .transition(r.id, &Transition::to(Status::Running))
        .await
        .unwrap()
}

fn opened(attempt: u32) -> Transition {
    Transition {
        pr_url: Some("https://github.com/acme/gitops/pull/42".into()),
        branch: Some("update-image/prod/shop-api".into()),
        outcome: Some(
            json!({"outcome": "succeeded", "pr_created": true, "old_tag": "1a2b3c4", "new_tag": "9f8e7d6"}),
        ),
        ..Transition::to(Status::Succeeded).at_attempt(attempt)
    }
}

/// What a receiver does: recompute `v1,<base64 HMAC-SHA256(secret, "<ts>.<body>")>` and compare.
fn verified(req: &Request, secret: &str) -> bool {
    let header = |n: &str| req.headers.get(n).unwrap().to_str().unwrap().to_owned();
    let ts = header("x-orchestrator-timestamp");
    let age = chrono::Utc::now().timestamp() - ts.parse::<i64>().unwrap();
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(format!("{ts}.").as_bytes());
    mac.update(&req.body);
    let got = header("x-orchestrator-signature");
    let Some(sig) = got.strip_prefix("v1,") else {
        return false;
    };
    let sig = base64::engine::general_purpose::STANDARD
        .decode(sig)
        .unwrap();
    (0..300).contains(&age) && mac.verify_slice(&sig).is_ok()
}

#[tokio::test]
async fn an_outcome_reported_twice_sends_one_exact_message_per_target() {
    let targets = Targets::new(200, Duration::ZERO).await;
    let (_d, inner) = store();
    let store = Notifying::new(
        inner.clone(),
        Arc::new(targets.notifier(ALL, Duration::from_secs(3))),
    );
    let r = running(&store, "shop-api").await;
    assert!(
        targets.slack_bodies().await.is_empty(),
        "dispatched and running are not told"
    );
    let done = store.transition(r.id, &opened(1)).await.unwrap();
    // The reporter retries (its answer was lost): the store refuses, nothing is sent.
    let again = store.transition(r.id, &opened(1)).await;
    assert!(matches!(again, Err(StoreError::Conflict(_))), "{again:?}");

    let id = r.id;
    let key = format!("{id}:succeeded:1");
    let slack = targets.slack_bodies().await;
    assert_eq!(slack.len(), 1, "one Slack message");
    let body: Value = serde_json::from_slice(&slack[0].body).unwrap();
    assert_eq!(
        body,
        json!({"text": format!(
            "Pull request opened: *shop-api* in *prod*: `1a2b3c4` → `9f8e7d6`\n\
             Pull request: <https://github.com/acme/gitops/pull/42>\n\
             Record: <https://gitops.example.com/console/records/{id}|{id}>"
        )})
    );
    assert_eq!(
        slack[0].headers.get("idempotency-key").unwrap(),
        key.as_str()
    );

    let hook = targets.hook_bodies().await;
    assert_eq!(hook.len(), 1, "one webhook message");
    assert!(verified(&hook[0], SECRET), "the signature verifies");
    assert!(
        !verified(&hook[0], "another-secret"),
        "and only with the secret"
    );
    assert_eq!(
        hook[0].headers.get("idempotency-key").unwrap(),
        key.as_str()
    );
    assert_eq!(
        hook[0].headers.get("x-orchestrator-event").unwrap(),
        "pr_opened"
    );
    assert_eq!(
        hook[0].headers.get("content-type").unwrap(),
        "application/json"
    );
    let body: Value = serde_json::from_slice(&hook[0].body).unwrap();
    assert_eq!(
        body,
        json!({
            "event": "pr_opened",
            "idempotency_key": key,
            "record_id": id.to_string(),
            "record_url": format!("https://gitops.example.com/console/records/{id}"),
            "status": "succeeded",
            "attempt": 1,
            "source": "circleci_orb",
            "service": "shop-api",
            "environment": "prod",
            "image": "acme/shop-api",
            "old_tag": "1a2b3c4",
            "new_tag": "9f8e7d6",
            "rule": null,
            "entity": null,
            "pr_url": "https://github.com/acme/gitops/pull/42",
            "reason": null,
            "at": orchestrator_core::record::rfc3339::format(&done.updated_at),
        })
    );
    // A tampered body no longer verifies.
    let mut forged = hook[0].clone();
    forged.body = String::from_utf8(forged.body)
        .unwrap()
        .replacen("\"prod\"", "\"dev\"", 1)
        .into_bytes();
    assert!(!verified(&forged, SECRET));
}

#[tokio::test]
async fn a_failure_names_its_reason_and_unmatched_records_send_nothing() {
    let targets = Targets::new(200, Duration::ZERO).await;
    let (_d, inner) = store();
    let store = Notifying::new(
        inner,
        Arc::new(targets.notifier(ALL, Duration::from_secs(3))),
    );
    let other = running(&store, "billing").await;
    store
        .transition(
            other.id,
            &Transition::to(Status::Failed).reason("push refused"),
        )
        .await
        .unwrap();
    assert!(
        targets.slack_bodies().await.is_empty(),
        "billing matches no rule"
    );

    let r = running(&store, "shop-api").await;
    store
        .transition(
            r.id,
            &Transition::to(Status::Failed).reason("git push: non-fast-forward <@U123>"),
        )
        .await
        .unwrap();
    let slack = targets.slack_bodies().await;
    assert_eq!(slack.len(), 1);
    let body: Value = serde_json::from_slice(&slack[0].body).unwrap();
    assert_eq!(
        body["text"],
        format!(
            "Task failed: *shop-api* in *prod*: `?` → `9f8e7d6`\n\
             Reason: git push: non-fast-forward &lt;@U123&gt;\n\
             Record: <https://gitops.example.com/console/records/{id}|{id}>",
            id = r.id
        )
    );
    let hook: Value = serde_json::from_slice(&targets.hook_bodies().await[0].body).unwrap();
    assert_eq!(hook["reason"], "git push: non-fast-forward <@U123>");
    assert_eq!(hook["event"], "task_failed");
}

#[tokio::test]
async fn a_failing_or_hanging_target_leaves_the_outcome_intact_and_does_not_hold_the_work() {
    // Slack answers 500 to one store, and hangs for 30 s to the other.
    for (status, delay) in [(500, Duration::ZERO), (200, Duration::from_secs(30))] {
        let targets = Targets::new(status, delay).await;
        let (_d, inner) = store();
        let store = Notifying::new(
            inner.clone(),
            Arc::new(targets.notifier(ALL, Duration::from_millis(500))),
        );
        let r = running(&store, "shop-api").await;
        let t0 = Instant::now();
        let done = store.transition(r.id, &opened(1)).await.unwrap();
        assert!(t0.elapsed() < Duration::from_secs(3), "{:?}", t0.elapsed());
        assert_eq!(done.status, Status::Succeeded);
        let stored = inner.get(r.id).await.unwrap().unwrap();
        assert_eq!(stored.status, Status::Succeeded);
        assert_eq!(
            stored.pr_url.as_deref(),
            Some("https://github.com/acme/gitops/pull/42")
        );
        assert_eq!(stored.outcome.unwrap()["pr_created"], true);
        assert_eq!(
            targets.hook_bodies().await.len(),
            1,
            "the webhook still got its message"
        );
    }
}

#[tokio::test]
async fn the_delivery_report_never_shows_the_slack_url() {
    let targets = Targets::new(200, Duration::ZERO).await;
    let (_d, inner) = store();
    // A Slack URL on a port nobody listens on: the connection fails.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let notifier = Notifier::new(
        Rules::parse(ALL).unwrap(),
        Some(Secret::new(format!(
            "http://127.0.0.1:{port}/services/T0/B0/slack-canary"
        ))),
        Some(WebhookTarget {
            url: format!("{}/gitops-events", targets.hook.uri())
                .parse()
                .unwrap(),
            secret: Secret::new(SECRET),
        }),
        None,
        Duration::from_secs(1),
    )
    .unwrap();
    let r = running(&*inner, "shop-api").await;
    let r = inner.transition(r.id, &opened(1)).await.unwrap();
    let deliveries = notifier
        .send(orchestrator_notify::Event::PrOpened, &r)
        .await;
    assert_eq!(deliveries.len(), 2);
    let slack = deliveries
        .iter()
        .find(|d| d.target == orchestrator_notify::TargetKind::Slack)
        .unwrap();
    let err = slack.result.clone().unwrap_err();
    assert!(
        !err.contains("slack-canary") && !err.contains("127.0.0.1"),
        "{err}"
    );
    let hook: Value = serde_json::from_slice(&targets.hook_bodies().await[0].body).unwrap();
    assert_eq!(hook["record_url"], Value::Null, "no console configured");
}
