//! Settings of the gitops job, read once at start from flags or environment variables (every
//! flag has one, so `gitops-task run --help` documents them all), then checked into [`Settings`].
//!
//! Clap only reads values; checking happens in [`Settings::from_args`], so that a bad setting is
//! reported to the record store as the job's failure reason (naming the variable) instead of
//! leaving the record stuck in `running`. The store settings ([`StoreArgs`]) are the exception:
//! without a store there is nowhere to report to.
//!
//! Secrets (`GITHUB_TOKEN`) are held in [`Secret`] and never printed, not even by `--help`.
//!
//! Over 500 lines and one idea: every flag of the gitops job and the check that names it. The
//! identifiers of a job (service, environment, image, tag) are not checked here: they are
//! `orchestrator_core::ident` types, parsed once.

use std::path::{Component, PathBuf};
use std::time::Duration;

use clap::{Args, ValueEnum};
use orchestrator_core::{Environment, Secret, Service};
use reqwest::Url;

use super::github::{self, DEFAULT_API_BASE};

/// Default overlay location inside the gitops repository.
pub const DEFAULT_OVERLAY_TEMPLATE: &str =
    "kustomize/{service}/overlays/{environment}/kustomization.yaml";
/// Default commit author (and committer, and sign-off) name.
pub const DEFAULT_AUTHOR_NAME: &str = "gitops-orchestrator";
/// Default commit author e-mail.
pub const DEFAULT_AUTHOR_EMAIL: &str = "gitops-orchestrator@users.noreply.github.com";

/// Everything `gitops-task run` reads.
#[derive(Debug, Clone, Args)]
pub struct RunArgs {
    /// The gitops repository: an https URL (`https://github.com/org/gitops.git`), a `file://` URL
    /// or a local path (a bare repository, for local mode and tests). Required. Never put
    /// credentials in it: the token comes from GITHUB_TOKEN.
    #[arg(long, env = "GITOPS_REPO_URL")]
    pub repo_url: Option<String>,

    /// The branch pull requests target; update branches are cut from its tip.
    #[arg(long, env = "GITOPS_BASE_BRANCH", default_value = "main")]
    pub base_branch: String,

    /// Path of the kustomization to edit, relative to the repository root. Placeholders:
    /// {service} {environment}. The file name must be one kustomize reads
    /// (kustomization.yaml, kustomization.yml or Kustomization).
    #[arg(long, env = "OVERLAY_PATH_TEMPLATE", default_value = DEFAULT_OVERLAY_TEMPLATE)]
    pub overlay_path_template: String,

    /// Pull request reviewers (GitHub logins), comma-separated.
    #[arg(long, env = "GITOPS_REVIEWERS", value_delimiter = ',')]
    pub reviewers: Vec<String>,

    /// Pull request team reviewers (team slugs), comma-separated.
    #[arg(long, env = "GITOPS_TEAM_REVIEWERS", value_delimiter = ',')]
    pub team_reviewers: Vec<String>,

    /// Pull request labels, comma-separated.
    #[arg(long, env = "GITOPS_LABELS", value_delimiter = ',')]
    pub labels: Vec<String>,

    /// Commit author and committer name (also the DCO sign-off).
    #[arg(long, env = "GIT_AUTHOR_NAME", default_value = DEFAULT_AUTHOR_NAME)]
    pub author_name: String,

    /// Commit author and committer e-mail (also the DCO sign-off).
    #[arg(long, env = "GIT_AUTHOR_EMAIL", default_value = DEFAULT_AUTHOR_EMAIL)]
    pub author_email: String,

    /// GitHub REST API root (GitHub Enterprise: https://HOST/api/v3). When set, a pull request is
    /// opened or updated. When unset: https://api.github.com for a github.com repository;
    /// otherwise no pull request is opened and only the branch is pushed.
    #[arg(long, env = "GITHUB_API_URL")]
    pub github_api_url: Option<String>,

    /// The repository on GitHub as `owner/name`, when GITOPS_REPO_URL does not show it (a
    /// mirror, a local path).
    #[arg(long, env = "GITHUB_REPOSITORY")]
    pub github_repository: Option<String>,

