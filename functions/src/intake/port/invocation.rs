//! Port automation and self-service action invocations: the payload a Port automation or action
//! sends to its backend (a signed webhook, or a message on the `<ORG_ID>.runs` Kafka topic), what
//! the rules see of it, and the record it becomes. Pure functions.
//!
//! Port builds the payload from a JSON template the user writes, with `{{ jq }}` expressions over
//! the trigger data. Two forms are accepted:
//!
//! - the template this project ships (`examples/port/`, `docs/port.md`): `runId`,
//!   `automationIdentifier` or `actionIdentifier`, `trigger`, `context`, `diff`, `inputs`, `by`;
//! - the whole trigger data (a body of `{{ . }}`): `run.id`, `event.context`, `event.diff`,
//!   `trigger.by`, `inputs`, `entity`, `action.identifier`, `automation.identifier`.
//!
//! Port's own documented example body, `{"port_context": {"runId": "{{ .run.id }}"}}`, names the
//! run too. Every Port-invoked record carries its run ([`PortRun`]); the run id is the dedupe key,
//! so a run Port delivers twice is handled once.
//!
//! What the rules and the task see is one normalised event, the same shape as a changelog event:
//! `action` (`CREATE`, `UPDATE`, `DELETE` for entity triggers, `RUN` for runs), `resourceType`
//! (`entity` or `run`), `context.blueprint`, `context.entity`, `diff.before`, `diff.after`, plus
//! `trigger`, `identifier`, `inputs`, `runId`, and the payload as received under `invocation`.
//! So a rule written for the changelog matches the automation that replaced it.
//!
//! A self-service action named in the deploy actions (`PORT_DEPLOY_ACTIONS`, default
//! `deploy_image`) with inputs `service`, `environment`, `tag` (and optionally `image`) becomes a
//! gitops pull request job, exactly the job the orb path makes; the rules are not consulted.

use orchestrator_core::{
    EntityRef, Environment, Job, PortRun, PortRunKind, Record, Service, Source, Status, Tag,
};
use serde_json::{Map, Value, json};

use super::MAX_IDENTIFIER;
use crate::intake::PayloadError;
use crate::intake::derive::{DeriveConfig, Vars};
use crate::rules::{Decision, EventFacts, RuleSet};

/// The trigger type recorded for a self-service action run.
pub const SELF_SERVICE: &str = "SELF_SERVICE";

/// The entity trigger types Port documents, and the changelog action each corresponds to.
const ENTITY_TRIGGERS: [(&str, &str); 5] = [
    ("ENTITY_CREATED", "CREATE"),
    ("ENTITY_UPDATED", "UPDATE"),
    ("ENTITY_DELETED", "DELETE"),
    ("ANY_ENTITY_CHANGE", ""),
    ("TIMER_PROPERTY_EXPIRED", "UPDATE"),
];

/// A parsed invocation.
#[derive(Debug, Clone, PartialEq)]
pub struct Invocation {
    pub run: PortRun,
    /// `ENTITY_UPDATED`, ..., `RUN_CREATED`, ..., or [`SELF_SERVICE`].
    pub trigger: String,
    pub blueprint: Option<String>,
    pub entity: Option<String>,
    /// The action's user inputs (self-service actions).
    pub inputs: Map<String, Value>,
    /// What the rules and the task see (see the module documentation).
    pub event: Value,
}

fn ident(v: Option<&Value>, field: &'static str) -> Result<Option<String>, PayloadError> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
        Some(Value::String(s)) if s.len() <= MAX_IDENTIFIER => Ok(Some(s.trim().to_owned())),
        Some(Value::String(_)) => Err(PayloadError::InvalidField {
            field,
            reason: format!("longer than {MAX_IDENTIFIER} bytes"),
        }),
        Some(_) => Err(PayloadError::InvalidField {
            field,
            reason: "must be a string".into(),
        }),
    }
}

/// The first of `pointers` present in `v`, as an identifier.
fn first(
    v: &Value,
    pointers: &[&str],
    field: &'static str,
) -> Result<Option<String>, PayloadError> {
    for p in pointers {
        if let Some(s) = ident(v.pointer(p), field)? {
            return Ok(Some(s));
        }
    }
    Ok(None)
}

/// Port run ids are `r_` and letters and digits; accept Port's identifier characters, no more.
fn check_run_id(id: &str) -> Result<(), PayloadError> {
    if id
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "_-.:".contains(c))
    {
        Ok(())
    } else {
        Err(PayloadError::InvalidField {
            field: "runId",
            reason: "holds characters a Port run id never has".into(),
        })
    }
}

fn object_or_null(v: Option<&Value>, field: &'static str) -> Result<Value, PayloadError> {
    match v {
        None | Some(Value::Null) => Ok(Value::Null),
        Some(o @ Value::Object(_)) => Ok(o.clone()),
        Some(_) => Err(PayloadError::InvalidField {
            field,
            reason: "must be an object or null".into(),
        }),
    }
}

