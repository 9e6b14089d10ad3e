//! The audit record: one per event received, with the derived job and an explicit status machine.
//!
//! Invariants:
//! - A record is written (status `received` or `ignored`) before anything is launched.
//! - Status only moves along [`Status::can_become`]; stores enforce it with a conditional write,
//!   so a late or duplicate update can never overwrite a final outcome.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::action::ActionSpec;
use crate::ident::{Environment, ImageName, InvalidIdent, Service, Tag};

/// A record id: a UUID v7, so ids sort by creation time (listings rely on it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct RecordId(Uuid);

impl RecordId {
    /// A fresh, time-ordered id.
    pub fn new() -> Self {
        Self(Uuid::now_v7())
    }

    pub fn as_uuid(&self) -> &Uuid {
        &self.0
    }

    /// The smallest id of a record created at `t` (or later): every record created before `t` has
    /// a smaller id. A listing cursor ([`crate::store::ListQuery::after`]) that starts at `t`.
    pub fn first_at(t: DateTime<Utc>) -> Self {
        let ms = u64::try_from(t.timestamp_millis()).unwrap_or_default();
        Self(uuid::Builder::from_unix_timestamp_millis(ms, &[0; 10]).into_uuid())
    }
}

impl Default for RecordId {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Display for RecordId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Lower-case hyphenated form: lexicographic order equals time order.
        write!(f, "{}", self.0.hyphenated())
    }
}

impl FromStr for RecordId {
    type Err = uuid::Error;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Uuid::parse_str(s).map(Self)
    }
}

/// Where an event came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// The `eddiewebb/webhook` CircleCI orb (`POST /pullrequests`).
    CircleciOrb,
    /// CircleCI's own signed outbound webhooks.
    CircleciNative,
    /// Port changelog events (webhook or Kafka).
    Port,
    /// AWS events through EventBridge rules, and EventBridge Scheduler runs (`POST /events`,
    /// the `events` function).
    Eventbridge,
}

impl Source {
    pub fn as_str(&self) -> &'static str {
        match self {
            Source::CircleciOrb => "circleci_orb",
            Source::CircleciNative => "circleci_native",
            Source::Port => "port",
            Source::Eventbridge => "eventbridge",
        }
    }
}

impl FromStr for Source {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "circleci_orb" => Ok(Source::CircleciOrb),
            "circleci_native" => Ok(Source::CircleciNative),
            "port" => Ok(Source::Port),
            "eventbridge" => Ok(Source::Eventbridge),
            other => Err(format!("unknown source `{other}`")),
        }
    }
}

/// The lifecycle of a record.
///
/// ```text
/// received ──> dispatched ──> running ──> succeeded | no_change | failed | planned
///  │ │ │  ▲         └───────────────────> succeeded | no_change | failed | planned
///  │ │ │  └─────────────┐
///  │ │ └──> dispatch_failed  (a retry: dispatch_failed ──> dispatched)
///  │ ├────> running | failed (the launched task, or ECS, reports before the launch was recorded)
///  │ └────> ignored
///
/// rejected (created directly, final: a delivery that could not be read, kept for the audit)
/// ```
///
/// `planned` ends a dry run ([`Record::dry_run`]): the task rendered what it would change (the
/// diff, or every remediation step's parameters) and changed nothing.
///
/// `dispatch_failed` is final unless the record has a pending retry ([`Record::retry_at`]): the
/// recovery sweeper launches it again (a new attempt) or gives up, clearing `retry_at`. See
/// [`Record::is_settled`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Received,
    Ignored,
    Dispatched,
    DispatchFailed,
    Running,
    Succeeded,
    NoChange,
    Failed,
    /// A dry run's end: what would change is in the outcome; nothing was changed.
    Planned,
    /// A delivery that could not be read (a corrupt Kafka record): recorded with the reason,
    /// never launched. Created in this status; no transition leads here or leaves it.
    Rejected,
}

impl Status {
    pub const ALL: [Status; 10] = [
        Status::Received,
        Status::Ignored,
        Status::Dispatched,
        Status::DispatchFailed,
        Status::Running,
        Status::Succeeded,
        Status::NoChange,
        Status::Failed,
        Status::Planned,
        Status::Rejected,
    ];