    /// Token for the GitHub API and for git over https (sent to git as an `Authorization`
    /// header through git's environment, never in a URL, argument or file). Required to open a
    /// pull request or to push over http(s).
    #[arg(long, env = "GITHUB_TOKEN", hide_env_values = true, value_parser = secret)]
    pub github_token: Option<Secret>,

    /// Base URL of the orchestrator API; the pull request links to `<base>/pullrequests/<id>`.
    #[arg(long, env = "RECORD_BASE_URL")]
    pub record_base_url: Option<String>,

    /// Seconds one git command may take before it is killed.
    #[arg(long, env = "GIT_TIMEOUT_SECS", default_value = DEFAULT_GIT_TIMEOUT_SECS)]
    pub git_timeout_secs: String,

    /// How many times to rebuild and push the branch when the push loses a race (1 to 10).
    #[arg(long, env = "GITOPS_PUSH_ATTEMPTS", default_value = DEFAULT_PUSH_ATTEMPTS)]
    pub push_attempts: String,

    /// How the gitops repository is fetched: `partial` (the tip's commits and trees, then the
    /// files of the overlay and of what it builds from, on demand; a server without filter
    /// support gets `shallow`) or `shallow` (every file at the tip, for a server whose on-demand
    /// fetches are slow or refused), or `github-api` (no clone: the overlay and what it builds
    /// from are read through GitHub's API and the commit is made through it, so that a GitHub
    /// App's commits show as verified; needs a repository on GitHub and GITHUB_TOKEN).
    #[arg(long, env = "GITOPS_CLONE", default_value = DEFAULT_CLONE)]
    pub clone: String,

    #[command(flatten)]
    pub store: StoreArgs,
}

/// Reads a token; an empty one counts as unset (checked in [`Settings::from_args`]).
fn secret(s: &str) -> Result<Secret, String> {
    Ok(Secret::new(s))
}

/// Default of the push attempts and git timeout settings (clap's defaults, for empty variables).
const DEFAULT_GIT_TIMEOUT_SECS: &str = "120";
const DEFAULT_PUSH_ATTEMPTS: &str = "3";
const DEFAULT_CLONE: &str = "partial";

/// How the task fetches the gitops repository (`GITOPS_CLONE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloneMode {
    /// Partial, shallow, sparse: only what the edit reads ([`super::sparse`]).
    Partial,
    /// Shallow: every file at the tip.
    Shallow,
    /// No clone: GitHub's Git Database API ([`super::gitdata`]).
    GithubApi,
}

/// A variable set to the empty string counts as unset (the SAM template passes optional
/// parameters that way): its default applies.
fn or_default<'a>(value: &'a str, default: &'a str) -> &'a str {
    if value.trim().is_empty() {
        default
    } else {
        value.trim()
    }
}

/// Which record store the task reports to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum StoreKind {
    /// The embedded store of local mode, in DATA_DIR.
    Sqlite,
    /// DynamoDB (AWS SDK configuration from the environment, AWS_ENDPOINT_URL included).
    Dynamodb,
}

/// Where the record lives.
#[derive(Debug, Clone, Args)]
pub struct StoreArgs {
    /// The record store.
    #[arg(long = "store", env = "ORCH_STORE", value_enum)]
    pub kind: Option<StoreKind>,
    /// Data directory of the local server (ORCH_STORE=sqlite).
    #[arg(long, env = "DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// DynamoDB table (ORCH_STORE=dynamodb).
    #[arg(long, env = "TABLE_NAME")]
    pub table_name: Option<String>,
}

/// A setting that is missing or invalid. The message names the variable and never holds a
/// secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{name}: {problem}")]
pub struct ConfigError {
    pub name: &'static str,
    pub problem: String,
}

fn bad(name: &'static str, problem: impl Into<String>) -> ConfigError {
    ConfigError {
        name,
        problem: problem.into(),
    }
}

/// Where the gitops repository is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Remote {
    /// `https://...` (or `http://` to a loopback address, for tests). `auth_scope` is
    /// `scheme://host[:port]/`, the prefix git's `http.<url>.extraHeader` is scoped to.
    Http {
        url: String,
        host: String,
        auth_scope: String,
    },
    /// A `file://` URL or an absolute local path.
    Local { url: String },
}

