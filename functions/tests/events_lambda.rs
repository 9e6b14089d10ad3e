//! The real compiled `events` Lambda binary as a child process against the Runtime API emulator
//! (`common/runtime_api.rs`) and moto (DynamoDB + ECS), as `provided.al2023` runs it, with the
//! rules of `examples/events.yaml` in `RULES` as the SAM template passes them: the documented
//! CloudTrail `RebootInstances` event (as an EventBridge rule delivers it) and a schedule run (as
//! EventBridge Scheduler delivers it) are recorded in DynamoDB and start one ECS task each; the
//! same event and the same run again start nothing; a body that is neither fails the invocation
//! (for Lambda's retries and the dead-letter queue) and the process keeps serving. A start
//! without rules is an init error, not a hang.

mod common;

use std::process::Child;
use std::time::{Duration, Instant};

use common::runtime_api::{Outcome, RuntimeApi, lambda_command};
use orchestrator_core::store::RecordStore;
use orchestrator_core::{Source, Status};
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(30);

struct Function {
    child: Child,
}

impl Drop for Function {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Function {
    fn spawn(runtime: &str, moto: &str, env: &[(&str, String)]) -> Self {
        let mut cmd = lambda_command(env!("CARGO_BIN_EXE_events"), "events", runtime, moto);
        cmd.envs(env.iter().map(|(k, v)| (*k, v)));
        Function {
            child: cmd.spawn().unwrap(),
        }
    }
}

fn example_rules() -> String {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/events.yaml");
    std::fs::read_to_string(path).unwrap()
}

fn fixture(name: &str) -> Value {
    serde_json::from_slice(&common::fixture(&format!("eventbridge/{name}"))).unwrap()
}

async fn response(api: &RuntimeApi, id: &str) -> Value {
    match api.outcome(id, WAIT).await {
        Outcome::Response(v) => v,
        other => panic!("invocation {id}: {other:?}"),
    }
}

#[tokio::test]
async fn events_binary_records_and_launches_once_per_event_against_moto() {
    let Some(moto) =
        common::moto_endpoint("events_binary_records_and_launches_once_per_event_against_moto")
    else {
        return;
    };
    let aws = common::MotoAws::setup(&moto).await;
    let (table, store) = aws.store().await;
    let (api, addr) = RuntimeApi::start().await;
    let reboot = api
        .invoke(&fixture("cloudtrail-reboot-instances.json"))
        .await;
    let run = api.invoke(&fixture("scheduler-run.json")).await;
    let reboot_again = api
        .invoke(&fixture("cloudtrail-reboot-instances.json"))
        .await;
    let run_again = api.invoke(&fixture("scheduler-run.json")).await;
    let garbage = api.invoke(&serde_json::json!({"hello": "world"})).await;
    let after_garbage = api
        .invoke(&fixture("ec2-instance-state-stopped.json"))
        .await;
    let env = vec![
        ("TABLE_NAME", table.clone()),
        ("ECS_CLUSTER", aws.cluster.clone()),
        ("ECS_TASK_DEFINITION", aws.task_definition.clone()),
        ("ECS_SUBNETS", aws.subnet.clone()),
        ("ECS_SECURITY_GROUPS", aws.security_group.clone()),
        ("RULES", example_rules()),
    ];
    let _f = Function::spawn(&addr, &moto, &env);

    let first = response(&api, &reboot).await;
    assert_eq!(first["status"], "dispatched", "{first}");
    assert_eq!(first["rule"], "instance-rebooted-snapshot");
    assert_eq!(first["duplicate"], false);
    let scheduled = response(&api, &run).await;
    assert_eq!(scheduled["status"], "dispatched", "{scheduled}");
    assert_eq!(scheduled["key"], "schedule:d32c5kddcf5bb8c3");
    assert_eq!(scheduled["rule"], "nightly-reset-web");

    for (again, of) in [(&reboot_again, &first), (&run_again, &scheduled)] {
        let r = response(&api, again).await;
        assert_eq!(
            (&r["record_id"], &r["duplicate"]),
            (&of["record_id"], &Value::Bool(true)),
            "{r}"
        );
    }
    match api.outcome(&garbage, WAIT).await {
        Outcome::Error(e) => assert!(e.to_string().contains("`id`"), "{e}"),
        other => panic!("not an event: {other:?}"),
    }
    let stopped = response(&api, &after_garbage).await;
    assert_eq!(stopped["rule"], "instance-stopped-notify", "{stopped}");

    // In DynamoDB: the records, with their task; in ECS: one task per new event.
    let id = first["record_id"].as_str().unwrap().parse().unwrap();
    let record = store.get(id).await.unwrap().expect("record in DynamoDB");
    assert_eq!(record.source, Source::Eventbridge);
    assert_eq!(record.status, Status::Dispatched);
    assert!(record.task_arn.is_some());
    assert_eq!(
        record.dedupe_key.as_deref(),
        Some("eventbridge:6a7e8feb-b491-4cf7-a9f1-bf3703467718")
    );
    let deadline = Instant::now() + WAIT;
    loop {
        let n = aws.started_tasks().await.task_arns().len();
        if n == 3 {
            break;
        }
        assert!(Instant::now() < deadline, "{n} tasks started, want 3");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let counts = api.answer_counts().await;
    assert!(counts.values().all(|n| *n == 1), "{counts:?}");
    assert!(api.init_errors().await.is_empty());
}

#[tokio::test]
async fn a_start_without_rules_is_an_init_error_not_a_hang() {
    let (api, addr) = RuntimeApi::start().await;
    let _queued = api
        .invoke(&fixture("cloudtrail-reboot-instances.json"))
        .await;
    let env = vec![
        ("TABLE_NAME", "records".to_owned()),
        ("ECS_CLUSTER", "cluster".to_owned()),
        ("ECS_TASK_DEFINITION", "gitops-task".to_owned()),
        ("ECS_SUBNETS", "subnet-1".to_owned()),
        ("ECS_SECURITY_GROUPS", "sg-1".to_owned()),
    ];
    // An endpoint nothing listens on: it must stop before any AWS call.
    let mut f = Function::spawn(&addr, "http://127.0.0.1:9", &env);
    let deadline = Instant::now() + WAIT;
    let error = loop {
        if let Some(e) = api.init_errors().await.into_iter().next() {
            break e;
        }
        assert!(Instant::now() < deadline, "no init error within {WAIT:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(error.contains("RULES_FILE or RULES must be set"), "{error}");
    let status = loop {
        if let Some(s) = f.child.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "the function did not exit");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(!status.success());
    assert!(api.answer_counts().await.is_empty());
}
