//! The behavioural store suite against both adapters: SQLite (embedded) and DynamoDB (moto).

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};

use orchestrator_core::store::dynamodb::{DynamoStore, TableNames};
use orchestrator_core::store::sqlite::SqliteStore;
use orchestrator_core::store::suite;

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
    let client = aws_sdk_dynamodb::Client::new(&config);
    suite::run_all(|| {
        let client = client.clone();
        async move {
            let store = DynamoStore::new(
                client,
                TableNames::with_defaults(common::unique_name("records")),
            );
            store.create_table().await.unwrap();
            store
        }
    })
    .await;
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
