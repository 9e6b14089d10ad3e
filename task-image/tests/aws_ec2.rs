//! The `aws.ec2.*` remediation steps.
//!
//! Against moto (EC2 instances with volumes), through the real `gitops-task` binary on a SQLite
//! store, configured from the environment as in ECS (`AWS_ENDPOINT_URL` points the SDK at moto):
//! a CloudTrail `RebootInstances` event for an opted-in instance, with the rule of
//! `examples/events.yaml`, ends with one snapshot per attached volume, tagged with the instance's
//! tags and the record id, and the record `succeeded` with the snapshot ids; an instance without
//! the opt-in tag is refused before any call that changes it; a reboot of an opted-in instance
//! succeeds and one of an unknown instance fails with AWS's reason.
//!
//! moto 5.2 does not implement CreateReplaceRootVolumeTask (nor DescribeReplaceRootVolumeTasks),
//! so `aws.ec2.reset_instance` is tested in-process with aws-smithy-mocks answering those calls
//! (and DescribeInstances) as EC2 documents them: a schedule run resets the tagged host, a task
//! that ends `failed` fails the step naming the instance and the state, AWS's error is reported
//! with its code, and a task that never finishes is stopped by the step's time limit.

mod support;
#[path = "../../tests/support/tools.rs"]
mod tools;

use std::collections::BTreeMap;
use std::time::Instant;

use aws_sdk_ec2::Client;
use aws_sdk_ec2::types::{
    BlockDeviceMapping, EbsBlockDevice, Filter, InstanceType, ResourceType, Tag, TagSpecification,
};
use gitops_task::remediation::steps::Runner;
use gitops_task::remediation::{ImageUpdate, ImageUpdater, RemediationArgs, Settings, StepStatus};
use orchestrator_core::action::ActionSpec;
use orchestrator_core::store::{RecordStore, Transition};
use orchestrator_core::{Job, LaunchContract, Record, RecordId, Source, Status};
use serde_json::{Value, json};
use support::{Store, task_command};

const OPT_IN: (&str, &str) = ("orchestrator:remediate", "true");

/// No step here is `gitops.set_image`.
struct NoImages;

#[async_trait::async_trait]
impl ImageUpdater for NoImages {
    async fn set_image(&self, _: RecordId, _: &Job) -> Result<ImageUpdate, String> {
        Err("no gitops step in these tests".into())
    }
}

fn fixture(name: &str) -> Value {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fixtures/eventbridge")
        .join(name);
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

/// The actions of rule `name` of `examples/events.yaml`, as the intake records them.
fn example_actions(name: &str) -> Vec<ActionSpec> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/events.yaml");
    let doc: Value = yaml_serde::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let rule = doc["rules"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == name)
        .unwrap_or_else(|| panic!("no rule {name} in examples/events.yaml"));
    serde_json::from_value(rule["actions"].clone()).unwrap()
}

async fn moto_client(endpoint: &str) -> Client {
    let aws = orchestrator_clients::aws::loader()
        .endpoint_url(endpoint)
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_ec2::config::Credentials::new(
            "test", "test", None, None, "test",
        ))
        .load()
        .await;
    Client::new(&aws)
}

/// A running instance with its root volume and one more EBS volume, tagged `tags`.
async fn instance(ec2: &Client, tags: &[(&str, &str)]) -> String {
    let image = ec2
        .describe_images()
        .owners("amazon")
        .send()
        .await
        .unwrap()
        .images()
        .iter()
        .find_map(|i| i.image_id().map(str::to_owned))
        .expect("moto lists amazon images");
    let mut spec = TagSpecification::builder().resource_type(ResourceType::Instance);
    for (k, v) in tags {
        spec = spec.tags(Tag::builder().key(*k).value(*v).build());
    }
    let out = ec2
        .run_instances()
        .image_id(image)
        .instance_type(InstanceType::T3Micro)
        .min_count(1)
        .max_count(1)
        // moto attaches only the listed volumes when any is listed: the root one too.
        .block_device_mappings(
            BlockDeviceMapping::builder()
                .device_name("/dev/sda1")
                .ebs(EbsBlockDevice::builder().volume_size(8).build())
                .build(),
        )
        .block_device_mappings(
            BlockDeviceMapping::builder()
                .device_name("/dev/sdf")
                .ebs(EbsBlockDevice::builder().volume_size(10).build())
                .build(),
        )
        .tag_specifications(spec.build())
        .send()
        .await
        .unwrap();
    out.instances()[0].instance_id().unwrap().to_owned()
}

