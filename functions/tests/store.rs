//! The behavioural store suite against both adapters: SQLite (embedded) and DynamoDB (moto).

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};

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
    suite::run_all(|| {
        let config = config.clone();
        async move { common::dynamo_store(&config, "records").await.1 }
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