    pub fn as_str(&self) -> &'static str {
        match self {
            Status::Received => "received",
            Status::Ignored => "ignored",
            Status::Dispatched => "dispatched",
            Status::DispatchFailed => "dispatch_failed",
            Status::Running => "running",
            Status::Succeeded => "succeeded",
            Status::NoChange => "no_change",
            Status::Failed => "failed",
            Status::Planned => "planned",
            Status::Rejected => "rejected",
        }
    }

    /// Whether a record in `self` may move to `next`. This table is the whole state machine.
    pub fn can_become(self, next: Status) -> bool {
        use Status::*;
        matches!(
            (self, next),
            (
                Received,
                Dispatched | Ignored | DispatchFailed | Running | Failed
            ) | (DispatchFailed, Dispatched)
                | (
                    Dispatched,
                    Running | Succeeded | NoChange | Failed | Planned
                )
                | (Running, Succeeded | NoChange | Failed | Planned)
        )
    }

    /// The states from which `next` may be reached.
    pub fn predecessors(next: Status) -> Vec<Status> {
        Status::ALL
            .into_iter()
            .filter(|s| s.can_become(next))
            .collect()
    }

    /// No transition leaves a final state. (`dispatch_failed` is not one: a retry leaves it; a
    /// record's own [`Record::is_settled`] says whether one will.)
    pub fn is_final(self) -> bool {
        Status::ALL.iter().all(|n| !self.can_become(*n))
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Status {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Status::ALL
            .into_iter()
            .find(|st| st.as_str() == s)
            .ok_or_else(|| format!("unknown status `{s}`"))
    }
}

/// A refused status change.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a record in status `{from}` cannot become `{to}`")]
pub struct TransitionError {
    pub from: Status,
    pub to: Status,
}

/// What the task must do, derived from the event. Identifiers only: this is what travels in the
/// RunTask overrides. Every field is parsed ([`crate::ident`]), so a job that exists is one the
/// task can run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Job {
    /// The service whose overlay changes (`kustomize/<service>/overlays/<environment>`).
    pub service: Service,
    /// The image repository (the `images[].name` kustomize matches).
    pub image: ImageName,
    /// The environment overlay.
    pub environment: Environment,
    /// The new image tag (the commit SHA).
    pub tag: Tag,
}

impl Job {
    /// Parses each identifier of a job; the error names the first that is invalid.
    pub fn parse(
        service: &str,
        image: &str,
        environment: &str,
        tag: &str,
    ) -> Result<Self, InvalidIdent> {
        Ok(Self {
            service: Service::parse(service)?,
            image: ImageName::parse(image)?,
            environment: Environment::parse(environment)?,
            tag: Tag::parse(tag)?,
        })
    }
}

/// One audited event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    pub id: RecordId,
    pub source: Source,
    #[serde(with = "rfc3339")]
    pub received_at: DateTime<Utc>,
    #[serde(with = "rfc3339")]
    pub updated_at: DateTime<Utc>,
    pub status: Status,
    /// Why the record is in its status (ignored, failed, ...), for humans.
    #[serde(default)]
    pub status_reason: Option<String>,
    /// The payload's fields as received (unknown fields included).
    pub payload: serde_json::Value,
    /// The derived job; absent when nothing could or should be derived. A stored job whose
    /// identifiers today's rules refuse (written by an older, laxer intake) reads as absent, so
    /// the record stays readable and listable; its `payload` still says what arrived.
    #[serde(default, deserialize_with = "job_as_stored")]
    pub job: Option<Job>,
    /// Identifies one delivery of one event; a second delivery with the same key is a duplicate.
    #[serde(default)]
    pub dedupe_key: Option<String>,
    /// The ECS task ARN (or `local:<pid>` in local mode).
    #[serde(default)]
    pub task_arn: Option<String>,
    /// The pull request opened by the task.
    #[serde(default)]
    pub pr_url: Option<String>,
    /// The gitops branch the task pushed.
    #[serde(default)]
    pub branch: Option<String>,
    /// Free-form outcome details reported by the task (exit code, output tail, ...).
    #[serde(default)]
    pub outcome: Option<serde_json::Value>,
    /// The newest ECS task state-change `detail.version` applied (older events are dropped).
    #[serde(default)]
    pub task_version: Option<i64>,
    /// How the ECS task stopped: exit code, stop code and reason (from the lifecycle function).
    #[serde(default)]
    pub task_stop: Option<serde_json::Value>,
    /// The catalog entity a Port event is about.
    #[serde(default)]
    pub entity: Option<EntityRef>,
    /// The name of the rule that matched a Port event (absent when none did).
    #[serde(default)]
    pub rule: Option<String>,
    /// The matched rule's actions, in order, as written (templates unrendered): the remediation
    /// task reads them from here, never from its launch contract.
    #[serde(default)]
    pub actions: Vec<ActionSpec>,
    /// The current launch attempt. Each launch carries its attempt (in the contract and in ECS's
    /// `clientToken`); a task whose attempt is not the record's current one does no work.
    #[serde(default = "first_attempt")]
    pub attempt: u32,
    /// For a `dispatch_failed` record whose cause may pass (capacity, throttling, timeouts): when
    /// the recovery sweeper launches it again. `None` otherwise: the failure is final.
    #[serde(default, with = "rfc3339_opt")]
    pub retry_at: Option<DateTime<Utc>>,
    /// Every status change and every recovery decision, oldest first (at most
    /// [`HISTORY_LIMIT`] entries: the oldest are dropped).
    #[serde(default)]
    pub history: Vec<HistoryEntry>,
    /// The Port action run a Port automation or self-service action invocation belongs to: the
    /// task and the lifecycle function report progress to it.
    #[serde(default)]
    pub port_run: Option<PortRun>,
    /// A dry run: the task renders what it would change (the diff of the overlay, the images
    /// before and after, or a remediation's rendered steps), changes nothing, and ends the record
    /// `planned`. Set at intake (a `dry_run` flag, or a service configured to always dry-run).
    #[serde(default)]
    pub dry_run: bool,
    /// Who redacted the record (`admin-token`, `iam:<arn>`): its payload and outcome are gone,
    /// the rest stays as a tombstone ([`crate::store::redact`]).
    #[serde(default)]
    pub redacted_by: Option<String>,
    /// When it was redacted.
    #[serde(default, with = "rfc3339_opt")]
    pub redacted_at: Option<DateTime<Utc>>,
}

