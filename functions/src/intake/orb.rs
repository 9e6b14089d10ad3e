//! The CircleCI webhook orb (`eddiewebb/webhook`) payload.
//!
//! A one-line JSON object of strings or nulls. Required: `reponame`, `job`, `vcs_revision`.
//! Unknown fields are kept (the record stores the object as received).

use serde_json::{Map, Value};

use super::PayloadError;

/// A validated orb delivery.
#[derive(Debug, Clone, PartialEq)]
pub struct OrbEvent {
    pub reponame: String,
    pub job: String,
    /// Lower-case hex, 7 to 40 characters.
    pub vcs_revision: String,
    pub build_num: Option<String>,
    pub branch: Option<String>,
    pub build_url: Option<String>,
    pub api_link: Option<String>,
    /// `success`, `failed`, or whatever the orb sent.
    pub status: Option<String>,
    /// The object as received.
    pub raw: Map<String, Value>,
}

impl OrbEvent {
    /// Whether this delivery reports a successful build (the only kind that rolls out).
    /// A missing status counts as success: older orb versions do not send one.
    pub fn succeeded(&self) -> bool {
        self.status
            .as_deref()
            .is_none_or(|s| s.eq_ignore_ascii_case("success"))
    }

    /// The dedupe key of this delivery: the same build, job and status is the same event.
    pub fn dedupe_key(&self) -> String {
        format!(
            "circleci_orb:{}:{}:{}:{}",
            self.reponame,
            self.build_num.as_deref().unwrap_or("-"),
            self.job,
            self.status.as_deref().unwrap_or("-")
        )
    }

    /// The organisation, from the v1.1 `api_link`
    /// (`https://circleci.com/api/v1.1/project/[<vcs>/]<org>/<repo>/<build>`).
    pub fn org(&self) -> Option<String> {
        let link = self.api_link.as_deref()?;
        let (_, path) = link.split_once("/project/")?;
        let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
        let pos = segs.iter().position(|s| *s == self.reponame)?;
        let org = segs.get(pos.checked_sub(1)?)?;
        is_valid_name(org).then(|| (*org).to_owned())
    }
}

/// GitHub-style repository and organisation names: ASCII letters, digits, `-`, `_`, `.`,
/// 1 to 100 characters, not `.` or `..`.
pub fn is_valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 100
        && s != "."
        && s != ".."
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// A commit SHA as the orb sends it: 7 to 40 hex digits (normalised to lower case).
pub fn parse_sha(s: &str) -> Result<String, String> {
    if !(7..=40).contains(&s.len()) {
        return Err(format!("must be 7 to 40 hex characters, got {}", s.len()));
    }
    if !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err("must be hexadecimal".into());
    }
    Ok(s.to_ascii_lowercase())
}

fn string_field(
    obj: &Map<String, Value>,
    field: &'static str,
) -> Result<Option<String>, PayloadError> {
    match obj.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        // The orb sends strings, but `build_num` as a number is harmless: accept scalars.
        Some(Value::Number(n)) => Ok(Some(n.to_string())),
        Some(_) => Err(PayloadError::InvalidField {
            field,
            reason: "must be a string".into(),
        }),
    }
}

/// A required field: a non-blank string. Unlike the optional fields, a number is refused: these
/// name the repository, the job and the commit, and a JSON number is none of them (as documented).
fn required(obj: &Map<String, Value>, field: &'static str) -> Result<String, PayloadError> {
    if let Some(Value::Number(_)) = obj.get(field) {
        return Err(PayloadError::InvalidField {
            field,
            reason: "must be a string".into(),
        });
    }
    string_field(obj, field)?.ok_or(PayloadError::MissingField(field))
}

