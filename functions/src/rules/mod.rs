//! Rules: which Port events (changelog events, automation and self-service action invocations)
//! and which AWS events (EventBridge, and EventBridge Scheduler runs) need a remediation, and the
//! actions it runs.
//!
//! A rules file (YAML; `RULES_FILE`, or inline in `RULES`) is a list of rules, tried in order;
//! the first that matches wins. A Port rule matches on the event's `resourceType`, `action` and
//! blueprint (each a name, a list of names, or `"*"`), and optionally on an invocation's
//! `trigger` type and automation or action `identifier`, then on an optional CEL `condition` over
//! the event (`before`, `after`, `action`, `resourceType`, `blueprint`, `entity`, `event`). An
//! EventBridge rule (its `match` names `source` and `detail-type`) matches an EventBridge
//! envelope, its condition reading `detail`, `resources`, `region`, `account`, ... (see
//! [`AWS_CONDITION_VARIABLES`]); Port events are only tried against Port rules, and AWS events
//! against EventBridge rules. Its `actions` run in order in the task (see
//! `orchestrator_core::action`). The format is documented in `docs/rules.md`, `docs/port.md` and
//! `docs/events.md`; `examples/` holds the seed scenarios.
//!
//! Everything is checked when the file is loaded, at start: YAML shape, unique rule names and
//! step ids, each action's parameters, every condition and template compiling and reading only
//! variables it can see. An error names the rule and the reason, and the program does not start.
//!
//! Pure: no IO but [`RuleSet::load`] reading the file.

use std::collections::BTreeSet;
use std::path::Path;

use orchestrator_core::action::{ActionParams, ActionSpec, is_identifier};
use orchestrator_core::expr::{self, Expression, Scope, Template};
use serde::Deserialize;

/// Variables a rule condition reads.
pub const CONDITION_VARIABLES: [&str; 7] = expr::EVENT_VARIABLES;

/// Variables an action's templates read: the condition's, plus the record (`record.id`,
/// `record.url`) and what earlier steps reported (`steps.<id>`).
pub const TEMPLATE_VARIABLES: [&str; 9] = expr::ACTION_VARIABLES;

/// Variables the condition of an EventBridge rule reads.
pub const AWS_CONDITION_VARIABLES: [&str; 9] = expr::AWS_EVENT_VARIABLES;

/// Variables the templates of an EventBridge rule's actions read.
pub const AWS_TEMPLATE_VARIABLES: [&str; 11] = expr::AWS_ACTION_VARIABLES;

/// Most rules in one file.
pub const MAX_RULES: usize = 500;
/// Most actions in one rule.
pub const MAX_ACTIONS: usize = 20;

