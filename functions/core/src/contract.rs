//! The launch contract: the environment variables that carry a job from the launcher (ECS RunTask
//! overrides, or a local child process) to the task binary. Defined once, used by both sides.
//!
//! Identifiers only. Overrides are capped at 8 KiB and are visible in DescribeTasks and
//! CloudTrail, so no secret and no payload ever goes here: the task reads anything bigger from the
//! record, and secrets from its own task definition.

use std::collections::BTreeMap;

use crate::ident::{Environment, ImageName, InvalidIdent, Service, Tag};
use crate::record::{Job, RecordId};

/// Names of the variables, in the order they are written.
pub mod vars {
    pub const RECORD_ID: &str = "ORCH_RECORD_ID";
    pub const KIND: &str = "ORCH_JOB_KIND";
    pub const ATTEMPT: &str = "ORCH_ATTEMPT";
    pub const SERVICE: &str = "ORCH_SERVICE";
    pub const IMAGE: &str = "ORCH_IMAGE";
    pub const TAG: &str = "ORCH_TAG";
    pub const ENVIRONMENT: &str = "ORCH_ENVIRONMENT";
    /// `1` for a dry run; written only then (absent means a real run).
    pub const DRY_RUN: &str = "ORCH_DRY_RUN";
    pub const ALL: [&str; 8] = [
        RECORD_ID,
        KIND,
        ATTEMPT,
        SERVICE,
        IMAGE,
        TAG,
        ENVIRONMENT,
        DRY_RUN,
    ];
}

/// Reads the required variable `name` and parses it with `parse`.
fn parse_var<T>(
    get: &impl Fn(&str) -> Option<String>,
    name: &'static str,
    parse: fn(String) -> Result<T, InvalidIdent>,
) -> Result<T, ContractError> {
    let v = get(name)
        .filter(|v| !v.trim().is_empty())
        .ok_or(ContractError::Missing(name))?;
    parse(v).map_err(|e| ContractError::Invalid {
        name,
        reason: e.to_string(),
    })
}

/// What the task is asked to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobKind {
    /// Open (or update) the gitops pull request for [`Job`].
    GitopsPr,
    /// Run the actions of the rule a Port event matched. The event and the actions are read from
    /// the record; the contract carries only the record id and this kind.
    Remediation,
}

impl JobKind {
    pub fn as_str(&self) -> &'static str {
        match self {
            JobKind::GitopsPr => "gitops_pr",
            JobKind::Remediation => "remediation",
        }
    }
}

/// The job as the task receives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LaunchContract {
    pub record_id: RecordId,
    pub kind: JobKind,
    /// The launch attempt ([`crate::Record::attempt`]): the task works only while it is the
    /// record's current one. Absent from an older launcher's environment: read as 1.
    pub attempt: u32,
    /// The gitops job ([`JobKind::GitopsPr`]); `None` for a [`JobKind::Remediation`], whose
    /// variables `ORCH_SERVICE` .. `ORCH_ENVIRONMENT` are neither written nor read.
    pub job: Option<Job>,
    /// A dry run ([`crate::Record::dry_run`]): render what would change, change nothing, end the
    /// record `planned`. The task also reads the flag from the record, and dry-runs when either
    /// says so.
    pub dry_run: bool,
}

