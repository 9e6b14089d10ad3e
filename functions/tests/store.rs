//! The behavioural store suite against both adapters: SQLite (embedded) and DynamoDB (moto).

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use orchestrator_core::store::dynamodb::{DynamoStore, TableNames};
use orchestrator_core::store::sqlite::SqliteStore;
use orchestrator_core::store::{RecordStore, suite};

#[tokio::test]
async fn sqlite_store_passes_the_suite() {
    let dir = tempfile::tempdir().unwrap();
    let n = AtomicUsize::new(0);
    suite::run_all(|| {
        let path = dir
            .path()
            .join(format!("db-{}.sqlite3", n.fetch_add(1, Ordering::SeqCst)));
        async move { SqliteStore::open(&path).unwrap() }
    })
    .await;
}

#[tokio::test]
async fn dynamodb_store_passes_the_suite_on_moto() {
    let Some(endpoint) = common::moto_endpoint("dynamodb_store_passes_the_suite_on_moto") else {
        return;
    };
    let config = common::moto_config(&endpoint).await;
    suite::run_all(|| {
        let config = config.clone();
        async move { common::dynamo_store(&config, "records").await.1 }
    })
    .await;
}

/// Several connections to one database file, as the local server and its task processes hold.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_concurrent_transitions_never_lose_an_outcome() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("records.sqlite3");
    let handles: Vec<Arc<dyn RecordStore>> = (0..8)
        .map(|_| Arc::new(SqliteStore::open(&path).unwrap()) as Arc<dyn RecordStore>)
        .collect();
    // Rounds are cheap here, and a store without its write transaction loses a race in only a
    // few percent of them (measured): 200 rounds make a miss negligible.
    suite::run_concurrent(handles, 200).await;
}

/// Several clients on one table, as concurrent Lambdas and tasks hold.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn dynamodb_concurrent_transitions_never_lose_an_outcome_on_moto() {
    let Some(endpoint) =
        common::moto_endpoint("dynamodb_concurrent_transitions_never_lose_an_outcome_on_moto")
    else {
        return;
    };
    let config = common::moto_config(&endpoint).await;
    let (table, _) = common::dynamo_store(&config, "concurrent").await;
    let handles: Vec<Arc<dyn RecordStore>> = (0..4)
        .map(|_| {
            Arc::new(DynamoStore::new(
                aws_sdk_dynamodb::Client::new(&config),
                TableNames::with_defaults(&table),
            )) as Arc<dyn RecordStore>
        })
        .collect();
    suite::run_concurrent(handles, 6).await;
}

#[tokio::test]
async fn dynamodb_listing_uses_query_on_an_index_never_scan() {
    // The adapter's source is the proof that matters: no Scan call anywhere in it.
    let src = include_str!("../core/src/store/dynamodb.rs");
    assert!(
        !src.contains(".scan()"),
        "the DynamoDB adapter must never Scan"
    );
    assert!(src.contains(".query()") && src.contains(".index_name("));
}
