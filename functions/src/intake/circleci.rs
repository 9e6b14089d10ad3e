//! CircleCI's own outbound webhooks (`workflow-completed`, `job-completed`).
//!
//! - Signature: `circleci-signature: v1=<hex HMAC-SHA256(secret, raw body)>[,v2=...]`. Only `v1`
//!   is checked (the newest version we know); unknown versions are ignored, never trusted.
//! - Redelivery: CircleCI may deliver an event more than once; the top-level `id` is the dedupe key.
//! - The SHA is `pipeline.vcs.revision` or `pipeline.trigger_parameters.git.checkout_sha`; the
//!   service comes from `project.name`.

use hmac::{KeyInit, Mac};
use serde_json::{Map, Value};
use sha2::Sha256;

use super::PayloadError;
use super::orb::{is_valid_name, parse_sha};

/// At most this many `v1` signatures are read from one header. CircleCI sends one, two while a
/// secret rotates; a header with more is refused whole. The MAC is computed once whatever the
/// header holds, so the check's work does not grow with what a caller sends.
pub const MAX_V1_SIGNATURES: usize = 4;

/// The `v1` signatures of a `circleci-signature` header (there may be several during a secret
/// rotation). Entries that are not `v1=<64 hex>` are ignored; `None` when the header holds more
/// than [`MAX_V1_SIGNATURES`] of them.
pub fn v1_signatures(header: &str) -> Option<Vec<[u8; 32]>> {
    let mut found = Vec::new();
    for part in header.split(',') {
        let Some((version, value)) = part.trim().split_once('=') else {
            continue;
        };
        if version.trim() != "v1" {
            continue;
        }
        if found.len() == MAX_V1_SIGNATURES {
            return None;
        }
        if let Some(sig) = hex::decode(value.trim())
            .ok()
            .and_then(|b| <[u8; 32]>::try_from(b).ok())
        {
            found.push(sig);
        }
    }
    Some(found)
}

/// Whether `header` carries a valid `v1` signature of `body` under `secret`. The MAC is computed
/// once, then compared with each candidate in constant time.
pub fn verify(secret: &[u8], body: &[u8], header: &str) -> bool {
    let Some(candidates) = v1_signatures(header) else {
        return false;
    };
    if candidates.is_empty() {
        return false;
    }
    let Ok(mut mac) = <Hmac256 as KeyInit>::new_from_slice(secret) else {
        return false;
    };
    mac.update(body);
    let expected = mac.finalize().into_bytes();
    candidates
        .iter()
        .fold(subtle::Choice::from(0), |any, sig| {
            any | subtle::ConstantTimeEq::ct_eq(expected.as_slice(), sig.as_slice())
        })
        .into()
}

type Hmac256 = hmac::Hmac<Sha256>;

/// Which event kind it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    WorkflowCompleted,
    JobCompleted,
}

/// A validated native webhook event.
#[derive(Debug, Clone, PartialEq)]
pub struct NativeEvent {
    /// The delivery's event id (the dedupe key).
    pub id: String,
    pub event_type: EventType,
    /// `project.name`.
    pub project: String,
    /// `organization.name`.
    pub org: Option<String>,
    /// The workflow or job name (whichever completed).
    pub name: String,
    /// The workflow or job status.
    pub status: Option<String>,
    pub sha: String,
    pub branch: Option<String>,
    /// A link for humans: the workflow URL.
    pub url: Option<String>,
    pub raw: Map<String, Value>,
}

impl NativeEvent {
    pub fn succeeded(&self) -> bool {
        self.status.as_deref() == Some("success")
    }

    pub fn dedupe_key(&self) -> String {
        format!("circleci_native:{}", self.id)
    }
}

fn str_at<'a>(v: &'a Value, path: &[&str]) -> Option<&'a str> {
    path.iter()
        .try_fold(v, |cur, k| cur.get(k))
        .and_then(Value::as_str)
        .filter(|s| !s.trim().is_empty())
}

