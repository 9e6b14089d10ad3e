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
    transition_from_a_stale_copy_decides_on_the_stored_record(&fresh().await).await;
    transition_of_missing_record_is_not_found(&fresh().await).await;
    attempts_are_guarded_and_every_move_is_in_the_history(&fresh().await).await;
    redaction_keeps_a_tombstone_and_the_dedupe_key(&fresh().await).await;
    an_oversized_report_is_capped_not_refused(&fresh().await).await;
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

/// `transition_from` with the record just written changes it; with a copy someone has written
/// over since, it decides on what is stored (never writes the stale copy back).
pub async fn transition_from_a_stale_copy_decides_on_the_stored_record(store: &dyn RecordStore) {
    let r = record("billing");
    store.create(&r).await.unwrap();
    let d = store
        .transition_from(
            &r,
            &Transition::to(Status::Dispatched).task_arn("arn:aws:ecs:task/1"),
        )
        .await
        .unwrap();
    assert_eq!(d.status, Status::Dispatched);
    assert_eq!(store.get(r.id).await.unwrap().unwrap(), d);

    // `d` is current: the task's `running` lands on it.
    let running = store
        .transition_from(&d, &Transition::to(Status::Running))
        .await
        .unwrap();
    assert_eq!(running.status, Status::Running);
    assert_eq!(running.task_arn.as_deref(), Some("arn:aws:ecs:task/1"));

    // `r` and `d` are stale now: an outcome made from `r` lands on the stored `running` record
    // (its task ARN kept), and a `dispatched` made from `r` is refused, not written back.
    let done = store
        .transition_from(&r, &Transition::to(Status::Succeeded).reason("pr opened"))
        .await
        .unwrap();
    assert_eq!(done.status, Status::Succeeded);
    assert_eq!(done.task_arn.as_deref(), Some("arn:aws:ecs:task/1"));
    let err = store
        .transition_from(&d, &Transition::to(Status::Running))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");
    let err = store
        .transition_from(
            &r,
            &Transition::to(Status::Dispatched).task_arn("arn:aws:ecs:task/2"),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");
    assert_eq!(store.get(r.id).await.unwrap().unwrap(), done);
}

/// A new attempt is the current one + 1; a change made for another attempt is refused; a
/// retry leaves `dispatch_failed`; each status change and each note lands in the history.
pub async fn attempts_are_guarded_and_every_move_is_in_the_history(store: &dyn RecordStore) {
    let r = record("billing");
    store.create(&r).await.unwrap();
    assert_eq!(r.attempt, 1);
    let failed = store
        .transition(
            r.id,
            &Transition {
                retry_at: Some(Some(crate::record::now())),
                ..Transition::to(Status::DispatchFailed)
                    .reason("capacity")
                    .at_attempt(1)
            },
        )
        .await
        .unwrap();
    assert!(failed.retry_at.is_some() && !failed.is_settled());
    // Attempt 3 is not the next one; attempt 2 is.
    for bad in [1, 3] {
        let err = store
            .transition(
                r.id,
                &Transition {
                    attempt: Some(bad),
                    ..Transition::default().at_attempt(1)
                },
            )
            .await
            .unwrap_err();
        assert!(
            matches!(err, StoreError::Superseded { current: 1, .. }),
            "{err:?}"
        );
    }
    let second = store
        .transition(
            r.id,
            &Transition {
                attempt: Some(2),
                ..Transition::default().at_attempt(1).note("retrying")
            },
        )
        .await
        .unwrap();
    assert_eq!((second.attempt, second.status), (2, Status::DispatchFailed));
    // The first attempt's launch, recorded late, is refused.
    let err = store
        .transition(
            r.id,
            &Transition::to(Status::Dispatched)
                .task_arn("arn:task/old")
                .at_attempt(1),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(err, StoreError::Superseded { current: 2, got: 1 }),
        "{err:?}"
    );
    let dispatched = store
        .transition(
            r.id,
            &Transition::to(Status::Dispatched)
                .task_arn("arn:task/new")
                .at_attempt(2),
        )
        .await
        .unwrap();
    assert_eq!(
        dispatched.retry_at, None,
        "a launch clears the pending retry"
    );
    let stored = store.get(r.id).await.unwrap().unwrap();
    assert_eq!(stored, dispatched);
    let moves: Vec<_> = stored
        .history
        .iter()
        .map(|h| (h.status, h.attempt, h.note.as_deref()))
        .collect();
    assert_eq!(
        moves,
        [
            (Status::DispatchFailed, 1, Some("capacity")),
            (Status::DispatchFailed, 2, Some("retrying")),
            (Status::Dispatched, 2, None),
        ]
    );
}

pub async fn transition_of_missing_record_is_not_found(store: &dyn RecordStore) {
    let id = RecordId::new();
    let err = store
        .transition(id, &Transition::to(Status::Dispatched))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::NotFound(x) if x == id), "{err:?}");
}

