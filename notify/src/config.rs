//! The notification rules: one document (YAML or JSON) of rules, each
//! `{match: {service: glob, environment: glob}, events: [...], targets: [...]}`.
//!
//! ```yaml
//! rules:
//!   - match: {service: "shop-*", environment: prod}
//!     events: [pr_opened, pr_updated, task_failed, dispatch_failed, gave_up]
//!     targets: [slack, webhook]
//!   - events: [remediation_failed]   # no `match`: every service and environment
//!     targets: [slack]
//! ```
//!
//! A glob's `*` matches any run of characters (none included), `?` one character; anything
//! else matches itself. An event goes to the union of the targets of every rule that matches it,
//! once per target. The document is checked when a binary starts; an error names the field and
//! the line (`rules[0].events[1]: unknown variant ... at line 3 column 14`).

use std::collections::BTreeSet;

use serde::Deserialize;

use crate::event::Event;

/// Where a message goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TargetKind {
    /// The Slack incoming webhook (`NOTIFY_SLACK_WEBHOOK_URL`).
    Slack,
    /// The signed JSON webhook (`NOTIFY_WEBHOOK_URL`, `NOTIFY_WEBHOOK_SECRET`).
    Webhook,
}

impl TargetKind {
    pub fn as_str(&self) -> &'static str {
        match self {
            TargetKind::Slack => "slack",
            TargetKind::Webhook => "webhook",
        }
    }
}

/// A glob over a service or environment name.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct Glob(String);

impl Glob {
    /// `*`: everything.
    pub fn any() -> Self {
        Self("*".into())
    }

    /// Whether `text` matches the whole glob.
    pub fn matches(&self, text: &str) -> bool {
        let p: Vec<char> = self.0.chars().collect();
        let t: Vec<char> = text.chars().collect();
        // Iterative wildcard matching with one backtrack point (the last `*`).
        let (mut pi, mut ti) = (0, 0);
        let mut star: Option<(usize, usize)> = None;
        while ti < t.len() {
            if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
                pi += 1;
                ti += 1;
            } else if pi < p.len() && p[pi] == '*' {
                star = Some((pi, ti));
                pi += 1;
            } else if let Some((sp, st)) = star {
                pi = sp + 1;
                ti = st + 1;
                star = Some((sp, st + 1));
            } else {
                return false;
            }
        }
        p[pi..].iter().all(|c| *c == '*')
    }
}

impl TryFrom<String> for Glob {
    type Error = String;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        if s.trim().is_empty() {
            return Err("a `match` glob must not be empty (use \"*\" for any)".into());
        }
        if s.len() > 200 {
            return Err("a glob must be at most 200 bytes".into());
        }
        Ok(Self(s))
    }
}

impl Default for Glob {
    fn default() -> Self {
        Self::any()
    }
}

/// What a rule's list names (for its error message).
pub trait Listed {
    const FIELD: &'static str;
}

impl Listed for Event {
    const FIELD: &'static str = "events";
}

impl Listed for TargetKind {
    const FIELD: &'static str = "targets";
}

/// A list that must name at least one item.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "Vec<T>")]
#[serde(bound(deserialize = "T: Deserialize<'de> + Listed"))]
pub struct NonEmpty<T>(Vec<T>);

impl<T: Listed> TryFrom<Vec<T>> for NonEmpty<T> {
    type Error = String;
    fn try_from(v: Vec<T>) -> Result<Self, Self::Error> {
        if v.is_empty() {
            Err(format!("`{}` must name at least one", T::FIELD))
        } else {
            Ok(Self(v))
        }
    }
}

impl<T> NonEmpty<T> {
    pub fn items(&self) -> &[T] {
        &self.0
    }
}

/// What a rule applies to.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Match {
    #[serde(default)]
    pub service: Glob,
    #[serde(default)]
    pub environment: Glob,
}

/// One rule.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    #[serde(rename = "match", default)]
    pub matcher: Match,
    pub events: NonEmpty<Event>,
    pub targets: NonEmpty<TargetKind>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Document {
    rules: Vec<Rule>,
}

/// A rules document that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

/// The checked rules.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Rules {
    rules: Vec<Rule>,
}

impl Rules {
    /// Parses a document (YAML, or JSON, which is YAML). The error names the field and the line.
    pub fn parse(text: &str) -> Result<Self, ConfigError> {
        let doc: Document = yaml_serde::from_str(text).map_err(|e| ConfigError(e.to_string()))?;
        Ok(Self { rules: doc.rules })
    }

    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// Every target some rule names, with the index of the first rule naming it.
    pub fn named_targets(&self) -> Vec<(TargetKind, usize)> {
        let mut out: Vec<(TargetKind, usize)> = Vec::new();
        for (i, r) in self.rules.iter().enumerate() {
            for t in r.targets.items() {
                if !out.iter().any(|(k, _)| k == t) {
                    out.push((*t, i));
                }
            }
        }
        out
    }