/// The attempt of a record that was launched at most once.
pub const fn first_attempt() -> u32 {
    1
}

/// How many entries a record's history keeps.
pub const HISTORY_LIMIT: usize = 40;

/// One entry of a record's history: the status it moved to (or kept), at which attempt, why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryEntry {
    #[serde(with = "rfc3339")]
    pub at: DateTime<Utc>,
    pub status: Status,
    pub attempt: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// A Port action run (an automation's or a self-service action's execution).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortRun {
    /// Port's run id (`r_...`): `PATCH /v1/actions/runs/{id}` reports to it.
    pub id: String,
    /// What Port ran: an automation or a self-service action.
    pub kind: PortRunKind,
    /// The automation's or the action's identifier, when the payload names it.
    #[serde(default)]
    pub identifier: Option<String>,
    /// Who ran a self-service action (an e-mail or a user id), when the payload says.
    #[serde(default)]
    pub user: Option<String>,
}

/// What started a [`PortRun`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PortRunKind {
    Automation,
    Action,
}

impl PortRunKind {
    pub fn as_str(&self) -> &'static str {
        match self {
            PortRunKind::Automation => "automation",
            PortRunKind::Action => "action",
        }
    }
}

/// A Port catalog entity: its blueprint and its identifier.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EntityRef {
    pub blueprint: String,
    pub entity: String,
}

impl Record {
    /// A new record in status `received`.
    pub fn received(source: Source, payload: serde_json::Value, job: Option<Job>) -> Self {
        let now = now();
        Record {
            id: RecordId::new(),
            source,
            received_at: now,
            updated_at: now,
            status: Status::Received,
            status_reason: None,
            payload,
            job,
            dedupe_key: None,
            task_arn: None,
            pr_url: None,
            branch: None,
            outcome: None,
            task_version: None,
            task_stop: None,
            entity: None,
            rule: None,
            actions: Vec::new(),
            attempt: first_attempt(),
            retry_at: None,
            history: Vec::new(),
            port_run: None,
            dry_run: false,
            redacted_by: None,
            redacted_at: None,
        }
    }

    /// Nothing more will happen to the record: a final status, or `dispatch_failed` with no
    /// retry pending.
    pub fn is_settled(&self) -> bool {
        self.status.is_final() || (self.status == Status::DispatchFailed && self.retry_at.is_none())
    }
}

/// The current time, truncated to milliseconds so it survives every store's round trip.
pub fn now() -> DateTime<Utc> {
    let n = Utc::now();
    DateTime::from_timestamp_millis(n.timestamp_millis()).unwrap_or(n)
}

/// Timestamps are RFC 3339 with milliseconds and `Z`, in JSON and in every store.
pub mod rfc3339 {
    use super::*;
    use serde::{Deserializer, Serializer};

    pub fn format(t: &DateTime<Utc>) -> String {
        t.to_rfc3339_opts(SecondsFormat::Millis, true)
    }

    pub fn parse(s: &str) -> Result<DateTime<Utc>, chrono::ParseError> {
        DateTime::parse_from_rfc3339(s).map(|t| t.with_timezone(&Utc))
    }

    pub fn serialize<S: Serializer>(t: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format(t))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<DateTime<Utc>, D::Error> {
        let s = String::deserialize(d)?;
        parse(&s).map_err(serde::de::Error::custom)
    }
}

/// Optional timestamps, in the same format.
pub mod rfc3339_opt {
    use super::*;
    use serde::{Deserializer, Serializer};

