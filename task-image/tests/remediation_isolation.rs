//! What an `exec` remediation command can reach of the task that runs it.
//!
//! The real `gitops-task` binary runs a Port record whose one step is a probe script (written
//! into `EXEC_COMMANDS_DIR`) that tries every way it has to find the task's secrets: its own
//! environment and `/proc/self/environ`; the task's (its parent's) `environ`, every thread's
//! `environ`, `cmdline`, `maps` and `mem` (each writable mapping read through `dd`), its open
//! file descriptors; `/proc/1/environ` and the `environ` of every process it can open; and every
//! file under the task's `HOME` and `TMPDIR`. Whatever it reads goes into a findings file; the
//! test then searches that file, the record and the task's output for the planted canaries (a
//! GitHub token, Port client id and secret, a Slack webhook URL, the ECS credentials URI and
//! authorization token, AWS keys).
//!
//! Which protection each case proves (tests run as root here; root has `CAP_SYS_PTRACE` and
//! reads a non-dumpable process's `/proc` files, so a root probe would prove nothing):
//!
//! - `a_command_run_by_an_unprivileged_task_finds_no_secret`: production's case. The task runs
//!   as an unprivileged user (the test starts it as 65534 when it is root) and the command as
//!   the same user: only the task being non-dumpable stands between the command and the task's
//!   `/proc/<pid>/environ`.
//! - `a_root_task_runs_commands_as_exec_run_as`: a root task with `EXEC_RUN_AS` runs the command
//!   as that user, which reads neither the task nor a root-only file in the task's home.
//! - `the_probe_finds_the_secrets_when_nothing_stops_it`: the control. A root task without
//!   `EXEC_RUN_AS` runs a root command, and the same probe does find the canaries: the probe
//!   works, so the cases above pass because of the protections.

mod support;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use gitops_task::remediation::exec::running_as_root;
use orchestrator_core::action::ActionSpec;
use orchestrator_core::store::{RecordStore, Transition};
use orchestrator_core::{EntityRef, LaunchContract, Record, RecordId, Source, Status};
use serde_json::json;
use support::{Store, task_command};
use tempfile::TempDir;

/// The unprivileged user the tests use when they run as root.
const NOBODY: u32 = 65534;

