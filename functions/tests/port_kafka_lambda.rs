//! The real compiled `port-kafka` Lambda binary as a child process against the Runtime API
//! emulator (`common/runtime_api.rs`) and moto (DynamoDB + ECS), the way `provided.al2023` runs
//! it: the recorded self-managed Kafka batch (`tests/fixtures/kafka/port-batch.json`: three
//! records, the middle one corrupt) with the rules of `examples/rules.yaml` in `RULES`, as the
//! SAM template passes them. Also: a configuration that cannot be used (no rules, a rule that
//! does not compile) is an init error posted to the Runtime API and an exit, not a hang.

mod common;

use std::process::Child;
use std::time::{Duration, Instant};

use common::runtime_api::{Outcome, RuntimeApi, lambda_command};
use orchestrator_core::store::RecordStore;
use orchestrator_core::{Source, Status};
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(30);
const TOPIC: &str = "org_sYG4DOJZNGy8bYnt.change.log";

/// The function process; killed when dropped.
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
    /// Starts the binary with a clean environment: the Lambda variables, moto as every AWS
    /// endpoint, and `env`.
    fn spawn(runtime: &str, moto: &str, env: &[(&str, String)]) -> Self {
        let mut cmd = lambda_command(
            env!("CARGO_BIN_EXE_port-kafka"),
            "port-kafka",
            runtime,
            moto,
        );
        cmd.envs(env.iter().map(|(k, v)| (*k, v)));
        Function {
            child: cmd.spawn().unwrap(),
        }
    }

    fn alive(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    /// Waits (bounded) for the process to exit; its exit status.
    async fn exited(&mut self, timeout: Duration) -> std::process::ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "the function did not exit within {timeout:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// `examples/rules.yaml`, as the deployment passes it (the RULES variable; a Lambda ships no
/// rules file).
fn example_rules() -> String {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/rules.yaml");
    std::fs::read_to_string(path).unwrap()
}

fn batch() -> Value {
    serde_json::from_slice(&common::fixture("kafka/port-batch.json")).unwrap()
}

/// The settings the function needs besides its rules.
fn base_env(
    table: &str,
    cluster: &str,
    family: &str,
    subnet: &str,
    sg: &str,
) -> Vec<(&'static str, String)> {
    vec![
        ("TABLE_NAME", table.to_owned()),
        ("ECS_CLUSTER", cluster.to_owned()),
        ("ECS_TASK_DEFINITION", family.to_owned()),
        ("ECS_SUBNETS", subnet.to_owned()),
        ("ECS_SECURITY_GROUPS", sg.to_owned()),
    ]
}

/// [`base_env`] for a records table and the cluster, network and task definition on moto.
fn moto_env(table: &str, aws: &common::MotoAws) -> Vec<(&'static str, String)> {
    base_env(
        table,
        &aws.cluster,
        &aws.task_definition,
        &aws.subnet,
        &aws.security_group,
    )
}

/// Waits (bounded) for the function's first init error.
async fn first_init_error(api: &RuntimeApi) -> String {
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(e) = api.init_errors().await.into_iter().next() {
            return e;
        }
        assert!(Instant::now() < deadline, "no init error within {WAIT:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The value of `name` in the overrides of task `arn`.
async fn override_of(
    ecs: &aws_sdk_ecs::Client,
    cluster: &str,
    arn: &str,
    name: &str,
) -> Option<String> {
    let tasks = ecs
        .describe_tasks()
        .cluster(cluster)
        .tasks(arn)
        .send()
        .await
        .unwrap();
    let task = &tasks.tasks()[0];
    task.overrides()?.container_overrides()[0]
        .environment()
        .iter()
        .find(|kv| kv.name() == Some(name))
        .and_then(|kv| kv.value().map(str::to_owned))
}

#[tokio::test]
async fn port_kafka_binary_handles_the_recorded_batch_against_moto() {
    let Some(moto) =
        common::moto_endpoint("port_kafka_binary_handles_the_recorded_batch_against_moto")
    else {
        return;
    };
    let aws = common::MotoAws::setup(&moto).await;
    let (table, store) = aws.store().await;

    let (api, addr) = RuntimeApi::start().await;
    let first = api.invoke(&batch()).await;
    let mut env = moto_env(&table, &aws);
    env.push(("RULES", example_rules()));
    let mut f = Function::spawn(&addr, &moto, &env);

    // The batch: one response, three items in offset order.
    let Outcome::Response(report) = api.outcome(&first, WAIT).await else {
        panic!("the batch must be answered with a response");
    };
    assert_eq!(
        report["batchItemFailures"],
        serde_json::json!([]),
        "every record done: nothing for Kafka to deliver again"
    );
    let items = report["records"].as_array().unwrap();
    let summary: Vec<(i64, &str, bool)> = items
        .iter()
        .map(|i| {
            (
                i["offset"].as_i64().unwrap(),
                i["status"].as_str().unwrap(),
                i["duplicate"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            (1041, "dispatched", false),
            (1042, "rejected", false),
            (1043, "dispatched", false),
        ],
        "{report}"
    );
    assert!(
        items
            .iter()
            .all(|i| i["topic"] == TOPIC && i["partition"] == 0)
    );

    // Each item's record, read back from DynamoDB (moto).
    let mut records = Vec::new();
    for item in items {
        let id = item["record_id"].as_str().unwrap().parse().unwrap();
        records.push(store.get(id).await.unwrap().expect("record in DynamoDB"));
    }

    // 1041: a VM whose free storage (0.5) is below 10% of its size (10): `vm-free-storage-low`
    // matched, its two steps (exec, then port.patch_entity) are in the record, a task runs them.
    let vm = &records[0];
    assert_eq!(vm.source, Source::Port);
    assert_eq!(vm.status, Status::Dispatched);
    assert_eq!(vm.rule.as_deref(), Some("vm-free-storage-low"));
    let steps: Vec<(&str, &str)> = vm
        .actions
        .iter()
        .map(|a| (a.id.as_str(), a.kind.as_str()))
        .collect();
    assert_eq!(
        steps,
        [("remediate", "exec"), ("report", "port.patch_entity")]
    );
    let e = vm.entity.as_ref().unwrap();
    assert_eq!(
        (e.blueprint.as_str(), e.entity.as_str()),
        ("vm", "storage-example")
    );

    // 1042: the corrupt record (its base64 value is a cut-off JSON document): `rejected`, with
    // the reason and its Kafka coordinates, no rule, no task.
    let bad = &records[1];
    assert_eq!(bad.status, Status::Rejected);
    let reason = bad.status_reason.as_deref().unwrap();
    assert!(
        reason.contains("not a Port changelog event") && reason.contains("JSON"),
        "{reason}"
    );
    assert_eq!(items[1]["reason"].as_str(), Some(reason));
    assert_eq!(bad.payload["kafka"]["topic"], TOPIC);
    assert_eq!(bad.payload["kafka"]["partition"], 0);
    assert_eq!(bad.payload["kafka"]["offset"], 1042);
    assert!(bad.payload["value_base64"].is_string());
    assert_eq!(
        bad.dedupe_key.as_deref(),
        Some(format!("kafka:{TOPIC}/0/1042").as_str())
    );
    assert!(bad.rule.is_none() && bad.actions.is_empty() && bad.task_arn.is_none());

    // 1043: a deployment's healthStatus went Healthy → Degraded: `deployment-health-changed`
    // matched, one slack.post step.
    let dep = &records[2];
    assert_eq!(dep.status, Status::Dispatched);
    assert_eq!(dep.rule.as_deref(), Some("deployment-health-changed"));
    let steps: Vec<(&str, &str)> = dep
        .actions
        .iter()
        .map(|a| (a.id.as_str(), a.kind.as_str()))
        .collect();
    assert_eq!(steps, [("notify", "slack.post")]);
    assert_eq!(
        dep.payload["diff"]["before"]["properties"]["healthStatus"],
        "Healthy"
    );
    assert_eq!(
        dep.payload["diff"]["after"]["properties"]["healthStatus"],
        "Degraded"
    );

    // The listing (Query on the by_time index) holds exactly these three Port records; nothing
    // was ignored: both readable events match a rule of examples/rules.yaml.
    let page = common::port_records(&store).await;
    let mut listed: Vec<_> = page.records.iter().map(|r| r.id).collect();
    let mut expected: Vec<_> = records.iter().map(|r| r.id).collect();
    listed.sort();
    expected.sort();
    assert_eq!(listed, expected);
    assert!(page.records.iter().all(|r| r.status != Status::Ignored));

    // Exactly two ECS tasks, one per matched record, each a remediation of its record.
    for rec in [vm, dep] {
        let arn = rec.task_arn.as_deref().expect("task ARN recorded");
        assert_eq!(
            override_of(&aws.ecs, &aws.cluster, arn, "ORCH_RECORD_ID").await,
            Some(rec.id.to_string())
        );
        assert_eq!(
            override_of(&aws.ecs, &aws.cluster, arn, "ORCH_JOB_KIND")
                .await
                .as_deref(),
            Some("remediation")
        );
        assert_eq!(
            override_of(&aws.ecs, &aws.cluster, arn, "ORCH_SERVICE").await,
            None
        );
    }
    let launched = || async { aws.started_tasks().await.task_arns().len() };
    assert_eq!(launched().await, 2);

    // The event source delivers the same batch again (as after a timeout): every item is a
    // duplicate of its record, nothing new is written or launched. A handler failure (an event
    // that is not a Kafka batch) is an error post, and the process goes on.
    let again = api.invoke(&batch()).await;
    let garbage = api
        .invoke(&serde_json::json!({"detail-type": "ECS Task State Change"}))
        .await;
    let Outcome::Response(second) = api.outcome(&again, WAIT).await else {
        panic!("the redelivery must be answered with a response");
    };
    let second_items = second["records"].as_array().unwrap();
    assert_eq!(second_items.len(), 3);
    for (a, b) in items.iter().zip(second_items) {
        assert_eq!(a["record_id"], b["record_id"], "{second}");
        assert_eq!(a["status"], b["status"], "{second}");
        assert_eq!(b["duplicate"], true, "{second}");
    }
    match api.outcome(&garbage, WAIT).await {
        Outcome::Error(e) => assert!(e.to_string().contains("records"), "{e}"),
        other => panic!("not a Kafka batch: {other:?}"),
    }
    assert!(f.alive(), "the function process survived");
    assert_eq!(launched().await, 2);
    let page = common::port_records(&store).await;
    assert_eq!(page.records.len(), 3);

    let counts = api.answer_counts().await;
    assert_eq!(counts.len(), 3, "{counts:?}");
    assert!(
        counts.values().all(|n| *n == 1),
        "exactly one answer per invocation: {counts:?}"
    );
    assert!(api.init_errors().await.is_empty());
}

/// Starts the binary with `env` (no moto needed: it must stop before any AWS call), queues a
/// batch, and returns the init error it posted; asserts that it exited non-zero and answered
/// no invocation.
async fn init_error_of(env: &[(&'static str, String)]) -> String {
    let (api, addr) = RuntimeApi::start().await;
    // Queued before the start, as Lambda does for the invocation that causes a cold start.
    let _queued = api.invoke(&batch()).await;
    // An endpoint nothing listens on: an AWS call would fail, not reach a real account.
    let mut f = Function::spawn(&addr, "http://127.0.0.1:9", env);
    let error = first_init_error(&api).await;
    let status = f.exited(WAIT).await;
    assert!(!status.success(), "exit status {status}");
    assert_eq!(api.init_errors().await.len(), 1);
    assert!(
        api.answer_counts().await.is_empty(),
        "no invocation answered"
    );
    error
}

/// An invocation without the time to finish even one record's launch starts none: every record
/// is reported `deferred`, and the answer's partial batch response names the partition's first
/// offset, for Kafka to deliver the batch again from there. Nothing is written, so no AWS call is
/// made (the endpoint is one nothing listens on).
#[tokio::test]
async fn an_invocation_without_time_for_a_record_hands_the_batch_back_to_kafka() {
    let (api, addr) = RuntimeApi::start().await;
    let first = api.invoke(&batch()).await;
    let mut env = base_env("records", "cluster", "gitops-task", "subnet-1", "sg-1");
    env.push(("RULES", example_rules()));
    // The emulator's deadline is 30 s away; a 30 s launch budget leaves no time to start one.
    env.push(("DISPATCH_BUDGET_SECS", "30".into()));
    let _f = Function::spawn(&addr, "http://127.0.0.1:9", &env);
    let Outcome::Response(answer) = api.outcome(&first, WAIT).await else {
        panic!("the batch must be answered with a response");
    };
    assert_eq!(
        answer["batchItemFailures"],
        serde_json::json!([{"itemIdentifier": {"partition": format!("{TOPIC}-0"), "offset": 1041}}]),
        "{answer}"
    );
    let statuses: Vec<&str> = answer["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, ["deferred"; 3], "{answer}");
}

#[tokio::test]
async fn a_start_without_rules_is_an_init_error_not_a_hang() {
    let env = base_env("records", "cluster", "gitops-task", "subnet-1", "sg-1");
    let error = init_error_of(&env).await;
    let v: Value = serde_json::from_str(&error).unwrap();
    assert_eq!(v["errorType"], "Runtime.InitError", "{v}");
    let message = v["errorMessage"].as_str().unwrap();
    assert!(
        message.contains("RULES_FILE or RULES must be set"),
        "{message}"
    );
}

#[tokio::test]
async fn rules_that_do_not_compile_are_an_init_error_naming_the_rule() {
    let mut env = base_env("records", "cluster", "gitops-task", "subnet-1", "sg-1");
    env.push((
        "RULES",
        "rules:\n  - name: broken-condition\n    match: {resourceType: entity, action: UPDATE, blueprint: vm}\n    condition: 'after.properties.free_storage <'\n    actions:\n      - {type: slack.post}\n"
            .into(),
    ));
    let error = init_error_of(&env).await;
    let v: Value = serde_json::from_str(&error).unwrap();
    let message = v["errorMessage"].as_str().unwrap();
    assert!(
        message.contains("RULES") && message.contains("rule `broken-condition`"),
        "{message}"
    );
    assert!(message.contains("does not compile"), "{message}");
}

#[tokio::test]
async fn a_missing_setting_is_an_init_error_naming_it() {
    let mut env = base_env("records", "cluster", "gitops-task", "subnet-1", "sg-1");
    env.retain(|(k, _)| *k != "TABLE_NAME");
    env.push(("RULES", example_rules()));
    let error = init_error_of(&env).await;
    let v: Value = serde_json::from_str(&error).unwrap();
    let message = v["errorMessage"].as_str().unwrap();
    assert!(
        message.contains("configuration") && message.contains("TABLE_NAME"),
        "{message}"
    );
}

/// A REST API (payload v1) event for `POST /webhooks/port`, signed with `secret` now.
fn signed_port_webhook(body: &[u8], secret: &str) -> Value {
    use base64::Engine;
    use hmac::{Hmac, KeyInit, Mac};
    let raw = String::from_utf8(common::fixture("apigw/rest-v1-post-pullrequests.json")).unwrap();
    let mut ev: Value = serde_json::from_str(&raw).unwrap();
    let ts = chrono::Utc::now().timestamp().to_string();
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(ts.as_bytes());
    mac.update(b".");
    mac.update(body);
    let sig = format!(
        "v1,{}",
        base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
    );
    ev["resource"] = "/webhooks/port".into();
    ev["path"] = "/webhooks/port".into();
    ev["requestContext"]["resourcePath"] = "/webhooks/port".into();
    ev["requestContext"]["path"] = "/dev/webhooks/port".into();
    ev["queryStringParameters"] = Value::Null;
    ev["multiValueQueryStringParameters"] = Value::Null;
    for (name, value) in [("x-port-timestamp", ts), ("x-port-signature", sig)] {
        ev["headers"][name] = value.clone().into();
        ev["multiValueHeaders"][name] = serde_json::json!([value]);
    }
    ev["body"] = String::from_utf8(body.to_vec()).unwrap().into();
    ev
}

/// The deployed pair: the `api` binary reads the Port client secret from Secrets Manager
/// (PORT_CLIENT_SECRET_ARN) and the rules from RULES, as template.yaml configures it, and takes a
/// signed webhook; the same event then arrives from Kafka (the recorded batch holds it at offset
/// 1041) and is a duplicate of the webhook's record: one record, one task.
#[tokio::test]
async fn an_event_delivered_by_webhook_and_by_kafka_is_recorded_once() {
    let Some(moto) =
        common::moto_endpoint("an_event_delivered_by_webhook_and_by_kafka_is_recorded_once")
    else {
        return;
    };
    let aws = common::MotoAws::setup(&moto).await;
    let (table, store) = aws.store().await;
    let sm = aws_sdk_secretsmanager::Client::new(&aws.config);
    let secret = |name: &str, value: &str| {
        let (sm, name, value) = (sm.clone(), common::unique_name(name), value.to_owned());
        async move {
            sm.create_secret()
                .name(name)
                .secret_string(value)
                .send()
                .await
                .unwrap()
                .arn()
                .unwrap()
                .to_owned()
        }
    };
    let port_secret = "port-client-secret-for-tests";
    let token_arn = secret("intake-token", "tok-port-1").await;
    let port_arn = secret("port-client-secret", port_secret).await;

    let mut env = moto_env(&table, &aws);
    env.push(("RULES", example_rules()));

    // The webhook, through the api binary.
    let (web, web_addr) = RuntimeApi::start().await;
    let body = common::fixture("port/changelog-vm-free-storage-low.json");
    let signed = web.invoke(&signed_port_webhook(&body, port_secret)).await;
    let forged = web
        .invoke(&signed_port_webhook(&body, "not-the-secret"))
        .await;
    let mut api_env = env.clone();
    api_env.extend([
        ("AWS_LAMBDA_HTTP_IGNORE_STAGE_IN_PATH", "true".to_owned()),
        ("INTAKE_TOKEN_SECRET_ARN", token_arn),
        ("PORT_CLIENT_SECRET_ARN", port_arn),
    ]);
    let mut api = lambda_command(env!("CARGO_BIN_EXE_api"), "api", &web_addr, &moto);
    api.envs(api_env.iter().map(|(k, v)| (*k, v)));
    let _api = Function {
        child: api.spawn().unwrap(),
    };
    let Outcome::Response(resp) = web.outcome(&signed, WAIT).await else {
        panic!("the webhook must be answered");
    };
    assert_eq!(resp["statusCode"], 202, "{resp}");
    let rec: Value = serde_json::from_str(resp["body"].as_str().unwrap()).unwrap();
    assert_eq!(rec["status"], "dispatched", "{rec}");
    assert_eq!(rec["rule"], "vm-free-storage-low", "{rec}");
    let webhook_id = rec["id"].as_str().unwrap().to_owned();
    let Outcome::Response(resp) = web.outcome(&forged, WAIT).await else {
        panic!("the forged webhook must be answered");
    };
    assert_eq!(resp["statusCode"], 401, "{resp}");

    // The batch, through the port-kafka binary.
    let (kafka, kafka_addr) = RuntimeApi::start().await;
    let first = kafka.invoke(&batch()).await;
    let _f = Function::spawn(&kafka_addr, &moto, &env);
    let Outcome::Response(report) = kafka.outcome(&first, WAIT).await else {
        panic!("the batch must be answered with a response");
    };
    let items = report["records"].as_array().unwrap();
    assert_eq!(items[0]["offset"], 1041);
    assert_eq!(items[0]["record_id"], webhook_id.as_str(), "{report}");
    assert_eq!(items[0]["duplicate"], true, "{report}");
    assert_eq!(items[1]["status"], "rejected");
    assert_eq!(items[2]["status"], "dispatched");
    assert_eq!(items[2]["duplicate"], false);

    let page = common::port_records(&store).await;
    assert_eq!(page.records.len(), 3, "webhook + two new Kafka records");
    let listed = aws.started_tasks().await;
    assert_eq!(listed.task_arns().len(), 2, "one task per event");
    assert!(web.answer_counts().await.values().all(|n| *n == 1));
    assert!(kafka.answer_counts().await.values().all(|n| *n == 1));
}
