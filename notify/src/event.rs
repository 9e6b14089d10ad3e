//! The events people are told about, and which one a store transition is.
//!
//! An event is derived from a transition the store accepted and the record it produced, never
//! from a read: a transition happens once (the store's conditional write), so its event does too.

use orchestrator_core::store::Transition;
use orchestrator_core::{Record, Status};
use serde::{Deserialize, Serialize};

/// A notification event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Event {
    /// A gitops record `succeeded` and its task opened the pull request.
    PrOpened,
    /// A gitops record `succeeded` and its task updated the pull request already open (or pushed
    /// the branch without opening one).
    PrUpdated,
    /// A record ended `no_change`: the overlay already runs the tag.
    NoChange,
    /// A gitops record (or one with nothing to run) ended `failed`: the task failed, or died.
    TaskFailed,
    /// A record became `dispatch_failed`: its task could not be launched (the reason says whether
    /// a retry is pending).
    DispatchFailed,
    /// A `dispatch_failed` record's last pending retry failed: no more launch attempts.
    GaveUp,
    /// A remediation record (a rule's actions) ended `failed`.
    RemediationFailed,
    /// A dry run ended `planned`.
    Planned,
}

impl Event {
    pub const ALL: [Event; 8] = [
        Event::PrOpened,
        Event::PrUpdated,
        Event::NoChange,
        Event::TaskFailed,
        Event::DispatchFailed,
        Event::GaveUp,
        Event::RemediationFailed,
        Event::Planned,
    ];

    pub fn as_str(&self) -> &'static str {
        match self {
            Event::PrOpened => "pr_opened",
            Event::PrUpdated => "pr_updated",
            Event::NoChange => "no_change",
            Event::TaskFailed => "task_failed",
            Event::DispatchFailed => "dispatch_failed",
            Event::GaveUp => "gave_up",
            Event::RemediationFailed => "remediation_failed",
            Event::Planned => "planned",
        }
    }

    /// Whether the event is a failure (its message carries the reason).
    pub fn is_failure(&self) -> bool {
        matches!(
            self,
            Event::TaskFailed | Event::DispatchFailed | Event::GaveUp | Event::RemediationFailed
        )
    }

    /// The event of `change`, which the store accepted and which produced `after`; `None` for a
    /// transition nobody is told about (`dispatched`, `running`, a note, a successful remediation).
    pub fn of(change: &Transition, after: &Record) -> Option<Event> {
        match change.to {
            // A change that names the status it reached: the record just entered it.
            Some(to) if to == after.status => match to {
                Status::Succeeded if after.job.is_some() => Some(
                    if after
                        .outcome
                        .as_ref()
                        .and_then(|o| o.get("pr_created"))
                        .and_then(serde_json::Value::as_bool)
                        == Some(true)
                    {
                        Event::PrOpened
                    } else {
                        Event::PrUpdated
                    },
                ),
                Status::NoChange => Some(Event::NoChange),
                Status::Failed if is_remediation(after) => Some(Event::RemediationFailed),
                Status::Failed => Some(Event::TaskFailed),
                Status::DispatchFailed => Some(Event::DispatchFailed),
                // The dry runs' status, by name: this crate does not need to know it otherwise.
                other if other.as_str() == "planned" => Some(Event::Planned),
                _ => None,
            },
            // Still `dispatch_failed` (a retry's launch failed again) and the pending retry was
            // cleared: no more attempts.
            None if after.status == Status::DispatchFailed
                && change.retry_at == Some(None)
                && after.retry_at.is_none() =>
            {
                Some(Event::GaveUp)
            }
            _ => None,
        }
    }

    /// The idempotency key of the message about `record`: `<record id>:<status>:<attempt>`
    /// (`gave_up` in place of the status for [`Event::GaveUp`], whose status stays
    /// `dispatch_failed`).
    pub fn idempotency_key(&self, record: &Record) -> String {
        let status = match self {
            Event::GaveUp => "gave_up",
            _ => record.status.as_str(),
        };
        format!("{}:{status}:{}", record.id, record.attempt)
    }
}