/// The canaries, each `cnry-<what>-<unique>`, as (variable, value).
fn canaries() -> Vec<(&'static str, String)> {
    let unique = format!(
        "{:x}{:x}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    );
    let c = |what: &str| format!("cnry-{what}-{unique}");
    vec![
        ("GITHUB_TOKEN", c("github")),
        ("PORT_CLIENT_ID", c("portid")),
        ("PORT_CLIENT_SECRET", c("portsecret")),
        (
            "SLACK_WEBHOOK_URL",
            format!("https://hooks.slack.example/services/{}", c("slack")),
        ),
        (
            "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
            format!("/v2/credentials/{}", c("ecsuri")),
        ),
        ("AWS_CONTAINER_AUTHORIZATION_TOKEN", c("ecstoken")),
        ("AWS_ACCESS_KEY_ID", c("akid")),
        ("AWS_SECRET_ACCESS_KEY", c("awssecret")),
    ]
}

/// The unique part of a canary (`cnry-<what>-<unique>`), found even in a truncated copy.
fn needle(value: &str) -> &str {
    let at = value.find("cnry-").expect("a canary");
    &value[at..]
}

fn chown_tree(path: &Path, uid: u32) {
    std::os::unix::fs::chown(path, Some(uid), Some(uid)).unwrap();
    if path.is_dir() {
        for e in std::fs::read_dir(path).unwrap() {
            chown_tree(&e.unwrap().path(), uid);
        }
    }
}

fn chmod(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// The probe: reads whatever it can and appends it to `findings`.
fn probe_script(findings: &Path, task_home: &Path, task_tmp: &Path) -> String {
    format!(
        r#"#!/bin/sh
exec >>'{findings}' 2>&1
echo "== probe ran as uid $(id -u) ppid $PPID"
echo "== own env"; env
echo "== own /proc/self/environ"; tr '\0' '\n' </proc/self/environ
echo "== parent cmdline"; tr '\0' ' ' </proc/$PPID/cmdline; echo
echo "== parent status"; grep -E '^(Name|Uid)' /proc/$PPID/status
echo "== parent environ"
if tr '\0' '\n' </proc/$PPID/environ; then echo "READ parent environ"; else echo "DENIED parent environ"; fi
for t in /proc/$PPID/task/*; do tr '\0' '\n' <"$t/environ" && echo "READ thread environ $t"; done
echo "== parent mem"
if dd if=/proc/$PPID/mem bs=1 count=1 of=/dev/null 2>/dev/null || [ -r /proc/$PPID/mem ]; then echo "OPENED parent mem"; fi
if grep -E ' rw.p ' /proc/$PPID/maps >maps.txt; then
  echo "READ parent maps"
  while read range perms rest; do
    start=$((0x${{range%-*}})); end=$((0x${{range#*-}}))
    dd if=/proc/$PPID/mem bs=4096 skip=$((start / 4096)) count=$(((end - start) / 4096)) 2>/dev/null \
      | grep -a -o 'cnry-[a-z]*-[0-9a-f]*' | sort -u
  done <maps.txt
else echo "DENIED parent maps"; fi
echo "== parent fds"
ls -l /proc/$PPID/fd/ || echo "DENIED parent fds"
for fd in /proc/$PPID/fd/*; do
  [ -f "$fd" ] && timeout 5 head -c 10000000 "$fd" 2>/dev/null | grep -a -o 'cnry-[a-z]*-[0-9a-f]*'
done
echo "== pid 1 environ"; tr '\0' '\n' </proc/1/environ || echo "DENIED pid 1 environ"
echo "== every readable environ"
for p in /proc/[0-9]*; do tr '\0' '\n' <"$p/environ" 2>/dev/null | grep -a 'cnry-'; done
echo "== task home and tmp"
ls -laR '{home}' '{tmp}'
grep -r -a -o 'cnry-[a-z]*-[0-9a-f]*' '{home}' '{tmp}' 2>&1
cat '{home}/.git-credentials'
echo "== done"
"#,
        findings = findings.display(),
        home = task_home.display(),
        tmp = task_tmp.display(),
    )
}

/// A dispatched Port record with `actions`.
async fn exec_record(store: &Store, actions: serde_json::Value) -> Record {
    let mut record = Record::received(
        Source::Port,
        json!({"action": "UPDATE", "resourceType": "entity",
               "context": {"blueprint": "vm", "entity": "vm-1"}}),
        None,
    );
    record.entity = Some(EntityRef {
        blueprint: "vm".into(),
        entity: "vm-1".into(),
    });
    record.rule = Some("probe".into());
    record.actions = serde_json::from_value::<Vec<ActionSpec>>(actions).unwrap();
    store.store.create(&record).await.unwrap();
    store
        .store
        .transition(
            record.id,
            &Transition::to(Status::Dispatched).task_arn("local:1"),
        )
        .await
        .unwrap();
    record
}

/// One run of the binary with the probe as the only step.
struct Run {
    findings: String,
    record: Record,
    stdout: String,
    stderr: String,
    canaries: Vec<(&'static str, String)>,
}

impl Run {
    /// The canaries that appear anywhere the command's output went.
    fn leaked(&self) -> Vec<&'static str> {
        let outcome = serde_json::to_string(&self.record).unwrap();
        self.canaries
            .iter()
            .filter(|(_, v)| {
                let n = needle(v);
                [&self.findings, &outcome, &self.stdout, &self.stderr]
                    .iter()
                    .any(|text| text.contains(n))
            })
            .map(|(k, _)| *k)
            .collect()
    }

    fn assert_probe_ran(&self, uid: u32, id: RecordId) {
        let f = &self.findings;
        assert!(f.contains(&format!("== probe ran as uid {uid} ")), "{f}");
        assert!(f.contains("== done"), "{f}");
        // It reads its own environment, and its parent is the task.
        assert!(f.contains(&format!("ORCH_RECORD_ID={id}")), "{f}");
        let cmdline = f
            .split("== parent cmdline")
            .nth(1)
            .and_then(|s| s.lines().nth(1))
            .unwrap_or_default();
        assert!(cmdline.contains("gitops-task"), "{f}");
        assert_eq!(
            self.record.status,
            Status::Succeeded,
            "{:?}\n{}",
            self.record.outcome,
            self.stderr
        );
    }
}

/// Runs the task as `task_uid` (`None`: this process's user) with `extra` settings, the probe
/// as its only step, and the canaries in its environment.
async fn run_probe(task_uid: Option<u32>, extra: &[(&str, &str)], root_file: bool) -> Run {
    let owner = task_uid.unwrap_or_else(|| rustix::process::geteuid().as_raw());
    let store = Store::new();
    let commands = TempDir::new().unwrap();
    let task_home = TempDir::new().unwrap();
    let task_tmp = TempDir::new().unwrap();
    let out_dir = TempDir::new().unwrap();
    let findings = out_dir.path().join("findings.txt");
    std::fs::write(&findings, "").unwrap();
    chmod(out_dir.path(), 0o777);
    chmod(&findings, 0o666);
    let script = commands.path().join("probe");
    std::fs::write(
        &script,
        probe_script(&findings, task_home.path(), task_tmp.path()),
    )
    .unwrap();
    chmod(commands.path(), 0o755);
    chmod(&script, 0o755);
    let canaries = canaries();
    if root_file {
        // A secret file only root may read, in the task's home.
        let file = task_home.path().join(".git-credentials");
        let github = &canaries[0].1;
        std::fs::write(
            &file,
            format!("https://x-access-token:{github}@github.com\n"),
        )
        .unwrap();
        chmod(&file, 0o600);
        chmod(task_home.path(), 0o755);
    }

    let record = exec_record(
        &store,
        json!([{"id": "probe", "type": "exec",
                "with": {"command": ["probe"], "timeout_seconds": 120}}]),
    )
    .await;
    for dir in [store.dir.path(), task_tmp.path()] {
        chown_tree(dir, owner);
    }
    if !root_file {
        chown_tree(task_home.path(), owner);
    }
    // Like /tmp: anyone may create their own directory in it.
    chmod(task_tmp.path(), 0o1777);

    let contract = LaunchContract::remediation(record.id);
    let mut cmd = task_command(&contract);
    cmd.env("ORCH_STORE", "sqlite")
        .env("DATA_DIR", store.dir.path())
        .env("EXEC_COMMANDS_DIR", commands.path())
        .env("HOME", task_home.path())
        .env("TMPDIR", task_tmp.path())
        .env("PORT_API_URL", "http://127.0.0.1:9")
        .envs(canaries.iter().map(|(k, v)| (*k, v.as_str())))
        .envs(extra.iter().copied());
    if let Some(uid) = task_uid {
        cmd.uid(uid).gid(uid);
    }
    let out = cmd.output().await.unwrap();
    Run {
        findings: std::fs::read_to_string(&findings).unwrap(),
        record: store.get(record.id).await,
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        canaries,
    }
}

#[tokio::test]
async fn a_command_run_by_an_unprivileged_task_finds_no_secret() {
    let task_uid = running_as_root().then_some(NOBODY);
    let run = run_probe(task_uid, &[], false).await;
    let uid = task_uid.unwrap_or_else(|| rustix::process::geteuid().as_raw());
    run.assert_probe_ran(uid, run.record.id);
    assert_eq!(run.leaked(), Vec::<&str>::new(), "{}", run.findings);
    for denied in [
        "DENIED parent environ",
        "DENIED parent maps",
        "DENIED parent fds",
    ] {
        assert!(run.findings.contains(denied), "{}", run.findings);
    }
}

#[tokio::test]
async fn a_root_task_runs_commands_as_exec_run_as() {
    if !running_as_root() {
        eprintln!("skipped: needs root to start the task as root");
        return;
    }
    let run = run_probe(None, &[("EXEC_RUN_AS", "65534:65534")], true).await;
    run.assert_probe_ran(NOBODY, run.record.id);
    assert_eq!(run.leaked(), Vec::<&str>::new(), "{}", run.findings);
    for denied in [
        "DENIED parent environ",
        "DENIED parent maps",
        ".git-credentials: Permission denied",
    ] {
        assert!(run.findings.contains(denied), "{}", run.findings);
    }
}

#[tokio::test]
async fn the_probe_finds_the_secrets_when_nothing_stops_it() {
    if !running_as_root() {
        eprintln!("skipped: needs root to start the task as root");
        return;
    }
    let run = run_probe(None, &[], true).await;
    run.assert_probe_ran(0, run.record.id);
    assert!(
        run.findings.contains("READ parent environ"),
        "{}",
        run.findings
    );
    let mut all: Vec<&str> = run.canaries.iter().map(|(k, _)| *k).collect();
    all.sort_unstable();
    let mut leaked = run.leaked();
    leaked.sort_unstable();
    assert_eq!(leaked, all, "{}", run.findings);
}

/// A process that leaves the command's process group and session (`setsid`) could outlive the
/// command and read the environment of the task's later `git` processes: the task adopts it and
/// kills it when the step ends.
#[tokio::test]
async fn a_process_that_leaves_the_commands_session_dies_with_the_step() {
    let store = Store::new();
    let commands = TempDir::new().unwrap();
    let pid_file = commands.path().join("pid");
    let script = commands.path().join("escape");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\nsetsid sleep 300 </dev/null >/dev/null 2>&1 &\necho $! >'{}'\nsleep 0.3\n",
            pid_file.display()
        ),
    )
    .unwrap();
    chmod(&script, 0o755);
    let record = exec_record(
        &store,
        json!([{"id": "escape", "type": "exec", "with": {"command": ["escape"]}}]),
    )
    .await;
    let out = task_command(&LaunchContract::remediation(record.id))
        .env("ORCH_STORE", "sqlite")
        .env("DATA_DIR", store.dir.path())
        .env("EXEC_COMMANDS_DIR", commands.path())
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let pid = std::fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .to_owned();
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Gone (or a zombie, state `Z`) now that the task has ended.
    let state = stat.rsplit_once(") ").map(|(_, rest)| &rest[..1]);
    assert!(
        state.is_none() || state == Some("Z"),
        "the command's `setsid sleep` ({pid}) outlived the task: {stat}"
    );
}
