//! The sequence of a rule's actions: each step's templates are rendered just before it runs,
//! against the event (a Port event's `event`, `action`, `resourceType`, `blueprint`, `entity`,
//! `before`, `after`; an EventBridge envelope's `event`, `id`, `source`, `detailType`, `time`,
//! `region`, `account`, `resources`, `detail`), the record (`record.id`, `record.url`) and the earlier steps (`steps.<id>.status`,
//! `.exit_code`, `.outputs.<key>`, `.http_status`, ...). The first failure stops the sequence;
//! the steps after it are reported `skipped`.
//!
//! A dry run ([`Runner::plan`]) renders every step's parameters the same way and runs none: each
//! step is reported `planned` with what it would be given.

use std::time::Instant;

use orchestrator_core::action::{ActionParams, ActionSpec};
use orchestrator_core::expr::{self, Scope, Template};
use orchestrator_core::{Job, Record, RecordId, Source, Status};
use serde::Serialize;
use serde_json::{Value, json};

use super::ec2::Ec2;
use super::failure::StepFailure;
use super::gitops::ImageUpdater;
use super::port::PortClient;
use super::settings::Settings;
use super::{exec, slack};
use crate::port_run::RunReport;

/// How a step ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StepStatus {
    Succeeded,
    Failed,
    /// Not run: an earlier step failed.
    Skipped,
    /// Not run: a dry run rendered its parameters (in `detail`).
    Planned,
}

/// One step, as the record shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StepReport {
    pub id: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub status: StepStatus,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// What the step did (exit code, output tail and outputs; HTTP status and request; PR).
    #[serde(skip_serializing_if = "Value::is_null")]
    pub detail: Value,
    pub elapsed_ms: u64,
}

/// The whole remediation, as the record's `outcome` and the task's last stdout line.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Outcome {
    pub record_id: String,
    pub kind: &'static str,
    pub status: Status,
    pub rule: Option<String>,
    pub reason: Option<String>,
    /// The id of the step that failed.
    pub failed_step: Option<String>,
    pub steps: Vec<StepReport>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pr_url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub branch: Option<String>,
    pub elapsed_ms: u64,
    /// What the Port action run refused to take (empty when all was reported, or no run).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub port_report: Vec<String>,
}

fn ms(since: Instant) -> u64 {
    since.elapsed().as_millis().try_into().unwrap_or(u64::MAX)
}

impl Outcome {
    /// A failure before any step could run.
    pub fn failed_before_start(
        id: RecordId,
        rule: Option<String>,
        reason: String,
        started: Instant,
    ) -> Self {
        Outcome {
            record_id: id.to_string(),
            kind: "remediation",
            status: Status::Failed,
            rule,
            reason: Some(reason),
            failed_step: None,
            steps: Vec::new(),
            pr_url: None,
            branch: None,
            elapsed_ms: ms(started),
            port_report: Vec::new(),
        }
    }

    /// One line of JSON.
    pub fn to_line(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|_| {
            format!(
                "{{\"record_id\":\"{}\",\"status\":\"{}\"}}",
                self.record_id, self.status
            )
        })
    }
}

/// Runs a record's steps.
pub struct Runner<'a> {
    settings: &'a Settings,
    images: &'a dyn ImageUpdater,
    port: PortClient,
    http: reqwest::Client,
    /// The EC2 client of `aws.ec2.*` steps: built from the environment on first use, or given.
    ec2: tokio::sync::OnceCell<Ec2>,
}

impl std::fmt::Debug for Runner<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runner").finish_non_exhaustive()
    }
}

fn render(t: &str, scope: &Scope) -> Result<String, StepFailure> {
    Ok(Template::parse(t)?.render_string(scope)?)
}

/// A dry run's instance id: rendered, trimmed, and checked as the `aws.ec2.*` steps check it.
fn instance_id(t: &str, scope: &Scope) -> Result<String, StepFailure> {
    let id = render(t, scope)?.trim().to_owned();
    if super::ec2::is_instance_id(&id) {
        Ok(id)
    } else {
        Err(StepFailure::new(format!(
            "`{id}` is not an instance id (i-...)"
        )))
    }
}