pub async fn redaction_keeps_a_tombstone_and_the_dedupe_key(store: &dyn RecordStore) {
    let mut r = record("billing");
    r.dedupe_key = Some("k-1".into());
    store.create(&r).await.unwrap();

    // A record whose task may be running cannot be redacted: received, dispatched, running.
    for (status, change) in [
        (Status::Received, None),
        (
            Status::Dispatched,
            Some(Transition::to(Status::Dispatched).task_arn("arn:task/1")),
        ),
        (Status::Running, Some(Transition::to(Status::Running))),
    ] {
        if let Some(c) = change {
            store.transition(r.id, &c).await.unwrap();
        }
        let err = store.redact(r.id, "admin-token").await.unwrap_err();
        assert!(
            matches!(err, StoreError::InFlight { status: s, .. } if s == status),
            "{status}: {err:?}"
        );
    }
    let mut outcome = Transition::to(Status::Failed).reason("step 2 failed");
    outcome.outcome = Some(serde_json::json!({"output": "echoes the payload: billing"}));
    let done = store.transition(r.id, &outcome).await.unwrap();
    assert_eq!(store.get(r.id).await.unwrap().unwrap().payload, r.payload);

    let tomb = store.redact(r.id, "admin-token").await.unwrap();
    assert_eq!(tomb.payload, serde_json::Value::Null);
    assert_eq!(tomb.outcome, None);
    assert_eq!(tomb.redacted_by.as_deref(), Some("admin-token"));
    let at = tomb.redacted_at.expect("redacted_at");
    assert!(at >= done.updated_at);
    // The tombstone keeps what the audit needs.
    assert_eq!(
        (tomb.id, tomb.status, tomb.dedupe_key.as_deref()),
        (r.id, Status::Failed, Some("k-1"))
    );
    assert_eq!(tomb.status_reason.as_deref(), Some("step 2 failed"));
    assert_eq!(tomb.task_arn.as_deref(), Some("arn:task/1"));
    assert_eq!(tomb.job, r.job);
    assert_eq!(store.get(r.id).await.unwrap(), Some(tomb.clone()), "stored");

    // Redacting again changes nothing (the first author and time stay).
    let again = store
        .redact(r.id, "iam:arn:aws:iam::1:user/other")
        .await
        .unwrap();
    assert_eq!(again, tomb);

    assert_eq!(
        tomb.history.last().and_then(|h| h.note.as_deref()),
        Some("redacted by admin-token"),
        "the redaction is in the history"
    );

    // A launch failure that the sweeper will retry cannot be redacted either; a final one can.
    let pending = record("billing");
    store.create(&pending).await.unwrap();
    let retry = Transition {
        retry_at: Some(Some(crate::record::now())),
        ..Transition::to(Status::DispatchFailed).reason("capacity")
    };
    store.transition(pending.id, &retry).await.unwrap();
    let err = store.redact(pending.id, "admin-token").await.unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::InFlight {
                status: Status::DispatchFailed,
                ..
            }
        ),
        "{err:?}"
    );
    let give_up = Transition {
        retry_at: Some(None),
        ..Transition::default().reason("capacity; gave up")
    };
    store.transition(pending.id, &give_up).await.unwrap();
    store.redact(pending.id, "admin-token").await.unwrap();

    // The dedupe key is still held: a replay is a duplicate of the tombstone.
    let mut replay = record("billing");
    replay.dedupe_key = Some("k-1".into());
    match store.create(&replay).await.unwrap() {
        Created::Duplicate(existing) => assert_eq!(*existing, tomb),
        Created::New => panic!("a replay of a redacted delivery was written as new"),
    }
    assert_eq!(store.get(replay.id).await.unwrap(), None);

    let missing = RecordId::new();
    assert!(matches!(
        store.redact(missing, "admin-token").await,
        Err(StoreError::NotFound(x)) if x == missing
    ));
}