/// A rules file that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RulesError {
    #[error("rules file {path}: {reason}")]
    Read { path: String, reason: String },
    #[error("rules: {0}")]
    File(String),
    #[error("rule `{rule}`: {reason}")]
    Rule { rule: String, reason: String },
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileDoc {
    rules: Vec<yaml_serde::Value>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Names {
    One(String),
    Many(Vec<String>),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct MatchDoc {
    #[serde(rename = "resourceType")]
    resource_type: Names,
    action: Names,
    blueprint: Names,
    /// Port automation trigger type (`ENTITY_UPDATED`, ...) or `SELF_SERVICE`; absent: any.
    #[serde(default)]
    trigger: Option<Names>,
    /// The automation's or self-service action's identifier; absent: any.
    #[serde(default)]
    identifier: Option<Names>,
}

/// The `match` of an EventBridge rule.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AwsMatchDoc {
    source: Names,
    #[serde(rename = "detail-type")]
    detail_type: Names,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleDoc {
    name: String,
    #[serde(default)]
    description: Option<String>,
    /// A Port [`MatchDoc`], or an [`AwsMatchDoc`] when it names `source` or `detail-type`.
    #[serde(rename = "match")]
    matcher: yaml_serde::Value,
    #[serde(default)]
    condition: Option<String>,
    actions: Vec<ActionSpec>,
}

/// One of a set of names, or any.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Selector {
    Any,
    OneOf(Vec<String>),
}

impl Selector {
    fn from_doc(field: &str, names: Names) -> Result<Self, String> {
        let list = match names {
            Names::One(s) => vec![s],
            Names::Many(v) => v,
        };
        let list: Vec<String> = list.into_iter().map(|s| s.trim().to_owned()).collect();
        if list.is_empty() || list.iter().any(String::is_empty) {
            return Err(format!(
                "match.{field} must name at least one value (or \"*\" for any)"
            ));
        }
        if list.iter().any(|s| s == "*") {
            return Ok(Selector::Any);
        }
        Ok(Selector::OneOf(list))
    }

    fn matches(&self, value: Option<&str>, case_insensitive: bool) -> bool {
        match self {
            Selector::Any => true,
            Selector::OneOf(names) => value.is_some_and(|v| {
                names.iter().any(|n| {
                    if case_insensitive {
                        n.eq_ignore_ascii_case(v)
                    } else {
                        n == v
                    }
                })
            }),
        }
    }

    fn describe(&self) -> String {
        match self {
            Selector::Any => "*".into(),
            Selector::OneOf(names) => names.join("|"),
        }
    }
}

/// What a rule's `match` selects.
#[derive(Debug)]
enum Matcher {
    Port {
        resource_types: Selector,
        actions_sel: Selector,
        blueprints: Selector,
        triggers: Selector,
        identifiers: Selector,
    },
    Aws {
        sources: Selector,
        detail_types: Selector,
    },
}

/// A checked rule.
#[derive(Debug)]
pub struct Rule {
    pub name: String,
    pub description: Option<String>,
    matcher: Matcher,
    condition: Option<Expression>,
    pub actions: Vec<ActionSpec>,
}

/// The facts of one EventBridge envelope that rules look at.
#[derive(Debug, Clone, Copy)]
pub struct AwsFacts<'a> {
    pub source: &'a str,
    pub detail_type: &'a str,
    /// The whole envelope (`detail`, `resources`, `region`, `account`, ... are read from it).
    pub envelope: &'a serde_json::Value,
}

/// The facts of one event that rules look at.
#[derive(Debug, Clone, Copy)]
pub struct EventFacts<'a> {
    pub resource_type: &'a str,
    pub action: &'a str,
    pub blueprint: Option<&'a str>,
    pub entity: Option<&'a str>,
    /// The whole event (`diff.before` and `diff.after` are read from it).
    pub payload: &'a serde_json::Value,
    /// The Port automation trigger type, or `SELF_SERVICE` (invocations only; `None` for a
    /// changelog event, which a rule naming triggers does not match).
    pub trigger: Option<&'a str>,
    /// The automation's or the action's identifier (invocations only).
    pub identifier: Option<&'a str>,
}

impl EventFacts<'_> {
    /// The CEL variables of [`CONDITION_VARIABLES`] for this event.
    pub fn scope(&self) -> Scope {
        expr::event_scope(self.payload, self.blueprint, self.entity)
    }
}

/// What the rules decided for an event.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// `rule` matched: run its actions.
    Matched {
        rule: String,
        actions: Vec<ActionSpec>,
    },
    /// Nothing to do, and why (one clause per rule).
    NoMatch { reason: String },
}

impl Rule {
    /// Whether the rule is for EventBridge events (else for Port events).
    pub fn is_aws(&self) -> bool {
        matches!(self.matcher, Matcher::Aws { .. })
    }