/// Parses and validates a native webhook body (raw bytes, as signed).
pub fn parse(body: &[u8]) -> Result<NativeEvent, PayloadError> {
    let value: Value =
        serde_json::from_slice(body).map_err(|e| PayloadError::MalformedJson(e.to_string()))?;
    if !value.is_object() {
        return Err(PayloadError::NotAnObject);
    }
    let id = str_at(&value, &["id"]).ok_or(PayloadError::MissingField("id"))?;
    let event_type = match str_at(&value, &["type"]).ok_or(PayloadError::MissingField("type"))? {
        "workflow-completed" => EventType::WorkflowCompleted,
        "job-completed" => EventType::JobCompleted,
        other => {
            return Err(PayloadError::InvalidField {
                field: "type",
                reason: format!("`{other}` is not workflow-completed or job-completed"),
            });
        }
    };
    let project =
        str_at(&value, &["project", "name"]).ok_or(PayloadError::MissingField("project.name"))?;
    if !is_valid_name(project) {
        return Err(PayloadError::InvalidField {
            field: "project.name",
            reason: "must be a repository name (letters, digits, `-`, `_`, `.`)".into(),
        });
    }
    let (name_path, status_path, name_field) = match event_type {
        EventType::WorkflowCompleted => (
            ["workflow", "name"],
            ["workflow", "status"],
            "workflow.name",
        ),
        EventType::JobCompleted => (["job", "name"], ["job", "status"], "job.name"),
    };
    let name = str_at(&value, &name_path).ok_or(PayloadError::MissingField(name_field))?;
    let sha = str_at(&value, &["pipeline", "vcs", "revision"])
        .or_else(|| {
            str_at(
                &value,
                &["pipeline", "trigger_parameters", "git", "checkout_sha"],
            )
        })
        .ok_or(PayloadError::MissingField("pipeline.vcs.revision"))?;
    let sha = parse_sha(sha).map_err(|reason| PayloadError::InvalidField {
        field: "pipeline.vcs.revision",
        reason,
    })?;
    let branch = str_at(&value, &["pipeline", "vcs", "branch"])
        .or_else(|| str_at(&value, &["pipeline", "trigger_parameters", "git", "branch"]));
    Ok(NativeEvent {
        id: id.to_owned(),
        event_type,
        project: project.to_owned(),
        org: str_at(&value, &["organization", "name"]).map(str::to_owned),
        name: name.to_owned(),
        status: str_at(&value, &status_path).map(str::to_owned),
        sha,
        branch: branch.map(str::to_owned),
        url: str_at(&value, &["workflow", "url"]).map(str::to_owned),
        raw: value.as_object().cloned().unwrap_or_default(),
    })
}

/// Which workflow and job names roll out. `*` matches every name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NativeFilter {
    pub workflows: Vec<String>,
    pub jobs: Vec<String>,
}

impl Default for NativeFilter {
    /// Every completed workflow rolls out; job events only when their job is listed (so a
    /// project that sends both does not roll out twice).
    fn default() -> Self {
        Self {
            workflows: vec!["*".into()],
            jobs: Vec::new(),
        }
    }
}

