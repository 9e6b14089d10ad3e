//! Dry runs at intake: the `dry_run` flag a delivery carries (a query parameter on the webhook
//! URL, or the orb body's `dry_run` field) and the services configured to always dry-run
//! (`DRY_RUN_SERVICES`). A dry run's record has [`Record::dry_run`] set and its dedupe key marked,
//! so a dry run and a real run of the same build are two events: neither dedupes the other.

use orchestrator_core::Record;
use serde_json::Value;

use super::PayloadError;

/// What marks a dry run's dedupe key (appended; a real run's key is unchanged).
pub const KEY_SUFFIX: &str = "#dry_run";

/// A `dry_run` flag: `true`/`1` or `false`/`0` (ASCII case-insensitive); anything else is refused.
pub fn parse_flag(field: &'static str, value: &str) -> Result<bool, PayloadError> {
    match value.trim().to_ascii_lowercase().as_str() {
        "true" | "1" => Ok(true),
        "false" | "0" | "" => Ok(false),
        other => Err(PayloadError::InvalidField {
            field,
            reason: format!("`{other}` is not true or false"),
        }),
    }
}

/// A body's `dry_run` field: absent or null is `false`; a boolean, or a string [`parse_flag`]
/// reads (the orb sends strings).
pub fn body_flag(obj: &serde_json::Map<String, Value>) -> Result<bool, PayloadError> {
    match obj.get("dry_run") {
        None | Some(Value::Null) => Ok(false),
        Some(Value::Bool(b)) => Ok(*b),
        Some(Value::String(s)) => parse_flag("dry_run", s),
        Some(_) => Err(PayloadError::InvalidField {
            field: "dry_run",
            reason: "must be true or false".into(),
        }),
    }
}

/// Service name patterns that always dry-run: `*` matches any run of characters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DryRunServices(Vec<String>);

impl DryRunServices {
    /// Comma-separated patterns (blank entries ignored).
    pub fn parse(list: &[String]) -> Result<Self, String> {
        let patterns: Vec<String> = list
            .iter()
            .flat_map(|s| s.split(','))
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty())
            .collect();
        if let Some(bad) = patterns.iter().find(|p| {
            !p.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.*".contains(&b))
        }) {
            return Err(format!(
                "`{bad}` is not a service pattern (letters, digits, `-`, `_`, `.`, `*`)"
            ));
        }
        Ok(Self(patterns))
    }

    /// Whether `service` matches a pattern.
    pub fn covers(&self, service: &str) -> bool {
        self.0
            .iter()
            .any(|p| glob(p.as_bytes(), service.as_bytes()))
    }
}

/// `*`-only glob match, iterative (no backtracking blow-up).
fn glob(p: &[u8], s: &[u8]) -> bool {
    let (mut pi, mut si) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while si < s.len() {
        if pi < p.len() && p[pi] == b'*' {
            star = Some((pi, si));
            pi += 1;
        } else if pi < p.len() && p[pi] == s[si] {
            pi += 1;
            si += 1;
        } else if let Some((sp, ss)) = star {
            pi = sp + 1;
            si = ss + 1;
            star = Some((sp, ss + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&b| b == b'*')
}

/// Makes `record` a dry run when the delivery asked for one (`asked`), or its service is
/// configured to always dry-run; marks its dedupe key accordingly.
pub fn apply(record: &mut Record, asked: bool, services: &DryRunServices, dedupe_key: String) {
    let configured = record
        .job
        .as_ref()
        .is_some_and(|j| services.covers(j.service.as_str()));
    record.dry_run |= asked || configured;
    record.dedupe_key = Some(if record.dry_run {
        format!("{dedupe_key}{KEY_SUFFIX}")
    } else {
        dedupe_key
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use orchestrator_core::{Job, Source};

    #[test]
    fn patterns_match_whole_names() {
        let s = DryRunServices::parse(&["shop-*, billing".into(), "*-canary".into()]).unwrap();
        for yes in ["shop-api", "shop-", "billing", "x-canary"] {
            assert!(s.covers(yes), "{yes}");
        }
        for no in ["billing-api", "myshop-api", "canary", "shop"] {
            assert!(!s.covers(no), "{no}");
        }
        assert!(!DryRunServices::default().covers("anything"));
        assert!(DryRunServices::parse(&["*".into()]).unwrap().covers("a"));
        assert!(DryRunServices::parse(&["a/b".into()]).is_err());
    }

    #[test]
    fn flags_read_true_false_and_refuse_the_rest() {
        assert!(parse_flag("dry_run", "TRUE").unwrap());
        assert!(parse_flag("dry_run", "1").unwrap());
        assert!(!parse_flag("dry_run", "false").unwrap());
        assert!(parse_flag("dry_run", "yes").is_err());
        let obj = |v: Value| v.as_object().unwrap().clone();
        assert!(body_flag(&obj(serde_json::json!({"dry_run": true}))).unwrap());
        assert!(body_flag(&obj(serde_json::json!({"dry_run": "true"}))).unwrap());
        assert!(!body_flag(&obj(serde_json::json!({"dry_run": null}))).unwrap());
        assert!(!body_flag(&obj(serde_json::json!({}))).unwrap());
        assert!(body_flag(&obj(serde_json::json!({"dry_run": 1}))).is_err());
    }

    #[test]
    fn a_dry_run_has_its_own_dedupe_key() {
        let job = Job::parse("shop-api", "acme/shop-api", "dev", "abcdef0").unwrap();
        let none = DryRunServices::default();
        let mut real = Record::received(Source::CircleciOrb, serde_json::json!({}), Some(job));
        let mut dry = real.clone();
        apply(&mut real, false, &none, "k".into());
        apply(&mut dry, true, &none, "k".into());
        assert_eq!(real.dedupe_key.as_deref(), Some("k"));
        assert!(!real.dry_run);
        assert_eq!(dry.dedupe_key.as_deref(), Some("k#dry_run"));
        assert!(dry.dry_run);
        let shop = DryRunServices::parse(&["shop-*".into()]).unwrap();
        let mut configured = real.clone();
        apply(&mut configured, false, &shop, "k".into());
        assert!(configured.dry_run);
        assert_eq!(configured.dedupe_key.as_deref(), Some("k#dry_run"));
    }
}