    /// `Ok(())` when the Port rule matches; otherwise why not.
    fn check(&self, facts: &EventFacts<'_>, scope: &Scope) -> Result<(), String> {
        let Matcher::Port {
            resource_types,
            actions_sel,
            blueprints,
            triggers,
            identifiers,
        } = &self.matcher
        else {
            return Err("an EventBridge rule".into());
        };
        if !resource_types.matches(Some(facts.resource_type), false) {
            return Err(format!(
                "resourceType `{}` is not {}",
                facts.resource_type,
                resource_types.describe()
            ));
        }
        if !actions_sel.matches(Some(facts.action), true) {
            return Err(format!(
                "action `{}` is not {}",
                facts.action,
                actions_sel.describe()
            ));
        }
        if !blueprints.matches(facts.blueprint, false) {
            return Err(format!(
                "blueprint `{}` is not {}",
                facts.blueprint.unwrap_or("(none)"),
                blueprints.describe()
            ));
        }
        if !triggers.matches(facts.trigger, true) {
            return Err(format!(
                "trigger `{}` is not {}",
                facts.trigger.unwrap_or("(none: a changelog event)"),
                triggers.describe()
            ));
        }
        if !identifiers.matches(facts.identifier, false) {
            return Err(format!(
                "automation or action `{}` is not {}",
                facts.identifier.unwrap_or("(none)"),
                identifiers.describe()
            ));
        }
        self.check_condition(scope)
    }

    /// `Ok(())` when the EventBridge rule matches; otherwise why not.
    fn check_aws(&self, facts: &AwsFacts<'_>, scope: &Scope) -> Result<(), String> {
        let Matcher::Aws {
            sources,
            detail_types,
        } = &self.matcher
        else {
            return Err("a Port rule".into());
        };
        if !sources.matches(Some(facts.source), false) {
            return Err(format!(
                "source `{}` is not {}",
                facts.source,
                sources.describe()
            ));
        }
        if !detail_types.matches(Some(facts.detail_type), false) {
            return Err(format!(
                "detail-type `{}` is not {}",
                facts.detail_type,
                detail_types.describe()
            ));
        }
        self.check_condition(scope)
    }

    fn check_condition(&self, scope: &Scope) -> Result<(), String> {
        match &self.condition {
            None => Ok(()),
            Some(c) => match c.eval_bool(scope) {
                Ok(true) => Ok(()),
                Ok(false) => Err("condition is false".into()),
                Err(e) => Err(format!("condition could not be evaluated: {e}")),
            },
        }
    }
}

/// The checked rules, in file order.
#[derive(Debug, Default)]
pub struct RuleSet {
    rules: Vec<Rule>,
}

fn rule_error(rule: &str, reason: impl Into<String>) -> RulesError {
    RulesError::Rule {
        rule: rule.to_owned(),
        reason: reason.into(),
    }
}

fn check_expression(e: &Expression, known: &[&str], what: &str) -> Result<(), String> {
    let unknown = e.unknown_variables(known);
    if unknown.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "{what} `{}` reads unknown variable(s) {} (known: {})",
            e.source(),
            unknown.join(", "),
            known.join(", ")
        ))
    }
}

/// Checks one step's parameters and templates. `earlier` holds the ids of the steps before it;
/// `known` the variables its templates may read.
fn check_action(
    spec: &ActionSpec,
    earlier: &BTreeSet<String>,
    known: &[&str],
) -> Result<(), String> {
    let step = format!("step `{}` ({})", spec.id, spec.kind);
    let params = spec.params().map_err(|e| format!("{step}: {e}"))?;
    let with = serde_json::Value::Object(spec.with.clone());
    let templates = expr::templates_in(&with).map_err(|e| format!("{step}: {e}"))?;
    for (path, t) in &templates {
        for e in t.expressions() {
            check_expression(e, known, &format!("{step} `{path}`"))?;
        }
        check_step_references(t, earlier).map_err(|e| format!("{step} `{path}`: {e}"))?;
    }
    // Defaults the task renders must compile too.
    if let ActionParams::PortPatchEntity(p) = &params {
        for t in [&p.blueprint, &p.entity] {
            Template::parse(t).map_err(|e| format!("{step}: {e}"))?;
        }
    }
    Ok(())
}