/// The entity's blueprint and identifier, from the record (or the payload's context).
fn entity_of(record: &Record) -> (Option<String>, Option<String>) {
    if let Some(e) = &record.entity {
        return (Some(e.blueprint.clone()), Some(e.entity.clone()));
    }
    let ctx = &record.payload["context"];
    let pick = |a: &str, b: &str| {
        ctx[a]
            .as_str()
            .or_else(|| ctx[b].as_str())
            .map(str::to_owned)
    };
    (
        pick("blueprint", "blueprintIdentifier"),
        pick("entity", "entityIdentifier"),
    )
}

impl<'a> Runner<'a> {
    pub fn new(settings: &'a Settings, images: &'a dyn ImageUpdater) -> Self {
        let http = orchestrator_clients::http::builder()
            .timeout(settings.http_timeout)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap_or_default();
        Self {
            settings,
            images,
            port: PortClient::new(http.clone(), settings),
            http,
            ec2: tokio::sync::OnceCell::new(),
        }
    }

    /// Uses `client` for `aws.ec2.*` steps instead of one built from the environment.
    pub fn with_ec2_client(self, client: aws_sdk_ec2::Client) -> Self {
        let ec2 = Ec2::new(
            client,
            self.settings.ec2_opt_in.clone(),
            self.settings.aws_poll_interval,
        );
        Self {
            ec2: tokio::sync::OnceCell::new_with(Some(ec2)),
            ..self
        }
    }

    /// The EC2 actions (the client built from the task's environment: its role, AWS_REGION,
    /// AWS_ENDPOINT_URL).
    async fn ec2(&self) -> &Ec2 {
        self.ec2
            .get_or_init(|| async {
                let aws = orchestrator_clients::aws::config().await;
                Ec2::new(
                    aws_sdk_ec2::Client::new(&aws),
                    self.settings.ec2_opt_in.clone(),
                    self.settings.aws_poll_interval,
                )
            })
            .await
    }

    /// Runs every step of `record` in order, stopping at the first failure.
    pub async fn run(&self, record: &Record, started: Instant) -> Outcome {
        self.run_reported(record, started, &RunReport::None).await
    }

    /// What a step's templates are rendered against: the event and the record.
    fn scope(&self, record: &Record) -> Scope {
        let (blueprint, entity) = entity_of(record);
        let mut scope = match record.source {
            Source::Eventbridge => expr::aws_event_scope(&record.payload),
            _ => expr::event_scope(&record.payload, blueprint.as_deref(), entity.as_deref()),
        };
        scope.set(
            "record",
            &json!({"id": record.id.to_string(), "url": self.settings.record_url(record.id)}),
        );
        scope
    }

    /// A dry run: renders every step's parameters against the event and the record, runs none,
    /// and reports each step `planned` with its rendered parameters in `detail`. No command, no
    /// HTTP request, no AWS call. A secret's value is never rendered: a Slack step names the
    /// variable that holds its webhook URL. A template that cannot be rendered (one reading an
    /// earlier step's result, which a dry run does not have: `steps.<id>.status` is `planned`
    /// and there are no outputs) is the step's `error`; the record still ends `planned`, its
    /// reason counting such steps.
    pub async fn plan_reported(
        &self,
        record: &Record,
        started: Instant,
        report: &RunReport,
    ) -> Outcome {
        let mut scope = self.scope(record);
        let mut steps_seen = serde_json::Map::new();
        let mut reports = Vec::new();
        let mut unrendered = 0;
        let total = record.actions.len();
        for (i, spec) in record.actions.iter().enumerate() {
            scope.set("steps", &Value::Object(steps_seen.clone()));
            let (error, detail) = match self.render_step(record, spec, &scope) {
                Ok(detail) => (None, detail),
                Err(f) => {
                    unrendered += 1;
                    (Some(f.error), f.detail)
                }
            };
            steps_seen.insert(spec.id.clone(), json!({"status": StepStatus::Planned}));
            let line = match &error {
                None => format!("Step {} of {total} `{}` planned (dry run)", i + 1, spec.id),
                Some(e) => format!(
                    "Step {} of {total} `{}` planned (dry run), not fully rendered: {e}",
                    i + 1,
                    spec.id
                ),
            };
            report.log(&line).await;
            reports.push(StepReport {
                id: spec.id.clone(),
                kind: spec.kind.as_str().into(),
                status: StepStatus::Planned,
                error,
                detail,
                elapsed_ms: 0,
            });
        }
        let reason = if unrendered == 0 {
            format!("dry run: {total} step(s) rendered, none run")
        } else {
            format!(
                "dry run: {total} step(s), none run; {unrendered} could not be fully rendered or would be refused (see each step's error)"
            )
        };
        Outcome {
            record_id: record.id.to_string(),
            kind: "remediation",
            status: Status::Planned,
            rule: record.rule.clone(),
            reason: Some(reason),
            failed_step: None,
            steps: reports,
            pr_url: None,
            branch: None,
            elapsed_ms: ms(started),
            port_report: Vec::new(),
        }
    }

