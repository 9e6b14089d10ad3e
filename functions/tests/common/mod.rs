//! Shared test support: fixtures, state builders, moto access, the Lambda Runtime API emulator.
#![allow(dead_code)]

pub mod runtime_api;

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use orchestrator::launch::{LaunchError, Launched, TaskLauncher};
use orchestrator::{AppState, IntakeSettings};
use orchestrator_core::LaunchContract;
use orchestrator_core::store::sqlite::SqliteStore;

pub fn fixture(rel: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fixtures")
        .join(rel);
    std::fs::read(&path).unwrap_or_else(|e| panic!("fixture {}: {e}", path.display()))
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
        },
        launcher,
        store,
        _dir: dir,
    }
}

/// The moto endpoint from `MOTO_ENDPOINT`. `None` (with a message) when unset, unless
/// `REQUIRE_MOTO=1` (set by scripts/test.sh), which turns a missing moto into a failure.
pub fn moto_endpoint(test: &str) -> Option<String> {
    match std::env::var("MOTO_ENDPOINT") {
        Ok(e) if !e.is_empty() => Some(e),
        _ => {
            assert!(
                std::env::var("REQUIRE_MOTO").as_deref() != Ok("1"),
                "{test}: REQUIRE_MOTO=1 but MOTO_ENDPOINT is not set"
            );
            eprintln!(
                "SKIPPED {test}: MOTO_ENDPOINT is not set (run scripts/test.sh to start moto)"
            );
            None
        }
    }
}

pub async fn moto_config(endpoint: &str) -> aws_config::SdkConfig {
    aws_config::defaults(aws_config::BehaviorVersion::latest())
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

/// Calls moto's EC2 query API directly. Why not aws-sdk-ec2: the product never talks to EC2, and
/// that crate alone would add minutes to every clean build; tests only need three calls here.
pub async fn ec2(endpoint: &str, params: &[(&str, &str)]) -> String {
    let mut form: Vec<(&str, &str)> = vec![("Version", "2016-11-15")];
    form.extend_from_slice(params);
    let resp = reqwest::Client::new()
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
