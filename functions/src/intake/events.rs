//! AWS events: an EventBridge envelope (an AWS service event, e.g. "AWS API Call via CloudTrail"
//! or "AWS Health Event", delivered by an EventBridge rule), or an EventBridge Scheduler run (the
//! input the template gives each schedule, see [`ScheduleRun`]), parsed into one [`AwsEvent`] the
//! rules decide on. A schedule run becomes an envelope too (source [`SCHEDULE_SOURCE`],
//! detail-type [`SCHEDULE_DETAIL_TYPE`]), so both kinds meet the rules, the records and the task
//! in one shape. Also the schedules' declaration ([`Schedule`], `SCHEDULES`), which the local
//! `orchestrator schedule fire` reads.
//!
//! Pure: no IO.

use orchestrator_core::{Record, Source, Status};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::PayloadError;
use crate::rules::{AwsFacts, Decision, RuleSet};

/// The `source` a schedule run is given.
pub const SCHEDULE_SOURCE: &str = "orchestrator.schedule";
/// The `detail-type` a schedule run is given.
pub const SCHEDULE_DETAIL_TYPE: &str = "Scheduled Run";
/// The key of a schedule run's input that says which schedule fired (and its context
/// attributes); anything else at the top level is ignored.
pub const SCHEDULE_KEY: &str = "orchestrator-schedule";

/// The EventBridge Scheduler context attributes the template puts in each schedule's input
/// (replaced by the scheduler when it invokes the target).
pub const EXECUTION_ID_ATTRIBUTE: &str = "<aws.scheduler.execution-id>";
pub const SCHEDULED_TIME_ATTRIBUTE: &str = "<aws.scheduler.scheduled-time>";
pub const SCHEDULE_ARN_ATTRIBUTE: &str = "<aws.scheduler.schedule-arn>";
pub const ATTEMPT_NUMBER_ATTRIBUTE: &str = "<aws.scheduler.attempt-number>";

/// One AWS event, as an EventBridge envelope.
#[derive(Debug, Clone, PartialEq)]
pub struct AwsEvent {
    /// The envelope's `id`; for a schedule run, the scheduler's execution id.
    pub id: String,
    pub source: String,
    pub detail_type: String,
    /// Whether it is a schedule run.
    pub scheduled: bool,
    /// The envelope (for a schedule run, the one built from its input), as recorded.
    pub envelope: Value,
}

fn text(o: &Map<String, Value>, key: &'static str) -> Result<Option<String>, PayloadError> {
    match o.get(key) {
        None | Some(Value::Null) => Ok(None),
        // Blank means ASCII whitespace only, as the OpenAPI document's patterns say.
        Some(Value::String(s)) => Ok(Some(
            s.trim_matches(|c: char| c.is_ascii_whitespace()).to_owned(),
        )
        .filter(|s| !s.is_empty())),
        Some(_) => Err(PayloadError::InvalidField {
            field: key,
            reason: "must be a string".into(),
        }),
    }
}

fn required(o: &Map<String, Value>, key: &'static str) -> Result<String, PayloadError> {
    text(o, key)?.ok_or(PayloadError::MissingField(key))
}

/// Parses a delivery body: an EventBridge envelope or a schedule run.
pub fn parse(body: &[u8]) -> Result<AwsEvent, PayloadError> {
    let value: Value =
        serde_json::from_slice(body).map_err(|e| PayloadError::MalformedJson(e.to_string()))?;
    from_value(value)
}

/// [`parse`], for a payload already decoded (what a Lambda receives).
pub fn from_value(value: Value) -> Result<AwsEvent, PayloadError> {
    let Value::Object(o) = value else {
        return Err(PayloadError::NotAnObject);
    };
    // The envelope's own fields have the same types in a schedule run (which ignores them).
    match o.get("detail") {
        None | Some(Value::Object(_)) => {}
        Some(_) => {
            return Err(PayloadError::InvalidField {
                field: "detail",
                reason: "must be an object".into(),
            });
        }
    }
    match o.get("resources") {
        None => {}
        Some(Value::Array(a)) if a.iter().all(Value::is_string) => {}
        Some(_) => {
            return Err(PayloadError::InvalidField {
                field: "resources",
                reason: "must be a list of strings".into(),
            });
        }
    }
    for key in ["region", "account", "time", "id", "source", "detail-type"] {
        text(&o, key)?;
    }
    if o.contains_key(SCHEDULE_KEY) {
        return schedule_run(&o);
    }
    let id = required(&o, "id")?;
    let source = required(&o, "source")?;
    let detail_type = required(&o, "detail-type")?;
    Ok(AwsEvent {
        id,
        source,
        detail_type,
        scheduled: false,
        envelope: Value::Object(o),
    })
}

/// `arn:aws:scheduler:<region>:<account>:schedule/<group>/<name>` → (region, account).
fn arn_region_account(arn: &str) -> (Option<&str>, Option<&str>) {
    fn nonempty(s: Option<&str>) -> Option<&str> {
        s.filter(|s| !s.is_empty())
    }
    let mut parts = arn.split(':').skip(3);
    (nonempty(parts.next()), nonempty(parts.next()))
}

