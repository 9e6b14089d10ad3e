//! The DynamoDB adapter.
//!
//! Item layout (one table, string attributes):
//!
//! | attribute    | meaning                                                          |
//! |--------------|------------------------------------------------------------------|
//! | `id`         | partition key: the record id (UUID v7, sorts by time)            |
//! | `kind`       | always `record`; hash key of the `by_time` index                 |
//! | `service`    | hash key of the `by_service` index (absent: not in that index)   |
//! | `status`     | hash key of the `by_status` index                                |
//! | `source`     | filter attribute                                                 |
//! | `dedupe_key` | the delivery key, also held by a marker item `dedupe#<key>`      |
//! | `doc`        | the whole record as JSON: the source of truth                    |
//! | `expires_at` | epoch seconds: the table's TTL (retention), on the record and its marker |
//!
//! Every index uses `id` as its range key, so "newest first" is `ScanIndexForward = false` and a
//! cursor is simply the last id returned. Listing is always a `Query`; this module never scans.
//! A record and its dedupe marker are written in one transaction. Nothing here deletes: a
//! redaction rewrites `doc` (the marker stays, so a replay is still a duplicate), and DynamoDB's
//! TTL removes a record and its marker once `expires_at` has passed ([`DynamoStore::with_retention`]).

use std::collections::HashMap;

use async_trait::async_trait;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::{DisplayErrorContext, SdkError};
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, GlobalSecondaryIndex, KeySchemaElement,
    KeyType, Projection, ProjectionType, Put, ScalarAttributeType, TimeToLiveSpecification,
    TransactWriteItem,
};

use super::{Created, ListQuery, MAX_PAGE, Page, RecordStore, StoreError, Transition, cursor};
use crate::record::{Record, RecordId};

/// Table and index names (all configurable).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableNames {
    pub table: String,
    pub by_time: String,
    pub by_service: String,
    pub by_status: String,
}

impl TableNames {
    pub fn with_defaults(table: impl Into<String>) -> Self {
        Self {
            table: table.into(),
            by_time: "by_time".into(),
            by_service: "by_service".into(),
            by_status: "by_status".into(),
        }
    }
}

const KIND: &str = "record";
/// How many DynamoDB pages one listing may read while filters discard items.
const MAX_QUERY_PAGES: usize = 10;
/// How often a transition re-reads after losing a race.
const MAX_TRANSITION_ATTEMPTS: usize = 5;

/// The TTL attribute: epoch seconds after which DynamoDB may delete the item.
pub const TTL_ATTRIBUTE: &str = "expires_at";

/// DynamoDB-backed [`RecordStore`].
#[derive(Debug, Clone)]
pub struct DynamoStore {
    client: Client,
    names: TableNames,
    /// How long records are kept (their `expires_at`); `None`: forever.
    retention: Option<chrono::Duration>,
}

fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

fn sdk<E, R>(op: &str, e: SdkError<E, R>) -> StoreError
where
    E: std::error::Error + 'static,
    R: std::fmt::Debug,
{
    StoreError::Backend(format!("dynamodb {op}: {}", DisplayErrorContext(&e)))
}

fn marker_id(key: &str) -> String {
    format!("dedupe#{key}")
}

fn decode(item: &HashMap<String, AttributeValue>) -> Result<Record, StoreError> {
    let doc = item
        .get("doc")
        .and_then(|v| v.as_s().ok())
        .ok_or_else(|| StoreError::Backend("dynamodb item has no `doc` attribute".into()))?;
    serde_json::from_str(doc).map_err(|e| StoreError::Backend(format!("decode record: {e}")))
}

/// The `doc` attribute: the whole record as JSON. The same record always gives the same text,
/// which the conditional writes compare.
fn encode_doc(r: &Record) -> Result<String, StoreError> {
    serde_json::to_string(r).map_err(|e| StoreError::Backend(format!("encode record: {e}")))
}

