//! ECS task state changes applied to records: ordering, duplicates, and the task's own outcome.

mod common;

// `dispatched`: a dispatched orb record in the store; `event`: a recorded ECS state change for it.
use common::{dispatched_record as dispatched, ecs_event as event};
use orchestrator::lifecycle::{Applied, apply};
use orchestrator_core::Status;
use orchestrator_core::store::sqlite::SqliteStore;
use orchestrator_core::store::{RecordStore, Transition};

fn store() -> (tempfile::TempDir, SqliteStore) {
    let dir = tempfile::tempdir().unwrap();
    let s = SqliteStore::open(&SqliteStore::file_in(dir.path())).unwrap();
    (dir, s)
}

const CLUSTER: Option<&str> = Some("orchestrator");

#[tokio::test]
async fn running_then_stopped_without_report_fails_the_record_with_the_reason() {
    let (_d, store) = store();
    let r = dispatched(&store).await;
    assert_eq!(
        apply(
            &store,
            &event("task-state-change-running.json", &r, 3),
            CLUSTER
        )
        .await
        .unwrap(),
        Applied::Updated(Status::Running)
    );
    assert_eq!(
        apply(
            &store,
            &event("task-state-change-stopped.json", &r, 5),
            CLUSTER
        )
        .await
        .unwrap(),
        Applied::Updated(Status::Failed)
    );
    let rec = store.get(r.id).await.unwrap().unwrap();
    assert_eq!(rec.status, Status::Failed);
    let reason = rec.status_reason.unwrap();
    assert!(
        reason.contains("EssentialContainerExited") && reason.contains("exit code 1"),
        "{reason}"
    );
    assert_eq!(rec.task_stop.unwrap()["exit_code"], 1);
    assert_eq!(rec.task_version, Some(5));
}

#[tokio::test]
async fn duplicate_and_out_of_order_events_are_dropped() {
    let (_d, store) = store();
    let r = dispatched(&store).await;
    apply(
        &store,
        &event("task-state-change-stopped.json", &r, 5),
        CLUSTER,
    )
    .await
    .unwrap();
    // The RUNNING event (version 3) arrives late; then STOPPED is redelivered.
    for (name, v) in [
        ("task-state-change-running.json", 3),
        ("task-state-change-stopped.json", 5),
    ] {
        let applied = apply(&store, &event(name, &r, v), CLUSTER).await.unwrap();
        assert!(
            matches!(&applied, Applied::Skipped(why) if why.contains("stale")),
            "{name}: {applied:?}"
        );
    }
    assert_eq!(
        store.get(r.id).await.unwrap().unwrap().status,
        Status::Failed
    );
}

#[tokio::test]
async fn the_tasks_own_outcome_is_never_overwritten() {
    let (_d, store) = store();
    let r = dispatched(&store).await;
    // The task reported success itself before ECS said anything.
    store
        .transition(
            r.id,
            &Transition {
                to: Some(Status::Running),
                ..Transition::default()
            },
        )
        .await
        .unwrap();
    store
        .transition(
            r.id,
            &Transition {
                to: Some(Status::Succeeded),
                pr_url: Some("https://github.com/o/r/pull/7".into()),
                ..Transition::default()
            },
        )
        .await
        .unwrap();
    // A RUNNING event now only records its version: the status stays the task's.
    let late_running = apply(
        &store,
        &event("task-state-change-running.json", &r, 3),
        CLUSTER,
    )
    .await
    .unwrap();
    assert_eq!(late_running, Applied::Updated(Status::Succeeded));
    // STOPPED with exit code 0 only annotates.
    let mut stopped = event("task-state-change-stopped.json", &r, 5);
    stopped["detail"]["containers"][0]["exitCode"] = 0.into();
    assert_eq!(
        apply(&store, &stopped, CLUSTER).await.unwrap(),
        Applied::Updated(Status::Succeeded)
    );
    let rec = store.get(r.id).await.unwrap().unwrap();
    assert_eq!(
        (rec.status, rec.pr_url.as_deref()),
        (Status::Succeeded, Some("https://github.com/o/r/pull/7"))
    );
    assert_eq!(rec.task_stop.unwrap()["exit_code"], 0);
}

