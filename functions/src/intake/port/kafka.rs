//! Port events from Kafka: one self-managed Kafka event source batch (topics `ORG_ID.runs`, the
//! automation and self-service action invocations, and the legacy `ORG_ID.change.log`; values
//! base64-encoded JSON), each record through the same intake as its webhook (minus the HTTP
//! signature: the broker connection is authenticated by SASL/SCRAM). A record of a topic ending
//! in `.runs` is read as an invocation ([`super::invocation`]), any other as a changelog event.
//!
//! A record that cannot be read (not base64, not JSON, not a Port event, not even a Kafka record)
//! is recorded `rejected` with its reason and its coordinates, and the rest of the batch goes on.
//! A record the store could not write, and every record not started before the invocation's time
//! ran out, is reported back to the event source as a batch item failure
//! (`dispatch::BatchReport::item_failures`): Kafka resumes each such partition from its first unfinished
//! offset, so a batch too long for one invocation goes on where it stopped instead of starting
//! over. Every write is keyed (the event's dedupe key, or the record's topic, partition and offset
//! when rejected), so a record delivered again is recorded once and launched once.
//!
//! Decoding only, and pure: [`decode`] turns a batch into events and rejections;
//! `dispatch::process_batch` writes the records and launches the tasks, and reports what must be
//! delivered again.

use aws_lambda_events::event::kafka::KafkaRecord;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use orchestrator_core::{Record, Source, Status};
use serde::Serialize;

use super::PortEvent;
use super::invocation::{self, Invocation};

/// Whether `topic` is Port's runs topic (`<ORG_ID>.runs`).
pub fn is_runs_topic(topic: &str) -> bool {
    topic.ends_with(".runs")
}

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
    /// An automation or self-service action invocation (the runs topic).
    Run {
        at: Coordinates,
        run: Box<Invocation>,
    },
    Rejected {
        at: Coordinates,
        reason: String,
        /// The value as it came (base64), cut to [`KEPT_VALUE_BYTES`].
        value: Option<String>,
    },
}

impl Decoded {
    /// Where the record sits.
    pub fn at(&self) -> &Coordinates {
        match self {
            Decoded::Event { at, .. } | Decoded::Run { at, .. } | Decoded::Rejected { at, .. } => {
                at
            }
        }
    }
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
    if is_runs_topic(&at.topic) {
        return match invocation::parse(&bytes) {
            Ok(run) => Decoded::Run {
                at,
                run: Box::new(run),
            },
            Err(e) => reject(format!("the value is not a Port invocation: {e}")),
        };
    }
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
                decoded.sort_by_key(|d| d.at().offset);
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
        let offsets: Vec<i64> = decoded.iter().map(|d| d.at().offset).collect();
        assert!(offsets.windows(2).all(|w| w[0] < w[1]), "{offsets:?}");
        let rejected: Vec<_> = decoded
            .iter()
            .filter_map(|d| match d {
                Decoded::Rejected { at, reason, .. } => Some((at, reason)),
                _ => None,
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
                _ => None,
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
