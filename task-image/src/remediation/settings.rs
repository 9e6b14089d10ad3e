//! The remediation actions' settings: flags and environment variables ([`RemediationArgs`]),
//! checked once into [`Settings`]. Every action reads them; they depend on nothing else in this
//! module but [`RunAs`], the `exec` user setting.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use orchestrator_core::{RecordId, Secret};

use super::ec2::OptInTag;
use super::exec::{RunAs, running_as_root};

/// Port's EU API (the default).
pub const PORT_API_EU: &str = "https://api.port.io";
/// Port's US API.
pub const PORT_API_US: &str = "https://api.us.port.io";
/// Port's web app (EU), for links to a run.
pub const PORT_APP_EU: &str = "https://app.port.io";
/// Where `exec` commands live in the task image.
pub const DEFAULT_EXEC_DIR: &str = "/opt/remediation/bin";

/// Settings of the remediation actions (flags or environment variables).
#[derive(Debug, Clone, Args)]
pub struct RemediationArgs {
    /// Port REST API base URL: https://api.port.io (EU, default) or https://api.us.port.io (US).
    #[arg(long, env = "PORT_API_URL", default_value = PORT_API_EU)]
    pub port_api_url: String,

    /// Port web app base URL, for the link to a run in a pull request body
    /// (https://app.port.io, or https://app.us.port.io in the US).
    #[arg(long, env = "PORT_APP_URL", default_value = PORT_APP_EU)]
    pub port_app_url: String,

    /// Port client id, for `port.patch_entity` and reports to Port action runs.
    #[arg(long, env = "PORT_CLIENT_ID")]
    pub port_client_id: Option<String>,

    /// Port client secret, for `port.patch_entity`.
    #[arg(long, env = "PORT_CLIENT_SECRET", hide_env_values = true)]
    pub port_client_secret: Option<Secret>,

    /// Slack incoming webhook URL, for `slack.post` (a step may name another variable).
    #[arg(long, env = "SLACK_WEBHOOK_URL", hide_env_values = true)]
    pub slack_webhook_url: Option<Secret>,

    /// Directory of the commands `exec` steps may run (plain file names in it).
    #[arg(long, env = "EXEC_COMMANDS_DIR", default_value = DEFAULT_EXEC_DIR)]
    pub exec_commands_dir: PathBuf,

    /// `uid:gid` that `exec` commands run as when the task runs as root (root can read a
    /// non-dumpable process's secrets; the image runs as an unprivileged user and ignores this).
    #[arg(long, env = "EXEC_RUN_AS")]
    pub exec_run_as: Option<String>,

    /// Seconds one Port or Slack request may take.
    #[arg(long, env = "REMEDIATION_HTTP_TIMEOUT_SECS", default_value_t = 30)]
    pub http_timeout_secs: u64,

    /// The tag key an EC2 instance must carry for `aws.ec2.*` steps to act on it.
    #[arg(long, env = "EC2_OPT_IN_TAG_KEY", default_value = super::ec2::DEFAULT_OPT_IN_KEY)]
    pub ec2_opt_in_tag_key: String,

    /// The value that tag must have.
    #[arg(long, env = "EC2_OPT_IN_TAG_VALUE", default_value = "true")]
    pub ec2_opt_in_tag_value: String,

    /// Milliseconds between two status reads while an `aws.ec2.*` step waits (snapshots,
    /// root volume replacement).
    #[arg(long, env = "AWS_POLL_INTERVAL_MS", default_value_t = 5000)]
    pub aws_poll_interval_ms: u64,
}

/// The checked settings.
#[derive(Debug, Clone)]
pub struct Settings {
    pub port_api_url: reqwest::Url,
    /// Port's web app, for links to a run.
    pub port_app_url: String,
    pub port_client_id: Option<String>,
    pub port_client_secret: Option<Secret>,
    pub slack_webhook_url: Option<Secret>,
    pub exec_dir: PathBuf,
    /// The user `exec` commands run as: `EXEC_RUN_AS`, when the task runs as root.
    pub exec_run_as: Option<RunAs>,
    pub http_timeout: Duration,
    /// The orchestrator API, for links to the record (`<base>/pullrequests/<id>`).
    pub record_base_url: Option<String>,
    /// The tag an EC2 instance must carry for `aws.ec2.*` steps.
    pub ec2_opt_in: OptInTag,
    pub aws_poll_interval: Duration,
}

impl Settings {
    pub fn from_args(
        args: &RemediationArgs,
        record_base_url: Option<&str>,
    ) -> Result<Self, String> {
        let port_api_url = reqwest::Url::parse(args.port_api_url.trim())
            .ok()
            .filter(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some())
            .ok_or_else(|| {
                format!(
                    "PORT_API_URL: `{}` is not an http(s) URL",
                    args.port_api_url
                )
            })?;
        if !(1..=600).contains(&args.http_timeout_secs) {
            return Err("REMEDIATION_HTTP_TIMEOUT_SECS: must be from 1 to 600".into());
        }
        if !(10..=60_000).contains(&args.aws_poll_interval_ms) {
            return Err("AWS_POLL_INTERVAL_MS: must be from 10 to 60000".into());
        }
        let key = args.ec2_opt_in_tag_key.trim();
        if key.is_empty() || key.starts_with("aws:") {
            return Err("EC2_OPT_IN_TAG_KEY: must be a tag key (not empty, not aws:...)".into());
        }
        let exec_run_as = match args.exec_run_as.as_deref().map(str::trim) {
            None | Some("") => None,
            Some(s) => Some(RunAs::parse(s)?),
        };
        let exec_run_as = if running_as_root() {
            if exec_run_as.is_none() {
                tracing::warn!(
                    "the task runs as root and EXEC_RUN_AS is not set: exec commands run as root \
                     and can read the task's secrets"
                );
            }
            exec_run_as
        } else {
            None
        };
        Ok(Self {
            port_api_url,
            port_app_url: args.port_app_url.trim().trim_end_matches('/').to_owned(),
            exec_run_as,
            port_client_id: args.port_client_id.clone().filter(|s| !s.trim().is_empty()),
            port_client_secret: args.port_client_secret.clone(),
            slack_webhook_url: args.slack_webhook_url.clone(),
            exec_dir: args.exec_commands_dir.clone(),
            http_timeout: Duration::from_secs(args.http_timeout_secs),
            record_base_url: record_base_url
                .map(|u| u.trim().trim_end_matches('/').to_owned())
                .filter(|u| !u.is_empty()),
            ec2_opt_in: OptInTag {
                key: key.to_owned(),
                value: args.ec2_opt_in_tag_value.clone(),
            },
            aws_poll_interval: Duration::from_millis(args.aws_poll_interval_ms),
        })
    }

    /// Port's API and credentials, when both the client id and secret are set.
    pub fn port_api(&self) -> Option<port_runs::PortApi> {
        Some(port_runs::PortApi {
            base: self.port_api_url.clone(),
            client_id: self.port_client_id.clone()?,
            client_secret: self.port_client_secret.clone()?,
        })
    }

    /// What reporting to Port runs needs.
    pub fn port_run_settings(&self) -> crate::port_run::PortRunSettings {
        crate::port_run::PortRunSettings {
            api: self.port_api(),
            app_url: self.port_app_url.clone(),
            timeout: self.http_timeout,
        }
    }

    /// The record's link, when the API's base URL is known.
    pub fn record_url(&self, id: RecordId) -> Option<String> {
        self.record_base_url
            .as_ref()
            .map(|b| format!("{b}/pullrequests/{id}"))
    }
}