/// A large record (a 150 KiB payload) and a task report of 1 MiB: the success is recorded (the
/// outcome capped), never refused for the item's size. (150 KiB, not the intake's 256 KiB:
/// moto's item-size check during UpdateItem counts the replaced `doc` twice, old and new, which
/// DynamoDB does not.)
pub async fn an_oversized_report_is_capped_not_refused(store: &dyn RecordStore) {
    let mut r = record("billing");
    r.payload = serde_json::json!({"reponame": "billing", "big": "p".repeat(150 * 1024)});
    store.create(&r).await.unwrap();
    store
        .transition(r.id, &Transition::to(Status::Dispatched))
        .await
        .unwrap();
    let mut done = Transition::to(Status::Succeeded).reason("r".repeat(100 * 1024));
    done.outcome =
        Some(serde_json::json!({"outcome": "succeeded", "output": "o".repeat(1024 * 1024)}));
    let stored = store.transition(r.id, &done).await.unwrap();
    assert_eq!(stored.status, Status::Succeeded);
    let note = stored.history.last().unwrap().note.as_deref().unwrap();
    assert!(
        note.len() <= super::MAX_NOTE_BYTES + '…'.len_utf8(),
        "history notes are capped"
    );
    let outcome = stored.outcome.clone().expect("an outcome");
    assert!(outcome.to_string().len() <= super::MAX_OUTCOME_BYTES);
    assert_eq!(outcome["outcome"], "succeeded");
    assert!(
        outcome[super::TRUNCATED_MARKER]["original_bytes"]
            .as_u64()
            .unwrap()
            > 1024 * 1024
    );
    assert_eq!(store.get(r.id).await.unwrap().unwrap(), stored);
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

/// How many writers race in each round of a concurrency check (one record per round).
const WRITERS: usize = 12;

/// Runs the concurrency checks. `handles` are several handles on one empty store, each with its
/// own connection where the adapter has one (SQLite: one file opened several times, as the local
/// server and the task processes it starts do; DynamoDB: several clients on one table). Each
/// check races `rounds` times: a race is not lost every time, so a store that can lose an
/// outcome must get several chances to show it.
pub async fn run_concurrent(handles: Vec<std::sync::Arc<dyn RecordStore>>, rounds: usize) {
    assert!(!handles.is_empty(), "no store handle");
    concurrent_final_transitions_have_one_winner(&handles, rounds).await;
    concurrent_versioned_updates_keep_the_newest(&handles, rounds).await;
}

/// Starts `WRITERS` transitions of record `id` at once (released together by a barrier), writer
/// `i` on handle `i % handles.len()` with the change `change(i)`; their results in writer order.
async fn race(
    handles: &[std::sync::Arc<dyn RecordStore>],
    id: RecordId,
    change: impl Fn(usize) -> Transition,
) -> Vec<Result<Record, StoreError>> {
    let barrier = std::sync::Arc::new(tokio::sync::Barrier::new(WRITERS));
    let writers: Vec<_> = (0..WRITERS)
        .map(|i| {
            let store = handles[i % handles.len()].clone();
            let barrier = barrier.clone();
            let change = change(i);
            tokio::spawn(async move {
                barrier.wait().await;
                store.transition(id, &change).await
            })
        })
        .collect();
    let mut results = Vec::with_capacity(WRITERS);
    for w in writers {
        results.push(w.await.expect("writer task"));
    }
    results
}

/// A record moved to `Running`, ready for the race.
async fn running_record(store: &dyn RecordStore) -> Record {
    let r = record("billing");
    store.create(&r).await.unwrap();
    for to in [Status::Dispatched, Status::Running] {
        store.transition(r.id, &Transition::to(to)).await.unwrap();
    }
    r
}

/// Writers race to end a running record, half `Succeeded`, half `Failed`, each with its own
/// reason and outcome: exactly one wins, every other one is refused by the state machine, and
/// the stored record is the winner's, whole.
pub async fn concurrent_final_transitions_have_one_winner(
    handles: &[std::sync::Arc<dyn RecordStore>],
    rounds: usize,
) {
    for round in 0..rounds {
        let r = running_record(handles[0].as_ref()).await;
        let results = race(handles, r.id, |i| Transition {
            outcome: Some(serde_json::json!({ "writer": i })),
            ..Transition::to(if i % 2 == 0 {
                Status::Succeeded
            } else {
                Status::Failed
            })
            .reason(format!("writer {i}"))
        })
        .await;
        let winners: Vec<(usize, &Record)> = results
            .iter()
            .enumerate()
            .filter_map(|(i, r)| r.as_ref().ok().map(|r| (i, r)))
            .collect();
        assert_eq!(
            winners.len(),
            1,
            "round {round}: exactly one final status may be written, got {:?}",
            winners
                .iter()
                .map(|(i, r)| (i, r.status))
                .collect::<Vec<_>>()
        );
        let (winner, written) = winners[0];
        for (i, result) in results.iter().enumerate().filter(|(i, _)| *i != winner) {
            match result {
                Err(StoreError::Conflict(e)) => assert_eq!(e.from, written.status, "writer {i}"),
                other => panic!("round {round}, writer {i}: expected a conflict, got {other:?}"),
            }
        }
        let stored = handles[0].get(r.id).await.unwrap().unwrap();
        assert_eq!(
            &stored, written,
            "round {round}: the winner's record is stored"
        );
        assert_eq!(stored.status_reason, Some(format!("writer {winner}")));
        assert_eq!(
            stored.outcome,
            Some(serde_json::json!({ "writer": winner }))
        );
    }
}

/// Writers race to apply ECS events with versions 1..=`WRITERS` (no status change), each with
/// its own reason and stop details. An event may be refused as stale, and on DynamoDB a writer
/// may give up after losing too many times; but no accepted event may be lost: the stored
/// record is the one of the newest accepted event, whole.
pub async fn concurrent_versioned_updates_keep_the_newest(
    handles: &[std::sync::Arc<dyn RecordStore>],
    rounds: usize,
) {
    let (mut accepted_total, mut stale, mut gave_up) = (0, 0, 0);
    for round in 0..rounds {
        let r = running_record(handles[0].as_ref()).await;
        let version = |i: usize| i64::try_from(i + 1).unwrap();
        let results = race(handles, r.id, |i| Transition {
            task_version: Some(version(i)),
            task_stop: Some(serde_json::json!({ "event": version(i) })),
            reason: Some(format!("event {}", version(i))),
            ..Transition::default()
        })
        .await;
        let mut accepted = Vec::new();
        for (i, result) in results.iter().enumerate() {
            match result {
                Ok(written) => {
                    assert_eq!(written.task_version, Some(version(i)));
                    accepted.push(version(i));
                }
                Err(StoreError::Stale { current, got }) => {
                    assert_eq!(*got, version(i));
                    assert!(current >= got, "writer {i}: {current} < {got}");
                    stale += 1;
                }
                Err(StoreError::Backend(m)) if m.contains("gave up") => gave_up += 1,
                Err(e) => panic!("round {round}, writer {i}: {e:?}"),
            }
        }
        let newest = *accepted
            .iter()
            .max()
            .unwrap_or_else(|| panic!("round {round}: no event was accepted: {results:?}"));
        let stored = handles[0].get(r.id).await.unwrap().unwrap();
        assert_eq!(
            stored.task_version,
            Some(newest),
            "round {round}: accepted {accepted:?}, but the stored version is not the newest"
        );
        assert_eq!(
            stored.task_stop,
            Some(serde_json::json!({ "event": newest }))
        );
        assert_eq!(stored.status_reason, Some(format!("event {newest}")));
        assert_eq!(stored.status, Status::Running);
        accepted_total += accepted.len();
    }
    println!(
        "{rounds} rounds of {WRITERS} versioned writers: {accepted_total} accepted, {stale} stale, {gave_up} gave up"
    );
}
