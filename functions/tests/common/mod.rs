//! Shared test support: fixtures, state builders, moto access, the Lambda Runtime API emulator.
#![allow(dead_code)]

pub mod port_local;
pub mod runtime_api;

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use orchestrator::api::access::AccessSettings;
use orchestrator::launch::ecs::{EcsLauncher, EcsSettings};
use orchestrator::launch::{
    LaunchError, Launched, LiveTask, TaskInspector, TaskLauncher, TaskState,
};
use orchestrator::{AppState, IntakeSettings, app};
use orchestrator_core::store::dynamodb::{DynamoStore, TableNames};
use orchestrator_core::store::sqlite::SqliteStore;
use orchestrator_core::store::{ListQuery, Page, RecordStore, Transition};
use orchestrator_core::{Job, LaunchContract, Record, RecordId, Secret, Source, Status};
use serde_json::Value;
use tower::ServiceExt;

pub fn fixture(rel: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fixtures")
        .join(rel);
    std::fs::read(&path).unwrap_or_else(|e| panic!("fixture {}: {e}", path.display()))
}

/// A CircleCI orb record for `circleci-samples` (dev, `8f59df9`), created in `store` and moved
/// to `Dispatched` with task `arn:task`: what the ECS task state changes apply to.
pub async fn dispatched_record(store: &dyn RecordStore) -> Record {
    let r = Record::received(
        Source::CircleciOrb,
        serde_json::json!({}),
        Some(
            Job::parse(
                "circleci-samples",
                "eddiewebb/circleci-samples",
                "dev",
                "8f59df9",
            )
            .unwrap(),
        ),
    );
    store.create(&r).await.unwrap();
    store
        .transition(
            r.id,
            &Transition::to(Status::Dispatched).task_arn("arn:task"),
        )
        .await
        .unwrap()
}

/// The recorded ECS task state change `ecs/<name>` for `record`, with `detail.version` set.
pub fn ecs_event(name: &str, record: &Record, version: i64) -> Value {
    let raw = String::from_utf8(fixture(&format!("ecs/{name}"))).unwrap();
    let mut v: Value =
        serde_json::from_str(&raw.replace("REPLACE_RECORD_ID", &record.id.to_string())).unwrap();
    v["detail"]["version"] = version.into();
    v
}

/// A launcher that records the contracts it is given and answers as told.
///
/// Why a double here: these tests assert exactly what the Router asks a launcher to do (and how it
/// reacts to failures) without a process or AWS; the real launchers have their own tests
/// (`ecs_moto.rs` against moto, `local_e2e.rs` with a real child process).
#[derive(Debug, Default)]
pub struct RecordingLauncher {
    pub launched: Mutex<Vec<LaunchContract>>,
    pub fail_with: Mutex<Option<LaunchError>>,
}

impl RecordingLauncher {
    pub fn contracts(&self) -> Vec<LaunchContract> {
        self.launched.lock().unwrap().clone()
    }
}

#[async_trait]
impl TaskLauncher for RecordingLauncher {
    async fn launch(&self, contract: &LaunchContract) -> Result<Launched, LaunchError> {
        if let Some(e) = self.fail_with.lock().unwrap().clone() {
            return Err(e);
        }
        let mut l = self.launched.lock().unwrap();
        l.push(contract.clone());
        Ok(Launched {
            task_arn: format!("arn:aws:ecs:us-east-1:123456789012:task/test/{}", l.len()),
        })
    }
}

/// Every task it launched is live (none ever stops), under its contract's attempt.
#[async_trait]
impl TaskInspector for RecordingLauncher {
    async fn live_tasks(&self, record: RecordId) -> Result<Vec<LiveTask>, LaunchError> {
        Ok(self
            .contracts()
            .iter()
            .enumerate()
            .filter(|(_, c)| c.record_id == record)
            .map(|(i, c)| LiveTask {
                task_arn: format!("arn:aws:ecs:us-east-1:123456789012:task/test/{}", i + 1),
                attempt: Some(c.attempt),
            })
            .collect())
    }

    async fn describe(&self, _task_arn: &str) -> Result<TaskState, LaunchError> {
        Ok(TaskState::Live("RUNNING".into()))
    }
}

/// The audit token of [`sqlite_app`]'s state: reads records.
pub const AUDIT_TOKEN: &str = "test-audit-token";
/// The admin token of [`sqlite_app`]'s state: re-dispatches and redacts records.
pub const ADMIN_TOKEN: &str = "test-admin-token";

/// Both audit credentials configured, [`AUDIT_TOKEN`] and [`ADMIN_TOKEN`].
pub fn access() -> Arc<AccessSettings> {
    Arc::new(AccessSettings {
        audit_token: Some(Secret::new(AUDIT_TOKEN)),
        admin_token: Some(Secret::new(ADMIN_TOKEN)),
    })
}

