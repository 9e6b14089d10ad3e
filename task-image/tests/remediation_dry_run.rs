//! A remediation dry run: every step's parameters rendered from the event, nothing run. The
//! command, Port, Slack, the gitops flow and EC2 are all real or mocked, and each asserts that
//! it was never reached; the record ends `planned` with the rendered steps.

mod support;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};

use gitops_task::remediation::{
    ImageUpdate, ImageUpdater, RemediationArgs, Settings, StepStatus, run_job,
};
use orchestrator_core::action::ActionSpec;
use orchestrator_core::store::{RecordStore, Transition};
use orchestrator_core::{EntityRef, Job, LaunchContract, Record, RecordId, Source, Status};
use serde_json::{Value, json};
use support::Store;
use tempfile::TempDir;
use wiremock::{Mock, MockServer, ResponseTemplate};

/// Counts the gitops steps that reached the flow (a dry run must reach none).
#[derive(Default)]
struct CountingImages(AtomicUsize);

#[async_trait::async_trait]
impl ImageUpdater for CountingImages {
    async fn set_image(&self, _: RecordId, _: &Job) -> Result<ImageUpdate, String> {
        self.0.fetch_add(1, Ordering::SeqCst);
        Err("a dry run must not open a pull request".into())
    }
}

const SLACK_PATH: &str = "/services/T000/B000/very-secret-webhook-token";

fn settings(port: &str, slack: &str, exec_dir: &Path) -> Settings {
    Settings::from_args(
        &RemediationArgs {
            port_api_url: port.into(),
            port_app_url: "https://app.port.io".into(),
            port_client_id: Some("client".into()),
            port_client_secret: Some(orchestrator_core::Secret::new("client-secret")),
            slack_webhook_url: Some(orchestrator_core::Secret::new(format!(
                "{slack}{SLACK_PATH}"
            ))),
            exec_commands_dir: exec_dir.to_owned(),
            exec_run_as: None,
            http_timeout_secs: 5,
            ec2_opt_in_tag_key: "orchestrator:remediate".into(),
            ec2_opt_in_tag_value: "true".into(),
            aws_poll_interval_ms: 5000,
        },
        Some("https://orchestrator.example"),
    )
    .unwrap()
}

/// A dispatched Port record: entity `vm`/`vm-1`, property `health` from `ok` to `degraded`.
async fn record(store: &Store, dry_run: bool, actions: Value) -> Record {
    let mut r = Record::received(
        Source::Port,
        json!({
            "action": "UPDATE", "resourceType": "entity",
            "context": {"blueprint": "vm", "entity": "vm-1"},
            "diff": {"before": {"properties": {"health": "ok"}},
                     "after": {"properties": {"health": "degraded", "instance": "i-0123456789abcdef0"}}}
        }),
        None,
    );
    r.entity = Some(EntityRef {
        blueprint: "vm".into(),
        entity: "vm-1".into(),
    });
    r.rule = Some("degraded-vm".into());
    r.dry_run = dry_run;
    r.actions = serde_json::from_value::<Vec<ActionSpec>>(actions).unwrap();
    store.store.create(&r).await.unwrap();
    store
        .store
        .transition(
            r.id,
            &Transition::to(Status::Dispatched).task_arn("local:1"),
        )
        .await
        .unwrap();
    r
}

/// A command `touch-me` that leaves `<dir>/ran` behind when it runs.
fn command(dir: &Path) {
    let script = dir.join("touch-me");
    std::fs::write(
        &script,
        format!("#!/bin/sh\ntouch '{}/ran'\n", dir.display()),
    )
    .unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
}

