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

/// Records every UpdateItem the adapter sends: which attributes its expressions name.
#[derive(Debug, Default, Clone)]
struct UpdateItemAttributes(Arc<std::sync::Mutex<Vec<std::collections::BTreeSet<String>>>>);

impl aws_sdk_dynamodb::config::Intercept for UpdateItemAttributes {
    fn name(&self) -> &'static str {
        "UpdateItemAttributes"
    }

    fn read_before_execution(
        &self,
        context: &aws_sdk_dynamodb::config::interceptors::BeforeSerializationInterceptorContextRef<
            '_,
        >,
        _cfg: &mut aws_sdk_dynamodb::config::ConfigBag,
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        use aws_sdk_dynamodb::operation::update_item::UpdateItemInput;
        if let Some(input) = context.input().downcast_ref::<UpdateItemInput>() {
            let mut names: std::collections::BTreeSet<String> = input
                .key()
                .into_iter()
                .flat_map(|k| k.keys().cloned())
                .collect();
            names.extend(
                input
                    .expression_attribute_names()
                    .into_iter()
                    .flat_map(|n| n.values().cloned()),
            );
            // Attribute names written literally in the expressions would escape the map above.
            let exprs = format!(
                "{} {}",
                input.update_expression().unwrap_or_default(),
                input.condition_expression().unwrap_or_default()
            );
            for word in exprs.split(|c: char| !(c.is_alphanumeric() || "_#:".contains(c))) {
                let literal = !word.is_empty()
                    && !word.starts_with('#')
                    && !word.starts_with(':')
                    && !matches!(word, "SET" | "AND" | "OR" | "NOT" | "REMOVE");
                if literal {
                    names.insert(word.to_owned());
                }
            }
            self.0.lock().unwrap().push(names);
        }
        Ok(())
    }
}

/// The IAM condition in template.yaml lets every UpdateItem touch `id`, `status` and `doc` only
/// (never `expires_at`, the dedupe key or an index key): every UpdateItem the adapter sends, for a
/// status change and for a redaction, names no other attribute.
#[tokio::test]
async fn dynamodb_updates_touch_only_the_attributes_iam_allows() {
    let Some(endpoint) = common::moto_endpoint("dynamodb_updates_touch_only_the_attributes") else {
        return;
    };
    let config = common::moto_config(&endpoint).await;
    let seen = UpdateItemAttributes::default();
    let client = aws_sdk_dynamodb::Client::from_conf(
        aws_sdk_dynamodb::config::Builder::from(&config)
            .interceptor(seen.clone())
            .build(),
    );
    let table = common::unique_name("iam-attrs");
    let store = DynamoStore::new(client, TableNames::with_defaults(&table)).with_retention(400);
    store.create_table().await.unwrap();
    let mut r = orchestrator_core::Record::received(
        orchestrator_core::Source::CircleciOrb,
        serde_json::json!({"a": 1}),
        None,
    );
    r.dedupe_key = Some("k".into());
    store.create(&r).await.unwrap();
    use orchestrator_core::Status;
    use orchestrator_core::store::Transition;
    store
        .transition(r.id, &Transition::to(Status::Dispatched).task_arn("arn:t"))
        .await
        .unwrap();
    let mut done = Transition::to(Status::Failed).reason("x");
    done.outcome = Some(serde_json::json!({"o": 1}));
    store.transition(r.id, &done).await.unwrap();
    store.redact(r.id, "admin-token").await.unwrap();
    let seen = seen.0.lock().unwrap().clone();
    assert_eq!(seen.len(), 3, "two transitions and a redaction: {seen:?}");
    let allowed: std::collections::BTreeSet<String> =
        ["id", "status", "doc"].map(str::to_owned).into();
    for names in &seen {
        assert!(
            names.is_subset(&allowed),
            "{names:?} is not within {allowed:?}"
        );
    }
}
