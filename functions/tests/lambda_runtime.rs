//! The real compiled Lambda binaries (`api`, `lifecycle`) run as child processes against the
//! Runtime API emulator (`common/runtime_api.rs`) and moto, the way `provided.al2023` runs them.
//! Also prints each binary's cold start (process start → first answer) and peak memory.

mod common;

use std::process::Child;
use std::time::{Duration, Instant};

use base64::Engine;
use common::runtime_api::{Outcome, RuntimeApi, lambda_command, peak_rss_kib};
use orchestrator_core::Status;
use orchestrator_core::store::RecordStore;
use serde_json::{Value, json};

/// Unique, so the log check below cannot match anything but a leak.
const TOKEN: &str = "tok-runtime-canary-3c9e0b41";
const WAIT: Duration = Duration::from_secs(30);

struct Function {
    child: Child,
    started: Instant,
    /// The process's stdout and stderr (its logs, at trace level).
    log: tempfile::NamedTempFile,
}

impl Drop for Function {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("--- function log:\n{}", self.log_text());
        }
    }
}

impl Function {
    fn spawn(bin: &str, runtime: &str, moto: &str, env: &[(&str, String)]) -> Self {
        let log = tempfile::NamedTempFile::new().unwrap();
        let mut cmd = lambda_command(bin, "test-function", runtime, moto);
        // Trace, the most verbose: `lambda_runtime` and the AWS SDK log whole events and bodies
        // there, which `telemetry` must keep out (see the log check in the api test).
        cmd.env("RUST_LOG", "trace")
            .stdout(log.reopen().unwrap())
            .stderr(log.reopen().unwrap())
            .envs(env.iter().map(|(k, v)| (*k, v)));
        let started = Instant::now();
        let child = cmd.spawn().unwrap();
        Function {
            child,
            started,
            log,
        }
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(self.log.path()).unwrap_or_default()
    }