impl Remote {
    /// What `git clone` gets. Never carries credentials.
    pub fn url(&self) -> &str {
        match self {
            Remote::Http { url, .. } | Remote::Local { url } => url,
        }
    }

    /// Parses `GITOPS_REPO_URL`.
    pub fn parse(raw: &str) -> Result<Remote, ConfigError> {
        const NAME: &str = "GITOPS_REPO_URL";
        let raw = raw.trim();
        if raw.is_empty() {
            return Err(bad(NAME, "is missing"));
        }
        if raw.starts_with('-') {
            return Err(bad(NAME, "must not start with `-`"));
        }
        let lower = raw.to_ascii_lowercase();
        if lower.starts_with("https://") || lower.starts_with("http://") {
            // The parse error is reported without the input, which could hold credentials.
            let url =
                Url::parse(raw).map_err(|e| bad(NAME, format!("is not a valid URL ({e})")))?;
            if !url.username().is_empty() || url.password().is_some() {
                return Err(bad(
                    NAME,
                    "must not carry credentials; the token comes from GITHUB_TOKEN",
                ));
            }
            let host = url
                .host_str()
                .ok_or_else(|| bad(NAME, "has no host"))?
                .to_ascii_lowercase();
            if url.scheme() == "http" && !is_loopback(&host) {
                return Err(bad(
                    NAME,
                    "plain http is only allowed to a loopback address; use https",
                ));
            }
            if url.query().is_some() || url.fragment().is_some() {
                return Err(bad(NAME, "must not have a query or fragment"));
            }
            if url.path().trim_matches('/').is_empty() {
                return Err(bad(NAME, "names no repository"));
            }
            let auth_scope = match url.port() {
                Some(port) => format!("{}://{}:{port}/", url.scheme(), bracket(&host)),
                None => format!("{}://{}/", url.scheme(), bracket(&host)),
            };
            return Ok(Remote::Http {
                url: url.to_string(),
                host,
                auth_scope,
            });
        }
        if lower.starts_with("file://") {
            return Ok(Remote::Local {
                url: raw.to_owned(),
            });
        }
        if lower.contains("://") || looks_like_scp(raw) {
            return Err(bad(
                NAME,
                "only https URLs, file:// URLs and local paths are supported (ssh is not: use https and GITHUB_TOKEN)",
            ));
        }
        let path = std::path::absolute(raw)
            .map_err(|e| bad(NAME, format!("is not a usable path ({e})")))?;
        if !path.exists() {
            return Err(bad(
                NAME,
                format!("local repository {} does not exist", path.display()),
            ));
        }
        Ok(Remote::Local {
            url: path.display().to_string(),
        })
    }
}

fn is_loopback(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

fn bracket(host: &str) -> String {
    if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]")
    } else {
        host.to_owned()
    }
}

/// `git@host:org/repo.git`: a colon before any slash, and no path-like start.
fn looks_like_scp(s: &str) -> bool {
    match (s.find(':'), s.find('/')) {
        (Some(c), Some(sl)) => c < sl && c > 1,
        (Some(c), None) => c > 1,
        _ => false,
    }
}

/// `OVERLAY_PATH_TEMPLATE`, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OverlayTemplate(String);

