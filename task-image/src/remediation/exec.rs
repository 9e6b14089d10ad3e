//! `exec` steps: an operator command shipped in the task image, run with a time limit.
//!
//! - The program is a plain file name looked up in the command directory (`EXEC_COMMANDS_DIR`):
//!   a rules file cannot run anything the image does not ship for the purpose.
//! - Its arguments are the rule's templates, rendered: one that renders to a text starting with
//!   `-` is refused ([`check_argument`]) unless the rule wrote that `-` itself (`--size={{ x }}`)
//!   or wrote a literal `--` before it, so event data never becomes an option.
//! - Its environment is clean: `PATH`, `LANG`, `HOME` (its own temporary directory, also its
//!   working directory), the event's fields (`ORCH_RECORD_ID`, `ORCH_STEP_ID`, `PORT_ACTION`,
//!   `PORT_RESOURCE_TYPE`, `PORT_BLUEPRINT`, `PORT_ENTITY`, and `PORT_EVENT_FILE`, the whole event
//!   as JSON) and the step's own `env`. The task's secrets are not passed on.
//! - It cannot read them from the task either: the task is non-dumpable ([`make_undumpable`],
//!   called by `main` before anything starts), so its `/proc/<pid>/environ`, `mem`, `maps` and
//!   `fd` are root's and closed to a process of the same user without `CAP_SYS_PTRACE`. A task
//!   running as root (never the image's case) runs commands as [`RunAs`] (`EXEC_RUN_AS`) when
//!   it is set, since root bypasses that check.
//! - Past its time limit the command (and its process group) is killed and the step fails. When
//!   it ends, whatever it left running is killed too: its process group, and any process that
//!   left the group (the task adopts orphans, [`adopt_orphans`]).
//! - Outputs: every stdout line `key=value` (key an identifier) sets output `key` to the string
//!   `value`; every stdout line that is a JSON object sets its fields (typed). Later steps read
//!   them as `steps.<id>.outputs.<key>`; the last occurrence of a key wins.
//! - The exit code, the outputs and the last [`TAIL_CHARS`] characters of stdout and stderr go
//!   into the record.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use orchestrator_core::RecordId;
use orchestrator_core::action::is_identifier;
use serde_json::{Value, json};
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::process::Command;

use super::failure::StepFailure;

/// Characters of each stream kept in the record.
pub const TAIL_CHARS: usize = 2000;
/// Bytes of each stream read for outputs; beyond it only the end is kept.
pub const MAX_CAPTURE: usize = 1024 * 1024;
/// Most outputs one command may set.
pub const MAX_OUTPUTS: usize = 100;

/// Makes the calling process non-dumpable (`prctl(PR_SET_DUMPABLE, 0)`): no core dump, and its
/// `/proc/<pid>/` files (environment, memory, file descriptors) belong to root and refuse
/// `ptrace` access to processes without `CAP_SYS_PTRACE`, its own children included. The flag is
/// the process's (every thread), children inherit it until they `exec` a program (which is then
/// dumpable again: it holds none of the task's secrets).
#[cfg(target_os = "linux")]
pub fn make_undumpable() -> std::io::Result<()> {
    use rustix::process::{DumpableBehavior, dumpable_behavior, set_dumpable_behavior};
    set_dumpable_behavior(DumpableBehavior::NotDumpable)?;
    match dumpable_behavior()? {
        DumpableBehavior::NotDumpable => Ok(()),
        other => Err(std::io::Error::other(format!(
            "PR_SET_DUMPABLE did not hold: {other:?}"
        ))),
    }
}

/// Elsewhere there is no `/proc` to protect; the task image is Linux.
#[cfg(not(target_os = "linux"))]
pub fn make_undumpable() -> std::io::Result<()> {
    Ok(())
}

/// Makes the task the parent of whatever its commands leave behind (`PR_SET_CHILD_SUBREAPER`):
/// a process that leaves the command's process group (`setsid`) is reparented to the task, which
/// kills it when the step ends ([`run`]). In the container the task is PID 1 and already is.
#[cfg(target_os = "linux")]
pub fn adopt_orphans() -> std::io::Result<()> {
    Ok(rustix::process::set_child_subreaper(Some(
        rustix::process::getpid(),
    ))?)
}