    /// A step's parameters, rendered as the step would get them, with the checks the step makes
    /// before it acts; nothing is run or sent.
    fn render_step(
        &self,
        record: &Record,
        spec: &ActionSpec,
        scope: &Scope,
    ) -> Result<Value, StepFailure> {
        Ok(match spec.params().map_err(StepFailure::new)? {
            ActionParams::Exec(p) => {
                let mut args = Vec::with_capacity(p.command.len().saturating_sub(1));
                let mut operands = false;
                for (i, t) in p.command.iter().enumerate().skip(1) {
                    let a = render(t, scope)?;
                    exec::check_argument(i, t, &a, operands)?;
                    operands |= t == "--";
                    args.push(a);
                }
                let mut env = serde_json::Map::new();
                for (k, v) in &p.env {
                    env.insert(k.clone(), json!(render(v, scope)?));
                }
                json!({
                    "program": p.command.first(),
                    "args": args,
                    "env": env,
                    "timeout_seconds": p.timeout_seconds,
                })
            }
            ActionParams::PortPatchEntity(p) => {
                let blueprint = render(&p.blueprint, scope)?;
                let entity = render(&p.entity, scope)?;
                // The checks the real request makes, so a dry run shows what it would refuse.
                super::port::check_identifier("blueprint", &blueprint).map_err(StepFailure::new)?;
                super::port::check_identifier("entity", &entity).map_err(StepFailure::new)?;
                let properties = expr::render_json(&Value::Object(p.properties), scope)?;
                json!({
                    "request": {
                        "method": "PATCH",
                        "path": format!("/v1/blueprints/{blueprint}/entities/{entity}"),
                        "body": {"properties": properties},
                    },
                })
            }
            ActionParams::SlackPost(p) => {
                let text = match &p.text {
                    Some(t) => slack::render_text(t, scope)?,
                    None => slack::default_message(
                        record,
                        p.property.as_deref(),
                        self.settings.record_url(record.id).as_deref(),
                    ),
                };
                // The variable's name, never the URL it holds.
                json!({
                    "text": text,
                    "webhook_env": p.webhook_env.as_deref().unwrap_or("SLACK_WEBHOOK_URL"),
                })
            }
            ActionParams::Ec2SnapshotInstance(p) => {
                let instance = instance_id(&p.instance_id, scope)?;
                let description = match &p.description {
                    Some(t) => render(t, scope)?,
                    None => format!(
                        "Snapshot of {} by the gitops orchestrator, record {}",
                        instance.trim(),
                        record.id
                    ),
                };
                json!({
                    "instance_id": instance.trim(),
                    "exclude_boot_volume": p.exclude_boot_volume,
                    "description": description,
                    "timeout_seconds": p.timeout_seconds,
                })
            }
            ActionParams::Ec2RebootInstance(p) => json!({
                "instance_id": instance_id(&p.instance_id, scope)?,
                "timeout_seconds": p.timeout_seconds,
            }),
            ActionParams::Ec2ResetInstance(p) => {
                let opt = |t: &Option<String>| -> Result<Option<String>, StepFailure> {
                    Ok(t.as_deref()
                        .map(|t| render(t, scope))
                        .transpose()?
                        .map(|s| s.trim().to_owned())
                        .filter(|s| !s.is_empty()))
                };
                json!({
                    "instance_id": instance_id(&p.instance_id, scope)?,
                    "snapshot_id": opt(&p.snapshot_id)?,
                    "image_id": opt(&p.image_id)?,
                    "delete_replaced_root_volume": p.delete_replaced_root_volume,
                    "timeout_seconds": p.timeout_seconds,
                })
            }
            ActionParams::GitopsSetImage(p) => {
                let request = json!({
                    "service": render(&p.service, scope)?,
                    "image": render(&p.image, scope)?,
                    "environment": render(&p.environment, scope)?,
                    "tag": render(&p.tag, scope)?,
                });
                let field = |k: &str| request[k].as_str().unwrap_or_default().to_owned();
                Job::parse(
                    &field("service"),
                    &field("image"),
                    &field("environment"),
                    &field("tag"),
                )
                .map_err(|e| {
                    StepFailure::with_detail(
                        format!("invalid job: {e}"),
                        json!({ "request": request }),
                    )
                })?;
                json!({ "request": request })
            }
        })
    }