fn actions() -> Value {
    json!([
        {"id": "diagnose", "type": "exec",
         "with": {"command": ["touch-me", "--entity={{ entity }}", "{{ after.properties.health }}"],
                  "env": {"INSTANCE": "{{ after.properties.instance }}"}}},
        {"id": "snapshot", "type": "aws.ec2.snapshot_instance",
         "with": {"instance_id": "{{ after.properties.instance }}"}},
        {"id": "mark", "type": "port.patch_entity",
         "with": {"properties": {"health": "remediating", "by": "{{ record.id }}"}}},
        {"id": "rollback", "type": "gitops.set_image",
         "with": {"service": "{{ entity }}", "image": "acme/{{ entity }}",
                  "environment": "prod", "tag": "v1.2.3"}},
        {"id": "tell", "type": "slack.post",
         "with": {"text": "{{ entity }} is {{ after.properties.health }}; diagnose said {{ steps.diagnose.outputs.verdict }}"}}
    ])
}

#[tokio::test]
async fn a_remediation_dry_run_renders_every_step_and_runs_none() {
    let port = MockServer::start().await;
    let slack = MockServer::start().await;
    // Anything that reaches a mock answers 200, so a request would not fail the run: only the
    // request counts below catch it.
    Mock::given(wiremock::matchers::any())
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"accessToken": "t"})))
        .mount(&port)
        .await;
    Mock::given(wiremock::matchers::any())
        .respond_with(ResponseTemplate::new(200).set_body_string("ok"))
        .mount(&slack)
        .await;
    let store = Store::new();
    let dir = TempDir::new().unwrap();
    command(dir.path());
    let s = settings(&port.uri(), &slack.uri(), dir.path());
    let images = CountingImages::default();

    // The record asks for the dry run; so does the contract in the second round. Either is enough.
    for (record_dry, contract_dry) in [(true, false), (false, true)] {
        let r = record(&store, record_dry, actions()).await;
        let contract = LaunchContract::remediation(r.id).with_dry_run(contract_dry);
        let run = run_job(&contract, &store.store, Ok(s.clone()), &images).await;
        let o = &run.outcome;
        assert!(run.ok(), "{o:?}");
        assert_eq!(o.status, Status::Planned, "{o:?}");
        assert_eq!(o.failed_step, None);
        assert!(
            o.steps.iter().all(|st| st.status == StepStatus::Planned),
            "{o:?}"
        );
        let ids: Vec<&str> = o.steps.iter().map(|st| st.id.as_str()).collect();
        assert_eq!(ids, ["diagnose", "snapshot", "mark", "rollback", "tell"]);

        let stored = store.store.get(r.id).await.unwrap().unwrap();
        assert_eq!(stored.status, Status::Planned);
        let outcome = stored.outcome.unwrap();
        let steps = outcome["steps"].as_array().unwrap();
        assert_eq!(steps[0]["status"], "planned");
        assert_eq!(
            steps[0]["detail"],
            json!({"program": "touch-me", "args": ["--entity=vm-1", "degraded"],
                   "env": {"INSTANCE": "i-0123456789abcdef0"}, "timeout_seconds": 300})
        );
        assert_eq!(steps[1]["detail"]["instance_id"], "i-0123456789abcdef0");
        assert_eq!(
            steps[2]["detail"]["request"],
            json!({"method": "PATCH", "path": "/v1/blueprints/vm/entities/vm-1",
                   "body": {"properties": {"health": "remediating", "by": r.id.to_string()}}})
        );
        assert_eq!(
            steps[3]["detail"]["request"],
            json!({"service": "vm-1", "image": "acme/vm-1", "environment": "prod", "tag": "v1.2.3"})
        );
        // The Slack step reads an earlier step's output, which a dry run does not have: its
        // error says so, and the record is still `planned`.
        assert_eq!(steps[4]["status"], "planned");
        assert_eq!(steps[4]["detail"], Value::Null, "{}", steps[4]);
        assert!(
            steps[4]["error"].as_str().unwrap().contains("verdict")
                || steps[4]["error"].as_str().unwrap().contains("outputs"),
            "{}",
            steps[4]
        );
        assert!(
            stored
                .status_reason
                .as_deref()
                .unwrap()
                .contains("1 could not be fully rendered"),
            "{:?}",
            stored.status_reason
        );
        // No secret anywhere in what was recorded.
        let text = serde_json::to_string(&outcome).unwrap();
        assert!(!text.contains("very-secret-webhook-token"), "{text}");
        assert!(!text.contains("client-secret"), "{text}");
    }

    assert!(!dir.path().join("ran").exists(), "the command ran");
    assert_eq!(images.0.load(Ordering::SeqCst), 0, "the gitops flow ran");
    assert_eq!(port.received_requests().await.unwrap().len(), 0);
    assert_eq!(slack.received_requests().await.unwrap().len(), 0);
}

