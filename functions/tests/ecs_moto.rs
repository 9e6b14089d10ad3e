//! The ECS launcher against moto: RunTask on Fargate with the contract in the overrides.

mod common;

use orchestrator::launch::TaskLauncher;
use orchestrator::launch::ecs::{EcsLauncher, EcsSettings, STARTED_BY};
use orchestrator_core::contract::vars;
use orchestrator_core::{Job, LaunchContract, RecordId};

/// Calls moto's EC2 query API directly. Why not aws-sdk-ec2: the product never talks to EC2, and
/// that crate alone would add minutes to every clean build; tests only need three calls here.
async fn ec2(endpoint: &str, params: &[(&str, &str)]) -> String {
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

fn xml_value(xml: &str, tag: &str) -> String {
    let open = format!("<{tag}>");
    let start = xml
        .find(&open)
        .unwrap_or_else(|| panic!("no <{tag}> in {xml}"))
        + open.len();
    let end = xml[start..].find('<').unwrap() + start;
    xml[start..end].to_owned()
}

/// A VPC with DNS hostnames, a subnet and a security group: what moto's Fargate RunTask needs.
async fn network(endpoint: &str) -> (String, String) {
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
    let name = common::unique_name("sg");
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

#[tokio::test]
async fn run_task_on_moto_carries_the_contract_and_only_the_contract() {
    let Some(endpoint) =
        common::moto_endpoint("run_task_on_moto_carries_the_contract_and_only_the_contract")
    else {
        return;
    };
    let config = common::moto_config(&endpoint).await;
    let ecs = aws_sdk_ecs::Client::new(&config);
    let (subnet, sg) = network(&endpoint).await;
    let cluster = common::unique_name("cluster");
    ecs.create_cluster()
        .cluster_name(&cluster)
        .send()
        .await
        .unwrap();
    let family = common::unique_name("gitops-task");
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

    let launcher = EcsLauncher::new(
        ecs.clone(),
        EcsSettings {
            cluster: cluster.clone(),
            task_definition: family.clone(),
            subnets: vec![subnet],
            security_groups: vec![sg],
            assign_public_ip: false,
            container_name: "gitops-task".into(),
        },
    );
    let contract = LaunchContract::gitops_pr(
        RecordId::new(),
        Job {
            service: "circleci-samples".into(),
            image: "eddiewebb/circleci-samples".into(),
            environment: "dev".into(),
            tag: "8f59df978e3fa133a2ee39ff66b3382342ce958c".into(),
        },
    );
    let launched = launcher.launch(&contract).await.expect("RunTask on moto");
    assert!(
        launched.task_arn.starts_with("arn:aws:ecs:"),
        "{}",
        launched.task_arn
    );

    let described = ecs
        .describe_tasks()
        .cluster(&cluster)
        .tasks(&launched.task_arn)
        .send()
        .await
        .unwrap();
    let task = &described.tasks()[0];
    assert_eq!(task.started_by(), Some(STARTED_BY));
    assert_eq!(
        task.launch_type(),
        Some(&aws_sdk_ecs::types::LaunchType::Fargate)
    );
    let overrides = task.overrides().unwrap().container_overrides();
    assert_eq!(overrides.len(), 1);
    assert_eq!(overrides[0].name(), Some("gitops-task"));
    let env: std::collections::BTreeMap<String, String> = overrides[0]
        .environment()
        .iter()
        .map(|kv| {
            (
                kv.name().unwrap().to_owned(),
                kv.value().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(env, contract.to_map(), "exactly the contract's identifiers");
    assert_eq!(env[vars::RECORD_ID], contract.record_id.to_string());

    let listed = ecs
        .list_tasks()
        .cluster(&cluster)
        .started_by(STARTED_BY)
        .send()
        .await
        .unwrap();
    assert_eq!(listed.task_arns(), std::slice::from_ref(&launched.task_arn));
}