impl OverlayTemplate {
    pub fn parse(raw: &str) -> Result<Self, ConfigError> {
        const NAME: &str = "OVERLAY_PATH_TEMPLATE";
        let raw = raw.trim();
        if raw.is_empty() {
            return Err(bad(NAME, "is empty"));
        }
        let mut rest = raw;
        while let Some(open) = rest.find(['{', '}']) {
            if rest[open..].starts_with('}') {
                return Err(bad(NAME, "has a `}` without `{`"));
            }
            let after = &rest[open + 1..];
            let close = after
                .find('}')
                .ok_or_else(|| bad(NAME, "has a `{` without `}`"))?;
            let name = &after[..close];
            if !matches!(name, "service" | "environment") {
                return Err(bad(
                    NAME,
                    format!(
                        "unknown placeholder `{{{name}}}`; use {{service}} and {{environment}}"
                    ),
                ));
            }
            rest = &after[close + 1..];
        }
        let template = Self(raw.to_owned());
        // A sample rendering must be a safe relative path to a kustomization file.
        let (service, environment) = (
            Service::parse("service").expect("a valid service"),
            Environment::parse("environment").expect("a valid environment"),
        );
        template
            .render(&service, &environment)
            .map_err(|problem| bad(NAME, problem))?;
        Ok(template)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The overlay path for one job: relative, inside the repository, ending in a file name
    /// kustomize reads. `service` and `environment` are single path segments by their types.
    pub fn render(&self, service: &Service, environment: &Environment) -> Result<PathBuf, String> {
        let text = self
            .0
            .replace("{service}", service.as_str())
            .replace("{environment}", environment.as_str());
        let path = PathBuf::from(&text);
        if path
            .components()
            .any(|c| !matches!(c, Component::Normal(_) | Component::CurDir))
        {
            return Err(format!(
                "`{text}` must be a relative path inside the repository (no `/` at the start, no `..`)"
            ));
        }
        let file = path.file_name().and_then(|f| f.to_str()).unwrap_or("");
        if !matches!(
            file,
            "kustomization.yaml" | "kustomization.yml" | "Kustomization"
        ) {
            return Err(format!(
                "`{text}` must end in kustomization.yaml, kustomization.yml or Kustomization"
            ));
        }
        Ok(path)
    }
}

/// The commit identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub name: String,
    pub email: String,
}

/// How to reach GitHub's API.
#[derive(Debug, Clone)]
pub struct GithubSettings {
    pub api_base: String,
    pub owner: String,
    pub repo: String,
    pub token: Secret,
}

/// The checked settings of one run.
#[derive(Debug, Clone)]
pub struct Settings {
    pub remote: Remote,
    pub base_branch: String,
    pub overlay: OverlayTemplate,
    pub reviewers: Vec<String>,
    pub team_reviewers: Vec<String>,
    pub labels: Vec<String>,
    pub author: Identity,
    /// `None`: push the branch only.
    pub github: Option<GithubSettings>,
    /// The token git sends to an http(s) remote.
    pub git_token: Option<Secret>,
    pub record_base_url: Option<String>,
    pub git_timeout: Duration,
    pub push_attempts: u32,
    pub clone: CloneMode,
}

fn list(v: &[String]) -> Vec<String> {
    v.iter()
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .collect()
}

fn check_branch(name: &'static str, b: &str) -> Result<(), ConfigError> {
    let ok = !b.is_empty()
        && b.len() <= 200
        && !b.starts_with(['-', '/', '.'])
        && !b.ends_with(['/', '.'])
        && !b.ends_with(".lock")
        && !b.contains("..")
        && !b.contains("//")
        && !b.contains("@{")
        && b.bytes().all(|c| {
            c.is_ascii_graphic() && !matches!(c, b'~' | b'^' | b':' | b'?' | b'*' | b'[' | b'\\')
        });
    if ok {
        Ok(())
    } else {
        Err(bad(name, format!("`{b}` is not a valid branch name")))
    }
}

fn check_identity(name: &'static str, v: &str) -> Result<(), ConfigError> {
    if v.trim().is_empty() || v.contains(['<', '>', '\n', '\r', '\0']) {
        Err(bad(
            name,
            "must be non-empty and contain no `<`, `>` or line breaks",
        ))
    } else {
        Ok(())
    }
}

