//! The behavioural suite every [`RecordStore`] adapter must pass. Each adapter's integration test
//! calls [`run_all`] with a factory that returns an empty store.

use std::future::Future;

use super::{Created, ListQuery, RecordStore, StoreError, Transition, cursor};
use crate::record::{Job, Record, RecordId, Source, Status};

fn job(service: &str) -> Job {
    Job::parse(
        service,
        &format!("acme/{service}"),
        "dev",
        "8f59df978e3fa133a2ee39ff66b3382342ce958c",
    )
    .expect("a valid job")
}

fn record(service: &str) -> Record {
    Record::received(
        Source::CircleciOrb,
        serde_json::json!({"reponame": service, "extra": {"kept": true}}),
        Some(job(service)),
    )
}

/// Runs every check against stores made by `fresh`.
pub async fn run_all<S, F, Fut>(fresh: F)
where
    S: RecordStore,
    F: Fn() -> Fut,
    Fut: Future<Output = S>,
{
    create_then_get_round_trips(&fresh().await).await;
    get_missing_is_none(&fresh().await).await;
    dedupe_key_returns_the_first_record(&fresh().await).await;
    transitions_follow_the_state_machine(&fresh().await).await;
    transition_of_missing_record_is_not_found(&fresh().await).await;
    delete_removes_and_releases_the_dedupe_key(&fresh().await).await;
    list_is_newest_first_and_paginates(&fresh().await).await;
    list_filters_by_service_status_and_source(&fresh().await).await;
}

pub async fn create_then_get_round_trips(store: &dyn RecordStore) {
    let r = record("billing");
    assert_eq!(store.create(&r).await.unwrap(), Created::New);
    let got = store.get(r.id).await.unwrap().expect("record just written");
    assert_eq!(got, r);
    assert_eq!(got.payload["extra"]["kept"], serde_json::json!(true));
}

pub async fn get_missing_is_none(store: &dyn RecordStore) {
    assert_eq!(store.get(RecordId::new()).await.unwrap(), None);
}

pub async fn dedupe_key_returns_the_first_record(store: &dyn RecordStore) {
    let mut first = record("billing");
    first.dedupe_key = Some("orb:billing:231:build:success".into());
    assert_eq!(store.create(&first).await.unwrap(), Created::New);
    let mut again = record("billing");
    again.dedupe_key = first.dedupe_key.clone();
    match store.create(&again).await.unwrap() {
        Created::Duplicate(existing) => assert_eq!(existing.id, first.id),
        Created::New => panic!("a second record with the same dedupe key was written"),
    }
    assert_eq!(
        store.get(again.id).await.unwrap(),
        None,
        "the duplicate must not be stored"
    );
}

pub async fn transitions_follow_the_state_machine(store: &dyn RecordStore) {
    let r = record("billing");
    store.create(&r).await.unwrap();
    let d = store
        .transition(
            r.id,
            &Transition::to(Status::Dispatched).task_arn("arn:aws:ecs:task/1"),
        )
        .await
        .unwrap();
    assert_eq!(d.status, Status::Dispatched);
    assert_eq!(d.task_arn.as_deref(), Some("arn:aws:ecs:task/1"));
    assert!(d.updated_at >= r.updated_at);

    let done = store
        .transition(r.id, &Transition::to(Status::Succeeded).reason("pr opened"))
        .await
        .unwrap();
    assert_eq!(done.status, Status::Succeeded);

    // A late "running" must not overwrite the outcome.
    let err = store
        .transition(r.id, &Transition::to(Status::Running))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");
    let stored = store.get(r.id).await.unwrap().unwrap();
    assert_eq!(stored.status, Status::Succeeded);
    assert_eq!(stored.status_reason.as_deref(), Some("pr opened"));
    assert_eq!(stored.task_arn.as_deref(), Some("arn:aws:ecs:task/1"));
}

pub async fn transition_of_missing_record_is_not_found(store: &dyn RecordStore) {
    let id = RecordId::new();
    let err = store
        .transition(id, &Transition::to(Status::Dispatched))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::NotFound(x) if x == id), "{err:?}");
}

pub async fn delete_removes_and_releases_the_dedupe_key(store: &dyn RecordStore) {
    let mut r = record("billing");
    r.dedupe_key = Some("k-1".into());
    store.create(&r).await.unwrap();
    assert!(store.delete(r.id).await.unwrap());
    assert!(!store.delete(r.id).await.unwrap());
    assert_eq!(store.get(r.id).await.unwrap(), None);
    let mut again = record("billing");
    again.dedupe_key = Some("k-1".into());
    assert_eq!(store.create(&again).await.unwrap(), Created::New);
}

pub async fn list_is_newest_first_and_paginates(store: &dyn RecordStore) {
    let mut ids = Vec::new();
    for i in 0..7 {
        let r = record(&format!("svc-{}", i % 2));
        ids.push(r.id);
        store.create(&r).await.unwrap();
    }
    ids.reverse();
    let mut seen = Vec::new();
    let mut after = None;
    for _ in 0..10 {
        let page = store
            .list(&ListQuery {
                limit: 3,
                after,
                ..ListQuery::default()
            })
            .await
            .unwrap();
        assert!(page.records.len() <= 3);
        seen.extend(page.records.iter().map(|r| r.id));
        match page.next_cursor {
            Some(c) => after = Some(cursor::decode(&c).unwrap()),
            None => break,
        }
    }
    assert_eq!(seen, ids, "every record once, newest first");
}

pub async fn list_filters_by_service_status_and_source(store: &dyn RecordStore) {
    let a = record("alpha");
    let b = record("beta");
    let c = record("alpha");
    for r in [&a, &b, &c] {
        store.create(r).await.unwrap();
    }
    store
        .transition(
            c.id,
            &Transition::to(Status::Ignored).reason("build failed"),
        )
        .await
        .unwrap();

    let ids = |p: super::Page| p.records.into_iter().map(|r| r.id).collect::<Vec<_>>();
    let q = |service: Option<&str>, status: Option<Status>, source: Option<Source>| ListQuery {
        service: service.map(str::to_owned),
        status,
        source,
        ..ListQuery::default()
    };
    assert_eq!(
        ids(store.list(&q(Some("alpha"), None, None)).await.unwrap()),
        vec![c.id, a.id]
    );
    assert_eq!(
        ids(store
            .list(&q(None, Some(Status::Ignored), None))
            .await
            .unwrap()),
        vec![c.id]
    );
    assert_eq!(
        ids(store
            .list(&q(Some("alpha"), Some(Status::Received), None))
            .await
            .unwrap()),
        vec![a.id]
    );
    assert_eq!(
        ids(store
            .list(&q(None, None, Some(Source::CircleciOrb)))
            .await
            .unwrap()),
        vec![c.id, b.id, a.id]
    );
    assert!(
        store
            .list(&q(None, None, Some(Source::Port)))
            .await
            .unwrap()
            .records
            .is_empty()
    );
    assert!(
        store
            .list(&q(Some("gamma"), None, None))
            .await
            .unwrap()
            .records
            .is_empty()
    );
}