/// Parses an invocation body.
pub fn parse(bytes: &[u8]) -> Result<Invocation, PayloadError> {
    let value: Value =
        serde_json::from_slice(bytes).map_err(|e| PayloadError::MalformedJson(e.to_string()))?;
    parse_value(value)
}

/// Parses an already decoded invocation.
pub fn parse_value(raw: Value) -> Result<Invocation, PayloadError> {
    if !raw.is_object() {
        return Err(PayloadError::NotAnObject);
    }
    let run_id = first(
        &raw,
        &[
            "/runId",
            "/run/id",
            "/port_context/runId",
            "/port_context/run_id",
        ],
        "runId",
    )?
    .ok_or(PayloadError::MissingField("runId"))?;
    check_run_id(&run_id)?;

    let automation_id = first(
        &raw,
        &["/automationIdentifier", "/automation/identifier"],
        "automationIdentifier",
    )?;
    let action_id = first(
        &raw,
        &["/actionIdentifier", "/action/identifier"],
        "actionIdentifier",
    )?;
    let has_event = raw.get("event").is_some_and(Value::is_object) || raw.get("diff").is_some();
    let has_inputs = raw.get("inputs").is_some_and(Value::is_object);
    let kind = match (&automation_id, &action_id) {
        (Some(_), None) => PortRunKind::Automation,
        (None, Some(_)) => PortRunKind::Action,
        (Some(_), Some(_)) => {
            return Err(PayloadError::InvalidField {
                field: "actionIdentifier",
                reason: "an invocation names an automation or an action, not both".into(),
            });
        }
        (None, None) if has_event => PortRunKind::Automation,
        (None, None) if has_inputs => PortRunKind::Action,
        (None, None) => {
            return Err(PayloadError::MissingField("automationIdentifier"));
        }
    };

    let context = match raw.get("context") {
        Some(c @ Value::Object(_)) => c.clone(),
        _ => raw
            .pointer("/event/context")
            .cloned()
            .unwrap_or(Value::Null),
    };
    let diff = match raw.get("diff") {
        Some(d) if !d.is_null() => d.clone(),
        _ => raw.pointer("/event/diff").cloned().unwrap_or(Value::Null),
    };
    if !(diff.is_null() || diff.is_object()) {
        return Err(PayloadError::InvalidField {
            field: "diff",
            reason: "must be an object".into(),
        });
    }
    let before = object_or_null(diff.get("before"), "diff")?;
    let after = object_or_null(diff.get("after"), "diff")?;

    let blueprint = match first(&context, &["/blueprintIdentifier", "/blueprint"], "context")? {
        Some(b) => Some(b),
        None => first(
            &raw,
            &["/entity/blueprint", "/action/blueprint", "/blueprint"],
            "blueprint",
        )?,
    };
    let entity = match first(&context, &["/entityIdentifier", "/entity"], "context")? {
        Some(e) => Some(e),
        None => match raw.get("entity") {
            Some(Value::String(_)) => ident(raw.get("entity"), "entity")?,
            _ => first(&raw, &["/entity/identifier"], "entity")?,
        },
    };

    let inputs = match raw.get("inputs") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(o)) => o.clone(),
        Some(_) => {
            return Err(PayloadError::InvalidField {
                field: "inputs",
                reason: "must be an object".into(),
            });
        }
    };

    let user = first(
        &raw,
        &[
            "/by/user/email",
            "/trigger/by/user/email",
            "/by/userId",
            "/trigger/by/userId",
            "/by",
        ],
        "by",
    )
    .unwrap_or(None);

    let trigger = match (kind, first(&raw, &["/trigger", "/event/type"], "trigger")) {
        (_, Ok(Some(t))) => t.to_ascii_uppercase(),
        (PortRunKind::Action, _) => SELF_SERVICE.to_owned(),
        // The whole trigger data does not say which entity trigger fired: the diff does.
        (PortRunKind::Automation, _) => match (before.is_null(), after.is_null()) {
            (true, false) => "ENTITY_CREATED".to_owned(),
            (false, true) => "ENTITY_DELETED".to_owned(),
            _ => "ENTITY_UPDATED".to_owned(),
        },
    };
    let (resource_type, action) = match ENTITY_TRIGGERS.iter().find(|(t, _)| *t == trigger) {
        Some((_, "")) => (
            "entity",
            match (before.is_null(), after.is_null()) {
                (true, false) => "CREATE",
                (false, true) => "DELETE",
                _ => "UPDATE",
            },
        ),
        Some((_, action)) => ("entity", *action),
        None => ("run", "RUN"),
    };
    if resource_type == "entity" && (blueprint.is_none() || entity.is_none()) {
        return Err(PayloadError::MissingField("context"));
    }

    let identifier = automation_id.clone().or(action_id.clone());
    let event = json!({
        "action": action,
        "resourceType": resource_type,
        "trigger": trigger,
        "identifier": identifier,
        "runId": run_id,
        "context": {"blueprint": blueprint, "entity": entity},
        "diff": {"before": before, "after": after},
        "inputs": inputs,
        "by": user,
        "invocation": raw,
    });
    Ok(Invocation {
        run: PortRun {
            id: run_id,
            kind,
            identifier,
            user,
        },
        trigger,
        blueprint,
        entity,
        inputs,
        event,
    })
}