fn encode(r: &Record) -> Result<HashMap<String, AttributeValue>, StoreError> {
    let doc = encode_doc(r)?;
    let mut item = HashMap::from([
        ("id".to_owned(), s(r.id.to_string())),
        ("kind".to_owned(), s(KIND)),
        ("status".to_owned(), s(r.status.as_str())),
        ("source".to_owned(), s(r.source.as_str())),
        ("doc".to_owned(), s(doc)),
    ]);
    if let Some(job) = &r.job {
        item.insert("service".into(), s(job.service.clone()));
    }
    if let Some(key) = &r.dedupe_key {
        item.insert("dedupe_key".into(), s(key.clone()));
    }
    Ok(item)
}

impl DynamoStore {
    /// A store that keeps records forever; see [`with_retention`](Self::with_retention).
    pub fn new(client: Client, names: TableNames) -> Self {
        Self {
            client,
            names,
            retention: None,
        }
    }

    /// Records written from now on expire `days` after they were received (the table's TTL on
    /// `expires_at`); 0 keeps them forever.
    pub fn with_retention(mut self, days: u32) -> Self {
        self.retention = (days > 0).then(|| chrono::Duration::days(i64::from(days)));
        self
    }

    /// The `expires_at` of a record received at `received`, if records expire.
    fn expires_at(&self, received: chrono::DateTime<chrono::Utc>) -> Option<AttributeValue> {
        self.retention
            .map(|r| AttributeValue::N((received + r).timestamp().to_string()))
    }

    pub fn names(&self) -> &TableNames {
        &self.names
    }

    /// Creates the table and its indexes (on-demand billing). Used by `orchestrator create-table`
    /// and the tests; production tables come from `template.yaml`.
    pub async fn create_table(&self) -> Result<(), StoreError> {
        let attr = |n: &str| {
            AttributeDefinition::builder()
                .attribute_name(n)
                .attribute_type(ScalarAttributeType::S)
                .build()
                .map_err(|e| StoreError::Backend(e.to_string()))
        };
        let key = |n: &str, t: KeyType| {
            KeySchemaElement::builder()
                .attribute_name(n)
                .key_type(t)
                .build()
                .map_err(|e| StoreError::Backend(e.to_string()))
        };
        let gsi = |name: &str, hash: &str| -> Result<GlobalSecondaryIndex, StoreError> {
            GlobalSecondaryIndex::builder()
                .index_name(name)
                .key_schema(key(hash, KeyType::Hash)?)
                .key_schema(key("id", KeyType::Range)?)
                .projection(
                    Projection::builder()
                        .projection_type(ProjectionType::All)
                        .build(),
                )
                .build()
                .map_err(|e| StoreError::Backend(e.to_string()))
        };
        self.client
            .create_table()
            .table_name(&self.names.table)
            .billing_mode(BillingMode::PayPerRequest)
            .attribute_definitions(attr("id")?)
            .attribute_definitions(attr("kind")?)
            .attribute_definitions(attr("service")?)
            .attribute_definitions(attr("status")?)
            .key_schema(key("id", KeyType::Hash)?)
            .global_secondary_indexes(gsi(&self.names.by_time, "kind")?)
            .global_secondary_indexes(gsi(&self.names.by_service, "service")?)
            .global_secondary_indexes(gsi(&self.names.by_status, "status")?)
            .send()
            .await
            .map_err(|e| sdk("CreateTable", e))?;
        self.client
            .update_time_to_live()
            .table_name(&self.names.table)
            .time_to_live_specification(
                TimeToLiveSpecification::builder()
                    .attribute_name(TTL_ATTRIBUTE)
                    .enabled(true)
                    .build()
                    .map_err(|e| StoreError::Backend(e.to_string()))?,
            )
            .send()
            .await
            .map_err(|e| sdk("UpdateTimeToLive", e))?;
        Ok(())
    }

    async fn get_item(
        &self,
        id: &str,
    ) -> Result<Option<HashMap<String, AttributeValue>>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.names.table)
            .key("id", s(id))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| sdk("GetItem", e))?;
        Ok(out.item)
    }

    async fn duplicate_of(&self, key: &str) -> Result<Option<Record>, StoreError> {
        let Some(marker) = self.get_item(&marker_id(key)).await? else {
            return Ok(None);
        };
        let Some(rid) = marker.get("record_id").and_then(|v| v.as_s().ok()) else {
            return Ok(None);
        };
        match self.get_item(rid).await? {
            Some(item) => decode(&item).map(Some),
            None => Ok(None),
        }
    }
}

