//! Event data against the remediation steps that render it: a value that would become a command
//! option, a Port identifier that would change the PATCH path, and Slack markup that would ping
//! the channel or forge a link. Each runs the whole job ([`run_job`]) on a SQLite store, with
//! Port and Slack on wiremock and a real command in a command directory.

mod support;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use gitops_task::remediation::{
    ImageUpdate, ImageUpdater, RemediationArgs, Settings, StepStatus, run_job,
};
use orchestrator_core::action::ActionSpec;
use orchestrator_core::store::{RecordStore, Transition};
use orchestrator_core::{EntityRef, Job, LaunchContract, Record, RecordId, Source, Status};
use serde_json::{Value, json};
use support::Store;
use tempfile::TempDir;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

/// No step here is `gitops.set_image`; the git flow has its own tests, so a stub that refuses
/// stands in for it.
struct NoImages;

#[async_trait::async_trait]
impl ImageUpdater for NoImages {
    async fn set_image(&self, _: RecordId, _: &Job) -> Result<ImageUpdate, String> {
        Err("no gitops step in these tests".into())
    }
}

fn settings(port: &str, slack: Option<String>, exec_dir: &Path) -> Settings {
    Settings::from_args(
        &RemediationArgs {
            port_api_url: port.into(),
            port_app_url: "https://app.port.io".into(),
            port_client_id: Some("client".into()),
            port_client_secret: Some(orchestrator_core::Secret::new("client-secret")),
            slack_webhook_url: slack.map(orchestrator_core::Secret::new),
            exec_commands_dir: exec_dir.to_owned(),
            exec_run_as: None,
            http_timeout_secs: 5,
            ec2_opt_in_tag_key: "orchestrator:remediate".into(),
            ec2_opt_in_tag_value: "true".into(),
            aws_poll_interval_ms: 5000,
        },
        Some("https://orchestrator.example"),
    )
    .unwrap()
}

/// A dispatched Port record about `blueprint`/`entity` whose property `note` went from `ok` to
/// `note`, with `actions`.
async fn record(
    store: &Store,
    blueprint: &str,
    entity: &str,
    note: &str,
    actions: Value,
) -> Record {
    let mut r = Record::received(
        Source::Port,
        json!({
            "action": "UPDATE", "resourceType": "entity",
            "context": {"blueprint": blueprint, "entity": entity},
            "diff": {"before": {"properties": {"note": "ok"}},
                     "after": {"properties": {"note": note}}}
        }),
        None,
    );
    r.entity = Some(EntityRef {
        blueprint: blueprint.into(),
        entity: entity.into(),
    });
    r.rule = Some("rule".into());
    r.actions = serde_json::from_value::<Vec<ActionSpec>>(actions).unwrap();
    store.store.create(&r).await.unwrap();
    store
        .store
        .transition(
            r.id,
            &Transition::to(Status::Dispatched).task_arn("local:1"),
        )
        .await
        .unwrap();
    r
}

/// A command `argv` that writes its arguments, one a line, to `<dir>/argv.txt`.
fn argv_command(dir: &Path) {
    let script = dir.join("argv");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\nfor a in \"$@\"; do printf '%s\\n' \"$a\"; done >'{}/argv.txt'\n",
            dir.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
}