#[cfg(not(target_os = "linux"))]
pub fn adopt_orphans() -> std::io::Result<()> {
    Ok(())
}

/// Whether orphans of this process's children come back to it (set by `main`, or PID 1).
#[cfg(target_os = "linux")]
fn adopts_orphans() -> bool {
    rustix::process::getpid().is_init() || matches!(rustix::process::child_subreaper(), Ok(Some(_)))
}

/// The process ids whose parent is this process, from `/proc/<pid>/stat`.
#[cfg(target_os = "linux")]
fn own_children() -> Vec<rustix::process::Pid> {
    let me = rustix::process::getpid().as_raw_nonzero().get();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| {
        let pid: i32 = e.ok()?.file_name().to_str()?.parse().ok()?;
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        // `pid (comm) state ppid ...`; comm may hold anything but the last `)` ends it.
        let ppid: i32 = stat.rsplit_once(") ")?.1.split(' ').nth(1)?.parse().ok()?;
        (ppid == me)
            .then(|| rustix::process::Pid::from_raw(pid))
            .flatten()
    })
    .collect()
}

/// Kills and reaps every child of this process, when orphans come back to it: between steps
/// the task has no child of its own, so any child is something a command left behind.
#[cfg(target_os = "linux")]
fn kill_leftovers() {
    use rustix::process::{Signal, WaitOptions, kill_process, waitpid};
    if !adopts_orphans() {
        return;
    }
    for _ in 0..20 {
        let children = own_children();
        if children.is_empty() {
            return;
        }
        for &pid in &children {
            tracing::warn!(
                pid = pid.as_raw_nonzero().get(),
                "killing a process a command left behind"
            );
            let _ = kill_process(pid, Signal::KILL);
        }
        for &pid in &children {
            for _ in 0..100 {
                match waitpid(Some(pid), WaitOptions::NOHANG) {
                    Ok(None) => std::thread::sleep(Duration::from_millis(10)),
                    _ => break,
                }
            }
        }
    }
}

#[cfg(not(target_os = "linux"))]
fn kill_leftovers() {}

/// Whether this process runs as root (effective user id 0).
pub fn running_as_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// The user and group commands run as when the task runs as root (`EXEC_RUN_AS=uid:gid`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunAs {
    pub uid: u32,
    pub gid: u32,
}

impl RunAs {
    /// `uid:gid`, both numbers, neither 0.
    pub fn parse(s: &str) -> Result<Self, String> {
        let bad = || format!("EXEC_RUN_AS: `{s}` is not `uid:gid` (numbers, not 0)");
        let (u, g) = s.trim().split_once(':').ok_or_else(bad)?;
        let uid: u32 = u.parse().map_err(|_| bad())?;
        let gid: u32 = g.parse().map_err(|_| bad())?;
        if uid == 0 || gid == 0 {
            return Err(bad());
        }
        Ok(Self { uid, gid })
    }
}

/// Checks argument `template` of a command, rendered as `rendered`: a rendered argument starting
/// with `-` is refused unless the template itself starts with `-` (the rule wrote the option) or
/// `operands` (a literal `--` came before it: the command reads it as an operand).
pub fn check_argument(
    index: usize,
    template: &str,
    rendered: &str,
    operands: bool,
) -> Result<(), StepFailure> {
    if !rendered.starts_with('-') || template.starts_with('-') || operands {
        return Ok(());
    }
    let shown: String = rendered.chars().take(80).collect();
    Err(StepFailure::with_detail(
        format!(
            "argument {index} `{template}` renders to `{shown}`, which starts with `-` and would be read as an option: write the `-` in the rule (`--name={{{{ ... }}}}`) or put a literal `--` before it"
        ),
        json!({ "argument": index, "template": template }),
    ))
}

/// The event, as an `exec` step passes it to the command.
#[derive(Debug, Clone, Copy)]
pub struct EventEnv<'a> {
    pub record_id: RecordId,
    pub step_id: &'a str,
    pub action: Option<&'a str>,
    pub resource_type: Option<&'a str>,
    pub blueprint: Option<&'a str>,
    pub entity: Option<&'a str>,
    pub payload: &'a Value,
}

