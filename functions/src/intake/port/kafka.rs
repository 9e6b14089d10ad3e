//! Port changelog events from Kafka: one self-managed Kafka event source batch (topic
//! `ORG_ID.change.log`, values base64-encoded JSON), each record through the same intake as the
//! webhook (minus the HTTP signature: the broker connection is authenticated by SASL/SCRAM).
//!
//! A record that cannot be read (not base64, not JSON, not a Port event, not even a Kafka record)
//! is recorded `rejected` with its reason and its coordinates, and the rest of the batch goes on.
//! A record the store could not write, and every record not started before the invocation's time
//! ran out, is reported back to the event source as a batch item failure
//! ([`BatchReport::item_failures`]): Kafka resumes each such partition from its first unfinished
//! offset, so a batch too long for one invocation goes on where it stopped instead of starting
//! over. Every write is keyed (the event's dedupe key, or the record's topic, partition and offset
//! when rejected), so a record delivered again is recorded once and launched once.
//!
//! [`decode`] is pure; [`process_batch`] writes the records and launches the tasks.

use aws_lambda_events::event::kafka::KafkaRecord;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use orchestrator_core::store::RecordStore;
use orchestrator_core::{Record, RecordId, Source, Status};
use serde::Serialize;

use crate::api::error::ApiError;
use crate::dispatch::{Accepted, RetryPolicy, contract_for, record_and_launch, redispatch};
use crate::launch::TaskLauncher;
use crate::rules::RuleSet;

use super::PortEvent;

/// Most bytes of a rejected record's value kept (base64) in its record.
pub const KEPT_VALUE_BYTES: usize = 4096;

/// Where a record sits in Kafka.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Coordinates {
    pub topic: String,
    pub partition: i64,
    pub offset: i64,
}

impl Coordinates {
    /// The dedupe key of a rejected record.
    pub fn key(&self) -> String {
        format!("kafka:{}/{}/{}", self.topic, self.partition, self.offset)
    }
}

/// One record of a batch, decoded or not.
#[derive(Debug, Clone, PartialEq)]
pub enum Decoded {
    Event {
        at: Coordinates,
        event: Box<PortEvent>,
    },
    Rejected {
        at: Coordinates,
        reason: String,
        /// The value as it came (base64), cut to [`KEPT_VALUE_BYTES`].
        value: Option<String>,
    },
}

/// A batch that is not a Kafka event at all.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a Kafka event: {0}")]
pub struct NotKafka(pub String);

fn coordinates(raw: &serde_json::Value, fallback_topic: &str) -> Coordinates {
    Coordinates {
        topic: raw
            .get("topic")
            .and_then(|t| t.as_str())
            .unwrap_or(fallback_topic)
            .to_owned(),
        partition: raw.get("partition").and_then(|p| p.as_i64()).unwrap_or(-1),
        offset: raw.get("offset").and_then(|o| o.as_i64()).unwrap_or(-1),
    }
}

/// Whether `timestamp` holds a fraction (`1.5`, `"1.5"`). `aws_lambda_events` asserts that a
/// record's timestamp is a whole number of milliseconds, so such a record would panic, failing the
/// whole batch (which the event source delivers again), instead of being rejected alone. Same
/// reading as its parser: a number, or a string parsed as `f64`.
fn fractional_timestamp(raw: &serde_json::Value) -> bool {
    let t = match raw.get("timestamp") {
        Some(serde_json::Value::Number(n)) => n.as_f64(),
        Some(serde_json::Value::String(s)) => s.parse::<f64>().ok(),
        _ => None,
    };
    t.is_some_and(|t| t.is_finite() && t.fract() != 0.0)
}

fn decode_one(raw: &serde_json::Value, fallback_topic: &str) -> Decoded {
    let at = coordinates(raw, fallback_topic);
    let kept = raw.get("value").and_then(|v| v.as_str()).map(|v| {
        let cut = (0..=v.len().min(KEPT_VALUE_BYTES))
            .rev()
            .find(|i| v.is_char_boundary(*i))
            .unwrap_or(0);
        v[..cut].to_owned()
    });
    let reject = |reason: String| Decoded::Rejected {
        at: at.clone(),
        reason,
        value: kept.clone(),
    };
    if fractional_timestamp(raw) {
        return reject(
            "not a Kafka record: `timestamp` is not a whole number of milliseconds".into(),
        );
    }
    // The check above covers the panic fuzzing found; `catch_unwind` keeps any other panic in
    // `aws_lambda_events`' decoding to this one record instead of failing (and redelivering) the
    // whole batch.
    let decoded = std::panic::catch_unwind(|| serde_json::from_value::<KafkaRecord>(raw.clone()));
    let record: KafkaRecord = match decoded {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => return reject(format!("not a Kafka record: {e}")),
        Err(_) => return reject("not a Kafka record: its decoding panicked".into()),
    };
    let Some(value) = record.value.as_deref() else {
        return reject("the record has no value".into());
    };
    let bytes = match STANDARD.decode(value.trim()) {
        Ok(b) => b,
        Err(e) => return reject(format!("the value is not base64: {e}")),
    };
    match super::parse(&bytes) {
        Ok(event) => Decoded::Event {
            at,
            event: Box::new(event),
        },
        Err(e) => reject(format!("the value is not a Port changelog event: {e}")),
    }
}