/// The ids of the volumes attached to `instance_id`.
async fn volumes_of(ec2: &Client, instance_id: &str) -> Vec<String> {
    let mut v: Vec<String> = ec2
        .describe_volumes()
        .filters(
            Filter::builder()
                .name("attachment.instance-id")
                .values(instance_id)
                .build(),
        )
        .send()
        .await
        .unwrap()
        .volumes()
        .iter()
        .filter_map(|v| v.volume_id().map(str::to_owned))
        .collect();
    v.sort();
    v
}

/// A dispatched EventBridge record: `payload`, the rule `rule` and `actions`.
async fn dispatched(store: &Store, payload: Value, rule: &str, actions: Vec<ActionSpec>) -> Record {
    let mut record = Record::received(Source::Eventbridge, payload, None);
    record.rule = Some(rule.into());
    record.actions = actions;
    store.store.create(&record).await.unwrap();
    store
        .store
        .transition(
            record.id,
            &Transition::to(Status::Dispatched).task_arn("local:1"),
        )
        .await
        .unwrap();
    record
}

/// The CloudTrail `RebootInstances` fixture, about `instance_id`.
fn reboot_event(instance_id: &str) -> Value {
    let text = serde_json::to_string(&fixture("cloudtrail-reboot-instances.json")).unwrap();
    serde_json::from_str(&text.replace("i-1234567890abcdef0", instance_id)).unwrap()
}

