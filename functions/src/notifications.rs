//! Notifications from the functions: the settings (`orchestrator-notify`'s, plus the Secrets
//! Manager ARNs of its two secrets) and the record store every writer of transitions here uses
//! (dispatch in the api, port-kafka and events functions; the lifecycle function; the sweeper),
//! so each transition's message is sent where it happens, after its write.

use std::sync::Arc;

use clap::Args;
use orchestrator_core::store::RecordStore;
use orchestrator_notify::{Notify, NotifyArgs, Notifying};

/// Notification settings of a function.
#[derive(Debug, Clone, Default, Args)]
pub struct NotifyConfig {
    #[command(flatten)]
    pub notify: NotifyArgs,
    /// Secrets Manager ARN of the Slack incoming webhook URL (instead of NOTIFY_SLACK_WEBHOOK_URL).
    #[arg(long, env = "NOTIFY_SLACK_WEBHOOK_URL_SECRET_ARN")]
    pub notify_slack_webhook_url_secret_arn: Option<String>,
    /// Secrets Manager ARN of the webhook signing secret (instead of NOTIFY_WEBHOOK_SECRET).
    #[arg(long, env = "NOTIFY_WEBHOOK_SECRET_ARN")]
    pub notify_webhook_secret_arn: Option<String>,
}

impl NotifyConfig {
    fn arns(&self) -> [Option<&str>; 2] {
        [
            self.notify_slack_webhook_url_secret_arn.as_deref(),
            self.notify_webhook_secret_arn.as_deref(),
        ]
        .map(|a| a.filter(|a| !a.trim().is_empty()))
    }

    /// The notifier, with its secrets read from Secrets Manager when their ARNs are set (AWS is
    /// only asked then). `None` when no rules are configured; `Err` names the setting at fault.
    pub async fn notifier(&self) -> Result<Option<Arc<dyn Notify>>, String> {
        if self.arns().iter().all(Option::is_none) {
            return self.notifier_with(None).await;
        }
        let aws = orchestrator_clients::aws::config().await;
        self.notifier_with(Some(&aws_sdk_secretsmanager::Client::new(&aws)))
            .await
    }

    /// [`Self::notifier`] with the caller's Secrets Manager client, asked only for a secret
    /// whose ARN is set (both at once); `None` is an error only when an ARN is set.
    pub async fn notifier_with(
        &self,
        sm: Option<&aws_sdk_secretsmanager::Client>,
    ) -> Result<Option<Arc<dyn Notify>>, String> {
        let [slack_arn, hook_arn] = self.arns();
        let (mut slack, mut hook) = (
            self.notify.notify_slack_webhook_url.clone(),
            self.notify.notify_webhook_secret.clone(),
        );
        if slack_arn.is_some() || hook_arn.is_some() {
            let sm = sm.ok_or("notifications: a secret's ARN is set but Secrets Manager is not")?;
            (slack, hook) = tokio::try_join!(
                crate::secrets::resolve(sm, slack_arn, slack),
                crate::secrets::resolve(sm, hook_arn, hook),
            )?;
        }
        let notifier = self
            .notify
            .notifier(slack, hook)
            .map_err(|e| format!("notifications: {e}"))?;
        Ok(notifier.map(|n| Arc::new(n) as Arc<dyn Notify>))
    }

    /// `store`, notifying each transition when notifications are configured.
    pub async fn store(&self, store: Arc<dyn RecordStore>) -> Result<Arc<dyn RecordStore>, String> {
        Ok(Notifying::wrap(store, self.notifier().await?))
    }
}
