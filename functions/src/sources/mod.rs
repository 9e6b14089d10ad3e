//! Webhook sources: what differs between the senders the intake accepts, behind one trait, and
//! the list of them that [`register`] turns into routes. The one handler that runs every source is
//! `api::webhook::receive`; the application layer it hands records to is [`crate::dispatch`].
//!
//! A source says, for its deliveries: whether the deployment configured it, how a delivery proves
//! where it comes from (a token in the URL, a signature over the raw bytes), how the body decodes,
//! which key identifies a redelivery, and what record it becomes (a derived gitops job, or the
//! rule a Port event matched; `ignored` with the reason otherwise).
//!
//! This module also holds the intake's settings ([`IntakeArgs`], read once at start, checked into
//! [`IntakeSettings`]), so that a source's settings sit next to the line that registers it.
//!
//! Adding a source: one file here implementing [`WebhookSource`] (its payload parsing may live in
//! it or in `intake/`); in this file, one `mod` line, one line in [`register`] and its settings;
//! a variant of `orchestrator_core::Source` for its records; its path in `openapi.json`.

pub mod circleci;
pub mod events;
pub mod orb;
pub mod port;
pub mod port_runs;

use axum::Router;
use axum::http::request::Parts;
use axum::routing::post;
use clap::Args;
use orchestrator_core::{Environment, Record, Secret};

use crate::AppState;
use crate::config::PortArgs;
use crate::dispatch::RetryPolicy;
use crate::intake::PayloadError;
use crate::intake::circleci::NativeFilter;
use crate::intake::derive::{DeriveConfig, Template, parse_branch_rules};
use crate::intake::dry_run::DryRunServices;
use crate::intake::port::PortSettings;

/// Why a delivery was refused before its body was decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// The deployment did not configure this source (names the settings it needs).
    #[error("{0} is not configured on this deployment")]
    NotConfigured(&'static str),
    /// The token the URL or the `Authorization` header carries is missing or wrong.
    #[error("a valid token is required")]
    Unauthorized,
    /// The signature over the raw bytes is missing, invalid or stale.
    #[error("the request signature is missing, invalid or stale")]
    BadSignature,
}

/// One kind of webhook delivery. Every method is pure; the handler runs them in this order and
/// records nothing until all the checks pass: [`configured`](Self::configured) (503),
/// [`authenticate`](Self::authenticate) (401), the body's type and size (415, 413),
/// [`verify`](Self::verify) (401), [`decode`](Self::decode) (400), [`record`](Self::record)
/// (400 when the job cannot be derived).
pub trait WebhookSource: 'static {
    /// What the source needs from the settings, once it is known to be configured.
    type Config<'a>: Send + Sync;
    /// A decoded delivery.
    type Event: Send;

    /// The source's settings, or why it is not configured.
    fn configured(settings: &IntakeSettings) -> Result<Self::Config<'_>, Refusal>;

    /// Checks what the URL and the headers alone carry (a token), before the body is read.
    fn authenticate(_config: &Self::Config<'_>, _head: &Parts) -> Result<(), Refusal> {
        Ok(())
    }

    /// Checks the raw bytes, exactly as received, against the headers (a signature).
    fn verify(_config: &Self::Config<'_>, _head: &Parts, _body: &[u8]) -> Result<(), Refusal> {
        Ok(())
    }

    /// Parses and validates the body; the error names the field at fault.
    fn decode(body: &[u8]) -> Result<Self::Event, PayloadError>;

    /// Identifies the event: a second delivery with the same key returns the first record.
    fn dedupe_key(event: &Self::Event) -> String;

    /// The record to write: `received` with what to run, or `ignored` with why.
    fn record(config: &Self::Config<'_>, event: Self::Event) -> Result<Record, PayloadError>;
}

/// Adds the route of every source to `router`, each served by the one generic handler: the path
/// its deliveries are POSTed to, and the source.
pub fn register(router: Router<AppState>) -> Router<AppState> {
    use crate::api::webhook::receive;
    router
        .route("/pullrequests", post(receive::<orb::Orb>))
        .route("/webhooks/circleci", post(receive::<circleci::Native>))
        .route("/webhooks/port", post(receive::<port::Port>))
        .route("/webhooks/port/runs", post(receive::<port_runs::PortRuns>))
        .route("/events", post(receive::<events::Events>))
}