#[async_trait]
impl RecordStore for DynamoStore {
    async fn create(&self, record: &Record) -> Result<Created, StoreError> {
        let mut item = encode(record)?;
        let expires_at = self.expires_at(record.received_at);
        if let Some(at) = &expires_at {
            item.insert(TTL_ATTRIBUTE.into(), at.clone());
        }
        let Some(key) = &record.dedupe_key else {
            self.client
                .put_item()
                .table_name(&self.names.table)
                .set_item(Some(item))
                .condition_expression("attribute_not_exists(id)")
                .send()
                .await
                .map_err(|e| sdk("PutItem", e))?;
            return Ok(Created::New);
        };
        let put = |item: HashMap<String, AttributeValue>| {
            Put::builder()
                .table_name(&self.names.table)
                .set_item(Some(item))
                .condition_expression("attribute_not_exists(id)")
                .build()
                .map_err(|e| StoreError::Backend(e.to_string()))
        };
        let mut marker = HashMap::from([
            ("id".to_owned(), s(marker_id(key))),
            ("record_id".to_owned(), s(record.id.to_string())),
        ]);
        if let Some(at) = expires_at {
            marker.insert(TTL_ATTRIBUTE.into(), at);
        }
        let result = self
            .client
            .transact_write_items()
            .transact_items(TransactWriteItem::builder().put(put(marker)?).build())
            .transact_items(TransactWriteItem::builder().put(put(item)?).build())
            .send()
            .await;
        match result {
            Ok(_) => Ok(Created::New),
            Err(e) => {
                let cancelled = e
                    .as_service_error()
                    .is_some_and(|se| se.is_transaction_canceled_exception());
                if cancelled {
                    // Lost the race (or a redelivery): the marker names the winner.
                    if let Some(existing) = self.duplicate_of(key).await? {
                        return Ok(Created::Duplicate(Box::new(existing)));
                    }
                }
                Err(sdk("TransactWriteItems", e))
            }
        }
    }

    async fn get(&self, id: RecordId) -> Result<Option<Record>, StoreError> {
        self.get_item(&id.to_string())
            .await?
            .map(|item| decode(&item))
            .transpose()
    }

    async fn list(&self, q: &ListQuery) -> Result<Page, StoreError> {
        let limit = q.limit.clamp(1, MAX_PAGE) as usize;
        // Pick the most selective index; the remaining filters become a FilterExpression.
        let (index, hash_attr, hash_value) = if let Some(svc) = &q.service {
            (&self.names.by_service, "service", svc.clone())
        } else if let Some(st) = q.status {
            (&self.names.by_status, "status", st.as_str().to_owned())
        } else {
            (&self.names.by_time, "kind", KIND.to_owned())
        };
        let mut filters = Vec::new();
        let mut names = HashMap::from([("#h".to_owned(), hash_attr.to_owned())]);
        let mut values = HashMap::from([(":h".to_owned(), s(hash_value))]);
        if let (Some(_), Some(st)) = (&q.service, q.status) {
            filters.push("#st = :st");
            names.insert("#st".into(), "status".into());
            values.insert(":st".into(), s(st.as_str()));
        }
        if let Some(src) = q.source {
            filters.push("#src = :src");
            names.insert("#src".into(), "source".into());
            values.insert(":src".into(), s(src.as_str()));
        }
        let mut key_cond = "#h = :h".to_owned();
        if let Some(after) = q.after {
            key_cond.push_str(" AND #id < :after");
            names.insert("#id".into(), "id".into());
            values.insert(":after".into(), s(after.to_string()));
        }

        let mut records = Vec::new();
        let mut start: Option<HashMap<String, AttributeValue>> = None;
        for _ in 0..MAX_QUERY_PAGES {
            let want = limit + 1 - records.len();
            let out = self
                .client
                .query()
                .table_name(&self.names.table)
                .index_name(index)
                .key_condition_expression(&key_cond)
                .set_filter_expression((!filters.is_empty()).then(|| filters.join(" AND ")))
                .set_expression_attribute_names(Some(names.clone()))
                .set_expression_attribute_values(Some(values.clone()))
                .scan_index_forward(false)
                .limit(want as i32)
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(|e| sdk("Query", e))?;
            for item in out.items() {
                records.push(decode(item)?);
            }
            if records.len() > limit {
                records.truncate(limit);
                let next_cursor = records.last().map(|r| cursor::encode(r.id));
                return Ok(Page {
                    records,
                    next_cursor,
                });
            }
            match out.last_evaluated_key {
                Some(k) => start = Some(k),
                None => {
                    return Ok(Page {
                        records,
                        next_cursor: None,
                    });
                }
            }
        }
        // Filters discarded most of what was read: resume after the last item evaluated.
        let next_cursor = start
            .as_ref()
            .and_then(|k| k.get("id"))
            .and_then(|v| v.as_s().ok())
            .and_then(|id| id.parse().ok())
            .map(cursor::encode);
        Ok(Page {
            records,
            next_cursor,
        })
    }