/// The Slack step's rendered text and the name of the variable holding its URL; never the URL.
#[tokio::test]
async fn a_slack_step_plans_its_text_and_names_its_webhook_variable() {
    let slack = MockServer::start().await;
    let store = Store::new();
    let dir = TempDir::new().unwrap();
    let s = settings("http://127.0.0.1:9", &slack.uri(), dir.path());
    let r = record(
        &store,
        true,
        json!([{"id": "tell", "type": "slack.post",
                "with": {"text": "{{ entity }} is {{ after.properties.health }}"}}]),
    )
    .await;
    let run = run_job(
        &LaunchContract::remediation(r.id),
        &store.store,
        Ok(s),
        &CountingImages::default(),
    )
    .await;
    assert_eq!(run.outcome.status, Status::Planned, "{:?}", run.outcome);
    let step = &run.outcome.steps[0];
    assert_eq!(step.error, None);
    assert_eq!(
        step.detail,
        json!({"text": "vm-1 is degraded", "webhook_env": "SLACK_WEBHOOK_URL"})
    );
    assert_eq!(slack.received_requests().await.unwrap().len(), 0);
}

/// Without the flag the same steps do run (the dry run above is the flag's doing).
#[tokio::test]
async fn without_the_flag_the_command_runs() {
    let store = Store::new();
    let dir = TempDir::new().unwrap();
    command(dir.path());
    let s = settings("http://127.0.0.1:9", "http://127.0.0.1:9", dir.path());
    let r = record(
        &store,
        false,
        json!([{"id": "diagnose", "type": "exec", "with": {"command": ["touch-me"]}}]),
    )
    .await;
    let run = run_job(
        &LaunchContract::remediation(r.id),
        &store.store,
        Ok(s),
        &CountingImages::default(),
    )
    .await;
    assert_eq!(run.outcome.status, Status::Succeeded, "{:?}", run.outcome);
    assert!(dir.path().join("ran").exists());
}

/// A dry run makes the checks the steps make before they act, so it shows what the real run
/// would refuse: an instance id that is not one, a Port identifier that would change the path.
#[tokio::test]
async fn a_dry_run_shows_what_the_real_run_would_refuse() {
    let port = MockServer::start().await;
    let store = Store::new();
    let dir = TempDir::new().unwrap();
    let s = settings(&port.uri(), "http://127.0.0.1:9", dir.path());
    let r = record(
        &store,
        true,
        json!([
            {"id": "reboot", "type": "aws.ec2.reboot_instance",
             "with": {"instance_id": "{{ entity }}"}},
            {"id": "mark", "type": "port.patch_entity",
             "with": {"entity": "../{{ entity }}", "properties": {"health": "x"}}}
        ]),
    )
    .await;
    let run = run_job(
        &LaunchContract::remediation(r.id),
        &store.store,
        Ok(s),
        &CountingImages::default(),
    )
    .await;
    let o = &run.outcome;
    assert_eq!(o.status, Status::Planned, "{o:?}");
    let errors: Vec<&str> = o
        .steps
        .iter()
        .map(|st| st.error.as_deref().unwrap_or(""))
        .collect();
    assert!(
        errors[0].contains("`vm-1` is not an instance id"),
        "{errors:?}"
    );
    assert!(errors[1].contains("identifier"), "{errors:?}");
    assert!(
        o.reason
            .as_deref()
            .unwrap()
            .contains("2 could not be fully rendered"),
        "{o:?}"
    );
    assert_eq!(port.received_requests().await.unwrap().len(), 0);
}