/// A contract that could not be read from the environment.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ContractError {
    #[error("environment variable {0} is missing or empty")]
    Missing(&'static str),
    #[error("environment variable {name} is invalid: {reason}")]
    Invalid { name: &'static str, reason: String },
}

impl LaunchContract {
    pub fn gitops_pr(record_id: RecordId, job: Job) -> Self {
        Self {
            record_id,
            kind: JobKind::GitopsPr,
            attempt: crate::record::first_attempt(),
            job: Some(job),
            dry_run: false,
        }
    }

    /// The same job, for launch attempt `attempt`.
    pub fn with_attempt(mut self, attempt: u32) -> Self {
        self.attempt = attempt;
        self
    }

    /// A remediation: the task reads the event and the actions from record `record_id`.
    pub fn remediation(record_id: RecordId) -> Self {
        Self {
            record_id,
            kind: JobKind::Remediation,
            attempt: crate::record::first_attempt(),
            job: None,
            dry_run: false,
        }
    }

    /// The same job, as a dry run when `dry_run`.
    pub fn with_dry_run(mut self, dry_run: bool) -> Self {
        self.dry_run = dry_run;
        self
    }

    /// The variables to set, as (name, value) pairs in a stable order.
    pub fn to_env(&self) -> Vec<(&'static str, String)> {
        let mut env = vec![
            (vars::RECORD_ID, self.record_id.to_string()),
            (vars::KIND, self.kind.as_str().to_owned()),
            (vars::ATTEMPT, self.attempt.to_string()),
        ];
        if let (JobKind::GitopsPr, Some(job)) = (self.kind, &self.job) {
            env.extend([
                (vars::SERVICE, job.service.to_string()),
                (vars::IMAGE, job.image.to_string()),
                (vars::TAG, job.tag.to_string()),
                (vars::ENVIRONMENT, job.environment.to_string()),
            ]);
        }
        if self.dry_run {
            env.push((vars::DRY_RUN, "1".to_owned()));
        }
        env
    }

    /// Reads the contract through `get` (usually `std::env::var`).
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, ContractError> {
        let req = |name: &'static str| {
            get(name)
                .filter(|v| !v.trim().is_empty())
                .ok_or(ContractError::Missing(name))
        };
        let record_id =
            req(vars::RECORD_ID)?
                .parse::<RecordId>()
                .map_err(|e| ContractError::Invalid {
                    name: vars::RECORD_ID,
                    reason: e.to_string(),
                })?;
        let attempt =
            match get(vars::ATTEMPT).filter(|v| !v.trim().is_empty()) {
                None => crate::record::first_attempt(),
                Some(v) => v.parse::<u32>().ok().filter(|a| *a >= 1).ok_or_else(|| {
                    ContractError::Invalid {
                        name: vars::ATTEMPT,
                        reason: format!("`{v}` is not an attempt number (1, 2, ...)"),
                    }
                })?,
            };
        let dry_run = match get(vars::DRY_RUN).as_deref().map(str::trim) {
            None | Some("" | "0") => false,
            Some("1") => true,
            Some(other) => {
                return Err(ContractError::Invalid {
                    name: vars::DRY_RUN,
                    reason: format!("`{other}` is not 1 or 0"),
                });
            }
        };
        let kind = match req(vars::KIND)?.as_str() {
            "gitops_pr" => JobKind::GitopsPr,
            "remediation" => {
                return Ok(Self::remediation(record_id)
                    .with_attempt(attempt)
                    .with_dry_run(dry_run));
            }
            other => {
                return Err(ContractError::Invalid {
                    name: vars::KIND,
                    reason: format!("unknown job kind `{other}`"),
                });
            }
        };
        // Each identifier through its one `parse`: the task never sees a job the intake refuses.
        let job = Job {
            service: parse_var(&get, vars::SERVICE, Service::parse)?,
            image: parse_var(&get, vars::IMAGE, ImageName::parse)?,
            tag: parse_var(&get, vars::TAG, Tag::parse)?,
            environment: parse_var(&get, vars::ENVIRONMENT, Environment::parse)?,
        };
        Ok(Self {
            record_id,
            kind,
            attempt,
            job: Some(job),
            dry_run,
        })
    }

    /// Reads the contract from the process environment.
    pub fn from_env() -> Result<Self, ContractError> {
        Self::from_lookup(|k| std::env::var(k).ok())
    }

    /// The contract as a map, handy for tests and logs (it holds no secret).
    pub fn to_map(&self) -> BTreeMap<String, String> {
        self.to_env()
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job() -> Job {
        Job::parse(
            "svc",
            "org/svc",
            "dev",
            "8f59df978e3fa133a2ee39ff66b3382342ce958c",
        )
        .unwrap()
    }

    /// The contract written out by hand: names, order and values. Every other test reads names
    /// from [`vars`]; this one fails when they change.
    #[test]
    fn the_variables_are_exactly_these() {
        let id = RecordId::new();
        let gitops = LaunchContract::gitops_pr(id, job()).to_env();
        assert_eq!(
            gitops,
            [
                ("ORCH_RECORD_ID", id.to_string()),
                ("ORCH_JOB_KIND", "gitops_pr".to_owned()),
                ("ORCH_ATTEMPT", "1".to_owned()),
                ("ORCH_SERVICE", "svc".to_owned()),
                ("ORCH_IMAGE", "org/svc".to_owned()),
                (
                    "ORCH_TAG",
                    "8f59df978e3fa133a2ee39ff66b3382342ce958c".to_owned()
                ),
                ("ORCH_ENVIRONMENT", "dev".to_owned()),
            ]
        );
        assert_eq!(
            LaunchContract::remediation(id).with_attempt(3).to_env(),
            [
                ("ORCH_RECORD_ID", id.to_string()),
                ("ORCH_JOB_KIND", "remediation".to_owned()),
                ("ORCH_ATTEMPT", "3".to_owned()),
            ]
        );
        assert_eq!(
            LaunchContract::remediation(id).with_dry_run(true).to_env(),
            [
                ("ORCH_RECORD_ID", id.to_string()),
                ("ORCH_JOB_KIND", "remediation".to_owned()),
                ("ORCH_ATTEMPT", "1".to_owned()),
                ("ORCH_DRY_RUN", "1".to_owned()),
            ]
        );
        assert_eq!(
            vars::ALL,
            [
                "ORCH_RECORD_ID",
                "ORCH_JOB_KIND",
                "ORCH_ATTEMPT",
                "ORCH_SERVICE",
                "ORCH_IMAGE",
                "ORCH_TAG",
                "ORCH_ENVIRONMENT",
                "ORCH_DRY_RUN"
            ]
        );
    }

    #[test]
    fn a_dry_run_round_trips_and_a_bad_flag_is_refused() {
        let c = LaunchContract::gitops_pr(RecordId::new(), job()).with_dry_run(true);
        let mut map = c.to_map();
        assert_eq!(map[vars::DRY_RUN], "1");
        assert_eq!(
            LaunchContract::from_lookup(|k| map.get(k).cloned()).unwrap(),
            c
        );
        map.remove(vars::DRY_RUN);
        assert!(
            !LaunchContract::from_lookup(|k| map.get(k).cloned())
                .unwrap()
                .dry_run
        );
        map.insert(vars::DRY_RUN.into(), "yes".into());
        assert!(matches!(
            LaunchContract::from_lookup(|k| map.get(k).cloned()).unwrap_err(),
            ContractError::Invalid {
                name: "ORCH_DRY_RUN",
                ..
            }
        ));
    }

    #[test]
    fn round_trips_through_the_environment() {
        let c = LaunchContract::gitops_pr(RecordId::new(), job());
        let map = c.to_map();
        let back = LaunchContract::from_lookup(|k| map.get(k).cloned()).unwrap();
        assert_eq!(back, c);
        assert_eq!(
            map.len(),
            vars::ALL.len() - 1,
            "no ORCH_DRY_RUN in a real run"
        );
    }

    #[test]
    fn a_remediation_carries_the_record_id_and_kind_only() {
        let c = LaunchContract::remediation(RecordId::new());
        let map = c.to_map();
        assert_eq!(
            map.keys().map(String::as_str).collect::<Vec<_>>(),
            vec![vars::ATTEMPT, vars::KIND, vars::RECORD_ID]
        );
        assert_eq!(map[vars::KIND], "remediation");
        let back = LaunchContract::from_lookup(|k| map.get(k).cloned()).unwrap();
        assert_eq!(back, c);
        assert_eq!(back.kind, JobKind::Remediation);
    }

    #[test]
    fn names_the_missing_variable() {
        let c = LaunchContract::gitops_pr(RecordId::new(), job());
        let mut map = c.to_map();
        map.remove(vars::TAG);
        let err = LaunchContract::from_lookup(|k| map.get(k).cloned()).unwrap_err();
        assert_eq!(err, ContractError::Missing(vars::TAG));
        assert!(err.to_string().contains("ORCH_TAG"));
    }

    #[test]
    fn refuses_an_identifier_the_task_cannot_use() {
        let c = LaunchContract::gitops_pr(RecordId::new(), job());
        for (name, bad) in [
            (vars::SERVICE, "foo.lock"),
            (vars::ENVIRONMENT, "a..b"),
            (vars::IMAGE, "org/svc=evil"),
            (vars::TAG, "v1 --force"),
        ] {
            let mut map = c.to_map();
            map.insert(name.into(), bad.into());
            let err = LaunchContract::from_lookup(|k| map.get(k).cloned()).unwrap_err();
            assert!(
                matches!(&err, ContractError::Invalid { name: n, reason } if *n == name && reason.contains(bad)),
                "{err}"
            );
        }
    }

    #[test]
    fn an_absent_attempt_is_the_first_and_a_bad_one_is_refused() {
        let c = LaunchContract::gitops_pr(RecordId::new(), job()).with_attempt(4);
        let mut map = c.to_map();
        assert_eq!(
            LaunchContract::from_lookup(|k| map.get(k).cloned()).unwrap(),
            c
        );
        map.remove(vars::ATTEMPT);
        assert_eq!(
            LaunchContract::from_lookup(|k| map.get(k).cloned())
                .unwrap()
                .attempt,
            1
        );
        for bad in ["0", "-1", "two"] {
            map.insert(vars::ATTEMPT.into(), bad.into());
            let err = LaunchContract::from_lookup(|k| map.get(k).cloned()).unwrap_err();
            assert!(
                matches!(
                    &err,
                    ContractError::Invalid {
                        name: "ORCH_ATTEMPT",
                        ..
                    }
                ),
                "{bad}: {err}"
            );
        }
    }

    #[test]
    fn rejects_a_bad_record_id() {
        let c = LaunchContract::gitops_pr(RecordId::new(), job());
        let mut map = c.to_map();
        map.insert(vars::RECORD_ID.into(), "nope".into());
        let err = LaunchContract::from_lookup(|k| map.get(k).cloned()).unwrap_err();
        assert!(matches!(
            err,
            ContractError::Invalid {
                name: "ORCH_RECORD_ID",
                ..
            }
        ));
    }
}