    pub fn serialize<S: Serializer>(t: &Option<DateTime<Utc>>, s: S) -> Result<S::Ok, S::Error> {
        match t {
            Some(t) => s.serialize_some(&rfc3339::format(t)),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<DateTime<Utc>>, D::Error> {
        Option::<String>::deserialize(d)?
            .map(|s| rfc3339::parse(&s).map_err(serde::de::Error::custom))
            .transpose()
    }
}

/// Reads a stored job, or `None` when it no longer parses (see [`Record::job`]).
fn job_as_stored<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Job>, D::Error> {
    let stored = Option::<serde_json::Value>::deserialize(d)?;
    Ok(stored.and_then(|v| serde_json::from_value(v).ok()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stored_job_todays_rules_refuse_reads_as_absent() {
        let job = Job::parse("shop-api", "acme/shop-api", "dev", "1.2.3").unwrap();
        let r = Record::received(Source::CircleciOrb, serde_json::json!({"a": 1}), Some(job));
        let mut doc = serde_json::to_value(&r).unwrap();
        let back: Record = serde_json::from_value(doc.clone()).unwrap();
        assert_eq!(back, r, "a valid job round-trips");
        doc["job"]["service"] = serde_json::json!("shop..api");
        let back: Record = serde_json::from_value(doc).unwrap();
        assert_eq!(back.job, None);
        assert_eq!(back.payload, serde_json::json!({"a": 1}));
        assert_eq!(back.id, r.id);
    }

    #[test]
    fn final_states_have_no_way_out() {
        for s in [
            Status::Ignored,
            Status::Succeeded,
            Status::NoChange,
            Status::Failed,
            Status::Planned,
            Status::Rejected,
        ] {
            assert!(s.is_final(), "{s} should be final");
        }
        for s in [
            Status::Received,
            Status::Dispatched,
            Status::Running,
            Status::DispatchFailed,
        ] {
            assert!(!s.is_final(), "{s} should not be final");
        }
    }

    #[test]
    fn dispatch_failed_is_settled_unless_a_retry_is_pending() {
        let mut r = Record::received(Source::CircleciOrb, serde_json::json!({}), None);
        assert!(!r.is_settled());
        r.status = Status::DispatchFailed;
        assert!(r.is_settled());
        r.retry_at = Some(now());
        assert!(!r.is_settled());
        assert!(Status::DispatchFailed.can_become(Status::Dispatched));
        assert!(!Status::DispatchFailed.can_become(Status::Running));
    }

    #[test]
    fn outcome_cannot_go_back_to_running() {
        assert!(!Status::Succeeded.can_become(Status::Running));
        assert!(Status::Dispatched.can_become(Status::Running));
        assert_eq!(
            Status::predecessors(Status::Running),
            vec![Status::Received, Status::Dispatched]
        );
        assert_eq!(
            Status::predecessors(Status::Succeeded),
            vec![Status::Dispatched, Status::Running]
        );
        assert_eq!(
            Status::predecessors(Status::Dispatched),
            vec![Status::Received, Status::DispatchFailed]
        );
    }

    #[test]
    fn only_a_task_ends_a_record_planned() {
        assert_eq!(
            Status::predecessors(Status::Planned),
            vec![Status::Dispatched, Status::Running]
        );
        assert!(Status::Planned.is_final());
    }

    #[test]
    fn rejected_is_reached_by_no_transition() {
        assert!(Status::predecessors(Status::Rejected).is_empty());
        assert!(Status::Rejected.is_final());
    }

    #[test]
    fn records_written_before_port_fields_still_parse() {
        let r = Record::received(Source::CircleciOrb, serde_json::json!({"a": 1}), None);
        let mut doc = serde_json::to_value(&r).unwrap();
        for k in [
            "entity", "rule", "actions", "attempt", "history", "port_run", "dry_run",
        ] {
            doc.as_object_mut().unwrap().remove(k);
        }
        let back: Record = serde_json::from_value(doc).unwrap();
        assert_eq!(back, r);
        assert!(back.actions.is_empty() && back.rule.is_none() && back.entity.is_none());
    }

    #[test]
    fn status_names_round_trip() {
        for s in Status::ALL {
            assert_eq!(s.as_str().parse::<Status>().unwrap(), s);
            assert_eq!(
                serde_json::to_value(s).unwrap(),
                serde_json::json!(s.as_str())
            );
        }
    }

    #[test]
    fn first_at_sorts_before_every_later_record_and_after_every_earlier_one() {
        let before = RecordId::new();
        std::thread::sleep(std::time::Duration::from_millis(2));
        let cut = RecordId::first_at(now());
        std::thread::sleep(std::time::Duration::from_millis(2));
        let after = RecordId::new();
        assert!(before.to_string() < cut.to_string(), "{before} {cut}");
        assert!(cut.to_string() < after.to_string(), "{cut} {after}");
    }

    #[test]
    fn ids_sort_by_time() {
        let a = RecordId::new();
        std::thread::sleep(std::time::Duration::from_millis(2));
        let b = RecordId::new();
        assert!(a.to_string() < b.to_string());
    }
}