/// Decodes every record of a self-managed Kafka event, in partition then offset order.
pub fn decode(event: &serde_json::Value) -> Result<Vec<Decoded>, NotKafka> {
    let records = event
        .get("records")
        .and_then(|r| r.as_object())
        .ok_or_else(|| NotKafka("no `records` object".into()))?;
    let mut out = Vec::new();
    for (partition_key, list) in records {
        // Keys are `<topic>-<partition>`: the topic, for records too broken to name theirs.
        let topic = partition_key
            .rsplit_once('-')
            .map_or(partition_key.as_str(), |(t, _)| t);
        match list.as_array() {
            Some(items) => {
                let mut decoded: Vec<Decoded> =
                    items.iter().map(|raw| decode_one(raw, topic)).collect();
                decoded.sort_by_key(|d| match d {
                    Decoded::Event { at, .. } | Decoded::Rejected { at, .. } => at.offset,
                });
                out.extend(decoded);
            }
            None => out.push(Decoded::Rejected {
                at: Coordinates {
                    topic: topic.to_owned(),
                    partition: -1,
                    offset: -1,
                },
                reason: format!("`records.{partition_key}` is not a list"),
                value: None,
            }),
        }
    }
    Ok(out)
}

/// The `rejected` record of an unreadable Kafka record.
pub fn rejected_record(at: &Coordinates, reason: &str, value: Option<&str>) -> Record {
    let mut payload = serde_json::json!({ "kafka": at });
    if let Some(v) = value {
        payload["value_base64"] = serde_json::Value::from(v);
    }
    let mut r = Record::received(Source::Port, payload, None);
    r.status = Status::Rejected;
    r.status_reason = Some(reason.to_owned());
    r.dedupe_key = Some(at.key());
    r
}

/// The `status` of an item whose record could not be written.
pub const ITEM_ERROR: &str = "error";
/// The `status` of an item not started: the invocation's time was running out.
pub const ITEM_DEFERRED: &str = "deferred";

/// What became of one Kafka record.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ItemReport {
    #[serde(flatten)]
    pub at: Coordinates,
    pub record_id: Option<RecordId>,
    /// The record's status (`dispatched`, `ignored`, `rejected`, `dispatch_failed`, ...), or
    /// [`ITEM_ERROR`] when it could not be written, or [`ITEM_DEFERRED`] when it was not started.
    pub status: String,
    pub duplicate: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// What became of a batch.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct BatchReport {
    pub records: Vec<ItemReport>,
}

/// One entry of a Kafka partial batch response: resume `partition` (the event's
/// `<topic>-<partition>` key) from `offset`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ItemIdentifier {
    pub partition: String,
    pub offset: i64,
}

impl BatchReport {
    /// Records that could not be written (store errors): they must be delivered again.
    pub fn unwritten(&self) -> usize {
        self.count(ITEM_ERROR)
    }

    pub fn count(&self, status: &str) -> usize {
        self.records.iter().filter(|r| r.status == status).count()
    }

    /// The partial batch response: for each partition with an item not done (a store error, or
    /// not started), its lowest such offset; the event source delivers that partition again from
    /// there. Empty when every item is done. `None` when such an item has no usable coordinates
    /// (a record too broken to name its partition or offset): only a failure of the whole
    /// invocation can then have it delivered again.
    pub fn item_failures(&self) -> Option<Vec<ItemIdentifier>> {
        let mut first = std::collections::BTreeMap::<(String, i64), i64>::new();
        for item in self
            .records
            .iter()
            .filter(|r| r.status == ITEM_ERROR || r.status == ITEM_DEFERRED)
        {
            let at = &item.at;
            if at.partition < 0 || at.offset < 0 {
                return None;
            }
            let offset = first
                .entry((at.topic.clone(), at.partition))
                .or_insert(at.offset);
            *offset = (*offset).min(at.offset);
        }
        Some(
            first
                .into_iter()
                .map(|((topic, partition), offset)| ItemIdentifier {
                    partition: format!("{topic}-{partition}"),
                    offset,
                })
                .collect(),
        )
    }
}

