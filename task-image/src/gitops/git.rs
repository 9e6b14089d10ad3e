//! The git CLI as a child process: one small wrapper that isolates git from the host's
//! configuration, gives it the commit identity and the credentials through its environment only,
//! bounds every command with a timeout, and turns failures into errors that carry git's stderr.
//!
//! Invariants:
//! - The token never reaches git's argv, a URL, a file or a log line. It travels in git's
//!   environment as environment-scoped configuration (`GIT_CONFIG_COUNT` / `GIT_CONFIG_KEY_n` /
//!   `GIT_CONFIG_VALUE_n`): `http.<scheme>://<host>/.extraHeader = Authorization: Basic
//!   base64(x-access-token:<token>)`, scoped to the gitops remote's origin. `/proc/<pid>/environ`
//!   is readable by the same user only; argv is readable by everyone.
//! - git starts from an empty environment plus an allow-list (PATH, proxies, CA bundles), with
//!   `GIT_CONFIG_NOSYSTEM=1`, `GIT_CONFIG_GLOBAL=/dev/null`, `GIT_TERMINAL_PROMPT=0`, hooks off,
//!   and `LC_ALL=C` so messages are stable. Its clones are throwaway: no reflogs, no fsync.
//! - Every argv is recorded ([`Git::invocations`]) so tests can prove the token is never in one.
//! - Captured output is redacted (the token and its encodings become `***`) before it is kept.

use std::ffi::OsString;
use std::fmt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use orchestrator_core::Secret;
use tokio::io::AsyncWriteExt;
use tokio::process::Command;

use super::config::Identity;

/// Host variables git may still see: the search path, proxies and CA bundles.
const PASS_THROUGH: &[&str] = &[
    "PATH",
    "TMPDIR",
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
    "GIT_SSL_CAINFO",
    "GIT_SSL_CAPATH",
    "http_proxy",
    "https_proxy",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "no_proxy",
    "NO_PROXY",
    "all_proxy",
    "ALL_PROXY",
];

/// Longest stderr kept in an error.
const MAX_STDERR: usize = 2000;

/// Credentials for an http(s) remote.
#[derive(Debug, Clone)]
pub struct HttpAuth {
    /// `scheme://host[:port]/`: the header is sent to this origin only.
    pub scope: String,
    pub token: Secret,
}

/// How to run git.
#[derive(Debug, Clone)]
pub struct GitOptions {
    pub identity: Identity,
    pub auth: Option<HttpAuth>,
    pub timeout: Duration,
    /// `HOME` for git (it reads nothing there: global config is off).
    pub home: PathBuf,
}

/// The argv of every git command run, shared between clones of a [`Git`].
pub type InvocationLog = Arc<Mutex<Vec<Vec<String>>>>;

/// What a finished git command printed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GitOutput {
    /// Exit code (`-1` when killed by a signal).
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl GitOutput {
    pub fn success(&self) -> bool {
        self.code == 0
    }
}

/// A git command that could not run or did not succeed. Never holds the token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GitError {
    #[error("cannot run `{command}`: {detail}")]
    Spawn { command: String, detail: String },
    #[error("`{command}` did not finish within {secs} s and was killed")]
    Timeout { command: String, secs: u64 },
    #[error("`{command}` failed (exit {code}): {stderr}")]
    Failed {
        command: String,
        code: i32,
        stderr: String,
    },
}

/// Runs git with a fixed environment. Cheap to clone; clones share the invocation log.
#[derive(Clone)]
pub struct Git {
    program: PathBuf,
    env: Arc<Vec<(String, OsString)>>,
    secrets: Arc<Vec<String>>,
    timeout: Duration,
    log: InvocationLog,
}

impl fmt::Debug for Git {
    // Hand-written: the environment holds the auth header.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Git")
            .field("program", &self.program)
            .field("timeout", &self.timeout)
            .field("authenticated", &!self.secrets.is_empty())
            .finish_non_exhaustive()
    }
}

/// `Authorization: Basic base64(x-access-token:<token>)`, as GitHub accepts for git over https.
pub fn basic_auth_header(token: &Secret) -> String {
    format!(
        "Authorization: Basic {}",
        STANDARD.encode(format!("x-access-token:{}", token.expose()))
    )
}

