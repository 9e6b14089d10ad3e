//! Faults moto cannot produce, injected with aws-smithy-mocks: RunTask answering 200 with
//! `failures` and no task, RunTask errors, and DynamoDB errors. The Router must record the
//! failure, answer with the right status and a JSON error, and leave no half-written state.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_ecs::operation::run_task::{RunTaskError, RunTaskOutput};
use aws_sdk_ecs::types::{Failure, Task};
use aws_smithy_mocks::{RuleMode, mock, mock_client};
use axum::body::Body;
use axum::http::{Request, StatusCode};
use orchestrator::dispatch::RetryPolicy;
use orchestrator::launch::TaskLauncher;
use orchestrator::launch::ecs::{EcsLauncher, EcsSettings};
use orchestrator::{AppState, IntakeSettings, app};
use orchestrator_core::store::dynamodb::{DynamoStore, TableNames};
use orchestrator_core::store::sqlite::SqliteStore;
use orchestrator_core::store::{ListQuery, RecordStore};
use orchestrator_core::{Job, LaunchContract, RecordId};
use serde_json::Value;
use tower::ServiceExt;

fn settings() -> EcsSettings {
    EcsSettings {
        cluster: "orchestrator".into(),
        task_definition: "gitops-task:3".into(),
        subnets: vec!["subnet-1".into()],
        security_groups: vec!["sg-1".into()],
        assign_public_ip: false,
        container_name: "gitops-task".into(),
    }
}

fn contract() -> LaunchContract {
    LaunchContract::gitops_pr(
        RecordId::new(),
        Job::parse("svc", "acme/svc", "dev", "abcdef0").unwrap(),
    )
}

async fn post_orb(state: AppState) -> (StatusCode, Value) {
    let req = Request::post("/pullrequests")
        .header("content-type", "application/json")
        .body(Body::from(common::fixture("circleci-orb/success.json")))
        .unwrap();
    let resp = app(state).oneshot(req).await.unwrap();
    let status = resp.status();
    let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX)
        .await
        .unwrap();
    (status, serde_json::from_slice(&bytes).unwrap())
}

#[tokio::test]
async fn run_task_request_has_token_network_and_overrides() {
    let c = contract().with_attempt(3);
    let expected_token = format!("{}-3", c.record_id);
    let expected_started_by = c.record_id.to_string();
    let rule = mock!(aws_sdk_ecs::Client::run_task)
        .match_requests(move |r| {
            let vpc = r
                .network_configuration()
                .and_then(|n| n.awsvpc_configuration())
                .unwrap();
            r.client_token() == Some(expected_token.as_str())
                && r.launch_type() == Some(&aws_sdk_ecs::types::LaunchType::Fargate)
                && r.cluster() == Some("orchestrator")
                && r.task_definition() == Some("gitops-task:3")
                && r.started_by() == Some(expected_started_by.as_str())
                && vpc.subnets() == ["subnet-1"]
                && vpc.security_groups() == ["sg-1"]
                && vpc.assign_public_ip() == Some(&aws_sdk_ecs::types::AssignPublicIp::Disabled)
                && r.overrides().unwrap().container_overrides()[0]
                    .environment()
                    .len()
                    == 7
        })
        .then_output(|| {
            RunTaskOutput::builder()
                .tasks(Task::builder().task_arn("arn:task/1").build())
                .build()
        });
    let client = mock_client!(aws_sdk_ecs, [&rule]);
    let launched = EcsLauncher::new(client, settings())
        .launch(&c)
        .await
        .unwrap();
    assert_eq!(launched.task_arn, "arn:task/1");
    assert_eq!(rule.num_calls(), 1);
}

fn capacity_failure() -> RunTaskOutput {
    RunTaskOutput::builder()
        .failures(
            Failure::builder()
                .arn("arn:aws:ecs:us-east-1:1:cluster/orchestrator")
                .reason("Capacity is unavailable at this time. Please try again later or in a different availability zone")
                .build(),
        )
        .build()
}

fn started() -> RunTaskOutput {
    RunTaskOutput::builder()
        .tasks(Task::builder().task_arn("arn:task/1").build())
        .build()
}