impl Settings {
    /// Checks `args`. The first problem found is returned, naming its variable.
    pub fn from_args(args: &RunArgs) -> Result<Settings, ConfigError> {
        let remote = Remote::parse(
            args.repo_url
                .as_deref()
                .ok_or_else(|| bad("GITOPS_REPO_URL", "is missing"))?,
        )?;
        let base_branch = or_default(&args.base_branch, "main").to_owned();
        check_branch("GITOPS_BASE_BRANCH", &base_branch)?;
        let overlay = OverlayTemplate::parse(or_default(
            &args.overlay_path_template,
            DEFAULT_OVERLAY_TEMPLATE,
        ))?;
        let author = Identity {
            name: or_default(&args.author_name, DEFAULT_AUTHOR_NAME).to_owned(),
            email: or_default(&args.author_email, DEFAULT_AUTHOR_EMAIL).to_owned(),
        };
        check_identity("GIT_AUTHOR_NAME", &author.name)?;
        check_identity("GIT_AUTHOR_EMAIL", &author.email)?;
        let token = args
            .github_token
            .clone()
            .filter(|t| !t.expose().trim().is_empty());
        if let Some(t) = &token
            && t.expose().bytes().any(|b| !b.is_ascii_graphic())
        {
            return Err(bad(
                "GITHUB_TOKEN",
                "contains spaces or characters a token cannot have",
            ));
        }

        let api_base = match args.github_api_url.as_deref().map(str::trim) {
            Some(u) if !u.is_empty() => Some(u.trim_end_matches('/').to_owned()),
            _ => match &remote {
                Remote::Http { host, .. } if host == "github.com" => {
                    Some(DEFAULT_API_BASE.to_owned())
                }
                _ => None,
            },
        };
        let github = match api_base {
            None => None,
            Some(api_base) => {
                let url = Url::parse(&api_base)
                    .map_err(|e| bad("GITHUB_API_URL", format!("is not a valid URL ({e})")))?;
                if !matches!(url.scheme(), "https" | "http") {
                    return Err(bad("GITHUB_API_URL", "must be an http(s) URL"));
                }
                if !url.username().is_empty() || url.password().is_some() {
                    return Err(bad("GITHUB_API_URL", "must not carry credentials"));
                }
                let (owner, repo) = match args.github_repository.as_deref().map(str::trim) {
                    Some(r) if !r.is_empty() => {
                        let (o, n) = r
                            .split_once('/')
                            .filter(|(o, n)| !o.is_empty() && !n.is_empty() && !n.contains('/'))
                            .ok_or_else(|| bad("GITHUB_REPOSITORY", "must be `owner/name`"))?;
                        (o.to_owned(), n.to_owned())
                    }
                    _ => github::owner_repo_from_url(remote.url()).ok_or_else(|| {
                        bad(
                            "GITHUB_REPOSITORY",
                            "is required: GITOPS_REPO_URL does not show the GitHub `owner/name`",
                        )
                    })?,
                };
                let token = token
                    .clone()
                    .ok_or_else(|| bad("GITHUB_TOKEN", "is required to open pull requests"))?;
                Some(GithubSettings {
                    api_base,
                    owner,
                    repo,
                    token,
                })
            }
        };
        let git_token = match &remote {
            Remote::Http { .. } => {
                Some(token.ok_or_else(|| bad("GITHUB_TOKEN", "is required to push over http(s)"))?)
            }
            Remote::Local { .. } => None,
        };
        let record_base_url = match args.record_base_url.as_deref().map(str::trim) {
            Some(u) if !u.is_empty() => {
                let url = Url::parse(u)
                    .map_err(|e| bad("RECORD_BASE_URL", format!("is not a valid URL ({e})")))?;
                if !matches!(url.scheme(), "https" | "http") {
                    return Err(bad("RECORD_BASE_URL", "must be an http(s) URL"));
                }
                Some(u.trim_end_matches('/').to_owned())
            }
            _ => None,
        };
        let git_timeout = or_default(&args.git_timeout_secs, DEFAULT_GIT_TIMEOUT_SECS)
            .parse::<u64>()
            .ok()
            .filter(|s| (1..=3600).contains(s))
            .map(Duration::from_secs)
            .ok_or_else(|| bad("GIT_TIMEOUT_SECS", "must be a whole number from 1 to 3600"))?;
        let push_attempts = or_default(&args.push_attempts, DEFAULT_PUSH_ATTEMPTS)
            .parse::<u32>()
            .ok()
            .filter(|n| (1..=10).contains(n))
            .ok_or_else(|| {
                bad(
                    "GITOPS_PUSH_ATTEMPTS",
                    "must be a whole number from 1 to 10",
                )
            })?;
        let clone = match or_default(&args.clone, DEFAULT_CLONE) {
            "partial" => CloneMode::Partial,
            "shallow" => CloneMode::Shallow,
            "github-api" => CloneMode::GithubApi,
            other => {
                return Err(bad(
                    "GITOPS_CLONE",
                    format!("`{other}` is not `partial`, `shallow` or `github-api`"),
                ));
            }
        };
        if clone == CloneMode::GithubApi {
            if let Remote::Local { .. } = remote {
                return Err(bad(
                    "GITOPS_CLONE",
                    "`github-api` needs the gitops repository on GitHub, and GITOPS_REPO_URL is a local path or file:// URL",
                ));
            }
            if github.is_none() {
                return Err(bad(
                    "GITOPS_CLONE",
                    "`github-api` needs the GitHub API: GITOPS_REPO_URL is not on github.com and GITHUB_API_URL is unset",
                ));
            }
        }

        Ok(Settings {
            remote,
            base_branch,
            overlay,
            reviewers: list(&args.reviewers),
            team_reviewers: list(&args.team_reviewers),
            labels: list(&args.labels),
            author,
            github,
            git_token,
            record_base_url,
            git_timeout,
            push_attempts,
            clone,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::{CommandFactory, FromArgMatches, Parser};

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        run: RunArgs,
    }

    /// Parses flags only: the process environment is ignored, so tests are deterministic.
    fn args(flags: &[&str]) -> RunArgs {
        let cmd = Cli::command().mut_args(|a| a.env(None::<&str>));
        let m = cmd
            .try_get_matches_from(std::iter::once("t").chain(flags.iter().copied()))
            .unwrap();
        Cli::from_arg_matches(&m).unwrap().run
    }

    #[test]
    fn defaults_and_lists() {
        let dir = tempfile::tempdir().unwrap();
        let repo = dir.path().display().to_string();
        let s = Settings::from_args(&args(&[
            "--repo-url",
            &repo,
            "--reviewers",
            "alice, bob,,",
            "--labels",
            "gitops",
        ]))
        .unwrap();
        assert_eq!(s.base_branch, "main");
        assert_eq!(s.reviewers, vec!["alice", "bob"]);
        assert_eq!(s.labels, vec!["gitops"]);
        assert!(s.team_reviewers.is_empty());
        assert_eq!(s.author.name, DEFAULT_AUTHOR_NAME);
        assert!(s.github.is_none(), "a local repository opens no PR");
        assert!(s.git_token.is_none());
        assert_eq!(s.push_attempts, 3);
        assert_eq!(s.clone, CloneMode::Partial);
        assert_eq!(s.git_timeout, Duration::from_secs(120));
        assert_eq!(
            s.overlay
                .render(
                    &Service::parse("svc").unwrap(),
                    &Environment::parse("dev").unwrap()
                )
                .unwrap(),
            PathBuf::from("kustomize/svc/overlays/dev/kustomization.yaml")
        );
    }

    #[test]
    fn names_the_missing_or_bad_setting() {
        let err = Settings::from_args(&args(&[])).unwrap_err();
        assert_eq!(err.name, "GITOPS_REPO_URL");
        let err =
            Settings::from_args(&args(&["--repo-url", "https://github.com/o/r.git"])).unwrap_err();
        assert_eq!(err.name, "GITHUB_TOKEN");
        let err = Settings::from_args(&args(&[
            "--repo-url",
            "https://x-access-token:canary@github.com/o/r.git",
        ]))
        .unwrap_err();
        assert_eq!(err.name, "GITOPS_REPO_URL");
        assert!(!err.to_string().contains("canary"));
        let err =
            Settings::from_args(&args(&["--repo-url", "git@github.com:o/r.git"])).unwrap_err();
        assert!(err.problem.contains("ssh"), "{err}");
        let err =
            Settings::from_args(&args(&["--repo-url", "http://example.com/o/r.git"])).unwrap_err();
        assert!(err.problem.contains("loopback"), "{err}");
        let err = Settings::from_args(&args(&[
            "--repo-url",
            "/nonexistent/gitops.git",
            "--push-attempts",
            "0",
        ]))
        .unwrap_err();
        assert_eq!(err.name, "GITOPS_REPO_URL");
        let dir = tempfile::tempdir().unwrap();
        let repo = dir.path().display().to_string();
        for (flag, value, name) in [
            ("--push-attempts", "0", "GITOPS_PUSH_ATTEMPTS"),
            ("--clone", "deep", "GITOPS_CLONE"),
            ("--git-timeout-secs", "soon", "GIT_TIMEOUT_SECS"),
            ("--base-branch", "a..b", "GITOPS_BASE_BRANCH"),
            ("--author-email", "a<b", "GIT_AUTHOR_EMAIL"),
            ("--record-base-url", "ftp://x", "RECORD_BASE_URL"),
            (
                "--github-api-url",
                "http://127.0.0.1:1",
                "GITHUB_REPOSITORY",
            ),
        ] {
            let err = Settings::from_args(&args(&["--repo-url", &repo, flag, value])).unwrap_err();
            assert_eq!(err.name, name, "{flag} {value}: {err}");
        }
    }

    #[test]
    fn github_com_defaults_to_the_public_api() {
        let s = Settings::from_args(&args(&[
            "--repo-url",
            "https://github.com/acme/gitops.git",
            "--github-token",
            "ghs_canary",
        ]))
        .unwrap();
        let gh = s.github.unwrap();
        assert_eq!(gh.api_base, DEFAULT_API_BASE);
        assert_eq!((gh.owner.as_str(), gh.repo.as_str()), ("acme", "gitops"));
        assert!(s.git_token.is_some());
        match s.remote {
            Remote::Http { auth_scope, .. } => assert_eq!(auth_scope, "https://github.com/"),
            other => panic!("{other:?}"),
        }
        // Another host without an API URL: push only.
        let s = Settings::from_args(&args(&[
            "--repo-url",
            "https://git.example.com/acme/gitops.git",
            "--github-token",
            "t",
        ]))
        .unwrap();
        assert!(s.github.is_none());
    }

    #[test]
    fn the_github_api_mode_needs_a_github_repository() {
        let dir = tempfile::tempdir().unwrap();
        let local = dir.path().display().to_string();
        let file = format!("file://{local}");
        for repo in [local.as_str(), file.as_str()] {
            let err = Settings::from_args(&args(&[
                "--repo-url",
                repo,
                "--clone",
                "github-api",
                "--github-api-url",
                "http://127.0.0.1:1",
                "--github-repository",
                "acme/gitops",
                "--github-token",
                "t",
            ]))
            .unwrap_err();
            assert_eq!(err.name, "GITOPS_CLONE", "{repo}: {err}");
            assert!(err.problem.contains("on GitHub"), "{err}");
        }
        // Another host and no API URL: no GitHub API to use.
        let err = Settings::from_args(&args(&[
            "--repo-url",
            "https://git.example.com/acme/gitops.git",
            "--github-token",
            "t",
            "--clone",
            "github-api",
        ]))
        .unwrap_err();
        assert_eq!(err.name, "GITOPS_CLONE");
        assert!(err.problem.contains("GITHUB_API_URL"), "{err}");
        // github.com without a token: the token is what is missing.
        let err = Settings::from_args(&args(&[
            "--repo-url",
            "https://github.com/acme/gitops.git",
            "--clone",
            "github-api",
        ]))
        .unwrap_err();
        assert_eq!(err.name, "GITHUB_TOKEN");
        let s = Settings::from_args(&args(&[
            "--repo-url",
            "https://github.com/acme/gitops.git",
            "--github-token",
            "t",
            "--clone",
            "github-api",
        ]))
        .unwrap();
        assert_eq!(s.clone, CloneMode::GithubApi);
    }

    #[test]
    fn overlay_template_is_checked() {
        assert!(OverlayTemplate::parse("{service}/{env}/kustomization.yaml").is_err());
        assert!(OverlayTemplate::parse("{service/kustomization.yaml").is_err());
        assert!(OverlayTemplate::parse("../{service}/kustomization.yaml").is_err());
        assert!(OverlayTemplate::parse("/abs/{service}/kustomization.yaml").is_err());
        assert!(OverlayTemplate::parse("{service}/{environment}/values.yaml").is_err());
        let t = OverlayTemplate::parse("apps/{environment}/{service}/Kustomization").unwrap();
        let (web, prod) = (
            Service::parse("web").unwrap(),
            Environment::parse("prod").unwrap(),
        );
        assert_eq!(
            t.render(&web, &prod).unwrap(),
            PathBuf::from("apps/prod/web/Kustomization")
        );
        // Segments that would leave the overlay are not a `Service` or an `Environment` at all.
        assert!(Service::parse("../x").is_err());
        assert!(Environment::parse("a/b").is_err());
    }
}