    /// The targets `event` of `service` in `environment` goes to: the union over every matching
    /// rule, each target once.
    pub fn targets_for(
        &self,
        event: Event,
        service: &str,
        environment: &str,
    ) -> BTreeSet<TargetKind> {
        self.rules
            .iter()
            .filter(|r| {
                r.events.items().contains(&event)
                    && r.matcher.service.matches(service)
                    && r.matcher.environment.matches(environment)
            })
            .flat_map(|r| r.targets.items().iter().copied())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn glob(s: &str) -> Glob {
        Glob::try_from(s.to_owned()).unwrap()
    }

    #[test]
    fn globs_match_whole_names() {
        assert!(glob("*").matches(""));
        assert!(glob("*").matches("shop-api"));
        assert!(glob("shop-*").matches("shop-api"));
        assert!(glob("shop-*").matches("shop-"));
        assert!(!glob("shop-*").matches("xshop-api"));
        assert!(glob("*-api").matches("shop-api"));
        assert!(!glob("*-api").matches("shop-api2"));
        assert!(glob("s?op*a*i").matches("shop-api"));
        assert!(glob("prod").matches("prod"));
        assert!(!glob("prod").matches("production"));
        assert!(glob("*a*b").matches("xaxxab"));
        assert!(!glob("*a*b").matches("xaxxa"));
        assert!(glob("é*").matches("été"));
    }

    #[test]
    fn events_go_to_the_union_of_matching_rules() {
        let rules = Rules::parse(
            r#"
rules:
  - match: {service: "shop-*", environment: prod}
    events: [pr_opened, task_failed]
    targets: [slack, webhook]
  - events: [task_failed]
    targets: [slack]
  - match: {environment: "dev"}
    events: [no_change]
    targets: [webhook]
"#,
        )
        .unwrap();
        let t = |e, s, env| rules.targets_for(e, s, env).into_iter().collect::<Vec<_>>();
        use TargetKind::*;
        assert_eq!(
            t(Event::TaskFailed, "shop-api", "prod"),
            vec![Slack, Webhook]
        );
        assert_eq!(t(Event::TaskFailed, "billing", "prod"), vec![Slack]);
        assert_eq!(t(Event::PrOpened, "shop-api", "prod"), vec![Slack, Webhook]);
        assert_eq!(
            t(Event::PrOpened, "shop-api", "dev"),
            Vec::<TargetKind>::new()
        );
        assert_eq!(t(Event::NoChange, "anything", "dev"), vec![Webhook]);
        assert_eq!(
            t(Event::GaveUp, "shop-api", "prod"),
            Vec::<TargetKind>::new()
        );
        assert_eq!(rules.named_targets(), vec![(Slack, 0), (Webhook, 0)]);
    }

    #[test]
    fn json_documents_are_read_too() {
        let rules = Rules::parse(
            r#"{"rules": [{"events": ["gave_up", "planned"], "targets": ["webhook"]}]}"#,
        )
        .unwrap();
        assert_eq!(rules.rules().len(), 1);
        assert!(!rules.targets_for(Event::Planned, "a", "b").is_empty());
    }

    #[test]
    fn errors_name_the_field_and_the_line() {
        let cases = [
            (
                "rules:\n  - events: [pr_opened, pr_open]\n    targets: [slack]\n",
                &["rules[0].events[1]", "unknown variant `pr_open`", "line 2"][..],
            ),
            (
                "rules:\n  - events: [pr_opened]\n    targets: [email]\n",
                &["rules[0].targets[0]", "unknown variant `email`", "line 3"],
            ),
            (
                "rules:\n  - events: [pr_opened]\n    targets: []\n",
                &["rules[0]", "`targets` must name at least one", "line 2"],
            ),
            (
                "rules:\n  - events: [pr_opened]\n    targets: [slack]\n  - match: {service: \"\"}\n    events: [no_change]\n    targets: [slack]\n",
                &["rules[1]", "`match` glob must not be empty", "line 4"],
            ),
            (
                "rules:\n  - match: {team: a}\n    events: [pr_opened]\n    targets: [slack]\n",
                &["rules[0].match", "unknown field `team`", "line 2"],
            ),
            (
                "rules:\n  - targets: [slack]\n",
                &["rules[0]", "missing field `events`", "line 2"],
            ),
            ("rules: [\n", &["line"]),
        ];
        for (doc, wants) in cases {
            let err = Rules::parse(doc).unwrap_err().to_string();
            for want in wants {
                assert!(err.contains(want), "{want:?} not in {err:?} for:\n{doc}");
            }
        }
    }
}
