//! The ECS launcher against moto: RunTask on Fargate with the contract in the overrides.

mod common;

use orchestrator::launch::TaskLauncher;
use orchestrator::launch::ecs::STARTED_BY;
use orchestrator_core::{Job, LaunchContract, RecordId};

#[tokio::test]
async fn run_task_on_moto_carries_the_contract_and_only_the_contract() {
    let Some(endpoint) =
        common::moto_endpoint("run_task_on_moto_carries_the_contract_and_only_the_contract")
    else {
        return;
    };
    let aws = common::MotoAws::setup(&endpoint).await;

    // Fargate in the test's subnet and security group, no public IP, container `gitops-task`.
    let launcher = aws.launcher();
    let contract = LaunchContract::gitops_pr(
        RecordId::new(),
        Job::parse(
            "circleci-samples",
            "eddiewebb/circleci-samples",
            "dev",
            "8f59df978e3fa133a2ee39ff66b3382342ce958c",
        )
        .unwrap(),
    );
    let launched = launcher.launch(&contract).await.expect("RunTask on moto");
    assert!(
        launched.task_arn.starts_with("arn:aws:ecs:"),
        "{}",
        launched.task_arn
    );

    let described = aws
        .ecs
        .describe_tasks()
        .cluster(&aws.cluster)
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
    // Every variable named by hand, not taken from the contract's own `to_map`.
    let record_id = contract.record_id.to_string();
    let expected: std::collections::BTreeMap<String, String> = [
        ("ORCH_RECORD_ID", record_id.as_str()),
        ("ORCH_JOB_KIND", "gitops_pr"),
        ("ORCH_SERVICE", "circleci-samples"),
        ("ORCH_IMAGE", "eddiewebb/circleci-samples"),
        ("ORCH_TAG", "8f59df978e3fa133a2ee39ff66b3382342ce958c"),
        ("ORCH_ENVIRONMENT", "dev"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    assert_eq!(env, expected, "exactly the contract's identifiers");

    let listed = aws.started_tasks().await;
    assert_eq!(listed.task_arns(), std::slice::from_ref(&launched.task_arn));
}