/// Fast retries so the tests take milliseconds.
fn fast_retry() -> IntakeSettings {
    IntakeSettings {
        retry: RetryPolicy {
            max_attempts: 4,
            initial_backoff: Duration::from_millis(5),
            budget: Duration::from_secs(5),
            retry_after: Duration::from_secs(30),
            max_retry_delay: Duration::from_secs(300),
            give_up_after: Duration::from_secs(600),
        },
        ..IntakeSettings::default()
    }
}

fn sqlite_state(ecs: aws_sdk_ecs::Client, dir: &tempfile::TempDir) -> (AppState, Arc<SqliteStore>) {
    let store = Arc::new(SqliteStore::open(&SqliteStore::file_in(dir.path())).unwrap());
    let state = AppState {
        store: store.clone(),
        launcher: Arc::new(EcsLauncher::new(ecs, settings())),
        intake: Arc::new(fast_retry()),
        access: common::access(),
        console: Default::default(),
    };
    (state, store)
}

/// Records every client token RunTask was called with.
fn token_recorder() -> (
    Arc<Mutex<Vec<String>>>,
    impl Fn(&aws_sdk_ecs::operation::run_task::RunTaskInput) -> bool + Send + Sync + 'static,
) {
    let tokens = Arc::new(Mutex::new(Vec::new()));
    let t = tokens.clone();
    (
        tokens,
        move |r: &aws_sdk_ecs::operation::run_task::RunTaskInput| {
            t.lock()
                .unwrap()
                .push(r.client_token().unwrap_or_default().to_owned());
            true
        },
    )
}

#[tokio::test]
async fn capacity_failures_are_retried_with_the_attempts_client_token() {
    let (tokens, matcher) = token_recorder();
    let rule = mock!(aws_sdk_ecs::Client::run_task)
        .match_requests(matcher)
        .sequence()
        .output(capacity_failure)
        .times(2)
        .output(started)
        .build();
    let dir = tempfile::tempdir().unwrap();
    let (state, store) = sqlite_state(mock_client!(aws_sdk_ecs, [&rule]), &dir);
    let (status, body) = post_orb(state).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert_eq!(body["status"], "dispatched");
    assert_eq!(rule.num_calls(), 3);
    let id = body["id"].as_str().unwrap();
    assert_eq!(
        *tokens.lock().unwrap(),
        vec![format!("{id}-1"); 3],
        "one token per launch attempt: at most one task"
    );
    let rec = store.get(id.parse().unwrap()).await.unwrap().unwrap();
    assert_eq!(rec.task_arn.as_deref(), Some("arn:task/1"));
}

#[tokio::test]
async fn capacity_that_does_not_come_back_in_the_request_is_retried_later() {
    let rule = mock!(aws_sdk_ecs::Client::run_task)
        .sequence()
        .output(capacity_failure)
        .repeatedly()
        .build();
    let dir = tempfile::tempdir().unwrap();
    let (state, store) = sqlite_state(mock_client!(aws_sdk_ecs, [&rule]), &dir);
    let before = orchestrator_core::record::now();
    let (status, body) = post_orb(state).await;
    // Accepted: the event is recorded and the sweeper launches it again later.
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert_eq!(body["status"], "dispatch_failed");
    assert_eq!(rule.num_calls(), 4);
    let id = body["id"].as_str().unwrap().parse().unwrap();
    let rec = store.get(id).await.unwrap().unwrap();
    let retry_at = rec.retry_at.expect("a retry is pending");
    let wait = (retry_at - before).num_seconds();
    assert!(
        (29..=31).contains(&wait),
        "first retry after 30 s, got {wait} s"
    );
    assert!(!rec.is_settled());
    let reason = rec.status_reason.unwrap();
    assert!(
        reason.contains("Capacity is unavailable")
            && reason.contains("after 4 call(s)")
            && reason.contains("launch attempt 1 failed, attempt 2 at"),
        "{reason}"
    );
}

