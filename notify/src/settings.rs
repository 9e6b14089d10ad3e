//! The notification settings every binary reads (flags or environment variables), checked once
//! at start into a [`Notifier`].
//!
//! Secrets come as values here (`NOTIFY_SLACK_WEBHOOK_URL`, `NOTIFY_WEBHOOK_SECRET`: in ECS, the
//! task definition's `secrets`; locally, the environment). The Lambda functions read them from
//! Secrets Manager by ARN instead and pass them to [`NotifyArgs::notifier`].

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use orchestrator_core::Secret;

use crate::config::{ConfigError, Rules};
use crate::send::{Notifier, WebhookTarget, parse_url};

/// Notification settings.
#[derive(Debug, Clone, Default, Args)]
pub struct NotifyArgs {
    /// The notification rules document (YAML or JSON); no rules, no notifications.
    #[arg(long, env = "NOTIFY_RULES_FILE", conflicts_with = "notify_rules")]
    pub notify_rules_file: Option<PathBuf>,
    /// The notification rules inline, instead of NOTIFY_RULES_FILE (for a Lambda).
    #[arg(long, env = "NOTIFY_RULES")]
    pub notify_rules: Option<String>,
    /// Slack incoming webhook URL for the `slack` target (a secret).
    #[arg(long, env = "NOTIFY_SLACK_WEBHOOK_URL", hide_env_values = true)]
    pub notify_slack_webhook_url: Option<Secret>,
    /// URL of the signed JSON webhook (the `webhook` target).
    #[arg(long, env = "NOTIFY_WEBHOOK_URL")]
    pub notify_webhook_url: Option<String>,
    /// HMAC-SHA256 key signing the webhook's messages (a secret).
    #[arg(long, env = "NOTIFY_WEBHOOK_SECRET", hide_env_values = true)]
    pub notify_webhook_secret: Option<Secret>,
    /// Milliseconds one message may take (connect and answer).
    #[arg(long, env = "NOTIFY_TIMEOUT_MS", default_value_t = 3000)]
    pub notify_timeout_ms: u64,
    /// The console's base URL: messages link `<CONSOLE_BASE_URL>/console/records/<id>`.
    #[arg(long, env = "CONSOLE_BASE_URL")]
    pub console_base_url: Option<String>,
}

impl NotifyArgs {
    /// The rules document's text, if one is configured.
    fn rules_text(&self) -> Result<Option<(String, &'static str)>, ConfigError> {
        let inline = self
            .notify_rules
            .as_deref()
            .filter(|s| !s.trim().is_empty());
        let file = self
            .notify_rules_file
            .as_ref()
            .filter(|p| !p.as_os_str().is_empty());
        match (file, inline) {
            (Some(_), Some(_)) => Err(ConfigError(
                "set NOTIFY_RULES_FILE or NOTIFY_RULES, not both".into(),
            )),
            (Some(path), None) => std::fs::read_to_string(path)
                .map(|t| Some((t, "NOTIFY_RULES_FILE")))
                .map_err(|e| ConfigError(format!("NOTIFY_RULES_FILE: {}: {e}", path.display()))),
            (None, Some(text)) => Ok(Some((text.to_owned(), "NOTIFY_RULES"))),
            (None, None) => Ok(None),
        }
    }

    /// The notifier these settings describe, with the secrets given (from these settings, or
    /// read by the caller from Secrets Manager); `None` when no rules are configured.
    pub fn notifier(
        &self,
        slack_webhook_url: Option<Secret>,
        webhook_secret: Option<Secret>,
    ) -> Result<Option<Notifier>, ConfigError> {
        let Some((text, setting)) = self.rules_text()? else {
            return Ok(None);
        };
        let rules = Rules::parse(&text).map_err(|e| ConfigError(format!("{setting}: {e}")))?;
        if !(100..=30_000).contains(&self.notify_timeout_ms) {
            return Err(ConfigError(
                "NOTIFY_TIMEOUT_MS: must be from 100 to 30000".into(),
            ));
        }
        let webhook_url = self
            .notify_webhook_url
            .as_deref()
            .filter(|u| !u.trim().is_empty())
            .map(|u| parse_url("NOTIFY_WEBHOOK_URL", u))
            .transpose()?;
        let webhook = match (webhook_url, webhook_secret) {
            (Some(url), Some(secret)) => Some(WebhookTarget { url, secret }),
            (Some(_), None) => {
                return Err(ConfigError(
                    "NOTIFY_WEBHOOK_URL is set but its signing secret (NOTIFY_WEBHOOK_SECRET) is not"
                        .into(),
                ));
            }
            _ => None,
        };
        Notifier::new(
            rules,
            slack_webhook_url,
            webhook,
            self.console_base_url.clone(),
            Duration::from_millis(self.notify_timeout_ms),
        )
        .map(Some)
    }

    /// [`Self::notifier`] with the secrets of these settings.
    pub fn notifier_from_env(&self) -> Result<Option<Notifier>, ConfigError> {
        self.notifier(
            self.notify_slack_webhook_url.clone(),
            self.notify_webhook_secret.clone(),
        )
    }
}