    /// [`run`](Self::run), with a log line to the Port run per step started and finished.
    pub async fn run_reported(
        &self,
        record: &Record,
        started: Instant,
        report: &RunReport,
    ) -> Outcome {
        let mut scope = self.scope(record);
        let mut steps_seen = serde_json::Map::new();
        let mut reports = Vec::new();
        let mut failure: Option<(String, String)> = None;
        let mut pr = (None, None);
        let total = record.actions.len();
        for (i, spec) in record.actions.iter().enumerate() {
            if failure.is_some() {
                reports.push(StepReport {
                    id: spec.id.clone(),
                    kind: spec.kind.as_str().into(),
                    status: StepStatus::Skipped,
                    error: None,
                    detail: Value::Null,
                    elapsed_ms: 0,
                });
                continue;
            }
            scope.set("steps", &Value::Object(steps_seen.clone()));
            let step_started = Instant::now();
            tracing::info!(step = %spec.id, kind = spec.kind.as_str(), "step started");
            report
                .log(&format!(
                    "Step {} of {total} `{}` ({}) started",
                    i + 1,
                    spec.id,
                    spec.kind
                ))
                .await;
            let result = self.step(record, spec, &scope).await;
            let (status, error, detail) = match result {
                Ok(detail) => (StepStatus::Succeeded, None, detail),
                Err(f) => (StepStatus::Failed, Some(f.error), f.detail),
            };
            if let Some(d) = detail.as_object() {
                if let Some(u) = d.get("pr_url").and_then(Value::as_str) {
                    pr.0 = Some(u.to_owned());
                }
                if let Some(b) = d.get("branch").and_then(Value::as_str) {
                    pr.1 = Some(b.to_owned());
                }
            }
            let mut seen = match &detail {
                Value::Object(m) => m.clone(),
                _ => serde_json::Map::new(),
            };
            seen.insert("status".into(), json!(status));
            steps_seen.insert(spec.id.clone(), Value::Object(seen));
            match &error {
                Some(e) => {
                    tracing::warn!(step = %spec.id, error = %e, "step failed");
                    failure = Some((
                        spec.id.clone(),
                        format!(
                            "step {} of {total} `{}` ({}) failed: {e}",
                            i + 1,
                            spec.id,
                            spec.kind
                        ),
                    ));
                }
                None => tracing::info!(step = %spec.id, "step succeeded"),
            }
            let finished = match &error {
                Some(e) => format!("Step {} of {total} `{}` failed: {e}", i + 1, spec.id),
                None => format!("Step {} of {total} `{}` succeeded", i + 1, spec.id),
            };
            report.log(&finished).await;
            reports.push(StepReport {
                id: spec.id.clone(),
                kind: spec.kind.as_str().into(),
                status,
                error,
                detail,
                elapsed_ms: ms(step_started),
            });
        }
        let (status, failed_step, reason) = match failure {
            Some((id, reason)) => (Status::Failed, Some(id), Some(reason)),
            None => (Status::Succeeded, None, None),
        };
        Outcome {
            record_id: record.id.to_string(),
            kind: "remediation",
            status,
            rule: record.rule.clone(),
            reason,
            failed_step,
            steps: reports,
            pr_url: pr.0,
            branch: pr.1,
            elapsed_ms: ms(started),
            port_report: Vec::new(),
        }
    }