impl NativeFilter {
    /// `None` when the event may roll out, otherwise the reason it may not.
    pub fn refusal(&self, e: &NativeEvent) -> Option<String> {
        let (list, what, var) = match e.event_type {
            EventType::WorkflowCompleted => (&self.workflows, "workflow", "CIRCLECI_WORKFLOWS"),
            EventType::JobCompleted => (&self.jobs, "job", "CIRCLECI_JOBS"),
        };
        let allowed = list.iter().any(|n| n == "*" || *n == e.name);
        (!allowed).then(|| format!("{what} `{}` is not listed in {var}", e.name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const WORKFLOW: &str =
        include_str!("../../../tests/fixtures/circleci-native/workflow-completed.json");
    const JOB: &str =
        include_str!("../../../tests/fixtures/circleci-native/job-completed-github-app.json");
    const VECTORS: &str =
        include_str!("../../../tests/fixtures/circleci-native/signature-vectors.json");

    #[test]
    fn all_published_vectors_verify_and_mutations_do_not() {
        let v: Value = serde_json::from_str(VECTORS).unwrap();
        let vectors = v["vectors"].as_array().unwrap();
        assert_eq!(vectors.len(), 3);
        for vec in vectors {
            let (secret, body, sig) = (
                vec["secret"].as_str().unwrap(),
                vec["body"].as_str().unwrap(),
                vec["v1"].as_str().unwrap(),
            );
            assert!(verify(
                secret.as_bytes(),
                body.as_bytes(),
                &format!("v1={sig}")
            ));
            assert!(verify(
                secret.as_bytes(),
                body.as_bytes(),
                &format!("v2=abc,v1={sig}")
            ));
            assert!(!verify(
                secret.as_bytes(),
                format!("{body} ").as_bytes(),
                &format!("v1={sig}")
            ));
            assert!(!verify(b"wrong", body.as_bytes(), &format!("v1={sig}")));
            assert!(!verify(
                secret.as_bytes(),
                body.as_bytes(),
                &format!("v2={sig}")
            ));
            let mut flipped = sig.to_owned().into_bytes();
            flipped[0] = if flipped[0] == b'0' { b'1' } else { b'0' };
            assert!(!verify(
                secret.as_bytes(),
                body.as_bytes(),
                &format!("v1={}", String::from_utf8(flipped).unwrap())
            ));
        }
        assert!(!verify(b"secret", b"x", ""));
        assert!(!verify(b"secret", b"x", "v1="));
        assert!(!verify(b"secret", b"x", "v1=zz"));
    }

    /// A rotation's two signatures verify whichever is right; a header with more `v1` signatures
    /// than [`MAX_V1_SIGNATURES`] is refused whole, even when one of them is right.
    #[test]
    fn the_number_of_v1_entries_is_capped() {
        let v: Value = serde_json::from_str(VECTORS).unwrap();
        let vec = &v["vectors"][0];
        let (secret, body, sig) = (
            vec["secret"].as_str().unwrap().as_bytes(),
            vec["body"].as_str().unwrap().as_bytes(),
            vec["v1"].as_str().unwrap(),
        );
        let wrong = "0".repeat(64);
        assert!(verify(secret, body, &format!("v1={wrong},v1={sig}")));
        let at_cap = format!(
            "{}v1={sig}",
            format!("v1={wrong},").repeat(MAX_V1_SIGNATURES - 1)
        );
        assert!(verify(secret, body, &at_cap));
        let over_cap = format!(
            "{}v1={sig}",
            format!("v1={wrong},").repeat(MAX_V1_SIGNATURES)
        );
        assert!(!verify(secret, body, &over_cap));
        let first_right = format!(
            "v1={sig}{}",
            format!(",v1={wrong}").repeat(MAX_V1_SIGNATURES)
        );
        assert!(!verify(secret, body, &first_right));
        assert_eq!(v1_signatures(&over_cap), None);
    }

    #[test]
    fn parses_both_fixture_shapes() {
        let w = parse(WORKFLOW.as_bytes()).unwrap();
        assert_eq!(
            (w.event_type, w.project.as_str(), w.name.as_str()),
            (
                EventType::WorkflowCompleted,
                "webhook-service",
                "build-test-deploy"
            )
        );
        assert_eq!(w.sha, "1dc6aa69429bff4806ad6afe58d3d8f57e25973e");
        assert_eq!(
            (w.branch.as_deref(), w.org.as_deref()),
            (Some("main"), Some("circleci"))
        );
        assert!(w.succeeded());
        assert_eq!(
            w.dedupe_key(),
            "circleci_native:3888f21b-eaa7-38e3-8f3d-75a63bba8895"
        );

        let j = parse(JOB.as_bytes()).unwrap();
        assert_eq!(
            (j.event_type, j.project.as_str(), j.name.as_str()),
            (
                EventType::JobCompleted,
                "payments-api",
                "docker-build-tag-push"
            )
        );
        assert_eq!(j.sha, "4e1243bd22c66e76c2ba9eddc1f91394e57f9f83");
        assert_eq!(j.branch.as_deref(), Some("main"));
    }

    #[test]
    fn names_missing_fields() {
        let mut v: Value = serde_json::from_str(WORKFLOW).unwrap();
        v["pipeline"]["vcs"]
            .as_object_mut()
            .unwrap()
            .remove("revision");
        assert_eq!(
            parse(v.to_string().as_bytes()).unwrap_err(),
            PayloadError::MissingField("pipeline.vcs.revision")
        );
        v.as_object_mut().unwrap().remove("id");
        assert_eq!(
            parse(v.to_string().as_bytes()).unwrap_err(),
            PayloadError::MissingField("id")
        );
        assert!(matches!(
            parse(br#"{"id":"x","type":"ping"}"#).unwrap_err(),
            PayloadError::InvalidField { field: "type", .. }
        ));
    }

    #[test]
    fn filter_defaults_to_workflows_only() {
        let f = NativeFilter::default();
        assert_eq!(f.refusal(&parse(WORKFLOW.as_bytes()).unwrap()), None);
        assert!(
            f.refusal(&parse(JOB.as_bytes()).unwrap())
                .unwrap()
                .contains("CIRCLECI_JOBS")
        );
        let f = NativeFilter {
            workflows: vec!["deploy".into()],
            jobs: vec!["docker-build-tag-push".into()],
        };
        assert!(f.refusal(&parse(WORKFLOW.as_bytes()).unwrap()).is_some());
        assert_eq!(f.refusal(&parse(JOB.as_bytes()).unwrap()), None);
    }
}