/// A template may only read `steps.<id>` of an earlier step (the selections on `steps`, read
/// from each expression's syntax tree: enough to catch a typo or a step that runs later).
fn check_step_references(t: &Template, earlier: &BTreeSet<String>) -> Result<(), String> {
    for e in t.expressions() {
        if let Some(id) = e
            .fields_of("steps")
            .into_iter()
            .find(|id| !earlier.contains(id))
        {
            return Err(format!(
                "reads `steps.{id}`, but no earlier step has id `{id}`"
            ));
        }
    }
    Ok(())
}

/// The checked `match`: an EventBridge one when it names `source` or `detail-type`.
fn build_matcher(doc: yaml_serde::Value) -> Result<Matcher, String> {
    let is_aws = ["source", "detail-type"]
        .iter()
        .any(|k| doc.get(*k).is_some());
    if is_aws {
        let m: AwsMatchDoc =
            yaml_serde::from_value(doc).map_err(|e| format!("match (EventBridge): {e}"))?;
        return Ok(Matcher::Aws {
            sources: Selector::from_doc("source", m.source)?,
            detail_types: Selector::from_doc("detail-type", m.detail_type)?,
        });
    }
    let m: MatchDoc = yaml_serde::from_value(doc).map_err(|e| format!("match: {e}"))?;
    let optional = |what: &str, names: Option<Names>| match names {
        None => Ok(Selector::Any),
        Some(names) => Selector::from_doc(what, names),
    };
    Ok(Matcher::Port {
        resource_types: Selector::from_doc("resourceType", m.resource_type)?,
        actions_sel: Selector::from_doc("action", m.action)?,
        blueprints: Selector::from_doc("blueprint", m.blueprint)?,
        triggers: optional("trigger", m.trigger)?,
        identifiers: optional("identifier", m.identifier)?,
    })
}

fn build_rule(doc: RuleDoc) -> Result<Rule, RulesError> {
    let name = doc.name.trim().to_owned();
    let err = |reason: String| rule_error(&name, reason);
    let matcher = build_matcher(doc.matcher).map_err(err)?;
    let (condition_vars, template_vars): (&[&str], &[&str]) = match matcher {
        Matcher::Aws { .. } => (&AWS_CONDITION_VARIABLES, &AWS_TEMPLATE_VARIABLES),
        Matcher::Port { .. } => (&CONDITION_VARIABLES, &TEMPLATE_VARIABLES),
    };
    let condition = match doc.condition.as_deref().map(str::trim) {
        None | Some("") => None,
        Some(src) => {
            let e = Expression::compile(src).map_err(|e| err(format!("condition: {e}")))?;
            check_expression(&e, condition_vars, "condition").map_err(err)?;
            Some(e)
        }
    };
    if doc.actions.is_empty() {
        return Err(err("needs at least one action".into()));
    }
    if doc.actions.len() > MAX_ACTIONS {
        return Err(err(format!("has more than {MAX_ACTIONS} actions")));
    }
    let mut actions = Vec::with_capacity(doc.actions.len());
    let mut earlier = BTreeSet::new();
    for (i, mut spec) in doc.actions.into_iter().enumerate() {
        if spec.id.trim().is_empty() {
            spec.id = format!("step{}", i + 1);
        }
        if !is_identifier(&spec.id) {
            return Err(err(format!(
                "step id `{}` must be an identifier ([A-Za-z_][A-Za-z0-9_]*)",
                spec.id
            )));
        }
        if earlier.contains(&spec.id) {
            return Err(err(format!("step id `{}` is used twice", spec.id)));
        }
        check_action(&spec, &earlier, template_vars).map_err(err)?;
        earlier.insert(spec.id.clone());
        actions.push(spec);
    }
    Ok(Rule {
        name,
        description: doc.description,
        matcher,
        condition,
        actions,
    })
}

