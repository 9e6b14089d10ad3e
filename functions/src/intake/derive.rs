//! Deriving the job (service, image, environment, tag) from a delivery, by configuration.
//!
//! - service: a template, default `{reponame}`;
//! - image repository: a template, default `{org}/{reponame}` (org from the orb's `api_link`);
//! - environment: the first matching `branch=environment` rule, default `dev`;
//! - tag: the commit SHA.
//!
//! Templates know `{reponame}`, `{org}`, `{job}` and `{branch}`; an unknown placeholder is a
//! configuration error at start, not a surprise at the first webhook.

use std::fmt;
use std::str::FromStr;

use orchestrator_core::{Environment, ImageName, Job, Service, Tag};

use super::PayloadError;

/// The values a template may use.
#[derive(Debug, Clone, Default)]
pub struct Vars<'a> {
    pub reponame: &'a str,
    pub org: Option<&'a str>,
    pub job: &'a str,
    pub branch: Option<&'a str>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Lit(String),
    Var(&'static str),
}

/// A `{placeholder}` template, checked when parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    source: String,
    parts: Vec<Part>,
}

const PLACEHOLDERS: [&str; 4] = ["reponame", "org", "job", "branch"];

impl FromStr for Template {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut parts = Vec::new();
        let mut rest = s;
        while let Some(open) = rest.find('{') {
            if open > 0 {
                parts.push(Part::Lit(rest[..open].to_owned()));
            }
            let close = rest[open..]
                .find('}')
                .ok_or_else(|| format!("template `{s}` has an unclosed `{{`"))?;
            let name = &rest[open + 1..open + close];
            let var = PLACEHOLDERS.iter().find(|p| **p == name).ok_or_else(|| {
                format!(
                    "template `{s}` uses unknown placeholder `{{{name}}}` (known: {})",
                    PLACEHOLDERS.map(|p| format!("{{{p}}}")).join(", ")
                )
            })?;
            parts.push(Part::Var(var));
            rest = &rest[open + close + 1..];
        }
        if !rest.is_empty() {
            parts.push(Part::Lit(rest.to_owned()));
        }
        if parts.is_empty() {
            return Err("template is empty".into());
        }
        Ok(Template {
            source: s.to_owned(),
            parts,
        })
    }
}

impl fmt::Display for Template {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

impl Template {
    /// Renders the template; a placeholder with no value is reported as that payload field.
    pub fn render(&self, v: &Vars<'_>) -> Result<String, PayloadError> {
        let mut out = String::new();
        for p in &self.parts {
            match p {
                Part::Lit(s) => out.push_str(s),
                Part::Var("reponame") => out.push_str(v.reponame),
                Part::Var("job") => out.push_str(v.job),
                Part::Var("org") => out.push_str(v.org.ok_or(PayloadError::InvalidField {
                    field: "api_link",
                    reason: "the organisation could not be read from it, and no default organisation is configured".into(),
                })?),
                Part::Var("branch") => {
                    out.push_str(v.branch.ok_or(PayloadError::MissingField("branch"))?)
                }
                Part::Var(other) => unreachable!("placeholder {other} is checked at parse time"),
            }
        }
        Ok(out)
    }
}

/// One `branch=environment` rule; a branch pattern ending in `*` matches by prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BranchRule {
    pub pattern: String,
    pub environment: Environment,
}

impl BranchRule {
    fn matches(&self, branch: &str) -> bool {
        match self.pattern.strip_suffix('*') {
            Some(prefix) => branch.starts_with(prefix),
            None => branch == self.pattern,
        }
    }
}

/// Parses `main=prod,release/*=staging` (commas or newlines between rules).
pub fn parse_branch_rules(s: &str) -> Result<Vec<BranchRule>, String> {
    s.split([',', '\n'])
        .map(str::trim)
        .filter(|r| !r.is_empty())
        .map(|rule| {
            let (pattern, env) = rule.split_once('=').ok_or_else(|| {
                format!("branch rule `{rule}` must look like `branch=environment`")
            })?;
            let (pattern, env) = (pattern.trim(), env.trim());
            if pattern.is_empty() {
                return Err(format!("branch rule `{rule}` has an empty branch"));
            }
            Ok(BranchRule {
                pattern: pattern.to_owned(),
                environment: Environment::parse(env).map_err(|e| e.to_string())?,
            })
        })
        .collect()
}

/// How jobs are derived. Built once from configuration.
#[derive(Debug, Clone)]
pub struct DeriveConfig {
    pub service: Template,
    pub image: Template,
    pub branches: Vec<BranchRule>,
    pub default_environment: Environment,
    pub default_org: Option<String>,
}

impl Default for DeriveConfig {
    fn default() -> Self {
        Self {
            service: "{reponame}".parse().expect("valid default"),
            image: "{org}/{reponame}".parse().expect("valid default"),
            branches: Vec::new(),
            default_environment: Environment::parse("dev").expect("valid default"),
            default_org: None,
        }
    }
}

