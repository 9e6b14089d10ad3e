//! Unit tests of rule loading and matching, on the shipped example and on broken files.

use super::*;
use orchestrator_core::ActionType;
use serde_json::json;

fn example() -> RuleSet {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/rules.yaml");
    RuleSet::load(&path).unwrap()
}

fn fixture(name: &str) -> serde_json::Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fixtures/port")
        .join(name);
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

fn decide(rules: &RuleSet, payload: &serde_json::Value) -> Decision {
    let ctx = &payload["context"];
    let facts = EventFacts {
        resource_type: payload["resourceType"].as_str().unwrap(),
        action: payload["action"].as_str().unwrap(),
        blueprint: ctx["blueprint"]
            .as_str()
            .or(ctx["blueprintIdentifier"].as_str()),
        entity: ctx["entity"].as_str().or(ctx["entityIdentifier"].as_str()),
        payload,
        trigger: None,
        identifier: None,
    };
    rules.decide(&facts)
}

#[test]
fn the_example_reproduces_the_seed_scenarios() {
    let rules = example();
    assert_eq!(rules.len(), 2);
    match decide(&rules, &fixture("changelog-vm-free-storage-low.json")) {
        Decision::Matched { rule, actions } => {
            assert_eq!(rule, "vm-free-storage-low");
            let kinds: Vec<_> = actions.iter().map(|a| a.kind).collect();
            assert_eq!(kinds, [ActionType::Exec, ActionType::PortPatchEntity]);
            assert_eq!(actions[0].id, "remediate");
        }
        other => panic!("{other:?}"),
    }
    for f in [
        "changelog-deployment-health-degraded.json",
        "automation-deployment-health-degraded.json",
    ] {
        match decide(&rules, &fixture(f)) {
            Decision::Matched { rule, actions } => {
                assert_eq!(rule, "deployment-health-changed", "{f}");
                assert_eq!(actions[0].kind, ActionType::SlackPost);
            }
            other => panic!("{f}: {other:?}"),
        }
    }
}