/// What the intake needs to know, beside its adapters.
#[derive(Debug, Clone, Default)]
pub struct IntakeSettings {
    /// The shared token; `None` disables authentication (local mode only).
    pub token: Option<Secret>,
    pub derive: DeriveConfig,
    /// The CircleCI outbound webhook signing secret; `None` disables `/webhooks/circleci`.
    pub circleci_secret: Option<Secret>,
    /// Which CircleCI workflows and jobs roll out.
    pub circleci_filter: NativeFilter,
    /// How launch failures are retried.
    pub retry: RetryPolicy,
    /// Port changelog intake (webhook secret, rules); unset disables `/webhooks/port` (503).
    pub port: PortSettings,
    /// Services whose events always dry-run.
    pub dry_run_services: DryRunServices,
}

/// Authentication and job derivation.
#[derive(Debug, Clone, Args)]
pub struct IntakeArgs {
    /// Shared intake token. Callers pass it as `?token=` (the CircleCI orb can send no header) or
    /// `Authorization: Bearer`. Required on Lambda; optional locally.
    #[arg(long, env = "INTAKE_TOKEN", hide_env_values = true)]
    pub intake_token: Option<Secret>,

    /// Template of the service name. Placeholders: {reponame} {org} {job} {branch}.
    #[arg(long, env = "SERVICE_TEMPLATE", default_value = "{reponame}")]
    pub service_template: Template,

    /// Template of the image repository (the kustomize `images[].name`).
    #[arg(long, env = "IMAGE_TEMPLATE", default_value = "{org}/{reponame}")]
    pub image_template: Template,

    /// Branch to environment rules, first match wins; `*` at the end matches a prefix.
    /// Example: `main=prod,release/*=staging`.
    #[arg(long, env = "BRANCH_ENVIRONMENTS", default_value = "")]
    pub branch_environments: String,

    /// Environment for branches no rule matches.
    #[arg(long, env = "DEFAULT_ENVIRONMENT", default_value = "dev")]
    pub default_environment: String,

    /// Organisation used when the orb's `api_link` names none.
    #[arg(long, env = "DEFAULT_ORG")]
    pub default_org: Option<String>,

    /// Signing secret of CircleCI outbound webhooks; unset disables `/webhooks/circleci` (503).
    #[arg(long, env = "CIRCLECI_WEBHOOK_SECRET", hide_env_values = true)]
    pub circleci_webhook_secret: Option<Secret>,

    /// Workflow names whose `workflow-completed` events roll out (comma-separated; `*` = all).
    #[arg(
        long,
        env = "CIRCLECI_WORKFLOWS",
        value_delimiter = ',',
        default_value = "*"
    )]
    pub circleci_workflows: Vec<String>,

    /// Job names whose `job-completed` events roll out (comma-separated; empty = none, so a
    /// project sending both kinds does not roll out twice).
    #[arg(long, env = "CIRCLECI_JOBS", value_delimiter = ',', default_value = "")]
    pub circleci_jobs: Vec<String>,

    /// Services whose events always dry-run (comma-separated patterns, `*` matches any run of
    /// characters, e.g. `shop-*,billing`): the task renders the change and ends `planned`.
    #[arg(
        long,
        env = "DRY_RUN_SERVICES",
        value_delimiter = ',',
        default_value = ""
    )]
    pub dry_run_services: Vec<String>,

    #[command(flatten)]
    pub retry: crate::config::RetryArgs,

    #[command(flatten)]
    pub port: PortArgs,
}

impl IntakeArgs {
    pub fn settings(&self) -> Result<IntakeSettings, String> {
        let default_environment = Environment::parse(self.default_environment.as_str())
            .map_err(|e| format!("DEFAULT_ENVIRONMENT: {e}"))?;
        Ok(IntakeSettings {
            token: self.intake_token.clone(),
            derive: DeriveConfig {
                service: self.service_template.clone(),
                image: self.image_template.clone(),
                branches: parse_branch_rules(&self.branch_environments)
                    .map_err(|e| format!("BRANCH_ENVIRONMENTS: {e}"))?,
                default_environment,
                default_org: self.default_org.clone(),
            },
            circleci_secret: self.circleci_webhook_secret.clone(),
            circleci_filter: NativeFilter {
                workflows: clean_list(&self.circleci_workflows),
                jobs: clean_list(&self.circleci_jobs),
            },
            retry: self.retry.policy(),
            port: self.port.settings()?,
            dry_run_services: DryRunServices::parse(&self.dry_run_services)
                .map_err(|e| format!("DRY_RUN_SERVICES: {e}"))?,
        })
    }
}

fn clean_list(v: &[String]) -> Vec<String> {
    v.iter()
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .collect()
}