impl DeriveConfig {
    /// The environment for a branch: the first matching rule, else the default.
    pub fn environment_for(&self, branch: Option<&str>) -> &Environment {
        branch
            .and_then(|b| self.branches.iter().find(|r| r.matches(b)))
            .map_or(&self.default_environment, |r| &r.environment)
    }

    /// Derives the job; the error names the payload field that could not support it. Service and
    /// image go through the same `parse` the launch contract and the task use, so a delivery the
    /// task would refuse is refused here, with the field it came from.
    pub fn derive(&self, v: &Vars<'_>, tag: &Tag) -> Result<Job, PayloadError> {
        let org = v.org.or(self.default_org.as_deref());
        let vars = Vars { org, ..v.clone() };
        let invalid = |e: orchestrator_core::InvalidIdent| PayloadError::InvalidField {
            field: "reponame",
            reason: e.to_string(),
        };
        let service = Service::parse(self.service.render(&vars)?).map_err(invalid)?;
        let image = ImageName::parse(self.image.render(&vars)?).map_err(invalid)?;
        Ok(Job {
            service,
            image,
            environment: self.environment_for(v.branch).clone(),
            tag: tag.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars<'a>(org: Option<&'a str>, branch: Option<&'a str>) -> Vars<'a> {
        Vars {
            reponame: "circleci-samples",
            org,
            job: "build",
            branch,
        }
    }

    fn tag(s: &str) -> Tag {
        Tag::parse(s).unwrap()
    }

    #[test]
    fn defaults_follow_the_brief() {
        let job = DeriveConfig::default()
            .derive(&vars(Some("eddiewebb"), Some("webhook")), &tag("8f59df9"))
            .unwrap();
        assert_eq!(
            job,
            Job::parse(
                "circleci-samples",
                "eddiewebb/circleci-samples",
                "dev",
                "8f59df9"
            )
            .unwrap()
        );
    }

    #[test]
    fn templates_and_branch_rules_are_configurable() {
        let cfg = DeriveConfig {
            service: "{reponame}-{job}".parse().unwrap(),
            image: "registry.example.com:5000/{org}/{reponame}"
                .parse()
                .unwrap(),
            branches: parse_branch_rules("main=prod, release/*=staging").unwrap(),
            default_environment: Environment::parse("dev").unwrap(),
            default_org: Some("fallback".into()),
        };
        let job = cfg
            .derive(&vars(None, Some("release/1.2")), &tag("abc1234"))
            .unwrap();
        assert_eq!(job.service, "circleci-samples-build");
        assert_eq!(
            job.image,
            "registry.example.com:5000/fallback/circleci-samples"
        );
        assert_eq!(job.environment, "staging");
        assert_eq!(cfg.environment_for(Some("main")), "prod");
        assert_eq!(cfg.environment_for(Some("mainline")), "dev");
        assert_eq!(cfg.environment_for(None), "dev");
    }

    #[test]
    fn missing_org_names_api_link() {
        let err = DeriveConfig::default()
            .derive(&vars(None, None), &tag("abc1234"))
            .unwrap_err();
        assert!(matches!(
            err,
            PayloadError::InvalidField {
                field: "api_link",
                ..
            }
        ));
    }

    #[test]
    fn bad_templates_and_rules_fail_at_parse_time() {
        assert!(
            "{repo}"
                .parse::<Template>()
                .unwrap_err()
                .contains("unknown placeholder")
        );
        assert!("{reponame".parse::<Template>().is_err());
        assert!("".parse::<Template>().is_err());
        assert!(parse_branch_rules("main").is_err());
        assert!(parse_branch_rules("main=../prod").is_err());
        assert!(parse_branch_rules("=prod").is_err());
    }

    #[test]
    fn derived_service_must_be_a_safe_path_segment() {
        let cfg = DeriveConfig {
            service: "{branch}".parse().unwrap(),
            ..DeriveConfig::default()
        };
        let err = cfg
            .derive(&vars(Some("o"), Some("feature/x")), &tag("abc1234"))
            .unwrap_err();
        assert!(matches!(err, PayloadError::InvalidField { .. }));
    }

    #[test]
    fn a_repository_the_task_would_refuse_is_refused_naming_reponame() {
        for reponame in ["foo.lock", "a..b"] {
            let v = Vars {
                reponame,
                ..vars(Some("o"), None)
            };
            match DeriveConfig::default().derive(&v, &tag("abc1234")) {
                Err(PayloadError::InvalidField { field, reason }) => {
                    assert_eq!(field, "reponame");
                    assert!(reason.contains(reponame), "{reason}");
                }
                other => panic!("{reponame}: {other:?}"),
            }
        }
    }
}