#[tokio::test]
async fn an_event_value_that_renders_to_an_option_never_reaches_the_command() {
    let store = Store::new();
    let dir = TempDir::new().unwrap();
    argv_command(dir.path());
    let s = settings("http://127.0.0.1:9", None, dir.path());
    let argv = dir.path().join("argv.txt");

    for hostile in ["--output=/etc/passwd", "-rf", "-"] {
        let r = record(
            &store,
            "vm",
            "vm-1",
            hostile,
            json!([{"id": "run", "type": "exec",
                    "with": {"command": ["argv", "{{ entity }}", "{{ after.properties.note }}"]}}]),
        )
        .await;
        let run = run_job(
            &LaunchContract::remediation(r.id),
            &store.store,
            Ok(s.clone()),
            &NoImages,
        )
        .await;
        let o = &run.outcome;
        assert_eq!(o.status, Status::Failed, "{o:?}");
        assert_eq!(o.failed_step.as_deref(), Some("run"));
        let reason = o.reason.as_deref().unwrap();
        assert!(
            reason.contains("argument 2") && reason.contains("starts with `-`"),
            "{reason}"
        );
        assert!(!argv.exists(), "the command ran with `{hostile}`");
    }

    // The rule's own dash, and operands after a literal `--`, are the rule's choice.
    let r = record(
        &store,
        "vm",
        "vm-1",
        "-5",
        json!([{"id": "run", "type": "exec",
                "with": {"command": ["argv", "--entity={{ entity }}", "-v", "--", "{{ after.properties.note }}"]}}]),
    )
    .await;
    let run = run_job(
        &LaunchContract::remediation(r.id),
        &store.store,
        Ok(s),
        &NoImages,
    )
    .await;
    assert_eq!(run.outcome.status, Status::Succeeded, "{:?}", run.outcome);
    assert_eq!(
        std::fs::read_to_string(&argv).unwrap(),
        "--entity=vm-1\n-v\n--\n-5\n"
    );
}

#[tokio::test]
async fn a_port_identifier_that_changes_the_path_sends_nothing() {
    let port = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/auth/access_token"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"accessToken": "t"})))
        .mount(&port)
        .await;
    Mock::given(method("PATCH"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"ok": true})))
        .mount(&port)
        .await;
    let store = Store::new();
    let dir = TempDir::new().unwrap();
    let s = settings(&port.uri(), None, dir.path());
    let patch = json!([{"id": "patch", "type": "port.patch_entity",
                        "with": {"properties": {"note": "seen"}}}]);

    for (blueprint, entity) in [
        ("vm", ".."),
        ("vm", "."),
        ("..", "vm-1"),
        ("vm", "../../blueprints/other/entities/x"),
        ("vm", "a/b"),
        ("vm", "x?upsert=true"),
        ("vm", "x#y"),
        ("vm", "%2e%2e"),
        ("vm", "a%2Fb"),
        ("vm", "a\\b"),
    ] {
        let r = record(&store, blueprint, entity, "x", patch.clone()).await;
        let run = run_job(
            &LaunchContract::remediation(r.id),
            &store.store,
            Ok(s.clone()),
            &NoImages,
        )
        .await;
        let o = &run.outcome;
        assert_eq!(o.status, Status::Failed, "{entity}: {o:?}");
        assert_eq!(o.failed_step.as_deref(), Some("patch"));
        assert!(
            o.reason.as_deref().unwrap().contains("identifier"),
            "{blueprint}/{entity}: {o:?}"
        );
    }
    assert_eq!(port.received_requests().await.unwrap().len(), 0);

    // An empty entity, rendered from a template.
    let r = record(
        &store,
        "vm",
        "vm-1",
        "",
        json!([{"id": "patch", "type": "port.patch_entity",
                "with": {"entity": "{{ after.properties.note }}", "properties": {"note": "seen"}}}]),
    )
    .await;
    let run = run_job(
        &LaunchContract::remediation(r.id),
        &store.store,
        Ok(s.clone()),
        &NoImages,
    )
    .await;
    assert!(
        run.outcome.reason.as_deref().unwrap().contains("empty"),
        "{:?}",
        run.outcome
    );
    assert_eq!(port.received_requests().await.unwrap().len(), 0);

    // A plain identifier is patched (the refusals above are the check's doing).
    let r = record(&store, "vm", "vm-1.eu", "x", patch).await;
    let run = run_job(
        &LaunchContract::remediation(r.id),
        &store.store,
        Ok(s),
        &NoImages,
    )
    .await;
    assert_eq!(run.outcome.status, Status::Succeeded, "{:?}", run.outcome);
    let paths: Vec<String> = port
        .received_requests()
        .await
        .unwrap()
        .iter()
        .map(|r| r.url.path().to_owned())
        .collect();
    assert_eq!(
        paths,
        [
            "/v1/auth/access_token",
            "/v1/blueprints/vm/entities/vm-1.eu"
        ]
    );
}