    fn alive(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    /// Prints the process's figures: init (start → first request for work, what Lambda bills as
    /// init), cold start (start → first answer; the first invocation was queued before the start)
    /// and peak RSS. Figures only: nothing here is asserted.
    async fn report(&self, name: &str, api: &RuntimeApi) {
        let (next, first) = api.timings().await;
        let ms = |t: Option<Instant>| {
            t.map_or(f64::NAN, |t| {
                t.duration_since(self.started).as_secs_f64() * 1000.0
            })
        };
        let rss = peak_rss_kib(self.child.id());
        let rss = rss.map_or_else(|| "n/a".into(), |k| k.to_string());
        println!(
            "BENCH lambda={name} init_ms={:.1} cold_start_ms={:.1} peak_rss_kib={rss}",
            ms(next),
            ms(first),
        );
        // For scripts/bench.sh's one table (scripts/python/bench_table.py).
        println!(
            "FIGURE Lambda {name} (Runtime API emulator, moto)|init (start -> first request for work)|{:.1} ms|",
            ms(next)
        );
        println!(
            "FIGURE Lambda {name} (Runtime API emulator, moto)|cold start (start -> first answer)|{:.1} ms|",
            ms(first)
        );
        println!("FIGURE Lambda {name} (Runtime API emulator, moto)|peak RSS|{rss} KiB|");
    }
}

/// An API Gateway event from the recorded fixtures, with its orb body's `build_num` changed so
/// every event is a distinct delivery.
fn apigw_event(name: &str, build_num: u32) -> Value {
    let raw = String::from_utf8(common::fixture(&format!("apigw/{name}"))).unwrap();
    let mut ev: Value = serde_json::from_str(&raw.replace("REPLACE_TOKEN", TOKEN)).unwrap();
    let b64 = ev["isBase64Encoded"].as_bool().unwrap();
    let body = ev["body"].as_str().unwrap();
    let body = if b64 {
        String::from_utf8(
            base64::engine::general_purpose::STANDARD
                .decode(body)
                .unwrap(),
        )
        .unwrap()
    } else {
        body.to_owned()
    };
    let mut payload: Value = serde_json::from_str(&body).unwrap();
    payload["build_num"] = build_num.to_string().into();
    let body = payload.to_string();
    ev["body"] = if b64 {
        base64::engine::general_purpose::STANDARD
            .encode(body)
            .into()
    } else {
        body.into()
    };
    ev
}

#[tokio::test]
async fn api_binary_through_the_runtime_api_against_moto() {
    let Some(moto) = common::moto_endpoint("api_binary_through_the_runtime_api_against_moto")
    else {
        return;
    };
    let aws = common::MotoAws::setup(&moto).await;
    let (table, store) = aws.store().await;

    // The token comes from Secrets Manager (moto), as in the deployed function.
    let sm = aws_sdk_secretsmanager::Client::new(&aws.config);
    let secret_arn = sm
        .create_secret()
        .name(common::unique_name("intake-token"))
        .secret_string(TOKEN)
        .send()
        .await
        .unwrap()
        .arn()
        .unwrap()
        .to_owned();

    let (api, addr) = RuntimeApi::start().await;
    // The first invocation is queued before the process starts: cold start = start → answer.
    let events = [
        ("rest-v1-post-pullrequests.json", 1001),
        ("rest-v1-post-pullrequests-base64.json", 1002),
        ("http-v2-post-pullrequests.json", 1003),
        ("http-v2-post-pullrequests-base64.json", 1004),
    ];
    let first = api.invoke(&apigw_event(events[0].0, events[0].1)).await;
    let mut f = Function::spawn(
        env!("CARGO_BIN_EXE_api"),
        &addr,
        &moto,
        &[
            ("AWS_LAMBDA_HTTP_IGNORE_STAGE_IN_PATH", "true".into()),
            ("INTAKE_TOKEN_SECRET_ARN", secret_arn.clone()),
            ("TABLE_NAME", table.clone()),
            ("ECS_CLUSTER", aws.cluster.clone()),
            ("ECS_TASK_DEFINITION", aws.task_definition.clone()),
            ("ECS_SUBNETS", aws.subnet.clone()),
            ("ECS_SECURITY_GROUPS", aws.security_group.clone()),
        ],
    );
    let mut ids = vec![first];
    for (name, n) in &events[1..] {
        ids.push(api.invoke(&apigw_event(name, *n)).await);
    }
    for (req, (name, _)) in ids.iter().zip(events) {
        let Outcome::Response(resp) = api.outcome(req, WAIT).await else {
            panic!("{name}: expected a response");
        };
        assert_eq!(resp["statusCode"], 202, "{name}: {resp}");
        let body: Value = serde_json::from_str(resp["body"].as_str().unwrap()).unwrap();
        assert_eq!(body["status"], "dispatched", "{name}: {body}");
        let id = body["id"].as_str().unwrap().parse().unwrap();
        // The DynamoDB item exists in moto...
        let rec = store.get(id).await.unwrap().expect("record in DynamoDB");
        assert_eq!(rec.status, Status::Dispatched);
        // ...and the ECS task, with the contract in its overrides.
        let arn = rec.task_arn.clone().unwrap();
        let tasks = aws
            .ecs
            .describe_tasks()
            .cluster(&aws.cluster)
            .tasks(&arn)
            .send()
            .await
            .unwrap();
        let env = tasks.tasks()[0].overrides().unwrap().container_overrides()[0].environment();
        let rid = env
            .iter()
            .find(|kv| kv.name() == Some("ORCH_RECORD_ID"))
            .and_then(|kv| kv.value());
        assert_eq!(rid, Some(id.to_string().as_str()), "{name}");
    }
    f.report("api", &api).await;

    // A bad request is a 4xx response; a handler failure (not an API Gateway event at all) is an
    // error post; neither stops the process.
    let mut bad = apigw_event("rest-v1-post-pullrequests.json", 1005);
    bad["body"] = "{not json".into();
    let bad_id = api.invoke(&bad).await;
    let garbage_id = api
        .invoke(&json!({"hello": "not an api gateway event"}))
        .await;
    let after_id = api
        .invoke(&apigw_event("http-v2-post-pullrequests.json", 1006))
        .await;
    match api.outcome(&bad_id, WAIT).await {
        Outcome::Response(r) => {
            assert_eq!(r["statusCode"], 400, "{r}");
            assert!(r["body"].as_str().unwrap().contains("malformed_json"));
        }
        other => panic!("bad request: {other:?}"),
    }
    assert!(
        matches!(api.outcome(&garbage_id, WAIT).await, Outcome::Error(_)),
        "handler failure → error post"
    );
    assert!(
        matches!(api.outcome(&after_id, WAIT).await, Outcome::Response(r) if r["statusCode"] == 202)
    );
    assert!(f.alive(), "the function process survived");
    let counts = api.answer_counts().await;
    assert_eq!(counts.len(), 7);
    assert!(
        counts.values().all(|n| *n == 1),
        "exactly one answer per invocation: {counts:?}"
    );
    assert!(api.init_errors().await.is_empty());

    // The token (from Secrets Manager, and in every event's query string) is in no log line, even
    // at trace.
    let log = f.log_text();
    assert!(log.contains("dispatched"), "the log was captured: {log}");
    assert!(
        !log.contains(TOKEN),
        "the intake token leaked into the log:\n{log}"
    );
    let listed = aws.started_tasks().await;
    assert_eq!(listed.task_arns().len(), 5);

    // Warm invocations, one at a time (each: record, RunTask, record the launch, against moto):
    // figures for scripts/bench.sh, and each one must still be a 202.
    let mut warm = Vec::new();
    for n in 0..20 {
        let t = Instant::now();
        let req = api
            .invoke(&apigw_event("http-v2-post-pullrequests.json", 3000 + n))
            .await;
        let outcome = api.outcome(&req, WAIT).await;
        warm.push(t.elapsed().as_secs_f64() * 1000.0);
        assert!(
            matches!(&outcome, Outcome::Response(r) if r["statusCode"] == 202),
            "warm invocation {n}: {outcome:?}"
        );
    }
    warm.sort_by(f64::total_cmp);
    println!(
        "BENCH lambda=api warm_p50_ms={:.1} warm_max_ms={:.1} n={}",
        warm[warm.len() / 2],
        warm[warm.len() - 1],
        warm.len()
    );
    println!(
        "FIGURE Lambda api (Runtime API emulator, moto)|warm invocation, p50 / max|{:.1} / {:.1} ms|{} sequential orb deliveries: PutItem (transaction), RunTask, UpdateItem",
        warm[warm.len() / 2],
        warm[warm.len() - 1],
        warm.len()
    );
}

#[tokio::test]
async fn lifecycle_binary_through_the_runtime_api_against_moto() {
    let Some(moto) = common::moto_endpoint("lifecycle_binary_through_the_runtime_api_against_moto")
    else {
        return;
    };
    let config = common::moto_config(&moto).await;
    let (table, store) = common::dynamo_store(&config, "records").await;
    let rec = common::dispatched_record(&store).await;

    let ecs_event = |name: &str, version: i64| common::ecs_event(name, &rec, version);
    let (api, addr) = RuntimeApi::start().await;
    let running = api
        .invoke(&ecs_event("task-state-change-running.json", 3))
        .await;
    let mut f = Function::spawn(
        env!("CARGO_BIN_EXE_lifecycle"),
        &addr,
        &moto,
        &[
            ("TABLE_NAME", table.clone()),
            ("ECS_CLUSTER", "orchestrator".into()),
        ],
    );
    assert!(matches!(
        api.outcome(&running, WAIT).await,
        Outcome::Response(_)
    ));
    f.report("lifecycle", &api).await;
    assert_eq!(
        store.get(rec.id).await.unwrap().unwrap().status,
        Status::Running
    );

    let stopped = api
        .invoke(&ecs_event("task-state-change-stopped.json", 5))
        .await;
    let duplicate = api
        .invoke(&ecs_event("task-state-change-stopped.json", 5))
        .await;
    let late = api
        .invoke(&ecs_event("task-state-change-running.json", 4))
        .await;
    let garbage = api
        .invoke(&json!({"source": "aws.s3", "detail-type": "Object Created"}))
        .await;
    for id in [&stopped, &duplicate, &late] {
        assert!(matches!(api.outcome(id, WAIT).await, Outcome::Response(_)));
    }
    assert!(matches!(
        api.outcome(&garbage, WAIT).await,
        Outcome::Error(_)
    ));
    assert!(f.alive());
    let final_rec = store.get(rec.id).await.unwrap().unwrap();
    assert_eq!(final_rec.status, Status::Failed);
    assert_eq!(final_rec.task_version, Some(5));
    assert!(
        final_rec
            .status_reason
            .unwrap()
            .contains("EssentialContainerExited")
    );
    assert!(api.answer_counts().await.values().all(|n| *n == 1));
}

/// Starts `bin` with `env` (no AWS endpoint: it must stop before any AWS call) and one invocation
/// queued; returns the init error it posted, after checking it exited non-zero, posted exactly one
/// and answered no invocation.
async fn init_error_of(bin: &str, env: &[(&str, String)]) -> Value {
    let (api, addr) = RuntimeApi::start().await;
    let _queued = api.invoke(&json!({})).await;
    let mut f = Function::spawn(bin, &addr, "http://127.0.0.1:9", env);
    let deadline = Instant::now() + WAIT;
    let status = loop {
        if let Some(status) = f.child.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "the function did not exit");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(!status.success(), "exit status {status}");
    let errors = api.init_errors().await;
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(
        api.answer_counts().await.is_empty(),
        "no invocation answered"
    );
    let v: Value = serde_json::from_str(&errors[0]).unwrap();
    assert_eq!(v["errorType"], "Runtime.InitError", "{v}");
    v
}

/// The api and lifecycle functions report a configuration they cannot use the way `port-kafka`
/// does: an init error naming the problem, then an exit (they used to exit without a word to
/// the Runtime API).
#[tokio::test]
async fn api_and_lifecycle_report_an_unusable_configuration_as_an_init_error() {
    let v = init_error_of(env!("CARGO_BIN_EXE_lifecycle"), &[]).await;
    let message = v["errorMessage"].as_str().unwrap();
    assert!(
        message.contains("configuration") && message.contains("TABLE_NAME"),
        "{message}"
    );

    let env = [
        ("TABLE_NAME", "records".to_owned()),
        ("ECS_CLUSTER", "cluster".to_owned()),
        ("ECS_TASK_DEFINITION", "gitops-task".to_owned()),
        ("ECS_SUBNETS", "subnet-1".to_owned()),
        ("ECS_SECURITY_GROUPS", "sg-1".to_owned()),
    ];
    let v = init_error_of(env!("CARGO_BIN_EXE_api"), &env).await;
    let message = v["errorMessage"].as_str().unwrap();
    assert!(message.contains("INTAKE_TOKEN"), "{message}");
}
