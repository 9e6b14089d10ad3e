//! Remediation actions as a rule writes them and a record keeps them: the step's id, its type and
//! its parameters (`with`), whose strings may hold `{{ CEL }}` templates.
//!
//! The intake checks every action when it loads the rules ([`ActionSpec::params`]), and the task
//! reads the same types back from the record, so both sides agree on what a parameter means.
//! Templates are rendered by the task, just before the step runs: a step can use what an earlier
//! step reported (`steps.<id>.outputs.<key>`).

use std::collections::BTreeMap;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// What a step does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ActionType {
    /// PATCH the entity's properties through Port's REST API.
    #[serde(rename = "port.patch_entity")]
    PortPatchEntity,
    /// Post a message through a Slack incoming webhook.
    #[serde(rename = "slack.post")]
    SlackPost,
    /// Run an operator command shipped in the task image.
    #[serde(rename = "exec")]
    Exec,
    /// Open (or update) the gitops pull request that sets an image tag.
    #[serde(rename = "gitops.set_image")]
    GitopsSetImage,
    /// Snapshot every EBS volume of an EC2 instance (CreateSnapshots), and wait for them.
    #[serde(rename = "aws.ec2.snapshot_instance")]
    Ec2SnapshotInstance,
    /// Reboot an EC2 instance (RebootInstances).
    #[serde(rename = "aws.ec2.reboot_instance")]
    Ec2RebootInstance,
    /// Replace an EC2 instance's root volume (CreateReplaceRootVolumeTask), and wait for it.
    #[serde(rename = "aws.ec2.reset_instance")]
    Ec2ResetInstance,
}

impl ActionType {
    pub const ALL: [ActionType; 7] = [
        ActionType::PortPatchEntity,
        ActionType::SlackPost,
        ActionType::Exec,
        ActionType::GitopsSetImage,
        ActionType::Ec2SnapshotInstance,
        ActionType::Ec2RebootInstance,
        ActionType::Ec2ResetInstance,
    ];

    pub fn as_str(&self) -> &'static str {
        match self {
            ActionType::PortPatchEntity => "port.patch_entity",
            ActionType::SlackPost => "slack.post",
            ActionType::Exec => "exec",
            ActionType::GitopsSetImage => "gitops.set_image",
            ActionType::Ec2SnapshotInstance => "aws.ec2.snapshot_instance",
            ActionType::Ec2RebootInstance => "aws.ec2.reboot_instance",
            ActionType::Ec2ResetInstance => "aws.ec2.reset_instance",
        }
    }
}

impl std::fmt::Display for ActionType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One step of a rule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ActionSpec {
    /// Unique within its rule, a CEL identifier (`[A-Za-z_][A-Za-z0-9_]*`), so later steps can
    /// read `steps.<id>`. The rules loader names unnamed steps `step1`, `step2`, ...
    #[serde(default)]
    pub id: String,
    #[serde(rename = "type")]
    pub kind: ActionType,
    /// The parameters; see [`ActionParams`] for each type's.
    #[serde(default)]
    pub with: serde_json::Map<String, serde_json::Value>,
}

/// Longest time an `exec` step may be given.
pub const MAX_EXEC_TIMEOUT_SECS: u64 = 3600;
/// Time limit of an `exec` step that names none.
pub const DEFAULT_EXEC_TIMEOUT_SECS: u64 = 300;

/// `port.patch_entity`: `PATCH /v1/blueprints/{blueprint}/entities/{entity}` with
/// `{"properties": ...}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PortPatchParams {
    /// Template; default: the event's blueprint.
    #[serde(default = "default_blueprint")]
    pub blueprint: String,
    /// Template; default: the event's entity.
    #[serde(default = "default_entity")]
    pub entity: String,
    /// Property name to value. String values are templates; a string that is exactly one
    /// `{{ expression }}` becomes the expression's JSON value (a number stays a number).
    pub properties: serde_json::Map<String, serde_json::Value>,
}

fn default_blueprint() -> String {
    "{{ blueprint }}".into()
}

fn default_entity() -> String {
    "{{ entity }}".into()
}

/// `slack.post`: one message through an incoming webhook.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SlackParams {
    /// Template of the whole message. Default: the entity, each changed property as
    /// `before → after` (only `property` when given), and a link to the record.
    #[serde(default)]
    pub text: Option<String>,
    /// The property the default message reports.
    #[serde(default)]
    pub property: Option<String>,
    /// The environment variable holding the webhook URL (default `SLACK_WEBHOOK_URL`), to post
    /// to more than one channel.
    #[serde(default)]
    pub webhook_env: Option<String>,
}

/// `exec`: an operator command from the task image's command directory.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExecParams {
    /// The program (a plain file name in the command directory) and its arguments (templates).
    pub command: Vec<String>,
    /// Extra environment variables (values are templates), beside the event's fields.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Time limit in seconds, 1 to [`MAX_EXEC_TIMEOUT_SECS`].
    #[serde(default = "default_timeout")]
    pub timeout_seconds: u64,
}

fn default_timeout() -> u64 {
    DEFAULT_EXEC_TIMEOUT_SECS
}