impl Invocation {
    /// The facts rules look at.
    pub fn facts(&self) -> EventFacts<'_> {
        EventFacts {
            resource_type: self.event["resourceType"].as_str().unwrap_or("run"),
            action: self.event["action"].as_str().unwrap_or("RUN"),
            blueprint: self.blueprint.as_deref(),
            entity: self.entity.as_deref(),
            payload: &self.event,
            trigger: Some(&self.trigger),
            identifier: self.run.identifier.as_deref(),
        }
    }

    /// One run is handled once, whatever channel delivered it and however often.
    pub fn dedupe_key(&self) -> String {
        format!("port-run:{}", self.run.id)
    }

    /// Whether this is a self-service action named in `deploy_actions`.
    pub fn is_deploy(&self, deploy_actions: &[String]) -> bool {
        self.run.kind == PortRunKind::Action
            && self
                .run
                .identifier
                .as_deref()
                .is_some_and(|id| deploy_actions.iter().any(|d| d == id))
    }

    /// The gitops job of a deploy action: inputs `service`, `environment`, `tag`, and `image`
    /// (default: the image template with the service as `{reponame}`).
    pub fn deploy_job(&self, derive: &DeriveConfig) -> Result<Job, PayloadError> {
        let input = |name: &'static str| -> Result<&str, PayloadError> {
            match self.inputs.get(name) {
                Some(Value::String(s)) if !s.trim().is_empty() => Ok(s.trim()),
                // An entity input arrives as the entity object.
                Some(Value::Object(o)) => o
                    .get("identifier")
                    .and_then(Value::as_str)
                    .ok_or(PayloadError::MissingField(name)),
                _ => Err(PayloadError::MissingField(name)),
            }
        };
        let invalid = |field: &'static str| {
            move |e: orchestrator_core::InvalidIdent| PayloadError::InvalidField {
                field,
                reason: e.to_string(),
            }
        };
        let service = Service::parse(input("service")?).map_err(invalid("service"))?;
        let environment =
            Environment::parse(input("environment")?).map_err(invalid("environment"))?;
        let tag = Tag::parse(input("tag")?).map_err(invalid("tag"))?;
        let image = match input("image") {
            Ok(image) => orchestrator_core::ImageName::parse(image).map_err(invalid("image"))?,
            // No `image` input: the image template, with the service as `{reponame}`.
            Err(_) => {
                derive
                    .derive(
                        &Vars {
                            reponame: service.as_str(),
                            org: None,
                            job: "",
                            branch: None,
                        },
                        &tag,
                    )
                    .map_err(|e| PayloadError::InvalidField {
                        field: "image",
                        reason: format!(
                            "no `image` input, and the image template cannot name it: {e}"
                        ),
                    })?
                    .image
            }
        };
        let job = Job {
            service,
            image,
            environment,
            tag,
        };
        Ok(job)
    }

    /// The record: a deploy action's gitops job, or what the rules decided (`received` with the
    /// matched rule and its actions, or `ignored` with why).
    pub fn to_record(
        &self,
        rules: &RuleSet,
        derive: &DeriveConfig,
        deploy_actions: &[String],
    ) -> Result<Record, PayloadError> {
        let job = if self.is_deploy(deploy_actions) {
            Some(self.deploy_job(derive)?)
        } else {
            None
        };
        let mut record = Record::received(Source::Port, self.event.clone(), None);
        record.dedupe_key = Some(self.dedupe_key());
        record.port_run = Some(self.run.clone());
        record.entity = match (&self.blueprint, &self.entity) {
            (Some(b), Some(e)) => Some(EntityRef {
                blueprint: b.clone(),
                entity: e.clone(),
            }),
            _ => None,
        };
        if let Some(job) = job {
            record.job = Some(job);
            return Ok(record);
        }
        match rules.decide(&self.facts()) {
            Decision::Matched { rule, actions } => {
                record.rule = Some(rule);
                record.actions = actions;
            }
            Decision::NoMatch { reason } => {
                record.status = Status::Ignored;
                record.status_reason = Some(reason);
            }
        }
        Ok(record)
    }
}

#[cfg(test)]
mod tests;