    async fn step(
        &self,
        record: &Record,
        spec: &ActionSpec,
        scope: &Scope,
    ) -> Result<Value, StepFailure> {
        match spec.params().map_err(StepFailure::new)? {
            ActionParams::Exec(p) => {
                let mut args = Vec::with_capacity(p.command.len().saturating_sub(1));
                let mut operands = false;
                for (i, t) in p.command.iter().enumerate().skip(1) {
                    let a = render(t, scope)?;
                    exec::check_argument(i, t, &a, operands)?;
                    operands |= t == "--";
                    args.push(a);
                }
                let mut env = Vec::with_capacity(p.env.len());
                for (k, v) in &p.env {
                    env.push((k.clone(), render(v, scope)?));
                }
                let (blueprint, entity) = entity_of(record);
                let event = exec::EventEnv {
                    record_id: record.id,
                    step_id: &spec.id,
                    action: record.payload["action"].as_str(),
                    resource_type: record.payload["resourceType"].as_str(),
                    blueprint: blueprint.as_deref(),
                    entity: entity.as_deref(),
                    payload: &record.payload,
                };
                let program = p.command.first().map(String::as_str).unwrap_or_default();
                exec::run(
                    &self.settings.exec_dir,
                    program,
                    &args,
                    &env,
                    &event,
                    std::time::Duration::from_secs(p.timeout_seconds),
                    self.settings.exec_run_as,
                )
                .await
            }
            ActionParams::PortPatchEntity(p) => {
                let blueprint = render(&p.blueprint, scope)?;
                let entity = render(&p.entity, scope)?;
                let properties = expr::render_json(&Value::Object(p.properties), scope)?;
                self.port
                    .patch_entity(&blueprint, &entity, &properties)
                    .await
            }
            ActionParams::SlackPost(p) => {
                let text = match &p.text {
                    Some(t) => slack::render_text(t, scope)?,
                    None => slack::default_message(
                        record,
                        p.property.as_deref(),
                        self.settings.record_url(record.id).as_deref(),
                    ),
                };
                let url = match &p.webhook_env {
                    None => self.settings.slack_webhook_url.clone(),
                    Some(name) => std::env::var(name)
                        .ok()
                        .filter(|v| !v.trim().is_empty())
                        .map(orchestrator_core::Secret::new),
                };
                let name = p.webhook_env.as_deref().unwrap_or("SLACK_WEBHOOK_URL");
                let url = url.ok_or_else(|| StepFailure::new(format!("{name} is not set")))?;
                slack::post(&self.http, &url, &text).await
            }
            ActionParams::Ec2SnapshotInstance(p) => {
                let instance = render(&p.instance_id, scope)?;
                let description = match &p.description {
                    Some(t) => render(t, scope)?,
                    None => format!(
                        "Snapshot of {instance} by the gitops orchestrator, record {}",
                        record.id
                    ),
                };
                self.ec2()
                    .await
                    .snapshot_instance(
                        record.id,
                        instance.trim(),
                        p.exclude_boot_volume,
                        &description,
                        std::time::Duration::from_secs(p.timeout_seconds),
                    )
                    .await
            }
            ActionParams::Ec2RebootInstance(p) => {
                let instance = render(&p.instance_id, scope)?;
                self.ec2()
                    .await
                    .reboot_instance(
                        instance.trim(),
                        std::time::Duration::from_secs(p.timeout_seconds),
                    )
                    .await
            }
            ActionParams::Ec2ResetInstance(p) => {
                let instance = render(&p.instance_id, scope)?;
                let snapshot = p
                    .snapshot_id
                    .as_deref()
                    .map(|t| render(t, scope))
                    .transpose()?;
                let image = p
                    .image_id
                    .as_deref()
                    .map(|t| render(t, scope))
                    .transpose()?;
                self.ec2()
                    .await
                    .reset_instance(
                        record.id,
                        instance.trim(),
                        snapshot.as_deref().map(str::trim).filter(|s| !s.is_empty()),
                        image.as_deref().map(str::trim).filter(|s| !s.is_empty()),
                        p.delete_replaced_root_volume,
                        std::time::Duration::from_secs(p.timeout_seconds),
                    )
                    .await
            }
            ActionParams::GitopsSetImage(p) => {
                let (service, image, environment, tag) = (
                    render(&p.service, scope)?,
                    render(&p.image, scope)?,
                    render(&p.environment, scope)?,
                    render(&p.tag, scope)?,
                );
                let request = json!({
                    "service": service, "image": image,
                    "environment": environment, "tag": tag,
                });
                let job = Job::parse(&service, &image, &environment, &tag).map_err(|e| {
                    StepFailure::with_detail(
                        format!("invalid job: {e}"),
                        json!({ "request": request }),
                    )
                })?;
                match self.images.set_image(record.id, &job).await {
                    Ok(u) => Ok(json!({
                        "request": request,
                        "outcome": u.outcome,
                        "branch": u.branch,
                        "pr_url": u.pr_url,
                        "reason": u.reason,
                    })),
                    Err(e) => Err(StepFailure::with_detail(e, json!({ "request": request }))),
                }
            }
        }
    }
}