/// `gitops.set_image`: the gitops pull request for one service and environment (all templates).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SetImageParams {
    pub service: String,
    pub image: String,
    pub environment: String,
    pub tag: String,
}

/// Longest time an `aws.ec2.*` step may be given.
pub const MAX_AWS_TIMEOUT_SECS: u64 = 3 * 3600;

/// `aws.ec2.snapshot_instance`: one snapshot of each EBS volume attached to the instance, taken
/// together (CreateSnapshots with the instance specification), tagged with the instance's tags
/// and the record id; the step waits until every snapshot is `completed`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Ec2SnapshotParams {
    /// Template: the instance id (`i-...`).
    pub instance_id: String,
    /// Leave the root volume out.
    #[serde(default)]
    pub exclude_boot_volume: bool,
    /// Template of the snapshots' description. Default: names the instance and the record.
    #[serde(default)]
    pub description: Option<String>,
    /// Time limit in seconds (the call and the wait), 1 to [`MAX_AWS_TIMEOUT_SECS`].
    #[serde(default = "default_snapshot_timeout")]
    pub timeout_seconds: u64,
}

/// `aws.ec2.reboot_instance`: RebootInstances for one instance.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Ec2RebootParams {
    /// Template: the instance id (`i-...`).
    pub instance_id: String,
    /// Time limit in seconds, 1 to [`MAX_AWS_TIMEOUT_SECS`].
    #[serde(default = "default_reboot_timeout")]
    pub timeout_seconds: u64,
}

/// `aws.ec2.reset_instance`: replace the instance's root volume, from its launch state (the
/// default), a snapshot or an image (CreateReplaceRootVolumeTask); the step waits until the
/// replacement task `succeeded`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Ec2ResetParams {
    /// Template: the instance id (`i-...`).
    pub instance_id: String,
    /// Template: restore from this snapshot (`snap-...`) instead of the launch state.
    #[serde(default)]
    pub snapshot_id: Option<String>,
    /// Template: restore from this image (`ami-...`) instead of the launch state.
    #[serde(default)]
    pub image_id: Option<String>,
    /// Delete the replaced root volume once the task succeeds (default: keep it).
    #[serde(default)]
    pub delete_replaced_root_volume: bool,
    /// Time limit in seconds (the call and the wait), 1 to [`MAX_AWS_TIMEOUT_SECS`].
    #[serde(default = "default_reset_timeout")]
    pub timeout_seconds: u64,
}

fn default_snapshot_timeout() -> u64 {
    1800
}

fn default_reboot_timeout() -> u64 {
    120
}

fn default_reset_timeout() -> u64 {
    1800
}

fn check_aws_timeout(secs: u64) -> Result<(), String> {
    if (1..=MAX_AWS_TIMEOUT_SECS).contains(&secs) {
        Ok(())
    } else {
        Err(format!(
            "timeout_seconds must be from 1 to {MAX_AWS_TIMEOUT_SECS}"
        ))
    }
}

/// A step's parameters, checked for its type.
#[derive(Debug, Clone, PartialEq)]
pub enum ActionParams {
    PortPatchEntity(PortPatchParams),
    SlackPost(SlackParams),
    Exec(ExecParams),
    GitopsSetImage(SetImageParams),
    Ec2SnapshotInstance(Ec2SnapshotParams),
    Ec2RebootInstance(Ec2RebootParams),
    Ec2ResetInstance(Ec2ResetParams),
}