/// Records (and launches) every record of `event`. One record's failure never stops the others;
/// see [`BatchReport::item_failures`] for what must be delivered again.
pub async fn process_batch(
    store: &dyn RecordStore,
    launcher: &dyn TaskLauncher,
    policy: RetryPolicy,
    rules: &RuleSet,
    event: &serde_json::Value,
) -> Result<BatchReport, NotKafka> {
    process_batch_until(store, launcher, policy, rules, event, None).await
}

/// [`process_batch`], starting no record once `stop_by` has passed: those are reported
/// [`ITEM_DEFERRED`], for the event source to deliver again.
pub async fn process_batch_until(
    store: &dyn RecordStore,
    launcher: &dyn TaskLauncher,
    policy: RetryPolicy,
    rules: &RuleSet,
    event: &serde_json::Value,
    stop_by: Option<tokio::time::Instant>,
) -> Result<BatchReport, NotKafka> {
    let mut report = BatchReport::default();
    for item in decode(event)? {
        if stop_by.is_some_and(|t| tokio::time::Instant::now() >= t) {
            let (Decoded::Event { at, .. } | Decoded::Rejected { at, .. }) = item;
            report.records.push(ItemReport {
                at,
                record_id: None,
                status: ITEM_DEFERRED.into(),
                duplicate: false,
                reason: Some("not started: the invocation was running out of time".into()),
            });
            continue;
        }
        let (at, record) = match item {
            Decoded::Event { at, event } => (at, event.to_record(rules)),
            Decoded::Rejected { at, reason, value } => {
                tracing::warn!(topic = %at.topic, partition = at.partition, offset = at.offset, %reason, "Kafka record rejected");
                let r = rejected_record(&at, &reason, value.as_deref());
                (at, r)
            }
        };
        let outcome = match record_and_launch(store, launcher, policy, record).await {
            // A redelivered record still `received`: the invocation that wrote it stopped before
            // launching (a Lambda timeout, say), and Kafka delivered the batch again. Launch it now,
            // with the same client token; otherwise it would wait forever.
            Ok(Accepted::Duplicate(r))
                if r.status == Status::Received && contract_for(&r).is_some() =>
            {
                tracing::info!(record_id = %r.id, "redelivered record was never launched; dispatching it");
                redispatch(store, launcher, policy, r.id)
                    .await
                    .map(Accepted::Duplicate)
            }
            other => other,
        };
        let item = match outcome {
            Ok(Accepted::New(r)) => ItemReport {
                at,
                record_id: Some(r.id),
                status: r.status.as_str().to_owned(),
                duplicate: false,
                reason: r.status_reason,
            },
            Ok(Accepted::Duplicate(r)) => ItemReport {
                at,
                record_id: Some(r.id),
                status: r.status.as_str().to_owned(),
                duplicate: true,
                reason: None,
            },
            Err(ApiError::DispatchFailed { record_id, reason }) => ItemReport {
                at,
                record_id: Some(record_id),
                status: Status::DispatchFailed.as_str().to_owned(),
                duplicate: false,
                reason: Some(reason),
            },
            Err(e) => {
                let detail = match &e {
                    ApiError::Internal(d) => d.clone(),
                    other => other.to_string(),
                };
                tracing::error!(topic = %at.topic, partition = at.partition, offset = at.offset, error = %detail, "Kafka record not recorded");
                ItemReport {
                    at,
                    record_id: None,
                    status: ITEM_ERROR.into(),
                    duplicate: false,
                    reason: Some(detail),
                }
            }
        };
        report.records.push(item);
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch() -> serde_json::Value {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../tests/fixtures/kafka/port-batch.json");
        serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
    }

    #[test]
    fn the_recorded_batch_has_two_events_and_one_corrupt_record() {
        let decoded = decode(&batch()).unwrap();
        assert_eq!(decoded.len(), 3);
        let offsets: Vec<i64> = decoded
            .iter()
            .map(|d| match d {
                Decoded::Event { at, .. } | Decoded::Rejected { at, .. } => at.offset,
            })
            .collect();
        assert!(offsets.windows(2).all(|w| w[0] < w[1]), "{offsets:?}");
        let rejected: Vec<_> = decoded
            .iter()
            .filter_map(|d| match d {
                Decoded::Rejected { at, reason, .. } => Some((at, reason)),
                Decoded::Event { .. } => None,
            })
            .collect();
        assert_eq!(rejected.len(), 1);
        assert!(rejected[0].0.topic.ends_with(".change.log"));
        assert!(
            rejected[0].1.contains("not a Port changelog event"),
            "{}",
            rejected[0].1
        );
    }

    #[test]
    fn broken_records_are_rejected_one_by_one() {
        let good = STANDARD.encode(br#"{"action":"UPDATE","resourceType":"blueprint"}"#);
        let event = serde_json::json!({
            "eventSource": "SelfManagedKafka",
            "records": {
                "org.change.log-0": [
                    {"topic": "org.change.log", "partition": 0, "offset": 1, "timestamp": 1, "timestampType": "CREATE_TIME", "value": "***", "headers": []},
                    {"topic": "org.change.log", "partition": 0, "offset": 2, "timestamp": 1, "timestampType": "CREATE_TIME", "value": good, "headers": []},
                    {"partition": "zero"},
                    {"topic": "org.change.log", "partition": 0, "offset": 4, "timestamp": 1, "timestampType": "CREATE_TIME", "value": null, "headers": []}
                ],
                "org.change.log-1": "nope"
            }
        });
        let decoded = decode(&event).unwrap();
        let reasons: Vec<String> = decoded
            .iter()
            .filter_map(|d| match d {
                Decoded::Rejected { reason, .. } => Some(reason.clone()),
                Decoded::Event { .. } => None,
            })
            .collect();
        assert_eq!(decoded.len(), 5);
        assert_eq!(reasons.len(), 4, "{reasons:?}");
        assert!(reasons.iter().any(|r| r.contains("not base64")));
        assert!(reasons.iter().any(|r| r.contains("not a Kafka record")));
        assert!(reasons.iter().any(|r| r.contains("no value")));
        assert!(reasons.iter().any(|r| r.contains("is not a list")));
        assert!(decode(&serde_json::json!({"Records": []})).is_err());
    }

    fn item(topic: &str, partition: i64, offset: i64, status: &str) -> ItemReport {
        ItemReport {
            at: Coordinates {
                topic: topic.into(),
                partition,
                offset,
            },
            record_id: None,
            status: status.into(),
            duplicate: false,
            reason: None,
        }
    }

    #[test]
    fn item_failures_name_the_first_unfinished_offset_of_each_partition() {
        let report = BatchReport {
            records: vec![
                item("t", 0, 10, "dispatched"),
                item("t", 0, 11, ITEM_ERROR),
                item("t", 0, 12, "rejected"),
                item("t", 0, 13, ITEM_DEFERRED),
                item("t", 1, 7, "ignored"),
                item("t", 1, 8, ITEM_DEFERRED),
                item("t", 1, 9, ITEM_DEFERRED),
                item("u.v-w", 3, 5, "dispatched"),
            ],
        };
        assert_eq!(
            report.item_failures().unwrap(),
            [
                ItemIdentifier {
                    partition: "t-0".into(),
                    offset: 11
                },
                ItemIdentifier {
                    partition: "t-1".into(),
                    offset: 8
                },
            ]
        );
        // The answer Lambda reads: {"partition": "<topic>-<n>", "offset": n}.
        assert_eq!(
            serde_json::to_value(&report.item_failures().unwrap()[0]).unwrap(),
            serde_json::json!({"partition": "t-0", "offset": 11})
        );
    }

    #[test]
    fn a_done_batch_has_no_item_failures_and_an_unlocatable_one_fails_whole() {
        let done = BatchReport {
            records: vec![item("t", 0, 1, "dispatched"), item("t", 0, 2, "rejected")],
        };
        assert_eq!(done.item_failures(), Some(vec![]));
        let lost = BatchReport {
            records: vec![item("t", 0, 1, "dispatched"), item("t", -1, -1, ITEM_ERROR)],
        };
        assert_eq!(lost.item_failures(), None);
        // A rejected record without coordinates is done: it needs no redelivery.
        let rejected = BatchReport {
            records: vec![item("t", -1, -1, "rejected")],
        };
        assert_eq!(rejected.item_failures(), Some(vec![]));
    }

    /// Found by the `port_kafka_batch` fuzz target (fuzz/regressions/port_kafka_batch/): a
    /// fractional timestamp panicked inside `aws_lambda_events` instead of rejecting the record.
    #[test]
    fn a_fractional_timestamp_rejects_the_record_not_the_batch() {
        for timestamp in [
            serde_json::json!(1.57903496288),
            serde_json::json!("1713277889000.5"),
        ] {
            let event = serde_json::json!({
                "eventSource": "SelfManagedKafka",
                "records": {"org.change.log-0": [
                    {"topic": "org.change.log", "partition": 0, "offset": 1, "timestamp": timestamp, "timestampType": "CREATE_TIME", "value": "e30=", "headers": []}
                ]}
            });
            match &decode(&event).unwrap()[..] {
                [Decoded::Rejected { reason, .. }] => {
                    assert!(reason.contains("timestamp"), "{reason}")
                }
                other => panic!("{timestamp}: {other:?}"),
            }
        }
    }
}