#[tokio::test]
async fn other_clusters_strangers_and_non_ecs_events_are_not_applied() {
    let (_d, store) = store();
    let r = dispatched(&store).await;
    let mut other = event("task-state-change-running.json", &r, 3);
    other["detail"]["clusterArn"] = "arn:aws:ecs:us-east-1:123456789012:cluster/other".into();
    assert!(matches!(
        apply(&store, &other, CLUSTER).await.unwrap(),
        Applied::Skipped(_)
    ));
    let mut stranger = event("task-state-change-running.json", &r, 3);
    stranger["detail"]["startedBy"] = "someone-else".into();
    assert!(matches!(
        apply(&store, &stranger, CLUSTER).await.unwrap(),
        Applied::Skipped(_)
    ));
    assert!(
        apply(&store, &serde_json::json!({"source": "aws.s3"}), CLUSTER)
            .await
            .is_err()
    );
    assert_eq!(
        store.get(r.id).await.unwrap().unwrap().status,
        Status::Dispatched
    );
}

/// A `received` record: written, its launch never recorded.
async fn received(store: &SqliteStore) -> orchestrator_core::Record {
    let job = orchestrator_core::Job::parse(
        "circleci-samples",
        "eddiewebb/circleci-samples",
        "dev",
        "8f59df9",
    )
    .unwrap();
    let r = orchestrator_core::Record::received(
        orchestrator_core::Source::CircleciOrb,
        serde_json::json!({}),
        Some(job),
    );
    store.create(&r).await.unwrap();
    r
}

#[tokio::test]
async fn the_task_of_an_unrecorded_launch_moves_a_received_record() {
    let (_d, store) = store();
    let r = received(&store).await;
    let running = event("task-state-change-running.json", &r, 2);
    assert_eq!(
        apply(&store, &running, CLUSTER).await.unwrap(),
        Applied::Updated(Status::Running)
    );
    let rec = store.get(r.id).await.unwrap().unwrap();
    assert_eq!(
        rec.task_arn.as_deref(),
        running["detail"]["taskArn"].as_str(),
        "the task named by ECS is recorded"
    );

    let r = received(&store).await;
    assert_eq!(
        apply(
            &store,
            &event("task-state-change-stopped.json", &r, 4),
            CLUSTER
        )
        .await
        .unwrap(),
        Applied::Updated(Status::Failed)
    );
}

#[tokio::test]
async fn events_of_a_superseded_attempt_change_nothing() {
    let (_d, store) = store();
    let r = received(&store).await;
    // Recovery started attempt 2; the event is of attempt 1's task (no ORCH_ATTEMPT: attempt 1).
    let bump = Transition {
        attempt: Some(2),
        ..Transition::default().at_attempt(1)
    };
    let before = store.transition(r.id, &bump).await.unwrap();
    for name in [
        "task-state-change-running.json",
        "task-state-change-stopped.json",
    ] {
        let applied = apply(&store, &event(name, &r, 7), CLUSTER).await.unwrap();
        assert!(
            matches!(&applied, Applied::Skipped(why) if why.contains("attempt 1") && why.contains("attempt 2")),
            "{applied:?}"
        );
    }
    assert_eq!(store.get(r.id).await.unwrap().unwrap(), before);

    // Attempt 2's task, started by record id, is applied.
    let mut current = event("task-state-change-running.json", &r, 1);
    current["detail"]["startedBy"] = r.id.to_string().into();
    current["detail"]["overrides"]["containerOverrides"][0]["environment"]
        .as_array_mut()
        .unwrap()
        .push(serde_json::json!({"name": "ORCH_ATTEMPT", "value": "2"}));
    assert_eq!(
        apply(&store, &current, CLUSTER).await.unwrap(),
        Applied::Updated(Status::Running)
    );
}