/// Whether `s` is a CEL identifier (and so a usable step id or variable name).
pub fn is_identifier(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Whether `s` is a portable environment variable name.
pub fn is_env_name(s: &str) -> bool {
    is_identifier(s)
}

fn typed<T: DeserializeOwned>(spec: &ActionSpec) -> Result<T, String> {
    serde_json::from_value(serde_json::Value::Object(spec.with.clone()))
        .map_err(|e| format!("`with` of a {} step: {e}", spec.kind))
}

impl ActionSpec {
    /// The parameters for this step's type, checked: unknown or missing parameters, an exec
    /// command that is not a plain file name, a time limit out of range. Templates are not
    /// compiled here (see the rules loader).
    pub fn params(&self) -> Result<ActionParams, String> {
        match self.kind {
            ActionType::PortPatchEntity => {
                let p: PortPatchParams = typed(self)?;
                if p.properties.is_empty() {
                    return Err("port.patch_entity needs at least one property".into());
                }
                Ok(ActionParams::PortPatchEntity(p))
            }
            ActionType::SlackPost => {
                let p: SlackParams = typed(self)?;
                if let Some(name) = &p.webhook_env
                    && !is_env_name(name)
                {
                    return Err(format!("webhook_env `{name}` is not a variable name"));
                }
                Ok(ActionParams::SlackPost(p))
            }
            ActionType::Exec => {
                let p: ExecParams = typed(self)?;
                let Some(program) = p.command.first() else {
                    return Err("exec needs a command".into());
                };
                if !is_command_name(program) {
                    return Err(format!(
                        "exec command `{program}` must be the plain file name of a command shipped in the task image (no `/`, no template)"
                    ));
                }
                if !(1..=MAX_EXEC_TIMEOUT_SECS).contains(&p.timeout_seconds) {
                    return Err(format!(
                        "timeout_seconds must be from 1 to {MAX_EXEC_TIMEOUT_SECS}"
                    ));
                }
                if let Some(bad) = p.env.keys().find(|k| !is_env_name(k)) {
                    return Err(format!("env name `{bad}` is not a variable name"));
                }
                Ok(ActionParams::Exec(p))
            }
            ActionType::GitopsSetImage => typed(self).map(ActionParams::GitopsSetImage),
            ActionType::Ec2SnapshotInstance => {
                let p: Ec2SnapshotParams = typed(self)?;
                check_aws_timeout(p.timeout_seconds)?;
                Ok(ActionParams::Ec2SnapshotInstance(p))
            }
            ActionType::Ec2RebootInstance => {
                let p: Ec2RebootParams = typed(self)?;
                check_aws_timeout(p.timeout_seconds)?;
                Ok(ActionParams::Ec2RebootInstance(p))
            }
            ActionType::Ec2ResetInstance => {
                let p: Ec2ResetParams = typed(self)?;
                check_aws_timeout(p.timeout_seconds)?;
                if p.snapshot_id.is_some() && p.image_id.is_some() {
                    return Err(
                        "aws.ec2.reset_instance takes snapshot_id or image_id, not both".into(),
                    );
                }
                Ok(ActionParams::Ec2ResetInstance(p))
            }
        }
    }
}

/// A command name the task may run: a plain file name, no path, no template.
pub fn is_command_name(s: &str) -> bool {
    !s.is_empty()
        && s != "."
        && s != ".."
        && !s.contains(['/', '\\', '\0'])
        && !s.contains("{{")
        && !s.starts_with('-')
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn spec(v: serde_json::Value) -> Result<ActionSpec, serde_json::Error> {
        serde_json::from_value(v)
    }

    #[test]
    fn types_use_their_dotted_names() {
        for t in ActionType::ALL {
            assert_eq!(serde_json::to_value(t).unwrap(), json!(t.as_str()));
        }
        let err = spec(json!({"type": "shell"})).unwrap_err().to_string();
        assert!(err.contains("port.patch_entity"), "{err}");
    }

    #[test]
    fn checks_parameters_per_type() {
        let ok = spec(json!({"id": "a", "type": "exec", "with": {"command": ["extend-volume", "{{ entity }}"]}}))
            .unwrap();
        match ok.params().unwrap() {
            ActionParams::Exec(p) => assert_eq!(p.timeout_seconds, DEFAULT_EXEC_TIMEOUT_SECS),
            other => panic!("{other:?}"),
        }
        let bad = [
            json!({"type": "exec", "with": {"command": []}}),
            json!({"type": "exec", "with": {"command": ["/bin/sh", "-c", "x"]}}),
            json!({"type": "exec", "with": {"command": ["../x"]}}),
            json!({"type": "exec", "with": {"command": ["x"], "timeout_seconds": 0}}),
            json!({"type": "exec", "with": {"command": ["x"], "env": {"A-B": "1"}}}),
            json!({"type": "exec", "with": {"command": ["x"], "shell": true}}),
            json!({"type": "port.patch_entity", "with": {"properties": {}}}),
            json!({"type": "port.patch_entity", "with": {}}),
            json!({"type": "slack.post", "with": {"webhook_env": "not a name"}}),
            json!({"type": "gitops.set_image", "with": {"service": "s"}}),
            json!({"type": "aws.ec2.snapshot_instance", "with": {}}),
            json!({"type": "aws.ec2.snapshot_instance", "with": {"instance_id": "i-1", "timeout_seconds": 0}}),
            json!({"type": "aws.ec2.reboot_instance", "with": {"instance_id": "i-1", "force": true}}),
            json!({"type": "aws.ec2.reset_instance", "with": {"instance_id": "i-1", "snapshot_id": "snap-1", "image_id": "ami-1"}}),
            json!({"type": "aws.ec2.reset_instance", "with": {"instance_id": "i-1", "timeout_seconds": 100000}}),
        ];
        for b in bad {
            assert!(spec(b.clone()).unwrap().params().is_err(), "{b}");
        }
        let patch =
            spec(json!({"type": "port.patch_entity", "with": {"properties": {"a": 1}}})).unwrap();
        match patch.params().unwrap() {
            ActionParams::PortPatchEntity(p) => {
                assert_eq!(
                    (p.blueprint.as_str(), p.entity.as_str()),
                    ("{{ blueprint }}", "{{ entity }}")
                )
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn unknown_step_fields_are_refused() {
        assert!(spec(json!({"type": "exec", "params": {}})).is_err());
    }

    #[test]
    fn identifiers() {
        for ok in ["a", "_x", "step1", "free_storage"] {
            assert!(is_identifier(ok), "{ok}");
        }
        for bad in ["", "1a", "a-b", "a.b", "é"] {
            assert!(!is_identifier(bad), "{bad}");
        }
    }
}