/// `req` with `Authorization: Bearer <token>`.
pub fn bearer(mut req: Request<Body>, token: &str) -> Request<Body> {
    req.headers_mut().insert(
        axum::http::header::AUTHORIZATION,
        format!("Bearer {token}").parse().unwrap(),
    );
    req
}

pub struct TestApp {
    pub state: AppState,
    pub launcher: Arc<RecordingLauncher>,
    pub store: Arc<SqliteStore>,
    _dir: tempfile::TempDir,
}

pub fn sqlite_app(settings: IntakeSettings) -> TestApp {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SqliteStore::open(&SqliteStore::file_in(dir.path())).unwrap());
    let launcher = Arc::new(RecordingLauncher::default());
    TestApp {
        state: AppState {
            store: store.clone(),
            launcher: launcher.clone(),
            intake: Arc::new(settings),
            access: access(),
            console: Default::default(),
        },
        launcher,
        store,
        _dir: dir,
    }
}

/// Sends `req` through the Router in-process (`oneshot`): the status and the JSON body (`Null`
/// when the body is not JSON).
pub async fn send(state: &AppState, req: Request<Body>) -> (StatusCode, Value) {
    let resp = app(state.clone()).oneshot(req).await.unwrap();
    let status = resp.status();
    let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX)
        .await
        .unwrap();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

/// How many records the store lists (first page of 100: more than any of these tests writes).
pub async fn record_count(store: &dyn RecordStore) -> usize {
    store
        .list(&ListQuery {
            limit: 100,
            ..ListQuery::default()
        })
        .await
        .unwrap()
        .records
        .len()
}

/// The store's Port records: the first page of 10 (more than any Port test writes).
pub async fn port_records(store: &dyn RecordStore) -> Page {
    store
        .list(&ListQuery {
            limit: 10,
            source: Some(Source::Port),
            ..ListQuery::default()
        })
        .await
        .unwrap()
}

// Skips are recorded, and required tools enforced, by the helpers all crates' tests share.
#[path = "../../../tests/support/tools.rs"]
mod tools;
#[allow(unused_imports)] // each test binary uses some of the shared helpers
pub use tools::{chromedriver, moto_endpoint, skipped};

pub async fn moto_config(endpoint: &str) -> aws_config::SdkConfig {
    orchestrator_clients::aws::loader()
        .endpoint_url(endpoint)
        .region(aws_config::Region::new("us-east-1"))
        .test_credentials()
        .load()
        .await
}

/// A table name no other test uses (tests share one moto server).
pub fn unique_name(prefix: &str) -> String {
    format!("{prefix}-{}", uuid::Uuid::now_v7().simple())
}

/// A new DynamoDB table on moto (named `<prefix>-<unique>`, created): its name and the store.
pub async fn dynamo_store(config: &aws_config::SdkConfig, prefix: &str) -> (String, DynamoStore) {
    let table = unique_name(prefix);
    let store = DynamoStore::new(
        aws_sdk_dynamodb::Client::new(config),
        TableNames::with_defaults(&table),
    );
    store.create_table().await.unwrap();
    (table, store)
}

/// What a test needs to run Fargate tasks on moto: the SDK configuration and ECS client for the
/// endpoint, and a fresh network ([`network`]), cluster and task definition
/// ([`cluster_and_task_definition`]), all uniquely named (tests share one moto server).
pub struct MotoAws {
    pub config: aws_config::SdkConfig,
    pub ecs: aws_sdk_ecs::Client,
    pub subnet: String,
    pub security_group: String,
    pub cluster: String,
    pub task_definition: String,
}

impl MotoAws {
    pub async fn setup(endpoint: &str) -> MotoAws {
        let config = moto_config(endpoint).await;
        let ecs = aws_sdk_ecs::Client::new(&config);
        let (subnet, security_group) = network(endpoint).await;
        let (cluster, task_definition) = cluster_and_task_definition(&ecs).await;
        MotoAws {
            config,
            ecs,
            subnet,
            security_group,
            cluster,
            task_definition,
        }
    }

    /// The launcher settings for this cluster: Fargate in the subnet and security group, no
    /// public IP, the contract in the overrides of the `gitops-task` container.
    pub fn ecs_settings(&self) -> EcsSettings {
        EcsSettings {
            cluster: self.cluster.clone(),
            task_definition: self.task_definition.clone(),
            subnets: vec![self.subnet.clone()],
            security_groups: vec![self.security_group.clone()],
            assign_public_ip: false,
            container_name: "gitops-task".into(),
        }
    }

    /// The real ECS launcher, with [`Self::ecs_settings`], on this endpoint's ECS client.
    pub fn launcher(&self) -> EcsLauncher {
        EcsLauncher::new(self.ecs.clone(), self.ecs_settings())
    }

    /// A new records table on this endpoint: its name and the store ([`dynamo_store`]).
    pub async fn store(&self) -> (String, DynamoStore) {
        dynamo_store(&self.config, "records").await
    }

