//! The ECS launcher against moto: RunTask on Fargate with the contract in the overrides.

mod common;

use orchestrator::launch::{LiveTask, TaskInspector, TaskLauncher, TaskState};
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
    let started_by = contract.record_id.to_string();
    assert_eq!(task.started_by(), Some(started_by.as_str()));
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
        ("ORCH_ATTEMPT", "1"),
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

#[tokio::test]
async fn the_inspector_finds_a_records_live_task_and_what_became_of_it() {
    let Some(endpoint) =
        common::moto_endpoint("the_inspector_finds_a_records_live_task_and_what_became_of_it")
    else {
        return;
    };
    let aws = common::MotoAws::setup(&endpoint).await;
    let launcher = aws.launcher();
    let job = Job::parse("svc", "acme/svc", "dev", "1.2.3").unwrap();
    let mine = LaunchContract::gitops_pr(RecordId::new(), job.clone()).with_attempt(2);
    let other = LaunchContract::gitops_pr(RecordId::new(), job);
    let launched = launcher.launch(&mine).await.unwrap();
    launcher.launch(&other).await.unwrap();

    // Only the record's own task, with the attempt it was launched for.
    assert_eq!(
        launcher.live_tasks(mine.record_id).await.unwrap(),
        [LiveTask {
            task_arn: launched.task_arn.clone(),
            attempt: Some(2)
        }]
    );
    assert!(
        launcher
            .live_tasks(RecordId::new())
            .await
            .unwrap()
            .is_empty()
    );
    assert!(matches!(
        launcher.describe(&launched.task_arn).await.unwrap(),
        TaskState::Live(_)
    ));

    aws.ecs
        .stop_task()
        .cluster(&aws.cluster)
        .task(&launched.task_arn)
        .reason("Essential container in task exited")
        .send()
        .await
        .unwrap();
    assert!(
        launcher
            .live_tasks(mine.record_id)
            .await
            .unwrap()
            .is_empty(),
        "a stopped task is not live"
    );
    match launcher.describe(&launched.task_arn).await.unwrap() {
        TaskState::Stopped(how) => {
            assert!(how.contains("Essential container in task exited"), "{how}")
        }
        other => panic!("expected Stopped, got {other:?}"),
    }
    let unknown = launched.task_arn.replace(
        launched.task_arn.rsplit('/').next().unwrap(),
        "00000000000000000000000000000000",
    );
    // ECS answers an unknown task with a `MISSING` failure; moto with nothing at all. Gone
    // either way.
    match launcher.describe(&unknown).await.unwrap() {
        TaskState::Gone(why) => assert!(
            why.contains("MISSING") || why.contains("neither the task nor a failure"),
            "{why}"
        ),
        other => panic!("expected Gone, got {other:?}"),
    }
}