#[tokio::test]
async fn slack_messages_escape_event_data_and_keep_the_rules_links() {
    let slack = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/hook"))
        .respond_with(ResponseTemplate::new(200).set_body_string("ok"))
        .mount(&slack)
        .await;
    let store = Store::new();
    let dir = TempDir::new().unwrap();
    let s = settings(
        "http://127.0.0.1:9",
        Some(format!("{}/hook", slack.uri())),
        dir.path(),
    );
    let hostile = "<!channel> <https://evil.example/login|reset your password> & more";
    let r = record(
        &store,
        "vm",
        "vm-1",
        hostile,
        json!([
            {"id": "default", "type": "slack.post", "with": {}},
            {"id": "custom", "type": "slack.post", "with": {"text":
                "<!here> note is now {{ after.properties.note }} · <https://runbook.example/vm|runbook>"}}
        ]),
    )
    .await;
    let run = run_job(
        &LaunchContract::remediation(r.id),
        &store.store,
        Ok(s),
        &NoImages,
    )
    .await;
    assert_eq!(run.outcome.status, Status::Succeeded, "{:?}", run.outcome);
    assert!(
        run.outcome
            .steps
            .iter()
            .all(|s| s.status == StepStatus::Succeeded)
    );
    let texts: Vec<String> = slack
        .received_requests()
        .await
        .unwrap()
        .iter()
        .map(|r| {
            serde_json::from_slice::<Value>(&r.body).unwrap()["text"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    let escaped =
        "&lt;!channel&gt; &lt;https://evil.example/login|reset your password&gt; &amp; more";
    assert_eq!(texts.len(), 2);
    assert!(
        texts[0].contains(&format!("• note: ok → {escaped}")),
        "{}",
        texts[0]
    );
    assert!(
        texts[0].contains(&format!(
            "<https://orchestrator.example/pullrequests/{}|record ",
            r.id
        )),
        "{}",
        texts[0]
    );
    assert_eq!(
        texts[1],
        format!("<!here> note is now {escaped} · <https://runbook.example/vm|runbook>")
    );
    for t in &texts {
        assert!(
            !t.contains("<!channel>") && !t.contains("<https://evil"),
            "{t}"
        );
    }
}

/// A command cannot leave a process behind to watch the task's later children (git carries the
/// GitHub token in its environment): its process group is killed when it ends.
#[tokio::test]
async fn a_command_leaves_no_process_behind() {
    let store = Store::new();
    let dir = TempDir::new().unwrap();
    let pid_file = dir.path().join("pid");
    let script = dir.path().join("linger");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\nsleep 300 >/dev/null 2>&1 &\necho $! >'{}'\n",
            pid_file.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    let s = settings("http://127.0.0.1:9", None, dir.path());
    let r = record(
        &store,
        "vm",
        "vm-1",
        "x",
        json!([{"id": "linger", "type": "exec", "with": {"command": ["linger"]}}]),
    )
    .await;
    let run = run_job(
        &LaunchContract::remediation(r.id),
        &store.store,
        Ok(s),
        &NoImages,
    )
    .await;
    assert_eq!(run.outcome.status, Status::Succeeded, "{:?}", run.outcome);
    let pid = std::fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .to_owned();
    let alive = || {
        std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .map(|stat| {
                // The state follows the command name in parentheses; a zombie is dead.
                let state = stat.rsplit_once(") ").map(|(_, rest)| &rest[..1]);
                state != Some("Z") && state != Some("X")
            })
            .unwrap_or(false)
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while alive() && std::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(!alive(), "the command's `sleep` ({pid}) outlived it");
}
