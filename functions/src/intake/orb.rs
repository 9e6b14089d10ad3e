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
    pub workflow_id: Option<String>,
    pub branch: Option<String>,
    pub build_url: Option<String>,
    pub api_link: Option<String>,
    /// `success`, `failed`, or whatever the orb sent.
    pub status: Option<String>,
    /// The body's `dry_run` field (`true`/`"true"`), for a client that builds its own body; the
    /// orb itself sends a fixed body, so it asks with `?dry_run=true` on the URL instead.
    pub dry_run: bool,
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

    /// The dedupe key of this delivery: the same build of the same project, job, status and
    /// commit is the same event, and nothing else is.
    ///
    /// - The project is `<org>/<reponame>`, the organisation from `api_link` or else `build_url`
    ///   (lower case; `-` when neither names one): two organisations' repositories with one name
    ///   never share a key.
    /// - The build is `build_num`; without it, `workflow_id` (a rerun is a new workflow). With
    ///   neither, the key is the job, status and commit alone: a second such delivery deploys the
    ///   same tag (the commit), so recording it once loses nothing.
    pub fn dedupe_key(&self) -> String {
        let org = self
            .org()
            .or_else(|| self.org_from_build_url())
            .map_or_else(|| "-".to_owned(), |o| o.to_ascii_lowercase());
        let build = match (&self.build_num, &self.workflow_id) {
            (Some(n), _) => format!("build:{n}"),
            (None, Some(w)) => format!("workflow:{w}"),
            (None, None) => "build:-".to_owned(),
        };
        format!(
            "circleci_orb:{org}/{}:{build}:{}:{}:{}",
            self.reponame,
            self.job,
            self.status.as_deref().unwrap_or("-"),
            self.vcs_revision
        )
    }

    /// The organisation, from the v1.1 `api_link`
    /// (`https://circleci.com/api/v1.1/project/[<vcs>/]<org>/<repo>/<build>`).
    pub fn org(&self) -> Option<String> {
        let link = self.api_link.as_deref()?;
        let (_, path) = link.split_once("/project/")?;
        org_before(path, &self.reponame)
    }

    /// The organisation, from `build_url` (`https://circleci.com/<vcs>/<org>/<repo>/<build>`, or
    /// `https://app.circleci.com/pipelines/<vcs>/<org>/<repo>/...`).
    fn org_from_build_url(&self) -> Option<String> {
        let url = self.build_url.as_deref()?;
        let (_, rest) = url.split_once("://")?;
        let (_, path) = rest.split_once('/')?;
        org_before(path, &self.reponame)
    }
}

/// The segment before `reponame` in a CircleCI URL path, if it is a valid name. In every shape
/// the repository is followed by a build or pipeline number, or ends the path: that tells it from
/// an organisation (or VCS) segment of the same name.
fn org_before(path: &str, reponame: &str) -> Option<String> {
    let path = path.split(['?', '#']).next().unwrap_or_default();
    let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let pos = (1..segs.len()).find(|&i| {
        segs[i] == reponame
            && segs
                .get(i + 1)
                .is_none_or(|next| next.bytes().all(|b| b.is_ascii_digit()))
    })?;
    let org = segs[pos - 1];
    is_valid_name(org).then(|| org.to_owned())
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
        workflow_id: string_field(&raw, "workflow_id")?,
        branch: string_field(&raw, "branch")?,
        build_url: string_field(&raw, "build_url")?,
        api_link: string_field(&raw, "api_link")?,
        status: string_field(&raw, "status")?,
        dry_run: super::dry_run::body_flag(&raw)?,
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
            "circleci_orb:eddiewebb/circleci-samples:build:231:build:success:\
             8f59df978e3fa133a2ee39ff66b3382342ce958c"
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

    fn event(fields: serde_json::Value) -> OrbEvent {
        let mut v =
            serde_json::json!({"reponame": "api", "job": "build", "vcs_revision": "abcdef0"});
        for (k, x) in fields.as_object().unwrap() {
            v[k] = x.clone();
        }
        parse(v.to_string().as_bytes()).unwrap()
    }

    #[test]
    fn the_dedupe_key_names_the_organisation_from_api_link_or_build_url() {
        let acme = event(serde_json::json!({
            "build_num": "7",
            "api_link": "https://circleci.com/api/v1.1/project/github/acme/api/7"
        }));
        let globex = event(serde_json::json!({
            "build_num": "7",
            "api_link": "https://circleci.com/api/v1.1/project/github/globex/api/7"
        }));
        assert_ne!(acme.dedupe_key(), globex.dedupe_key());
        assert!(acme.dedupe_key().starts_with("circleci_orb:acme/api:"));
        // No api_link: the organisation comes from either build_url shape.
        for url in [
            "https://circleci.com/gh/Acme/api/7",
            "https://app.circleci.com/pipelines/github/acme/api/12/workflows/w-1/jobs/7",
        ] {
            let e = event(serde_json::json!({"build_num": "7", "build_url": url}));
            assert_eq!(e.dedupe_key(), acme.dedupe_key(), "{url}");
        }
        // Neither: no organisation, still a key.
        let e = event(serde_json::json!({"build_num": "7"}));
        assert!(e.dedupe_key().starts_with("circleci_orb:-/api:build:7:"));
    }

    #[test]
    fn an_organisation_named_like_its_repository_is_still_found() {
        let e = event(serde_json::json!({
            "api_link": "https://circleci.com/api/v1.1/project/github/api/api/7"
        }));
        assert_eq!(e.org().as_deref(), Some("api"));
        let e = event(serde_json::json!({
            "reponame": "9",
            "api_link": "https://circleci.com/api/v1.1/project/acme/9/9"
        }));
        assert_eq!(e.org().as_deref(), Some("acme"));
    }

    #[test]
    fn without_build_num_the_key_falls_back_to_the_workflow_and_always_names_the_commit() {
        let run = |wf: &str, sha: &str| {
            event(serde_json::json!({"workflow_id": wf, "vcs_revision": sha})).dedupe_key()
        };
        assert_eq!(run("wf-1", "abcdef0"), run("wf-1", "abcdef0"));
        assert_ne!(run("wf-1", "abcdef0"), run("wf-2", "abcdef0"));
        assert_ne!(run("wf-1", "abcdef0"), run("wf-1", "abcdef1"));
        assert!(run("wf-1", "abcdef0").contains(":workflow:wf-1:build:"));
        // build_num wins when both are there; the commit is in the key either way.
        let with_num = event(serde_json::json!({"build_num": "3", "workflow_id": "wf-1"}));
        assert!(with_num.dedupe_key().contains(":build:3:"));
        assert!(with_num.dedupe_key().ends_with(":abcdef0"));
        // The status is in the key: a failed and a successful delivery are two events.
        let failed = event(serde_json::json!({"build_num": "3", "status": "failed"}));
        let success = event(serde_json::json!({"build_num": "3", "status": "success"}));
        assert_ne!(failed.dedupe_key(), success.dedupe_key());
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