    async fn redact(&self, id: RecordId, by: &str) -> Result<Record, StoreError> {
        self.update_with(id, |r| super::redact(r, by, crate::record::now()))
            .await
    }

    async fn transition(&self, id: RecordId, change: &Transition) -> Result<Record, StoreError> {
        self.update_with(id, |r| change.apply(r)).await
    }

    /// One `UpdateItem` instead of `GetItem` + `UpdateItem` when `current` is what is stored:
    /// the condition compares the whole document, so the write lands only on exactly `current`.
    async fn transition_from(
        &self,
        current: &Record,
        change: &Transition,
    ) -> Result<Record, StoreError> {
        if let Ok(next) = change.apply(current)
            && self
                .write_over(current, &encode_doc(current)?, &next)
                .await?
        {
            return Ok(next);
        }
        // Someone wrote since (or the change does not apply to `current`): read what is there
        // and decide on that, as `transition` does.
        self.transition(current.id, change).await
    }
}

impl DynamoStore {
    /// Reads the record, changes it with `f` and writes it back only if nobody wrote in between
    /// (a conditional update on the document); otherwise re-reads and re-applies `f`.
    async fn update_with(
        &self,
        id: RecordId,
        f: impl Fn(&Record) -> Result<Record, StoreError>,
    ) -> Result<Record, StoreError> {
        for _ in 0..MAX_TRANSITION_ATTEMPTS {
            let item = self
                .get_item(&id.to_string())
                .await?
                .ok_or(StoreError::NotFound(id))?;
            let current = decode(&item)?;
            let next = f(&current)?;
            // Compared with the stored text, not a re-encoding: a record written by an older
            // version may not encode back to the same text.
            let stored = item
                .get("doc")
                .and_then(|v| v.as_s().ok())
                .map_or("", String::as_str);
            if self.write_over(&current, stored, &next).await? {
                return Ok(next);
            }
            // Someone else wrote first: re-read and re-check the state machine.
        }
        Err(StoreError::Backend(format!(
            "record {id}: gave up after {MAX_TRANSITION_ATTEMPTS} concurrent updates"
        )))
    }

    /// Writes `next` over `current` if the stored status is still `current`'s and the stored
    /// document is still `current_doc`. `false`: someone else wrote first.
    async fn write_over(
        &self,
        current: &Record,
        current_doc: &str,
        next: &Record,
    ) -> Result<bool, StoreError> {
        let result = self
            .client
            .update_item()
            .table_name(&self.names.table)
            .key("id", s(current.id.to_string()))
            .update_expression("SET #st = :new, #doc = :doc")
            .condition_expression("#st = :old AND #doc = :olddoc")
            .expression_attribute_names("#st", "status")
            .expression_attribute_names("#doc", "doc")
            .expression_attribute_values(":new", s(next.status.as_str()))
            .expression_attribute_values(":old", s(current.status.as_str()))
            .expression_attribute_values(":doc", s(encode_doc(next)?))
            .expression_attribute_values(":olddoc", s(current_doc))
            .send()
            .await;
        match result {
            Ok(_) => Ok(true),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|se| se.is_conditional_check_failed_exception()) =>
            {
                Ok(false)
            }
            Err(e) => Err(sdk("UpdateItem", e)),
        }
    }
}