/// Reads a stream to its end, keeping at most the last [`MAX_CAPTURE`] bytes.
async fn capture<R: AsyncRead + Unpin>(mut r: R) -> Vec<u8> {
    let mut out = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        match r.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                out.extend_from_slice(&buf[..n]);
                if out.len() > MAX_CAPTURE * 2 {
                    out.drain(..out.len() - MAX_CAPTURE);
                }
            }
        }
    }
    if out.len() > MAX_CAPTURE {
        out.drain(..out.len() - MAX_CAPTURE);
    }
    out
}

/// The last `n` characters of `s`.
pub fn tail(s: &str, n: usize) -> String {
    let count = s.chars().count();
    if count <= n {
        s.to_owned()
    } else {
        s.chars().skip(count - n).collect()
    }
}

/// The outputs a command printed (see the module docs).
pub fn parse_outputs(stdout: &str) -> serde_json::Map<String, Value> {
    let mut out = serde_json::Map::new();
    for line in stdout.lines() {
        let line = line.trim_end_matches('\r');
        let trimmed = line.trim();
        if trimmed.starts_with('{') {
            if let Ok(Value::Object(o)) = serde_json::from_str::<Value>(trimmed) {
                for (k, v) in o {
                    if out.len() < MAX_OUTPUTS || out.contains_key(&k) {
                        out.insert(k, v);
                    }
                }
            }
            continue;
        }
        if let Some((k, v)) = line.split_once('=')
            && is_identifier(k)
            && (out.len() < MAX_OUTPUTS || out.contains_key(k))
        {
            out.insert(k.to_owned(), Value::String(v.to_owned()));
        }
    }
    out
}