    /// ListTasks: the tasks running in this test's cluster (the orchestrator starts each with
    /// `startedBy` = its record id).
    pub async fn started_tasks(&self) -> aws_sdk_ecs::operation::list_tasks::ListTasksOutput {
        self.ecs
            .list_tasks()
            .cluster(&self.cluster)
            .send()
            .await
            .unwrap()
    }
}

/// Calls moto's EC2 query API directly. Why not aws-sdk-ec2: these functions never talk to EC2
/// (only the task does), and that crate alone would add minutes to this crate's clean build;
/// tests only need a few calls here.
pub async fn ec2(endpoint: &str, params: &[(&str, &str)]) -> String {
    let mut form: Vec<(&str, &str)> = vec![("Version", "2016-11-15")];
    form.extend_from_slice(params);
    let resp = orchestrator_clients::http::client().unwrap()
        .post(endpoint)
        .header(
            "authorization",
            "AWS4-HMAC-SHA256 Credential=test/20260101/us-east-1/ec2/aws4_request, SignedHeaders=host, Signature=0",
        )
        .form(&form)
        .send()
        .await
        .unwrap();
    let status = resp.status();
    let text = resp.text().await.unwrap();
    assert!(status.is_success(), "EC2 {params:?}: {status} {text}");
    text
}

pub fn xml_value(xml: &str, tag: &str) -> String {
    let open = format!("<{tag}>");
    let start = xml
        .find(&open)
        .unwrap_or_else(|| panic!("no <{tag}> in {xml}"))
        + open.len();
    let end = xml[start..].find('<').unwrap() + start;
    xml[start..end].to_owned()
}

/// A VPC with DNS hostnames, a subnet and a security group: what moto's Fargate RunTask needs.
pub async fn network(endpoint: &str) -> (String, String) {
    let vpc = xml_value(
        &ec2(
            endpoint,
            &[("Action", "CreateVpc"), ("CidrBlock", "10.0.0.0/16")],
        )
        .await,
        "vpcId",
    );
    ec2(
        endpoint,
        &[
            ("Action", "ModifyVpcAttribute"),
            ("VpcId", &vpc),
            ("EnableDnsHostnames.Value", "true"),
        ],
    )
    .await;
    let subnet = xml_value(
        &ec2(
            endpoint,
            &[
                ("Action", "CreateSubnet"),
                ("VpcId", &vpc),
                ("CidrBlock", "10.0.1.0/24"),
            ],
        )
        .await,
        "subnetId",
    );
    let name = unique_name("sg");
    let sg = xml_value(
        &ec2(
            endpoint,
            &[
                ("Action", "CreateSecurityGroup"),
                ("GroupName", &name),
                ("GroupDescription", "test"),
                ("VpcId", &vpc),
            ],
        )
        .await,
        "groupId",
    );
    (subnet, sg)
}

/// A cluster and a Fargate task definition (with the container `memory` moto needs).
pub async fn cluster_and_task_definition(ecs: &aws_sdk_ecs::Client) -> (String, String) {
    let cluster = unique_name("cluster");
    ecs.create_cluster()
        .cluster_name(&cluster)
        .send()
        .await
        .unwrap();
    let family = unique_name("gitops-task");
    ecs.register_task_definition()
        .family(&family)
        .requires_compatibilities(aws_sdk_ecs::types::Compatibility::Fargate)
        .network_mode(aws_sdk_ecs::types::NetworkMode::Awsvpc)
        .cpu("256")
        .memory("512")
        .container_definitions(
            aws_sdk_ecs::types::ContainerDefinition::builder()
                .name("gitops-task")
                .image("example.com/gitops-task:1")
                .memory(512)
                .essential(true)
                .build(),
        )
        .send()
        .await
        .unwrap();
    (cluster, family)
}

/// The real `gitops-task` binary, next to this test's own build (`target/<profile>/gitops-task`).
///
/// This crate cannot depend on the task crate, so cargo gives it no `CARGO_BIN_EXE_gitops-task`;
/// `cargo test --workspace` (the test command) builds that binary in the same invocation, before
/// any test runs. Building it from inside a test instead would take cargo's lock and, with this
/// package's different feature set, rebuild half the dependency tree.
pub fn task_binary() -> PathBuf {
    let exe = std::env::current_exe().expect("the test's own path");
    // target/<profile>/deps/<test>-<hash> -> target/<profile>/gitops-task
    let profile_dir = exe
        .parent()
        .and_then(std::path::Path::parent)
        .expect("target/<profile>/deps");
    let bin = profile_dir.join(format!("gitops-task{}", std::env::consts::EXE_SUFFIX));
    assert!(
        bin.is_file(),
        "{} is missing: run `cargo test --workspace` (the test command), or `cargo build -p gitops-task` first",
        bin.display()
    );
    bin
}
