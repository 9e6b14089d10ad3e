//! The instance-reboot scenario end to end in local mode: the documented CloudTrail
//! `RebootInstances` event posted to `POST /events` (Router in-process, intake token), the rules of
//! `examples/events.yaml`, the record in SQLite, the real `gitops-task` binary started by the real
//! `ProcessLauncher`, and EC2 played by moto (an instance with two EBS volumes). The same event
//! delivered twice snapshots once. Also `orchestrator schedule fire`, the real binary: a run is
//! recorded and launched, and the same execution id again is the same run.

mod common;

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{Request, StatusCode};
use orchestrator::intake::port::PortSettings;
use orchestrator::launch::process::ProcessLauncher;
use orchestrator::rules::RuleSet;
use orchestrator::{AppState, IntakeSettings};
use orchestrator_core::store::RecordStore;
use orchestrator_core::store::sqlite::SqliteStore;
use orchestrator_core::{Record, RecordId, Secret, Source, Status};
use serde_json::Value;

const TOKEN: &str = "tok-events-e2e";

fn examples() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/events.yaml")
}

/// An instance on moto with a root volume and a data volume, tagged opted-in and `Name=<name>`.
async fn opted_in_instance(moto: &str, name: &str) -> String {
    let images = common::ec2(moto, &[("Action", "DescribeImages"), ("Owner.1", "amazon")]).await;
    let image = common::xml_value(&images, "imageId");
    let out = common::ec2(
        moto,
        &[
            ("Action", "RunInstances"),
            ("ImageId", &image),
            ("InstanceType", "t3.micro"),
            ("MinCount", "1"),
            ("MaxCount", "1"),
            ("BlockDeviceMapping.1.DeviceName", "/dev/sda1"),
            ("BlockDeviceMapping.1.Ebs.VolumeSize", "8"),
            ("BlockDeviceMapping.2.DeviceName", "/dev/sdf"),
            ("BlockDeviceMapping.2.Ebs.VolumeSize", "10"),
            ("TagSpecification.1.ResourceType", "instance"),
            ("TagSpecification.1.Tag.1.Key", "orchestrator:remediate"),
            ("TagSpecification.1.Tag.1.Value", "true"),
            ("TagSpecification.1.Tag.2.Key", "Name"),
            ("TagSpecification.1.Tag.2.Value", name),
        ],
    )
    .await;
    common::xml_value(&out, "instanceId")
}

/// The snapshot ids EC2 lists for `filter=value`.
async fn snapshots(moto: &str, filter: &str, value: &str) -> Vec<String> {
    let xml = common::ec2(
        moto,
        &[
            ("Action", "DescribeSnapshots"),
            ("Filter.1.Name", filter),
            ("Filter.1.Value.1", value),
        ],
    )
    .await;
    let mut ids: Vec<String> = xml
        .split("<snapshotId>")
        .skip(1)
        .map(|s| s[..s.find('<').unwrap()].to_owned())
        .collect();
    ids.sort();
    ids.dedup();
    ids
}