/// Kills the command's whole process group (it was started as the group's leader).
fn kill_group(pid: Option<u32>) {
    if let Some(pid) = pid {
        let _ = std::process::Command::new("kill")
            .args(["-s", "KILL", "--", &format!("-{pid}")])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// Runs `program` from `dir` with `args`, the event's fields and `env`, for at most `limit`, as
/// `run_as` when given (the task must then be root).
pub async fn run(
    dir: &Path,
    program: &str,
    args: &[String],
    env: &[(String, String)],
    event: &EventEnv<'_>,
    limit: Duration,
    run_as: Option<RunAs>,
) -> Result<Value, StepFailure> {
    if !orchestrator_core::action::is_command_name(program) {
        return Err(StepFailure::new(format!(
            "`{program}` is not a plain command name"
        )));
    }
    let path = dir.join(program);
    if !path.is_file() {
        return Err(StepFailure::new(format!(
            "command `{program}` is not in {} (EXEC_COMMANDS_DIR)",
            dir.display()
        )));
    }
    let work = tempfile::Builder::new()
        .prefix("remediation-")
        .tempdir()
        .map_err(|e| StepFailure::new(format!("cannot create a work directory: {e}")))?;
    let event_file = work.path().join("event.json");
    std::fs::write(&event_file, event.payload.to_string())
        .map_err(|e| StepFailure::new(format!("cannot write the event file: {e}")))?;
    if let Some(user) = run_as {
        for p in [work.path(), event_file.as_path()] {
            std::os::unix::fs::chown(p, Some(user.uid), Some(user.gid)).map_err(|e| {
                StepFailure::new(format!("cannot hand the work directory to {user:?}: {e}"))
            })?;
        }
    }

    let mut cmd = Command::new(&path);
    cmd.args(args)
        .env_clear()
        .env(
            "PATH",
            std::env::var("PATH").unwrap_or_else(|_| "/usr/local/bin:/usr/bin:/bin".into()),
        )
        .env("LANG", "C.UTF-8")
        .env("HOME", work.path())
        .env("ORCH_RECORD_ID", event.record_id.to_string())
        .env("ORCH_STEP_ID", event.step_id)
        .env("PORT_EVENT_FILE", &event_file)
        .current_dir(work.path())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .process_group(0);
    if let Some(user) = run_as {
        // Supplementary groups are dropped too (std does it when root sets a uid).
        cmd.uid(user.uid).gid(user.gid);
    }
    for (name, value) in [
        ("PORT_ACTION", event.action),
        ("PORT_RESOURCE_TYPE", event.resource_type),
        ("PORT_BLUEPRINT", event.blueprint),
        ("PORT_ENTITY", event.entity),
    ] {
        if let Some(v) = value {
            cmd.env(name, v);
        }
    }
    cmd.envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    let mut child = cmd
        .spawn()
        .map_err(|e| StepFailure::new(format!("cannot start `{program}`: {e}")))?;
    let pid = child.id();
    let stdout = child.stdout.take().map(|s| tokio::spawn(capture(s)));
    let stderr = child.stderr.take().map(|s| tokio::spawn(capture(s)));

    let waited = tokio::time::timeout(limit, child.wait()).await;
    let timed_out = waited.is_err();
    let status = match waited {
        Ok(Ok(status)) => {
            // Nothing the command started outlives it: a process left behind could read the
            // environment of the task's later children (git holds the GitHub token in its own).
            kill_group(pid);
            kill_leftovers();
            Some(status)
        }
        Ok(Err(e)) => {
            kill_group(pid);
            return Err(StepFailure::new(format!(
                "cannot wait for `{program}`: {e}"
            )));
        }
        Err(_) => {
            kill_group(pid);
            let _ = child.start_kill();
            let _ = tokio::time::timeout(Duration::from_secs(5), child.wait()).await;
            kill_leftovers();
            None
        }
    };
    // A process the command left behind may hold the pipes open: read them for a bounded time.
    let collect = |h: Option<tokio::task::JoinHandle<Vec<u8>>>| async move {
        match h {
            Some(h) => match tokio::time::timeout(Duration::from_secs(5), h).await {
                Ok(Ok(bytes)) => String::from_utf8_lossy(&bytes).into_owned(),
                _ => String::new(),
            },
            None => String::new(),
        }
    };
    let out = collect(stdout).await;
    let err = collect(stderr).await;
    let exit_code = status.and_then(|s| s.code());
    let outputs = parse_outputs(&out);
    let detail = json!({
        "command": program,
        "exit_code": exit_code,
        "timed_out": timed_out,
        "outputs": outputs,
        "stdout_tail": tail(&out, TAIL_CHARS),
        "stderr_tail": tail(&err, TAIL_CHARS),
    });
    match status {
        None => Err(StepFailure::with_detail(
            format!("`{program}` timed out after {} s", limit.as_secs()),
            detail,
        )),
        Some(s) if s.success() => Ok(detail),
        Some(s) => Err(StepFailure::with_detail(
            match s.code() {
                Some(c) => format!("`{program}` exited with status {c}"),
                None => format!("`{program}` was killed by a signal"),
            },
            detail,
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outputs_come_from_key_value_and_json_lines() {
        let out = parse_outputs(
            "extending volume\nfree_storage=7.5\n{\"size\": 20, \"ok\": true}\nnot an=output line\n-x=1\nfree_storage=8\r\nlog: a=b\n",
        );
        assert_eq!(out["free_storage"], json!("8"));
        assert_eq!(out["size"], json!(20));
        assert_eq!(out["ok"], json!(true));
        assert_eq!(out.len(), 3, "{out:?}");
    }

    #[test]
    fn rendered_options_need_the_rules_own_dash() {
        // Event data that renders to an option is refused...
        for (t, r) in [
            ("{{ entity }}", "--help"),
            ("{{ x }}", "-rf"),
            ("a{{x}}", "-"),
        ] {
            let e = check_argument(1, t, r, false).unwrap_err();
            assert!(e.error.contains("starts with `-`"), "{}", e.error);
        }
        // ...unless the rule wrote the dash, or a literal `--` came first.
        check_argument(1, "--size={{ size }}", "--size=-3", false).unwrap();
        check_argument(1, "-v", "-v", false).unwrap();
        check_argument(2, "{{ delta }}", "-5", true).unwrap();
        check_argument(1, "{{ entity }}", "vm-1", false).unwrap();
    }

    #[test]
    fn run_as_is_an_unprivileged_uid_and_gid() {
        assert_eq!(
            RunAs::parse("65534:65534").unwrap(),
            RunAs {
                uid: 65534,
                gid: 65534
            }
        );
        for bad in ["0:0", "1000", "1000:0", "a:b", ""] {
            assert!(RunAs::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn tails_keep_the_end() {
        assert_eq!(tail("abcdef", 3), "def");
        assert_eq!(tail("é€x", 2), "€x");
        assert_eq!(tail("ab", 5), "ab");
    }
}