impl Git {
    pub fn new(options: GitOptions, log: InvocationLog) -> Self {
        let mut env: Vec<(String, OsString)> = PASS_THROUGH
            .iter()
            .filter_map(|k| std::env::var_os(k).map(|v| ((*k).to_owned(), v)))
            .collect();
        let mut set = |k: &str, v: &str| env.push((k.to_owned(), v.into()));
        set("HOME", &options.home.display().to_string());
        set("LC_ALL", "C");
        set("LANG", "C");
        set("GIT_TERMINAL_PROMPT", "0");
        set("GIT_CONFIG_NOSYSTEM", "1");
        set("GIT_CONFIG_GLOBAL", "/dev/null");
        set("GIT_AUTHOR_NAME", &options.identity.name);
        set("GIT_AUTHOR_EMAIL", &options.identity.email);
        set("GIT_COMMITTER_NAME", &options.identity.name);
        set("GIT_COMMITTER_EMAIL", &options.identity.email);

        let mut config: Vec<(String, String)> = [
            ("core.hooksPath", "/dev/null"),
            ("gc.auto", "0"),
            ("maintenance.auto", "false"),
            ("advice.detachedHead", "false"),
            ("init.defaultBranch", "main"),
            ("commit.gpgSign", "false"),
            ("credential.helper", ""),
            // Each clone is thrown away after one attempt, and a crash retries the attempt in a
            // fresh one: no reflogs, no fsync, no reverse index beside each pack. Each is a file
            // write or a flush fewer per ref update or pack, on disks where a file operation
            // costs about a millisecond. fast-import keeps its pack: one file, not one per
            // object (see `sparse::commit_file`).
            ("core.logAllRefUpdates", "false"),
            ("core.fsync", "none"),
            ("pack.writeReverseIndex", "false"),
            ("fastimport.unpackLimit", "0"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        let mut secrets = Vec::new();
        if let Some(auth) = &options.auth {
            let header = basic_auth_header(&auth.token);
            config.push((format!("http.{}.extraHeader", auth.scope), header.clone()));
            secrets.push(auth.token.expose().to_owned());
            if let Some((_, encoded)) = header.rsplit_once(' ') {
                secrets.push(encoded.to_owned());
            }
        }
        set("GIT_CONFIG_COUNT", &config.len().to_string());
        for (i, (k, v)) in config.iter().enumerate() {
            set(&format!("GIT_CONFIG_KEY_{i}"), k);
            set(&format!("GIT_CONFIG_VALUE_{i}"), v);
        }
        secrets.retain(|s| !s.is_empty());
        Self {
            program: PathBuf::from("git"),
            env: Arc::new(env),
            secrets: Arc::new(secrets),
            timeout: options.timeout,
            log,
        }
    }

    /// Every argv run so far (program name first).
    pub fn invocations(&self) -> Vec<Vec<String>> {
        self.log.lock().map(|l| l.clone()).unwrap_or_default()
    }

    /// Replaces every secret in `text` with `***`.
    pub fn redact(&self, text: &str) -> String {
        self.secrets
            .iter()
            .fold(text.to_owned(), |t, s| t.replace(s.as_str(), "***"))
    }

    /// Runs `git <args>` in `dir` and fails unless it exits 0.
    pub async fn run(&self, dir: &Path, args: &[&str]) -> Result<GitOutput, GitError> {
        self.run_with_input(dir, args, None).await
    }

    /// [`Git::run`] with `input` on stdin.
    pub async fn run_with_input(
        &self,
        dir: &Path,
        args: &[&str],
        input: Option<&str>,
    ) -> Result<GitOutput, GitError> {
        let out = self.output(dir, args, input).await?;
        if out.success() {
            Ok(out)
        } else {
            Err(GitError::Failed {
                command: command_line(args),
                code: out.code,
                stderr: tail(out.stderr.trim(), MAX_STDERR),
            })
        }
    }

    /// Runs `git <args>` in `dir` and returns what it printed, whatever its exit code.
    pub async fn output(
        &self,
        dir: &Path,
        args: &[&str],
        input: Option<&str>,
    ) -> Result<GitOutput, GitError> {
        let command = command_line(args);
        if let Ok(mut log) = self.log.lock() {
            log.push(
                std::iter::once("git".to_owned())
                    .chain(args.iter().map(|a| (*a).to_owned()))
                    .collect(),
            );
        }
        tracing::debug!(command = %command, dir = %dir.display(), "git");
        let mut cmd = Command::new(&self.program);
        cmd.args(args)
            .current_dir(dir)
            .env_clear()
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(if input.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = cmd.spawn().map_err(|e| GitError::Spawn {
            command: command.clone(),
            detail: e.to_string(),
        })?;
        if let Some(input) = input
            && let Some(mut stdin) = child.stdin.take()
        {
            stdin
                .write_all(input.as_bytes())
                .await
                .map_err(|e| GitError::Spawn {
                    command: command.clone(),
                    detail: format!("cannot write to stdin: {e}"),
                })?;
            drop(stdin);
        }
        // On timeout the future is dropped with the child, which kill_on_drop kills.
        let out = tokio::time::timeout(self.timeout, child.wait_with_output())
            .await
            .map_err(|_| GitError::Timeout {
                command: command.clone(),
                secs: self.timeout.as_secs(),
            })?
            .map_err(|e| GitError::Spawn {
                command: command.clone(),
                detail: e.to_string(),
            })?;
        Ok(GitOutput {
            code: out.status.code().unwrap_or(-1),
            stdout: self.redact(&String::from_utf8_lossy(&out.stdout)),
            stderr: self.redact(&String::from_utf8_lossy(&out.stderr)),
        })
    }

    /// The commit `rev` names, or `None` when it names none.
    pub async fn rev_parse(&self, dir: &Path, rev: &str) -> Result<Option<String>, GitError> {
        let out = self
            .output(dir, &["rev-parse", "--verify", "--quiet", rev], None)
            .await?;
        Ok(out
            .success()
            .then(|| out.stdout.trim().to_owned())
            .filter(|s| !s.is_empty()))
    }
}

/// `git <args>`, for messages. Arguments never hold secrets (see the module invariants).
fn command_line(args: &[&str]) -> String {
    let mut s = String::from("git");
    for a in args {
        s.push(' ');
        s.push_str(a);
    }
    tail(&s, 400)
}

/// The last `max` bytes of `s` (on a char boundary), marked when cut.
fn tail(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_owned();
    }
    let mut start = s.len() - max;
    while !s.is_char_boundary(start) {
        start += 1;
    }
    format!("…{}", &s[start..])
}

/// How a `git push --porcelain` ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PushResult {
    /// Every ref was updated (or already up to date).
    Accepted,
    /// The remote moved since we looked (stale lease, non-fast-forward, lost ref lock): fetch
    /// again and retry.
    Raced(String),
    /// Refused for good (a protected branch, a hook, permissions).
    Refused(String),
}

/// Classifies the output of `git push --porcelain`.
pub fn classify_push(out: &GitOutput) -> PushResult {
    let rejected: Vec<&str> = out.stdout.lines().filter(|l| l.starts_with('!')).collect();
    if out.success() && rejected.is_empty() {
        return PushResult::Accepted;
    }
    let detail = if rejected.is_empty() {
        tail(out.stderr.trim(), MAX_STDERR)
    } else {
        rejected
            .iter()
            .map(|l| l.trim_start_matches('!').trim().replace('\t', " "))
            .collect::<Vec<_>>()
            .join("; ")
    };
    const RACES: &[&str] = &[
        "stale info",
        "fetch first",
        "non-fast-forward",
        "cannot lock ref",
        "incorrect old value",
        "failed to update ref",
    ];
    let text = format!("{detail}\n{}", out.stderr);
    if RACES.iter().any(|r| text.contains(r)) {
        PushResult::Raced(detail)
    } else {
        PushResult::Refused(detail)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn out(code: i32, stdout: &str, stderr: &str) -> GitOutput {
        GitOutput {
            code,
            stdout: stdout.into(),
            stderr: stderr.into(),
        }
    }

    #[test]
    fn push_outcomes() {
        assert_eq!(
            classify_push(&out(
                0,
                "To /r.git\n*\tHEAD:refs/heads/x\t[new branch]\nDone\n",
                ""
            )),
            PushResult::Accepted
        );
        assert!(matches!(
            classify_push(&out(1, "To /r.git\n!\tHEAD:refs/heads/x\t[rejected] (stale info)\nDone\n", "error: failed to push")),
            PushResult::Raced(d) if d.contains("stale info")
        ));
        assert!(matches!(
            classify_push(&out(1, "!\tHEAD:refs/heads/x\t[remote rejected] (protected branch hook declined)\n", "")),
            PushResult::Refused(d) if d.contains("protected branch")
        ));
        assert!(matches!(
            classify_push(&out(128, "", "fatal: could not read Username")),
            PushResult::Refused(d) if d.contains("Username")
        ));
    }

    #[test]
    fn auth_header_is_basic_x_access_token() {
        let h = basic_auth_header(&Secret::new("tok"));
        assert_eq!(
            h,
            format!(
                "Authorization: Basic {}",
                STANDARD.encode("x-access-token:tok")
            )
        );
    }

    #[test]
    fn the_token_stays_out_of_argv_and_debug_and_is_redacted() {
        let git = Git::new(
            GitOptions {
                identity: Identity {
                    name: "n".into(),
                    email: "e@x".into(),
                },
                auth: Some(HttpAuth {
                    scope: "https://github.com/".into(),
                    token: Secret::new("canary-tok"),
                }),
                timeout: Duration::from_secs(5),
                home: std::env::temp_dir(),
            },
            InvocationLog::default(),
        );
        assert!(!format!("{git:?}").contains("canary"));
        let encoded = STANDARD.encode("x-access-token:canary-tok");
        assert_eq!(
            git.redact(&format!("a canary-tok b {encoded}")),
            "a *** b ***"
        );
        let key = git
            .env
            .iter()
            .find(|(_, v)| v.to_string_lossy().starts_with("http.https://github.com/"))
            .map(|(k, _)| k.clone())
            .unwrap();
        let value_key = key.replace("KEY", "VALUE");
        let value = git.env.iter().find(|(k, _)| *k == value_key).unwrap();
        assert_eq!(
            value.1.to_string_lossy(),
            format!("Authorization: Basic {encoded}")
        );
    }

    #[test]
    fn tail_cuts_on_a_char_boundary() {
        assert_eq!(tail("abc", 5), "abc");
        assert_eq!(tail("aé→z", 4), "…→z");
    }
}