/// A context attribute the scheduler did not replace (the input was sent by hand, or the
/// schedule's input lost its placeholders) reads as absent.
fn attribute(o: &Map<String, Value>, key: &'static str) -> Result<Option<String>, PayloadError> {
    Ok(text(o, key)?.filter(|v| !(v.starts_with("<aws.scheduler.") && v.ends_with('>'))))
}

fn schedule_run(o: &Map<String, Value>) -> Result<AwsEvent, PayloadError> {
    let Some(Value::Object(s)) = o.get(SCHEDULE_KEY) else {
        return Err(PayloadError::InvalidField {
            field: SCHEDULE_KEY,
            reason: "must be an object".into(),
        });
    };
    let name = text(s, "name")?.ok_or(PayloadError::MissingField("orchestrator-schedule.name"))?;
    let execution_id = attribute(s, "execution-id")?.ok_or(PayloadError::InvalidField {
        field: "orchestrator-schedule.execution-id",
        reason: format!(
            "required: the scheduler's {EXECUTION_ID_ATTRIBUTE} (it identifies the run)"
        ),
    })?;
    let arn = attribute(s, "schedule-arn")?;
    let time = attribute(s, "scheduled-time")?;
    let attempt = attribute(s, "attempt-number")?;
    let (region, account) = arn.as_deref().map_or((None, None), arn_region_account);
    let envelope = json!({
        "version": "0",
        "id": execution_id,
        "source": SCHEDULE_SOURCE,
        "detail-type": SCHEDULE_DETAIL_TYPE,
        "account": account,
        "region": region,
        "time": time,
        "resources": arn.iter().collect::<Vec<_>>(),
        "detail": {
            "schedule": name,
            "input": o.get("input").cloned().unwrap_or(Value::Null),
            "execution-id": execution_id,
            "scheduled-time": time,
            "attempt-number": attempt,
        },
    });
    Ok(AwsEvent {
        id: execution_id,
        source: SCHEDULE_SOURCE.into(),
        detail_type: SCHEDULE_DETAIL_TYPE.into(),
        scheduled: true,
        envelope,
    })
}

impl AwsEvent {
    /// EventBridge's event id, or the scheduler's execution id: the same event delivered twice
    /// (an EventBridge retry, a Lambda async retry) has the same one.
    pub fn dedupe_key(&self) -> String {
        if self.scheduled {
            format!("schedule:{}", self.id)
        } else {
            format!("eventbridge:{}", self.id)
        }
    }

    pub fn facts(&self) -> AwsFacts<'_> {
        AwsFacts {
            source: &self.source,
            detail_type: &self.detail_type,
            envelope: &self.envelope,
        }
    }

    /// The record: `received` with the matched rule and its actions, or `ignored` with why.
    pub fn to_record(&self, rules: &RuleSet) -> Record {
        let mut record = Record::received(Source::Eventbridge, self.envelope.clone(), None);
        record.dedupe_key = Some(self.dedupe_key());
        match rules.decide_aws(&self.facts()) {
            Decision::Matched { rule, actions } => {
                record.rule = Some(rule);
                record.actions = actions;
            }
            Decision::NoMatch { reason } => {
                record.status = Status::Ignored;
                record.status_reason = Some(reason);
            }
        }
        record
    }
}

/// One EventBridge Scheduler schedule, as declared (`SCHEDULES`, and the template's parameters).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Schedule {
    pub name: String,
    /// `cron(...)`, `rate(...)` or `at(...)`: EventBridge Scheduler's expression (not used
    /// locally, where a schedule fires when told).
    pub expression: String,
    /// What the rules see as `detail.input`.
    #[serde(default)]
    pub input: Value,
}

/// Parses the schedules' declaration: a JSON list of `{name, expression, input}`.
pub fn parse_schedules(text: &str) -> Result<Vec<Schedule>, String> {
    let text = text.trim();
    if text.is_empty() {
        return Ok(Vec::new());
    }
    let list: Vec<Schedule> = serde_json::from_str(text)
        .map_err(|e| format!("a JSON list of {{name, expression, input}}: {e}"))?;
    let mut seen = std::collections::BTreeSet::new();
    for s in &list {
        if s.name.trim().is_empty() {
            return Err("a schedule needs a name".into());
        }
        if !seen.insert(s.name.as_str()) {
            return Err(format!("schedule `{}` is declared twice", s.name));
        }
    }
    Ok(list)
}

/// The input EventBridge Scheduler sends for `schedule`, its context attributes left for the
/// scheduler to replace: what the template writes as each schedule's target input.
pub fn scheduler_input(schedule: &Schedule) -> Value {
    json!({
        SCHEDULE_KEY: {
            "name": schedule.name,
            "execution-id": EXECUTION_ID_ATTRIBUTE,
            "scheduled-time": SCHEDULED_TIME_ATTRIBUTE,
            "schedule-arn": SCHEDULE_ARN_ATTRIBUTE,
            "attempt-number": ATTEMPT_NUMBER_ATTRIBUTE,
        },
        "input": schedule.input,
    })
}