/// Parses and validates an orb body (raw bytes, exactly as received).
pub fn parse(body: &[u8]) -> Result<OrbEvent, PayloadError> {
    let value: Value =
        serde_json::from_slice(body).map_err(|e| PayloadError::MalformedJson(e.to_string()))?;
    let Value::Object(raw) = value else {
        return Err(PayloadError::NotAnObject);
    };
    let reponame = required(&raw, "reponame")?;
    let job = required(&raw, "job")?;
    let sha = required(&raw, "vcs_revision")?;
    if !is_valid_name(&reponame) {
        return Err(PayloadError::InvalidField {
            field: "reponame",
            reason: "must be a repository name (letters, digits, `-`, `_`, `.`; at most 100)"
                .into(),
        });
    }
    let vcs_revision = parse_sha(&sha).map_err(|reason| PayloadError::InvalidField {
        field: "vcs_revision",
        reason,
    })?;
    Ok(OrbEvent {
        reponame,
        job,
        vcs_revision,
        build_num: string_field(&raw, "build_num")?,
        branch: string_field(&raw, "branch")?,
        build_url: string_field(&raw, "build_url")?,
        api_link: string_field(&raw, "api_link")?,
        status: string_field(&raw, "status")?,
        raw,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const SUCCESS: &str = include_str!("../../../tests/fixtures/circleci-orb/success.json");
    const WIRE: &str = include_str!("../../../tests/fixtures/circleci-orb/success.wire.txt");
    const FAILED: &str = include_str!("../../../tests/fixtures/circleci-orb/failed.json");
    const MISSING: &str =
        include_str!("../../../tests/fixtures/circleci-orb/missing-vcs-revision.json");

    #[test]
    fn parses_the_fixture_and_its_wire_form_alike() {
        let a = parse(SUCCESS.as_bytes()).unwrap();
        let b = parse(WIRE.as_bytes()).unwrap();
        assert_eq!(a, b);
        assert_eq!(a.reponame, "circleci-samples");
        assert_eq!(a.vcs_revision, "8f59df978e3fa133a2ee39ff66b3382342ce958c");
        assert_eq!(a.org().as_deref(), Some("eddiewebb"));
        assert!(a.succeeded());
        assert_eq!(
            a.dedupe_key(),
            "circleci_orb:circleci-samples:231:build:success"
        );
    }

    #[test]
    fn failed_builds_do_not_succeed() {
        assert!(!parse(FAILED.as_bytes()).unwrap().succeeded());
    }

    #[test]
    fn names_the_missing_field() {
        assert_eq!(
            parse(MISSING.as_bytes()).unwrap_err(),
            PayloadError::MissingField("vcs_revision")
        );
        assert_eq!(
            parse(br#"{"reponame":"r","job":"","vcs_revision":"abcdef0"}"#).unwrap_err(),
            PayloadError::MissingField("job")
        );
    }

    #[test]
    fn validates_sha_and_repository_name() {
        for bad in ["abc", "zzzzzzz", &"a".repeat(41)] {
            let body = format!(r#"{{"reponame":"r","job":"j","vcs_revision":"{bad}"}}"#);
            assert!(matches!(
                parse(body.as_bytes()).unwrap_err(),
                PayloadError::InvalidField {
                    field: "vcs_revision",
                    ..
                }
            ));
        }
        for bad in ["..", "a/b", "a b", &"x".repeat(101)] {
            let body = format!(r#"{{"reponame":"{bad}","job":"j","vcs_revision":"abcdef0"}}"#);
            assert!(matches!(
                parse(body.as_bytes()).unwrap_err(),
                PayloadError::InvalidField {
                    field: "reponame",
                    ..
                }
            ));
        }
        assert_eq!(
            parse(br#"{"reponame":"r","job":"j","vcs_revision":"ABCDEF0"}"#)
                .unwrap()
                .vcs_revision,
            "abcdef0"
        );
    }

    #[test]
    fn required_fields_are_strings_optional_ones_may_be_numbers() {
        for field in ["reponame", "job", "vcs_revision"] {
            let mut v = serde_json::json!({"reponame": "r", "job": "j", "vcs_revision": "abcdef0"});
            v[field] = serde_json::json!(1234567);
            assert_eq!(
                parse(v.to_string().as_bytes()).unwrap_err(),
                PayloadError::InvalidField {
                    field,
                    reason: "must be a string".into()
                },
                "{field}"
            );
        }
        let e =
            parse(br#"{"reponame":"r","job":"j","vcs_revision":"abcdef0","build_num":7}"#).unwrap();
        assert_eq!(e.build_num.as_deref(), Some("7"));
    }

    #[test]
    fn keeps_unknown_fields_and_rejects_non_objects() {
        let e =
            parse(br#"{"reponame":"r","job":"j","vcs_revision":"abcdef0","x":{"y":1}}"#).unwrap();
        assert_eq!(e.raw["x"]["y"], 1);
        assert_eq!(parse(b"[1]").unwrap_err(), PayloadError::NotAnObject);
        assert!(matches!(
            parse(b"{").unwrap_err(),
            PayloadError::MalformedJson(_)
        ));
    }

    #[test]
    fn org_comes_from_either_api_link_shape() {
        let mk = |link: &str| {
            parse(
                format!(r#"{{"reponame":"repo","job":"j","vcs_revision":"abcdef0","api_link":"{link}"}}"#)
                    .as_bytes(),
            )
            .unwrap()
            .org()
        };
        assert_eq!(
            mk("https://circleci.com/api/v1.1/project/github/acme/repo/9").as_deref(),
            Some("acme")
        );
        assert_eq!(
            mk("https://circleci.com/api/v1.1/project/acme/repo/9").as_deref(),
            Some("acme")
        );
        assert_eq!(mk("https://circleci.com/api/v1.1/project/repo/9"), None);
        assert_eq!(mk("https://example.com/other"), None);
    }
}