#[tokio::test]
async fn failures_without_a_task_past_the_retry_window_end_dispatch_failed() {
    let rule = mock!(aws_sdk_ecs::Client::run_task)
        .sequence()
        .output(capacity_failure)
        .repeatedly()
        .build();
    let dir = tempfile::tempdir().unwrap();
    let (mut state, store) = sqlite_state(mock_client!(aws_sdk_ecs, [&rule]), &dir);
    let mut settings = fast_retry();
    settings.retry.give_up_after = Duration::ZERO;
    state.intake = Arc::new(settings);
    let (status, body) = post_orb(state).await;
    assert_eq!(status, StatusCode::BAD_GATEWAY, "{body}");
    assert_eq!(body["error"]["code"], "dispatch_failed");
    // AWS's text (here with an account and an ARN) stays out of the answer: the record says why.
    assert_eq!(
        body["error"]["message"],
        "the task could not be launched; the record (now `dispatch_failed`) says why"
    );
    assert!(!body.to_string().contains("arn:aws"), "{body}");
    assert_eq!(rule.num_calls(), 4);
    let id = body["record_id"].as_str().unwrap().parse().unwrap();
    let rec = store.get(id).await.unwrap().unwrap();
    assert_eq!(rec.status, orchestrator_core::Status::DispatchFailed);
    assert!(rec.is_settled(), "no retry pending: {rec:?}");
    let reason = rec.status_reason.unwrap();
    assert!(
        reason.contains("Capacity is unavailable")
            && reason.contains("after 4 call(s)")
            && reason.contains("gave up after 1 launch attempt(s) over 0 s"),
        "{reason}"
    );
}

#[tokio::test]
async fn missing_resources_are_not_retried() {
    let rule = mock!(aws_sdk_ecs::Client::run_task).then_output(|| {
        RunTaskOutput::builder()
            .failures(
                Failure::builder()
                    .arn("arn:aws:ecs:us-east-1:1:task-definition/gone:1")
                    .reason("MISSING")
                    .build(),
            )
            .build()
    });
    let dir = tempfile::tempdir().unwrap();
    let (state, store) = sqlite_state(mock_client!(aws_sdk_ecs, [&rule]), &dir);
    let (status, body) = post_orb(state).await;
    assert_eq!(status, StatusCode::BAD_GATEWAY, "{body}");
    assert_eq!(rule.num_calls(), 1);
    let id = body["record_id"].as_str().unwrap().parse().unwrap();
    let rec = store.get(id).await.unwrap().unwrap();
    assert!(rec.status_reason.unwrap().contains("MISSING"));
}