/// The input of one run of `schedule`, as the scheduler would send it: the context attributes
/// replaced with `execution_id`, `scheduled_time` and a local schedule ARN.
pub fn run_input(schedule: &Schedule, execution_id: &str, scheduled_time: &str) -> Value {
    let mut v = scheduler_input(schedule);
    let s = &mut v[SCHEDULE_KEY];
    s["execution-id"] = json!(execution_id);
    s["scheduled-time"] = json!(scheduled_time);
    s["schedule-arn"] = json!(format!(
        "arn:aws:scheduler:local:000000000000:schedule/default/{}",
        schedule.name
    ));
    s["attempt-number"] = json!("1");
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> Vec<u8> {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../tests/fixtures/eventbridge")
            .join(name);
        std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    }

    #[test]
    fn parses_the_documented_envelopes() {
        for (name, source, detail_type) in [
            (
                "cloudtrail-reboot-instances.json",
                "aws.ec2",
                "AWS API Call via CloudTrail",
            ),
            (
                "health-instance-reboot-maintenance.json",
                "aws.health",
                "AWS Health Event",
            ),
            (
                "ec2-instance-state-stopped.json",
                "aws.ec2",
                "EC2 Instance State-change Notification",
            ),
        ] {
            let e = parse(&fixture(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(
                (e.source.as_str(), e.detail_type.as_str()),
                (source, detail_type)
            );
            assert!(!e.scheduled);
            assert_eq!(e.dedupe_key(), format!("eventbridge:{}", e.id), "{name}");
        }
    }

    #[test]
    fn a_schedule_run_becomes_an_envelope_keyed_by_its_execution_id() {
        let e = parse(&fixture("scheduler-run.json")).unwrap();
        assert!(e.scheduled);
        assert_eq!(e.source, SCHEDULE_SOURCE);
        assert_eq!(e.dedupe_key(), "schedule:d32c5kddcf5bb8c3");
        assert_eq!(e.envelope["detail"]["schedule"], "nightly-reset-web");
        assert_eq!(
            e.envelope["detail"]["input"]["instance_id"],
            "i-0abcd1234ef567890"
        );
        assert_eq!(e.envelope["region"], "us-east-1");
        assert_eq!(e.envelope["account"], "123456789012");
        // What the task's tests use as a schedule run's record payload.
        let golden: Value =
            serde_json::from_slice(&fixture("scheduler-run.envelope.json")).unwrap();
        assert_eq!(e.envelope, golden);
        // The scheduler's placeholders left unreplaced do not identify a run.
        let s = Schedule {
            name: "n".into(),
            expression: "rate(1 day)".into(),
            input: json!({}),
        };
        let raw = serde_json::to_vec(&scheduler_input(&s)).unwrap();
        let err = parse(&raw).unwrap_err().to_string();
        assert!(err.contains("execution-id"), "{err}");
        let run = run_input(&s, "exec-1", "2026-01-01T03:00:00Z");
        assert_eq!(from_value(run).unwrap().dedupe_key(), "schedule:exec-1");
    }

    #[test]
    fn refuses_what_is_no_envelope() {
        for (body, field) in [
            (json!({"source": "aws.ec2", "detail-type": "x"}), "id"),
            (json!({"id": "1", "detail-type": "x"}), "source"),
            (json!({"id": "1", "source": "s"}), "detail-type"),
            (
                json!({"id": "1", "source": "s", "detail-type": "x", "detail": []}),
                "detail",
            ),
            (
                json!({"id": "1", "source": "s", "detail-type": "x", "resources": [1]}),
                "resources",
            ),
            (json!({SCHEDULE_KEY: {"execution-id": "e"}}), "name"),
        ] {
            let err = from_value(body.clone()).unwrap_err().to_string();
            assert!(err.contains(field), "{body}: {err}");
        }
        assert_eq!(
            from_value(json!([1])).unwrap_err(),
            PayloadError::NotAnObject
        );
    }

    #[test]
    fn schedules_parse_and_names_are_unique() {
        let list = parse_schedules(
            r#"[{"name": "a", "expression": "rate(1 day)", "input": {"x": 1}}, {"name": "b", "expression": "cron(0 3 * * ? *)"}]"#,
        )
        .unwrap();
        assert_eq!(list.len(), 2);
        assert_eq!(list[1].input, Value::Null);
        assert!(parse_schedules("").unwrap().is_empty());
        let dup = r#"[{"name": "a", "expression": "x"}, {"name": "a", "expression": "y"}]"#;
        assert!(parse_schedules(dup).unwrap_err().contains("twice"));
        assert!(parse_schedules(r#"[{"name": "a"}]"#).is_err());
    }
}