/// A record whose work is a rule's actions, not a gitops job.
pub fn is_remediation(record: &Record) -> bool {
    record.job.is_none() && !record.actions.is_empty()
}

#[cfg(test)]
mod tests {
    use super::*;
    use orchestrator_core::action::ActionSpec;
    use orchestrator_core::{Job, Source};

    fn gitops() -> Record {
        let job = Job::parse("shop-api", "acme/shop-api", "prod", "abc1234").unwrap();
        Record::received(Source::CircleciOrb, serde_json::json!({}), Some(job))
    }

    fn through(record: &Record, steps: &[Transition]) -> (Record, Option<Event>) {
        let mut r = record.clone();
        let mut last = None;
        for s in steps {
            r = s.apply(&r).unwrap();
            last = Event::of(s, &r);
        }
        (r, last)
    }

    #[test]
    fn each_final_status_is_its_event() {
        let r = gitops();
        let run = [
            Transition::to(Status::Dispatched),
            Transition::to(Status::Running),
        ];
        let (_, e) = through(&r, &run);
        assert_eq!(e, None, "dispatched and running are not told");
        let done = |to: Status, outcome: serde_json::Value| {
            let mut steps = run.to_vec();
            steps.push(Transition {
                outcome: Some(outcome),
                ..Transition::to(to)
            });
            through(&r, &steps).1
        };
        assert_eq!(
            done(Status::Succeeded, serde_json::json!({"pr_created": true})),
            Some(Event::PrOpened)
        );
        assert_eq!(
            done(Status::Succeeded, serde_json::json!({"pr_created": false})),
            Some(Event::PrUpdated)
        );
        assert_eq!(
            done(Status::NoChange, serde_json::json!({})),
            Some(Event::NoChange)
        );
        assert_eq!(
            done(Status::Failed, serde_json::json!({})),
            Some(Event::TaskFailed)
        );

        let mut rem = Record::received(Source::Port, serde_json::json!({}), None);
        rem.actions = vec![
            serde_json::from_value::<ActionSpec>(
                serde_json::json!({"id": "s", "type": "slack.post", "with": {"text": "x"}}),
            )
            .unwrap(),
        ];
        let (_, e) = through(&rem, &[Transition::to(Status::Failed)]);
        assert_eq!(e, Some(Event::RemediationFailed));
        let (_, e) = through(
            &rem,
            &[
                Transition::to(Status::Dispatched),
                Transition::to(Status::Succeeded),
            ],
        );
        assert_eq!(e, None, "a remediation that worked is not told");
    }

    #[test]
    fn a_launch_failure_then_giving_up() {
        let r = gitops();
        let pending = Transition {
            retry_at: Some(Some(orchestrator_core::record::now())),
            ..Transition::to(Status::DispatchFailed).reason("capacity")
        };
        let (r, e) = through(&r, &[pending]);
        assert_eq!(e, Some(Event::DispatchFailed));
        assert_eq!(
            Event::DispatchFailed.idempotency_key(&r),
            format!("{}:dispatch_failed:1", r.id)
        );
        // A retry: a new attempt, whose launch fails again with a retry still pending.
        let bump = Transition {
            attempt: Some(2),
            ..Transition::default()
        };
        let again = Transition {
            retry_at: Some(Some(orchestrator_core::record::now())),
            ..Transition::default().reason("capacity again")
        };
        let (r, e) = through(&r, &[bump.clone(), again]);
        assert_eq!(e, None, "a retry that failed is not a transition");
        let bump3 = Transition {
            attempt: Some(3),
            ..Transition::default()
        };
        let give_up = Transition {
            retry_at: Some(None),
            ..Transition::default().reason("capacity; gave up after 3 launch attempt(s)")
        };
        let (r, e) = through(&r, &[bump3, give_up]);
        assert_eq!(e, Some(Event::GaveUp));
        assert_eq!(
            Event::GaveUp.idempotency_key(&r),
            format!("{}:gave_up:3", r.id)
        );
    }
}
