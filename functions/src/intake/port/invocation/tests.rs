use std::path::Path;

use super::*;
use crate::intake::derive::{DeriveConfig, Template};

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../tests/fixtures/port")
            .join(name),
    )
    .unwrap()
}

fn rules() -> RuleSet {
    RuleSet::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/rules.yaml")).unwrap()
}

fn derive() -> DeriveConfig {
    DeriveConfig {
        service: "{reponame}".parse::<Template>().unwrap(),
        image: "acme/{reponame}".parse::<Template>().unwrap(),
        ..DeriveConfig::default()
    }
}

fn deploy() -> Vec<String> {
    vec!["deploy_image".to_owned()]
}

#[test]
fn both_automation_forms_parse_to_the_same_event() {
    let t = parse(&fixture("automation-vm-free-storage-low.json")).unwrap();
    let c = parse(&fixture("automation-context-vm-free-storage-low.json")).unwrap();
    for (inv, run) in [(&t, "r_QpY9kXdZ2eT4bN7w"), (&c, "r_Hc3VbN8mK1sQ0aLx")] {
        assert_eq!(inv.run.id, run);
        assert_eq!(inv.run.kind, PortRunKind::Automation);
        assert_eq!(inv.trigger, "ENTITY_UPDATED");
        assert_eq!(inv.blueprint.as_deref(), Some("vm"));
        assert_eq!(inv.entity.as_deref(), Some("storage-example"));
        assert_eq!(inv.event["action"], "UPDATE");
        assert_eq!(inv.event["resourceType"], "entity");
        assert_eq!(
            inv.event["diff"]["after"]["properties"]["free_storage"],
            0.5
        );
        assert_eq!(inv.dedupe_key(), format!("port-run:{run}"));
    }
    assert_eq!(t.run.identifier.as_deref(), Some("vm_free_storage_low"));
    // The whole trigger data names no automation.
    assert_eq!(c.run.identifier, None);
}

#[test]
fn the_changelog_rule_matches_the_automation_that_replaced_it() {
    for name in [
        "automation-vm-free-storage-low.json",
        "automation-context-vm-free-storage-low.json",
    ] {
        let r = parse(&fixture(name))
            .unwrap()
            .to_record(&rules(), &derive(), &deploy())
            .unwrap();
        assert_eq!(r.status, Status::Received, "{name}");
        assert_eq!(r.rule.as_deref(), Some("vm-free-storage-low"), "{name}");
        assert_eq!(r.actions.len(), 2);
        assert!(r.port_run.is_some());
        assert_eq!(r.entity.as_ref().unwrap().entity, "storage-example");
    }
}

#[test]
fn rules_match_trigger_type_and_identifier() {
    let yaml = r#"
rules:
  - name: created-only
    match: {resourceType: entity, action: "*", blueprint: vm, trigger: ENTITY_CREATED}
    actions: [{type: slack.post, with: {text: hi}}]
  - name: other-automation
    match: {resourceType: "*", action: "*", blueprint: "*", identifier: something_else}
    actions: [{type: slack.post, with: {text: hi}}]
  - name: this-automation
    match: {resourceType: entity, action: UPDATE, blueprint: vm, trigger: [ENTITY_UPDATED], identifier: vm_free_storage_low}
    condition: after.properties.free_storage < 1.0
    actions: [{type: slack.post, with: {text: hi}}]
"#;
    let rules = RuleSet::from_yaml(yaml).unwrap();
    let inv = parse(&fixture("automation-vm-free-storage-low.json")).unwrap();
    let r = inv.to_record(&rules, &derive(), &deploy()).unwrap();
    assert_eq!(r.rule.as_deref(), Some("this-automation"));
    // A changelog event has no trigger type: a rule naming one never matches it.
    let changelog = crate::intake::port::parse(&fixture("changelog-vm-free-storage-low.json"))
        .unwrap()
        .to_record(&rules);
    assert_eq!(changelog.status, Status::Ignored);
    let why = changelog.status_reason.unwrap();
    assert!(why.contains("trigger `(none: a changelog event)`"), "{why}");
}

#[test]
fn a_deploy_action_becomes_the_gitops_job_with_its_user() {
    for name in [
        "action-deploy-image.json",
        "action-context-deploy-image.json",
    ] {
        let inv = parse(&fixture(name)).unwrap();
        assert_eq!(inv.run.kind, PortRunKind::Action, "{name}");
        assert_eq!(inv.trigger, SELF_SERVICE);
        assert_eq!(inv.run.user.as_deref(), Some("dana@example.com"));
        let r = inv
            .to_record(&RuleSet::empty(), &derive(), &deploy())
            .unwrap();
        let job = r.job.expect("a deploy job");
        assert_eq!(job.service.as_str(), "shop-api");
        assert_eq!(job.environment.as_str(), "prod");
        assert_eq!(job.tag.as_str(), "1.4.2");
        assert_eq!(job.image.as_str(), "acme/shop-api");
        assert_eq!(r.status, Status::Received);
        assert_eq!(
            r.port_run.unwrap().identifier.as_deref(),
            Some("deploy_image")
        );
    }
    // Not a deploy action: the rules decide (none here).
    let inv = parse(&fixture("action-deploy-image.json")).unwrap();
    let r = inv.to_record(&RuleSet::empty(), &derive(), &[]).unwrap();
    assert_eq!(r.job, None);
    assert_eq!(r.status, Status::Ignored);
}

#[test]
fn bad_deploy_inputs_name_the_field() {
    let mut v: Value = serde_json::from_slice(&fixture("action-deploy-image.json")).unwrap();
    v["inputs"]["tag"] = json!("-rf");
    let e = parse_value(v.clone())
        .unwrap()
        .to_record(&RuleSet::empty(), &derive(), &deploy())
        .unwrap_err();
    assert!(
        matches!(e, PayloadError::InvalidField { field: "tag", .. }),
        "{e}"
    );
    v["inputs"].as_object_mut().unwrap().remove("environment");
    let e = parse_value(v)
        .unwrap()
        .to_record(&RuleSet::empty(), &derive(), &deploy())
        .unwrap_err();
    assert_eq!(e, PayloadError::MissingField("environment"));
}

#[test]
fn payloads_without_a_run_or_with_a_strange_one_are_refused() {
    assert_eq!(
        parse(br#"{"automationIdentifier":"a","diff":{}}"#).unwrap_err(),
        PayloadError::MissingField("runId")
    );
    assert!(matches!(
        parse(br#"{"runId":"r_1/../x","actionIdentifier":"a"}"#).unwrap_err(),
        PayloadError::InvalidField { field: "runId", .. }
    ));
    assert_eq!(parse(b"[]").unwrap_err(), PayloadError::NotAnObject);
    // Port's own documented example body is enough to name the run.
    let inv = parse(br#"{"port_context":{"runId":"r_abc"},"actionIdentifier":"x"}"#).unwrap();
    assert_eq!(inv.run.id, "r_abc");
    // An entity trigger must say which entity.
    assert_eq!(
        parse(br#"{"runId":"r_1","automationIdentifier":"a","trigger":"ENTITY_UPDATED"}"#)
            .unwrap_err(),
        PayloadError::MissingField("context")
    );
}