/// Runs the binary on `record` with moto as EC2; (exit ok, stderr).
async fn run_binary(store: &Store, record: &Record, endpoint: &str) -> (bool, String) {
    let out = task_command(&LaunchContract::remediation(record.id))
        .env("ORCH_STORE", "sqlite")
        .env("DATA_DIR", store.dir.path())
        .env("AWS_ENDPOINT_URL", endpoint)
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("AWS_POLL_INTERVAL_MS", "50")
        .env("RUST_LOG", "info")
        .output()
        .await
        .unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[tokio::test]
async fn a_reboot_event_snapshots_every_volume_of_an_opted_in_instance() {
    let Some(endpoint) =
        tools::moto_endpoint("a_reboot_event_snapshots_every_volume_of_an_opted_in_instance")
    else {
        return;
    };
    let ec2 = moto_client(&endpoint).await;
    let id = instance(&ec2, &[OPT_IN, ("Name", "web-1"), ("team", "platform")]).await;
    let volumes = volumes_of(&ec2, &id).await;
    assert_eq!(volumes.len(), 2, "root and /dev/sdf: {volumes:?}");

    let store = Store::new();
    let record = dispatched(
        &store,
        reboot_event(&id),
        "instance-rebooted-snapshot",
        example_actions("instance-rebooted-snapshot"),
    )
    .await;
    let (ok, output) = run_binary(&store, &record, &endpoint).await;
    let stored = store.get(record.id).await;
    assert!(ok, "{output}\n{:?}", stored.outcome);
    assert_eq!(stored.status, Status::Succeeded, "{:?}", stored.outcome);
    assert!(
        output.contains("snapshot progress"),
        "progress in the log: {output}"
    );

    let step = &stored.outcome.as_ref().unwrap()["steps"][0];
    assert_eq!(step["status"], "succeeded");
    assert_eq!(step["detail"]["instance_id"], id.as_str());
    let mut ids: Vec<String> = step["detail"]["snapshot_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_owned())
        .collect();
    ids.sort();
    assert_eq!(ids.len(), volumes.len(), "one snapshot per volume: {step}");

    // In EC2: exactly these snapshots carry the record id, one of each volume, with the
    // instance's tags copied.
    let tagged = ec2
        .describe_snapshots()
        .filters(
            Filter::builder()
                .name("tag:orchestrator:record-id")
                .values(record.id.to_string())
                .build(),
        )
        .send()
        .await
        .unwrap();
    let mut found: Vec<String> = tagged
        .snapshots()
        .iter()
        .map(|s| s.snapshot_id().unwrap().to_owned())
        .collect();
    found.sort();
    assert_eq!(found, ids);
    let mut of_volumes: Vec<String> = tagged
        .snapshots()
        .iter()
        .map(|s| s.volume_id().unwrap().to_owned())
        .collect();
    of_volumes.sort();
    assert_eq!(of_volumes, volumes);
    for s in tagged.snapshots() {
        let tags: BTreeMap<&str, &str> = s
            .tags()
            .iter()
            .map(|t| (t.key().unwrap(), t.value().unwrap()))
            .collect();
        assert_eq!(tags.get("Name"), Some(&"web-1"), "{tags:?}");
        assert_eq!(tags.get("team"), Some(&"platform"), "{tags:?}");
        assert_eq!(tags.get(OPT_IN.0), Some(&OPT_IN.1), "{tags:?}");
        assert_eq!(
            tags.get("orchestrator:record-id").copied(),
            Some(record.id.to_string().as_str())
        );
        assert_eq!(s.state().map(|x| x.as_str()), Some("completed"));
    }
}

#[tokio::test]
async fn an_instance_without_the_opt_in_tag_is_refused_and_not_snapshotted() {
    let Some(endpoint) =
        tools::moto_endpoint("an_instance_without_the_opt_in_tag_is_refused_and_not_snapshotted")
    else {
        return;
    };
    let ec2 = moto_client(&endpoint).await;
    // Tagged, but with another value: not opted in either.
    let untagged = instance(&ec2, &[("Name", "db-1")]).await;
    let wrong_value = instance(&ec2, &[(OPT_IN.0, "false")]).await;
    for id in [untagged, wrong_value] {
        let store = Store::new();
        let record = dispatched(
            &store,
            reboot_event(&id),
            "instance-rebooted-snapshot",
            example_actions("instance-rebooted-snapshot"),
        )
        .await;
        let (ok, output) = run_binary(&store, &record, &endpoint).await;
        assert!(!ok, "{output}");
        let stored = store.get(record.id).await;
        assert_eq!(stored.status, Status::Failed);
        let reason = stored.status_reason.unwrap_or_default();
        assert!(
            reason.contains(&format!(
                "instance {id} does not carry the opt-in tag orchestrator:remediate=true"
            )),
            "{reason}"
        );
        let snapshots = ec2
            .describe_snapshots()
            .filters(
                Filter::builder()
                    .name("tag:orchestrator:record-id")
                    .values(record.id.to_string())
                    .build(),
            )
            .send()
            .await
            .unwrap();
        assert!(
            snapshots.snapshots().is_empty(),
            "nothing snapshotted for {id}"
        );
    }
}

#[tokio::test]
async fn a_reboot_step_reboots_an_opted_in_instance_and_names_aws_reason_otherwise() {
    let Some(endpoint) = tools::moto_endpoint(
        "a_reboot_step_reboots_an_opted_in_instance_and_names_aws_reason_otherwise",
    ) else {
        return;
    };
    let ec2 = moto_client(&endpoint).await;
    let id = instance(&ec2, &[OPT_IN]).await;
    let reboot = |instance: &str| -> Vec<ActionSpec> {
        serde_json::from_value(json!([{
            "id": "reboot", "type": "aws.ec2.reboot_instance",
            "with": {"instance_id": instance, "timeout_seconds": 30}
        }]))
        .unwrap()
    };
    let store = Store::new();
    let record = dispatched(&store, reboot_event(&id), "r", reboot(&id)).await;
    let (ok, output) = run_binary(&store, &record, &endpoint).await;
    let stored = store.get(record.id).await;
    assert!(ok, "{output}");
    assert_eq!(
        stored.outcome.unwrap()["steps"][0]["detail"],
        json!({"instance_id": id, "rebooted": true})
    );

    // An instance EC2 does not know: AWS's error code and the instance, in the reason.
    let ghost = "i-0123456789abcdef0";
    let record = dispatched(&store, reboot_event(ghost), "r", reboot(ghost)).await;
    let (ok, output) = run_binary(&store, &record, &endpoint).await;
    assert!(!ok, "{output}");
    let reason = store.get(record.id).await.status_reason.unwrap_or_default();
    assert!(
        reason.contains(&format!("instance {ghost}")) && reason.contains("InvalidInstanceID"),
        "{reason}"
    );
}

// --- aws.ec2.reset_instance: aws-smithy-mocks (moto 5.2 has no CreateReplaceRootVolumeTask) ---

use aws_sdk_ec2::operation::create_replace_root_volume_task::{
    CreateReplaceRootVolumeTaskError, CreateReplaceRootVolumeTaskOutput,
};
use aws_sdk_ec2::operation::describe_instances::DescribeInstancesOutput;
use aws_sdk_ec2::operation::describe_replace_root_volume_tasks::DescribeReplaceRootVolumeTasksOutput;
use aws_sdk_ec2::types::{
    Instance, ReplaceRootVolumeTask, ReplaceRootVolumeTaskState, Reservation,
};
use aws_smithy_mocks::{Rule, RuleMode, mock, mock_client};

/// The host of `scheduler-run.envelope.json`.
const HOST: &str = "i-0abcd1234ef567890";
const TASK: &str = "replacevol-0a1b2c3d4e5f67890";

fn settings() -> Settings {
    Settings::from_args(
        &RemediationArgs {
            port_api_url: "http://127.0.0.1:9".into(),
            port_app_url: "https://app.port.io".into(),
            port_client_id: None,
            port_client_secret: None,
            slack_webhook_url: None,
            exec_commands_dir: "/nonexistent".into(),
            exec_run_as: None,
            http_timeout_secs: 5,
            ec2_opt_in_tag_key: OPT_IN.0.into(),
            ec2_opt_in_tag_value: OPT_IN.1.into(),
            aws_poll_interval_ms: 20,
        },
        None,
    )
    .unwrap()
}

fn describe_host(tagged: bool) -> Rule {
    mock!(Client::describe_instances)
        .match_requests(|r| r.instance_ids() == [HOST])
        .then_output(move || {
            let mut i = Instance::builder().instance_id(HOST);
            if tagged {
                i = i.tags(Tag::builder().key(OPT_IN.0).value(OPT_IN.1).build());
            }
            DescribeInstancesOutput::builder()
                .reservations(Reservation::builder().instances(i.build()).build())
                .build()
        })
}

fn create_task() -> Rule {
    mock!(Client::create_replace_root_volume_task)
        .match_requests(|r| {
            r.instance_id() == Some(HOST)
                && r.snapshot_id().is_none()
                && r.image_id().is_none()
                && r.delete_replaced_root_volume() == Some(true)
                && r.tag_specifications().first().is_some_and(|t| {
                    t.tags()
                        .iter()
                        .any(|tag| tag.key() == Some("orchestrator:record-id"))
                })
        })
        .then_output(|| {
            CreateReplaceRootVolumeTaskOutput::builder()
                .replace_root_volume_task(
                    ReplaceRootVolumeTask::builder()
                        .replace_root_volume_task_id(TASK)
                        .instance_id(HOST)
                        .task_state(ReplaceRootVolumeTaskState::Pending)
                        .build(),
                )
                .build()
        })
}

fn task_state(state: ReplaceRootVolumeTaskState) -> DescribeReplaceRootVolumeTasksOutput {
    DescribeReplaceRootVolumeTasksOutput::builder()
        .replace_root_volume_tasks(
            ReplaceRootVolumeTask::builder()
                .replace_root_volume_task_id(TASK)
                .instance_id(HOST)
                .task_state(state)
                .build(),
        )
        .build()
}

/// A schedule run's record (the nightly reset rule of `examples/events.yaml`), run in-process
/// with `client` as EC2.
async fn run_reset(
    client: Client,
    timeout_seconds: Option<u64>,
) -> (Record, gitops_task::remediation::Outcome) {
    let mut actions = example_actions("nightly-reset-web");
    if let Some(t) = timeout_seconds {
        actions[0].with.insert("timeout_seconds".into(), json!(t));
    }
    let mut record = Record::received(
        Source::Eventbridge,
        fixture("scheduler-run.envelope.json"),
        None,
    );
    record.rule = Some("nightly-reset-web".into());
    record.actions = actions;
    let settings = settings();
    let outcome = Runner::new(&settings, &NoImages)
        .with_ec2_client(client)
        .run(&record, Instant::now())
        .await;
    (record, outcome)
}

#[tokio::test]
async fn a_schedule_run_resets_the_opted_in_host() {
    let describe = describe_host(true);
    let create = create_task();
    let progress = mock!(Client::describe_replace_root_volume_tasks)
        .match_requests(|r| r.replace_root_volume_task_ids() == [TASK])
        .sequence()
        .output(|| task_state(ReplaceRootVolumeTaskState::InProgress))
        .times(2)
        .output(|| task_state(ReplaceRootVolumeTaskState::Succeeded))
        .build();
    let client = mock_client!(
        aws_sdk_ec2,
        RuleMode::MatchAny,
        [&describe, &create, &progress]
    );
    let (record, outcome) = run_reset(client, None).await;
    assert_eq!(outcome.status, Status::Succeeded, "{outcome:?}");
    let step = &outcome.steps[0];
    assert_eq!(step.status, StepStatus::Succeeded);
    assert_eq!(
        step.detail,
        json!({
            "instance_id": HOST,
            "replace_root_volume_task_id": TASK,
            "state": "succeeded",
            "restored_from": "its launch state",
        })
    );
    assert_eq!((create.num_calls(), progress.num_calls()), (1, 3));
    assert_eq!(outcome.record_id, record.id.to_string());
}

#[tokio::test]
async fn a_reset_that_fails_or_never_ends_fails_the_step_naming_the_instance() {
    // The replacement task ends `failed`.
    let describe = describe_host(true);
    let create = create_task();
    let failed = mock!(Client::describe_replace_root_volume_tasks)
        .then_output(|| task_state(ReplaceRootVolumeTaskState::Failed));
    let client = mock_client!(
        aws_sdk_ec2,
        RuleMode::MatchAny,
        [&describe, &create, &failed]
    );
    let (_, outcome) = run_reset(client, None).await;
    assert_eq!(outcome.status, Status::Failed);
    let reason = outcome.reason.unwrap();
    assert!(
        reason.contains(&format!(
            "instance {HOST}: root volume replacement {TASK} ended `failed`"
        )),
        "{reason}"
    );

    // EC2 refuses the call: its code and message, and the instance.
    let describe = describe_host(true);
    let refused = mock!(Client::create_replace_root_volume_task).then_error(|| {
        CreateReplaceRootVolumeTaskError::generic(
            aws_sdk_ec2::error::ErrorMetadata::builder()
                .code("IncorrectInstanceState")
                .message("The instance is not in a valid state for this operation.")
                .build(),
        )
    });
    let client = mock_client!(aws_sdk_ec2, RuleMode::MatchAny, [&describe, &refused]);
    let (_, outcome) = run_reset(client, None).await;
    let reason = outcome.reason.unwrap();
    assert!(
        reason.contains(&format!(
            "instance {HOST}: CreateReplaceRootVolumeTask failed: IncorrectInstanceState: The instance is not in a valid state"
        )),
        "{reason}"
    );

    // It never finishes: the step's time limit stops the wait.
    let describe = describe_host(true);
    let create = create_task();
    let forever = mock!(Client::describe_replace_root_volume_tasks)
        .then_output(|| task_state(ReplaceRootVolumeTaskState::InProgress));
    let client = mock_client!(
        aws_sdk_ec2,
        RuleMode::MatchAny,
        [&describe, &create, &forever]
    );
    let started = Instant::now();
    let (_, outcome) = run_reset(client, Some(1)).await;
    let reason = outcome.reason.unwrap();
    assert!(
        reason.contains(&format!("instance {HOST}: root volume replacement {TASK} still `in-progress` after the step's 1 s")),
        "{reason}"
    );
    assert!(started.elapsed() < std::time::Duration::from_secs(5));

    // Not opted in: refused before anything is asked of the instance.
    let describe = describe_host(false);
    let create = create_task();
    let client = mock_client!(aws_sdk_ec2, RuleMode::MatchAny, [&describe, &create]);
    let (_, outcome) = run_reset(client, None).await;
    assert!(
        outcome
            .reason
            .unwrap()
            .contains("does not carry the opt-in tag")
    );
    assert_eq!(create.num_calls(), 0);
}