#[tokio::test]
async fn throttling_is_retried() {
    let rule = mock!(aws_sdk_ecs::Client::run_task)
        .sequence()
        .http_status(
            400,
            Some(r#"{"__type":"ThrottlingException","message":"Rate exceeded"}"#.to_owned()),
        )
        .output(started)
        .build();
    let dir = tempfile::tempdir().unwrap();
    let (state, _store) = sqlite_state(mock_client!(aws_sdk_ecs, [&rule]), &dir);
    let (status, body) = post_orb(state).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert_eq!(body["status"], "dispatched");
    assert_eq!(rule.num_calls(), 2);
}

#[tokio::test]
async fn a_throttled_launch_that_gives_up_says_so_in_one_line() {
    let rule = mock!(aws_sdk_ecs::Client::run_task)
        .sequence()
        .http_status(
            400,
            Some(r#"{"__type":"ThrottlingException","message":"Rate exceeded"}"#.to_owned()),
        )
        .repeatedly()
        .build();
    let dir = tempfile::tempdir().unwrap();
    let (mut state, store) = sqlite_state(mock_client!(aws_sdk_ecs, [&rule]), &dir);
    let mut settings = fast_retry();
    settings.retry.give_up_after = Duration::ZERO;
    state.intake = Arc::new(settings);
    let (status, body) = post_orb(state).await;
    assert_eq!(status, StatusCode::BAD_GATEWAY, "{body}");
    let id = body["record_id"].as_str().unwrap().parse().unwrap();
    let rec = store.get(id).await.unwrap().unwrap();
    // What failed and why, for a person: not the SDK's dump of the raw response.
    let reason = rec.status_reason.unwrap();
    assert!(
        reason.starts_with("RunTask failed: ThrottlingException: Rate exceeded (after ")
            && reason.contains(" call(s), ")
            && reason.contains("; gave up after 1 launch attempt(s) over ")
            && reason.len() < 160,
        "{reason}"
    );
}

#[tokio::test]
async fn a_record_left_received_is_dispatched_again_with_its_own_token() {
    // The crash case: the record was written, the process died before RunTask.
    let (tokens, matcher) = token_recorder();
    let rule = mock!(aws_sdk_ecs::Client::run_task)
        .match_requests(matcher)
        .then_output(started);
    // No task of the record is running: nothing to adopt.
    let none_live = mock!(aws_sdk_ecs::Client::list_tasks)
        .then_output(|| aws_sdk_ecs::operation::list_tasks::ListTasksOutput::builder().build());
    let dir = tempfile::tempdir().unwrap();
    let (state, store) = sqlite_state(
        mock_client!(aws_sdk_ecs, RuleMode::MatchAny, [&rule, &none_live]),
        &dir,
    );
    let stuck = orchestrator_core::Record::received(
        orchestrator_core::Source::CircleciOrb,
        serde_json::json!({}),
        contract().job,
    );
    store.create(&stuck).await.unwrap();
    let req = common::bearer(
        Request::post(format!("/pullrequests/{}/dispatch", stuck.id))
            .body(Body::empty())
            .unwrap(),
        common::ADMIN_TOKEN,
    );
    let resp = app(state.clone()).oneshot(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    assert_eq!(*tokens.lock().unwrap(), vec![format!("{}-2", stuck.id)]);
    assert_eq!(
        store.get(stuck.id).await.unwrap().unwrap().status,
        orchestrator_core::Status::Dispatched
    );
    // Once dispatched, it cannot be dispatched again.
    let req = common::bearer(
        Request::post(format!("/pullrequests/{}/dispatch", stuck.id))
            .body(Body::empty())
            .unwrap(),
        common::ADMIN_TOKEN,
    );
    let resp = app(state).oneshot(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::CONFLICT);
    assert_eq!(rule.num_calls(), 1);
}

#[tokio::test]
async fn a_run_task_error_is_classified() {
    let denied = mock!(aws_sdk_ecs::Client::run_task).then_error(|| {
        RunTaskError::AccessDeniedException(
            aws_sdk_ecs::types::error::AccessDeniedException::builder()
                .message("not authorized to perform: iam:PassRole")
                .build(),
        )
    });
    let err = EcsLauncher::new(mock_client!(aws_sdk_ecs, [&denied]), settings())
        .launch(&contract())
        .await
        .unwrap_err();
    assert!(!err.retryable, "{err:?}");
    assert!(err.reason.contains("iam:PassRole"), "{err:?}");
}

#[tokio::test]
async fn a_dynamodb_failure_answers_500_and_launches_nothing() {
    let put = mock!(aws_sdk_dynamodb::Client::transact_write_items).then_error(|| {
        TransactWriteItemsError::InternalServerError(
            aws_sdk_dynamodb::types::error::InternalServerError::builder()
                .message("boom")
                .build(),
        )
    });
    let put_plain = mock!(aws_sdk_dynamodb::Client::put_item)
        .then_error(|| PutItemError::unhandled("unexpected PutItem"));
    let ddb = mock_client!(aws_sdk_dynamodb, RuleMode::MatchAny, [&put, &put_plain]);
    let run = mock!(aws_sdk_ecs::Client::run_task).then_output(|| RunTaskOutput::builder().build());
    let ecs = mock_client!(aws_sdk_ecs, [&run]);
    let state = AppState {
        store: Arc::new(DynamoStore::new(ddb, TableNames::with_defaults("records"))),
        launcher: Arc::new(EcsLauncher::new(ecs, settings())),
        intake: Arc::new(IntakeSettings::default()),
        access: common::access(),
        console: Default::default(),
    };
    let (status, body) = post_orb(state).await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(body["error"]["code"], "internal");
    assert_eq!(
        body["error"]["message"], "internal error",
        "no internals leak: {body}"
    );
    assert_eq!(
        run.num_calls(),
        0,
        "nothing launched when the record could not be written"
    );
    assert!(put.num_calls() >= 1);
}

#[tokio::test]
async fn a_listing_never_scans() {
    // Any call other than Query fails this test: the mock client has only a Query rule.
    let query = mock!(aws_sdk_dynamodb::Client::query)
        .match_requests(|r| {
            r.index_name() == Some("by_status") && r.scan_index_forward() == Some(false)
        })
        .then_output(|| aws_sdk_dynamodb::operation::query::QueryOutput::builder().build());
    let ddb = mock_client!(aws_sdk_dynamodb, [&query]);
    let store = DynamoStore::new(ddb, TableNames::with_defaults("records"));
    let page = store
        .list(&ListQuery {
            status: Some(orchestrator_core::Status::Ignored),
            ..ListQuery::default()
        })
        .await
        .unwrap();
    assert!(page.records.is_empty() && page.next_cursor.is_none());
    assert_eq!(query.num_calls(), 1);
}

/// A dispatched record as DynamoDB holds it (`GetItem` answer), and its id.
fn dispatched_item() -> (
    RecordId,
    std::collections::HashMap<String, aws_sdk_dynamodb::types::AttributeValue>,
) {
    use aws_sdk_dynamodb::types::AttributeValue::S;
    let mut record = orchestrator_core::Record::received(
        orchestrator_core::Source::CircleciOrb,
        serde_json::json!({"reponame": "svc"}),
        None,
    );
    record.status = orchestrator_core::Status::Dispatched;
    let item = std::collections::HashMap::from([
        ("id".to_owned(), S(record.id.to_string())),
        ("kind".to_owned(), S("record".into())),
        ("status".to_owned(), S("dispatched".into())),
        ("source".to_owned(), S("circleci_orb".into())),
        ("doc".to_owned(), S(serde_json::to_string(&record).unwrap())),
    ]);
    (record.id, item)
}

/// Another writer changed the item between our read and our conditional write.
fn lost_race() -> aws_sdk_dynamodb::operation::update_item::UpdateItemError {
    aws_sdk_dynamodb::operation::update_item::UpdateItemError::ConditionalCheckFailedException(
        aws_sdk_dynamodb::types::error::ConditionalCheckFailedException::builder()
            .message("The conditional request failed")
            .build(),
    )
}

/// The transition's conditional write, as the adapter must send it: only if the item still is
/// what was read.
fn conditional_update() -> aws_smithy_mocks::RuleBuilder<
    aws_sdk_dynamodb::operation::update_item::UpdateItemInput,
    aws_sdk_dynamodb::operation::update_item::UpdateItemOutput,
    aws_sdk_dynamodb::operation::update_item::UpdateItemError,
> {
    mock!(aws_sdk_dynamodb::Client::update_item)
        .match_requests(|r| r.condition_expression() == Some("#st = :old AND #doc = :olddoc"))
}

/// The retry loop, deterministically: the first conditional write loses a race, the record is
/// read again and the second write lands.
#[tokio::test]
async fn a_transition_that_loses_a_race_reads_again_and_retries() {
    let (id, item) = dispatched_item();
    let get = mock!(aws_sdk_dynamodb::Client::get_item).then_output(move || {
        aws_sdk_dynamodb::operation::get_item::GetItemOutput::builder()
            .set_item(Some(item.clone()))
            .build()
    });
    let update = conditional_update()
        .sequence()
        .error(lost_race)
        .output(|| aws_sdk_dynamodb::operation::update_item::UpdateItemOutput::builder().build())
        .build();
    let ddb = mock_client!(aws_sdk_dynamodb, RuleMode::MatchAny, [&get, &update]);
    let store = DynamoStore::new(ddb, TableNames::with_defaults("records"));
    let written = store
        .transition(
            id,
            &orchestrator_core::store::Transition::to(orchestrator_core::Status::Running),
        )
        .await
        .unwrap();
    assert_eq!(written.status, orchestrator_core::Status::Running);
    assert_eq!((get.num_calls(), update.num_calls()), (2, 2));
}

/// The give-up path: every conditional write loses; after five attempts the transition fails
/// with a backend error rather than writing without the condition.
#[tokio::test]
async fn a_transition_that_keeps_losing_gives_up_after_five_attempts() {
    let (id, item) = dispatched_item();
    let get = mock!(aws_sdk_dynamodb::Client::get_item).then_output(move || {
        aws_sdk_dynamodb::operation::get_item::GetItemOutput::builder()
            .set_item(Some(item.clone()))
            .build()
    });
    let update = conditional_update().then_error(lost_race);
    let ddb = mock_client!(aws_sdk_dynamodb, RuleMode::MatchAny, [&get, &update]);
    let store = DynamoStore::new(ddb, TableNames::with_defaults("records"));
    let err = store
        .transition(
            id,
            &orchestrator_core::store::Transition::to(orchestrator_core::Status::Running),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(&err, orchestrator_core::store::StoreError::Backend(m)
            if m == &format!("record {id}: gave up after 5 concurrent updates")),
        "{err:?}"
    );
    assert_eq!((get.num_calls(), update.num_calls()), (5, 5));
}