#[test]
fn create_events_and_unchanged_values_match_nothing() {
    let rules = example();
    match decide(&rules, &fixture("changelog-vm-create.json")) {
        Decision::NoMatch { reason } => {
            assert!(reason.contains("action `CREATE` is not UPDATE"), "{reason}")
        }
        other => panic!("{other:?}"),
    }
    let mut healthy = fixture("changelog-vm-free-storage-low.json");
    healthy["diff"]["after"]["properties"]["free_storage"] = json!(5);
    match decide(&rules, &healthy) {
        Decision::NoMatch { reason } => {
            assert!(
                reason.contains("`vm-free-storage-low`: condition is false"),
                "{reason}"
            );
            assert!(
                reason.contains(
                    "`deployment-health-changed`: blueprint `vm` is not deploymentConfig"
                ),
                "{reason}"
            );
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_condition_that_fails_to_evaluate_does_not_match() {
    let rules = RuleSet::from_yaml(
        r#"
rules:
  - name: r
    match: {resourceType: entity, action: "*", blueprint: vm}
    condition: before.properties.free_storage > 1.0
    actions: [{type: slack.post}]
"#,
    )
    .unwrap();
    match decide(&rules, &fixture("changelog-vm-create.json")) {
        Decision::NoMatch { reason } => {
            assert!(reason.contains("could not be evaluated"), "{reason}")
        }
        other => panic!("{other:?}"),
    }
}

fn load_err(yaml: &str) -> String {
    RuleSet::from_yaml(yaml).unwrap_err().to_string()
}

#[test]
fn broken_rules_are_refused_naming_the_rule() {
    let cases = [
        ("rules: [", "not a rules document"),
        ("other: 1", "not a rules document"),
        (
            "rules:\n  - name: bad-cond\n    match: {resourceType: entity, action: UPDATE, blueprint: vm}\n    condition: after.properties.(\n    actions: [{type: slack.post}]\n",
            "rule `bad-cond`: condition",
        ),
        (
            "rules:\n  - name: typo\n    match: {resourceType: entity, action: UPDATE, blueprint: vm}\n    condition: aftr.x == 1.0\n    actions: [{type: slack.post}]\n",
            "rule `typo`: condition `aftr.x == 1.0` reads unknown variable(s) aftr",
        ),
        (
            "rules:\n  - name: no-actions\n    match: {resourceType: entity, action: UPDATE, blueprint: vm}\n    actions: []\n",
            "rule `no-actions`: needs at least one action",
        ),
        (
            "rules:\n  - name: bad-type\n    match: {resourceType: entity, action: UPDATE, blueprint: vm}\n    actions: [{type: shell}]\n",
            "rule `bad-type`:",
        ),
        (
            "rules:\n  - name: bad-template\n    match: {resourceType: entity, action: UPDATE, blueprint: vm}\n    actions: [{type: slack.post, with: {text: '{{ after. }}'}}]\n",
            "rule `bad-template`: step `step1` (slack.post)",
        ),
        (
            "rules:\n  - name: later-step\n    match: {resourceType: entity, action: UPDATE, blueprint: vm}\n    actions:\n      - {type: port.patch_entity, with: {properties: {a: '{{ steps.x.outputs.a }}'}}}\n      - {id: x, type: exec, with: {command: [c]}}\n",
            "no earlier step has id `x`",
        ),
        (
            "rules:\n  - name: dup\n    match: {resourceType: entity, action: UPDATE, blueprint: vm}\n    actions: [{type: slack.post}]\n  - name: dup\n    match: {resourceType: entity, action: UPDATE, blueprint: vm}\n    actions: [{type: slack.post}]\n",
            "rule `dup`: the name is used twice",
        ),
        (
            "rules:\n  - name: ids\n    match: {resourceType: entity, action: UPDATE, blueprint: vm}\n    actions: [{id: a, type: slack.post}, {id: a, type: slack.post}]\n",
            "step id `a` is used twice",
        ),
        (
            "rules:\n  - name: no-blueprint\n    match: {resourceType: entity, action: UPDATE}\n    actions: [{type: slack.post}]\n",
            "rule `no-blueprint`:",
        ),
        (
            "rules:\n  - match: {resourceType: entity, action: UPDATE, blueprint: vm}\n    actions: [{type: slack.post}]\n",
            "rule `#1`:",
        ),
        (
            "rules:\n  - name: abs\n    match: {resourceType: entity, action: UPDATE, blueprint: vm}\n    actions: [{type: exec, with: {command: [/bin/sh]}}]\n",
            "rule `abs`: step `step1` (exec): exec command `/bin/sh`",
        ),
    ];
    for (yaml, want) in cases {
        let err = load_err(yaml);
        assert!(err.contains(want), "{yaml}\n=> {err}\nwanted: {want}");
    }
}

#[test]
fn a_missing_file_names_the_path() {
    let err = RuleSet::load(Path::new("/nonexistent/rules.yaml"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("/nonexistent/rules.yaml"), "{err}");
}

#[test]
fn first_match_wins_and_lists_match_any_name() {
    let rules = RuleSet::from_yaml(
        r#"
rules:
  - name: first
    match: {resourceType: [entity, blueprint], action: [create, update], blueprint: ["*"]}
    actions: [{type: slack.post}]
  - name: second
    match: {resourceType: entity, action: UPDATE, blueprint: vm}
    actions: [{type: slack.post}]
"#,
    )
    .unwrap();
    match decide(&rules, &fixture("changelog-vm-free-storage-low.json")) {
        Decision::Matched { rule, actions } => {
            assert_eq!(rule, "first");
            assert_eq!(actions[0].id, "step1");
        }
        other => panic!("{other:?}"),
    }
}

fn events_example() -> RuleSet {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/events.yaml");
    RuleSet::load(&path).unwrap()
}

fn aws_fixture(name: &str) -> serde_json::Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fixtures/eventbridge")
        .join(name);
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

fn decide_aws(rules: &RuleSet, envelope: &serde_json::Value) -> Decision {
    rules.decide_aws(&AwsFacts {
        source: envelope["source"].as_str().unwrap(),
        detail_type: envelope["detail-type"].as_str().unwrap(),
        envelope,
    })
}

fn matched(d: Decision) -> (String, Vec<ActionType>) {
    match d {
        Decision::Matched { rule, actions } => (rule, actions.iter().map(|a| a.kind).collect()),
        other => panic!("expected a match: {other:?}"),
    }
}

#[test]
fn the_events_example_matches_each_documented_event_shape() {
    let rules = events_example();
    let reboot = aws_fixture("cloudtrail-reboot-instances.json");
    assert_eq!(
        matched(decide_aws(&rules, &reboot)),
        (
            "instance-rebooted-snapshot".into(),
            vec![ActionType::Ec2SnapshotInstance]
        )
    );
    assert_eq!(
        matched(decide_aws(
            &rules,
            &aws_fixture("health-instance-reboot-maintenance.json")
        ))
        .0,
        "maintenance-reboot-snapshot"
    );
    assert_eq!(
        matched(decide_aws(
            &rules,
            &aws_fixture("ec2-instance-state-stopped.json")
        ))
        .0,
        "instance-stopped-notify"
    );
    let run = crate::intake::events::parse(
        &std::fs::read(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../tests/fixtures/eventbridge/scheduler-run.json"),
        )
        .unwrap(),
    )
    .unwrap();
    assert_eq!(
        matched(decide_aws(&rules, &run.envelope)),
        (
            "nightly-reset-web".into(),
            vec![ActionType::Ec2ResetInstance]
        )
    );
    // The task's own reboot does not trigger a snapshot, and another call matches nothing.
    let mut own = reboot.clone();
    own["detail"]["userIdentity"]["arn"] =
        json!("arn:aws:sts::123456789012:assumed-role/gitops-orchestrator-TaskRole-AbC/task-1");
    let Decision::NoMatch { reason } = decide_aws(&rules, &own) else {
        panic!("the task's own reboot matched");
    };
    assert!(
        reason.contains("`instance-rebooted-snapshot`: condition is false"),
        "{reason}"
    );
    let mut stop = reboot;
    stop["detail"]["eventName"] = json!("StopInstances");
    assert!(matches!(
        decide_aws(&rules, &stop),
        Decision::NoMatch { .. }
    ));
}

#[test]
fn port_and_aws_rules_share_a_file_and_never_cross() {
    let yaml = r#"
rules:
  - name: port-any
    match: { resourceType: "*", action: "*", blueprint: "*" }
    actions: [{ type: slack.post }]
  - name: aws-any
    match: { source: "*", detail-type: "*" }
    condition: region == 'us-east-1' && size(resources) > 0
    actions:
      - type: aws.ec2.reboot_instance
        with: { instance_id: "{{ detail['instance-id'] }}" }
"#;
    let rules = RuleSet::from_yaml(yaml).unwrap();
    assert_eq!(
        matched(decide_aws(
            &rules,
            &aws_fixture("ec2-instance-state-stopped.json")
        ))
        .0,
        "aws-any"
    );
    assert_eq!(
        matched(decide(
            &rules,
            &fixture("changelog-vm-free-storage-low.json")
        ))
        .0,
        "port-any"
    );
    let only_port = RuleSet::from_yaml(
        "rules:\n  - name: p\n    match: { resourceType: '*', action: '*', blueprint: '*' }\n    actions: [{ type: slack.post }]\n",
    )
    .unwrap();
    match decide_aws(&only_port, &aws_fixture("ec2-instance-state-stopped.json")) {
        Decision::NoMatch { reason } => {
            assert!(reason.contains("no EventBridge rules"), "{reason}")
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn aws_rules_read_only_the_envelopes_variables() {
    for (yaml, wanted) in [
        (
            "rules:\n  - name: a\n    match: { source: aws.ec2, detail-type: x }\n    condition: after.x == 1\n    actions: [{ type: slack.post }]\n",
            "unknown variable(s) after",
        ),
        (
            "rules:\n  - name: a\n    match: { source: aws.ec2, detail-type: x }\n    actions:\n      - type: aws.ec2.snapshot_instance\n        with: { instance_id: '{{ entity }}' }\n",
            "unknown variable(s) entity",
        ),
        (
            "rules:\n  - name: a\n    match: { source: aws.ec2 }\n    actions: [{ type: slack.post }]\n",
            "detail-type",
        ),
        (
            "rules:\n  - name: a\n    match: { source: aws.ec2, detail-type: x, blueprint: vm }\n    actions: [{ type: slack.post }]\n",
            "blueprint",
        ),
        (
            "rules:\n  - name: a\n    match: { resourceType: entity, action: UPDATE, blueprint: vm }\n    condition: detail.x == 1\n    actions: [{ type: slack.post }]\n",
            "unknown variable(s) detail",
        ),
    ] {
        let err = load_err(yaml);
        assert!(err.contains(wanted), "{yaml}\n=> {err}");
    }
}