async fn final_record(store: &dyn RecordStore, id: RecordId, data: &Path) -> Record {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let r = store.get(id).await.unwrap().unwrap();
        if r.status.is_final() {
            return r;
        }
        if Instant::now() > deadline {
            let log =
                std::fs::read_to_string(data.join(format!("tasks/{id}.log"))).unwrap_or_default();
            panic!(
                "record {id} still `{}` after 60 s; task log:\n{log}",
                r.status
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn a_reboot_event_twice_snapshots_every_volume_once() {
    let Some(moto) = common::moto_endpoint("a_reboot_event_twice_snapshots_every_volume_once")
    else {
        return;
    };
    // Tests share one moto server: a name no other test uses.
    let name = common::unique_name("web");
    let instance = opted_in_instance(&moto, &name).await;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let store = Arc::new(SqliteStore::open(&SqliteStore::file_in(&data)).unwrap());
    // What the task gets in ECS from its task definition and role; here moto is EC2.
    let env = [
        ("ORCH_STORE", "sqlite".to_owned()),
        ("DATA_DIR", data.display().to_string()),
        ("AWS_ENDPOINT_URL", moto.clone()),
        ("AWS_REGION", "us-east-1".to_owned()),
        ("AWS_ACCESS_KEY_ID", "test".to_owned()),
        ("AWS_SECRET_ACCESS_KEY", "test".to_owned()),
        ("AWS_POLL_INTERVAL_MS", "50".to_owned()),
        ("RUST_LOG", "info".to_owned()),
    ];
    let launcher = ProcessLauncher::new(
        common::task_binary(),
        data.join("tasks"),
        env.into_iter().map(|(k, v)| (k.to_owned(), v)).collect(),
    );
    let state = AppState {
        store: store.clone(),
        launcher: Arc::new(launcher),
        intake: Arc::new(IntakeSettings {
            token: Some(Secret::new(TOKEN)),
            port: PortSettings {
                secret: None,
                rules: Some(Arc::new(RuleSet::load(&examples()).unwrap())),
                deploy_actions: Vec::new(),
            },
            ..IntakeSettings::default()
        }),
        access: common::access(),
        console: Default::default(),
    };
    let event = String::from_utf8(common::fixture(
        "eventbridge/cloudtrail-reboot-instances.json",
    ))
    .unwrap()
    .replace("i-1234567890abcdef0", &instance);
    let post = || {
        Request::post("/events")
            .header("content-type", "application/json")
            .header("authorization", format!("Bearer {TOKEN}"))
            .body(Body::from(event.clone()))
            .unwrap()
    };

    let (status, rec) = common::send(&state, post()).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{rec}");
    let id: RecordId = rec["id"].as_str().unwrap().parse().unwrap();
    let done = final_record(store.as_ref(), id, &data).await;
    assert_eq!(done.status, Status::Succeeded, "{:?}", done.outcome);
    assert_eq!(done.source, Source::Eventbridge);
    let detail = &done.outcome.as_ref().unwrap()["steps"][0]["detail"];
    let mut ids: Vec<String> = detail["snapshot_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_owned())
        .collect();
    ids.sort();
    assert_eq!(ids.len(), 2, "one snapshot per volume: {detail}");
    assert_eq!(
        snapshots(&moto, "tag:orchestrator:record-id", &id.to_string()).await,
        ids,
        "EC2 holds exactly the recorded snapshots, tagged with the record id"
    );
    assert_eq!(
        snapshots(&moto, "tag:Name", &name).await,
        ids,
        "the instance's tags copied"
    );

    // EventBridge delivers the same event again: the same record, no second task, no snapshot.
    let (status, again) = common::send(&state, post()).await;
    assert_eq!(status, StatusCode::OK, "{again}");
    assert_eq!(again["id"], rec["id"]);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(snapshots(&moto, "tag:Name", &name).await, ids);
    let logs: Vec<_> = std::fs::read_dir(data.join("tasks")).unwrap().collect();
    assert_eq!(logs.len(), 1, "one task started");
}

fn env_dump_script(dir: &Path) -> std::path::PathBuf {
    let path = dir.join("fake-task.sh");
    std::fs::write(
        &path,
        "#!/bin/sh\nenv > \"$DATA_DIR/task-env-$ORCH_RECORD_ID\"\n",
    )
    .unwrap();
    let mut perm = std::fs::metadata(&path).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perm, 0o755);
    std::fs::set_permissions(&path, perm).unwrap();
    path
}

fn fire(data: &Path, task: &Path, args: &[&str]) -> (bool, Value, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_orchestrator"))
        .args(["schedule", "fire"])
        .args(args)
        .env("DATA_DIR", data)
        .env("TASK_BINARY", task)
        .env("RULES_FILE", examples())
        .env(
            "SCHEDULES",
            r#"[{"name": "nightly-reset-web", "expression": "cron(0 3 * * ? *)", "input": {"instance_id": "i-0abcd1234ef567890"}}]"#,
        )
        .env_remove("INTAKE_TOKEN")
        .env_remove("RULES")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let report = serde_json::from_str(stdout.trim()).unwrap_or(Value::Null);
    (
        out.status.success(),
        report,
        format!("{stdout}{}", String::from_utf8_lossy(&out.stderr)),
    )
}

#[tokio::test]
async fn schedule_fire_records_and_launches_one_run_per_execution_id() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let task = env_dump_script(dir.path());

    let (ok, first, out) = fire(
        &data,
        &task,
        &["nightly-reset-web", "--execution-id", "run-1"],
    );
    assert!(ok, "{out}");
    assert_eq!(first["status"], "dispatched", "{out}");
    assert_eq!(first["rule"], "nightly-reset-web");
    assert_eq!(first["key"], "schedule:run-1");
    assert_eq!(first["duplicate"], false);
    let (ok, again, out) = fire(
        &data,
        &task,
        &["nightly-reset-web", "--execution-id", "run-1"],
    );
    assert!(ok, "{out}");
    assert_eq!(
        (&again["record_id"], &again["duplicate"]),
        (&first["record_id"], &Value::Bool(true))
    );

    // The task was started with the remediation contract; the record holds the run.
    let id = first["record_id"].as_str().unwrap();
    let env_file = data.join(format!("task-env-{id}"));
    let deadline = Instant::now() + Duration::from_secs(10);
    while !env_file.exists() {
        assert!(Instant::now() < deadline, "the task was not started");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let env = std::fs::read_to_string(&env_file).unwrap();
    assert!(env.contains("ORCH_JOB_KIND=remediation"), "{env}");
    let store = SqliteStore::open(&SqliteStore::file_in(&data)).unwrap();
    let record = store.get(id.parse().unwrap()).await.unwrap().unwrap();
    assert_eq!(
        record.payload["detail"]["input"]["instance_id"],
        "i-0abcd1234ef567890"
    );
    assert_eq!(record.dedupe_key.as_deref(), Some("schedule:run-1"));

    let (ok, _, out) = fire(&data, &task, &["no-such-schedule"]);
    assert!(!ok);
    assert!(
        out.contains("no schedule named `no-such-schedule`"),
        "{out}"
    );
}