fn rule_label(value: &yaml_serde::Value, index: usize) -> String {
    value
        .get("name")
        .and_then(|n| n.as_str())
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .map(str::to_owned)
        .unwrap_or_else(|| format!("#{}", index + 1))
}

impl RuleSet {
    /// No rules: every event is ignored.
    pub fn empty() -> Self {
        Self::default()
    }

    /// Parses and checks a rules document.
    pub fn from_yaml(text: &str) -> Result<Self, RulesError> {
        let file: FileDoc = yaml_serde::from_str(text).map_err(|e| {
            RulesError::File(format!(
                "not a rules document (`rules:` followed by a list of rules): {e}"
            ))
        })?;
        if file.rules.len() > MAX_RULES {
            return Err(RulesError::File(format!("more than {MAX_RULES} rules")));
        }
        let mut names = BTreeSet::new();
        let mut rules = Vec::with_capacity(file.rules.len());
        for (i, value) in file.rules.into_iter().enumerate() {
            let label = rule_label(&value, i);
            let doc: RuleDoc =
                yaml_serde::from_value(value).map_err(|e| rule_error(&label, e.to_string()))?;
            if doc.name.trim().is_empty() {
                return Err(rule_error(&label, "needs a name"));
            }
            let rule = build_rule(doc)?;
            if !names.insert(rule.name.clone()) {
                return Err(rule_error(&rule.name, "the name is used twice"));
            }
            rules.push(rule);
        }
        Ok(Self { rules })
    }

    /// Reads and checks the rules file at `path`.
    pub fn load(path: &Path) -> Result<Self, RulesError> {
        let text = std::fs::read_to_string(path).map_err(|e| RulesError::Read {
            path: path.display().to_string(),
            reason: e.to_string(),
        })?;
        Self::from_yaml(&text).map_err(|e| match e {
            RulesError::File(reason) => RulesError::Read {
                path: path.display().to_string(),
                reason,
            },
            other => other,
        })
    }

    pub fn len(&self) -> usize {
        self.rules.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// The first Port rule that matches `facts`, or why none did.
    pub fn decide(&self, facts: &EventFacts<'_>) -> Decision {
        let scope = facts.scope();
        self.first_match(false, |rule| rule.check(facts, &scope))
    }

    /// The first EventBridge rule that matches `facts`, or why none did.
    pub fn decide_aws(&self, facts: &AwsFacts<'_>) -> Decision {
        let scope = expr::aws_event_scope(facts.envelope);
        self.first_match(true, |rule| rule.check_aws(facts, &scope))
    }

    /// The first rule of the kind (`aws` or Port) that `check` accepts.
    fn first_match(&self, aws: bool, check: impl Fn(&Rule) -> Result<(), String>) -> Decision {
        let candidates: Vec<&Rule> = self.rules.iter().filter(|r| r.is_aws() == aws).collect();
        if candidates.is_empty() {
            let kind = if aws { "EventBridge" } else { "Port" };
            return Decision::NoMatch {
                reason: if self.rules.is_empty() {
                    "no rule matched: there are no rules".into()
                } else {
                    format!("no rule matched: there are no {kind} rules")
                },
            };
        }
        let mut why = Vec::new();
        for rule in candidates {
            match check(rule) {
                Ok(()) => {
                    return Decision::Matched {
                        rule: rule.name.clone(),
                        actions: rule.actions.clone(),
                    };
                }
                Err(reason) => why.push(format!("`{}`: {reason}", rule.name)),
            }
        }
        let mut reason = format!("no rule matched ({})", why.join("; "));
        if reason.len() > 2000 {
            let cut = (0..=2000)
                .rev()
                .find(|i| reason.is_char_boundary(*i))
                .unwrap_or(0);
            reason.truncate(cut);
            reason.push_str("…)");
        }
        Decision::NoMatch { reason }
    }
}

#[cfg(test)]
mod tests;
