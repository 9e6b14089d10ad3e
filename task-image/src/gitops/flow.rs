//! The gitops flow for one job: clone, edit the overlay, decide, commit, push, open the PR.
//!
//! See the [module above](super) for the branch scheme. One attempt is:
//!
//! 1. one partial, shallow fetch of the base branch and of the update branch, if it exists, into a
//!    fresh repository (the update branch's sha becomes the lease), and a sparse checkout of the
//!    base: the overlay's directory, then whatever the preflight needs, blobs fetched on demand
//!    ([`super::sparse`]);
//! 2. `kustomize edit set image <image>=*:<tag>` on the overlay (format-preserving), then the
//!    preflight check (the overlay still builds and the image is used);
//! 3. commit with sign-off on the base tip (`git fast-import`, [`sparse::commit_file`]), then
//!    decide by comparing trees: that commit's tree against the update branch's;
//! 4. `git push --force-with-lease=refs/heads/<branch>:<lease> <commit>:refs/heads/<branch>`.
//!
//! A dry run ([`FlowRequest::dry_run`]) stops after step 2: it records the diff of the edit (`git
//! diff`) and the images the built overlay runs before and after it ([`ImageChange`]), pushes
//! nothing, opens no pull request, and ends [`OutcomeKind::Planned`].
//!
//! A push that loses a race (stale lease, lost ref lock) starts a new attempt from a fresh clone,
//! up to `GITOPS_PUSH_ATTEMPTS` times. Everything else ends the job.
//!
//! With `GITOPS_CLONE=github-api` an attempt makes no clone ([`Flow::attempt_api`]): the same
//! steps and decisions through GitHub's API ([`super::gitdata`]), the commit made by GitHub, the
//! branch moved with a lease on the sha read at the start.
//!
//! Over 500 lines and still one idea: the attempt above and the outcome it reports (the PR body
//! and the record's reason are written from the same steps). Git itself is [`super::git`],
//! GitHub [`super::github`], the edit the `kustomize-set-image` crate.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use orchestrator_core::{Job, RecordId};
use serde::Serialize;

use super::config::{CloneMode, Remote, Settings};
use super::git::{Git, GitError, GitOptions, HttpAuth, InvocationLog, PushResult, classify_push};
use super::gitdata::{self, GitDataError, Snapshot, ZERO_OID};
use super::github::{GithubClient, GithubConfig, GithubError, PullRequestSpec};
use super::sparse::{self, Committed};
use kustomize_set_image as kustomize;

/// The trailer naming the record a commit was made for. Record ids are UUID v7, so comparing
/// them orders events by arrival: a task never overwrites the branch of a newer event.
pub const RECORD_TRAILER: &str = "Orchestrator-Record";

/// Called before each push with the attempt number (tests use it to race the push).
pub type BeforePush = Arc<dyn Fn(u32) + Send + Sync>;

/// How the job ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OutcomeKind {
    Succeeded,
    NoChange,
    Failed,
    /// A dry run: the diff and the images are in the outcome; nothing was pushed.
    Planned,
}

impl OutcomeKind {
    pub fn as_str(&self) -> &'static str {
        match self {
            OutcomeKind::Succeeded => "succeeded",
            OutcomeKind::NoChange => "no_change",
            OutcomeKind::Failed => "failed",
            OutcomeKind::Planned => "planned",
        }
    }
}

/// What the flow did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FlowOutcome {
    pub outcome: OutcomeKind,
    /// Why (always set for `no_change` and `failed`; a warning for `succeeded`).
    pub reason: Option<String>,
    /// The update branch, once it is known to hold (or have held) the change.
    pub branch: Option<String>,
    pub pr_url: Option<String>,
    /// `true` when this run opened the PR, `false` when it updated an open one.
    pub pr_created: Option<bool>,
    /// The commit the update branch points at.
    pub commit: Option<String>,
    /// Whether this run moved the update branch.
    pub pushed: bool,
    /// The tag the base branch's overlay had (`None`: no entry for the image).
    pub old_tag: Option<String>,
    pub new_tag: String,
    /// Attempts used (clones made).
    pub attempts: u32,
    /// A dry run's `git diff` of the edit (empty when the edit changes nothing).
    pub diff: Option<String>,
    /// A dry run's container images of the built overlay, before and after the edit.
    pub images: Vec<ImageChange>,
}

/// One container image of the built overlay in a dry run: as a resource writes it, and as the
/// overlay renders it (`kustomize build` semantics) before and after the edit.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct ImageChange {
    /// The image as written in the resource.
    pub name: String,
    /// `new name:tag@digest` before the edit.
    pub before: String,
    /// `new name:tag@digest` after the edit.
    pub after: String,
}

/// Pairs two renders of the same walk (the edit changes `images:` entries, never resources),
/// one entry per distinct image and change.
pub fn image_changes(
    before: &[kustomize::RenderedImage],
    after: &[kustomize::RenderedImage],
) -> Vec<ImageChange> {
    let mut out: Vec<ImageChange> = before
        .iter()
        .zip(after)
        .map(|(b, a)| ImageChange {
            name: b.image.clone(),
            before: b.rendered.clone(),
            after: a.rendered.clone(),
        })
        .collect();
    out.sort();
    out.dedup();
    out
}

/// One job, as the flow needs it.
#[derive(Debug, Clone)]
pub struct FlowRequest<'a> {
    pub record_id: RecordId,
    pub job: &'a Job,
    /// The CI build (from the record's payload), for the commit and the PR.
    pub build_url: Option<String>,
    /// The Port action run that asked for it (a self-service action): who ran it, and the link.
    pub port_run: Option<PortRunRef>,
    /// Render the change and stop: no commit, no push, no pull request.
    pub dry_run: bool,
}

/// A Port run, as a pull request names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortRunRef {
    /// Who ran the action (an e-mail or a user id), when Port said.
    pub user: Option<String>,
    /// The run in Port's web app.
    pub url: String,
}

/// Test and debugging knobs.
#[derive(Clone, Default)]
pub struct FlowOptions {
    /// Clone under this directory and keep the clones (default: a temporary directory, removed).
    pub work_root: Option<PathBuf>,
    pub before_push: Option<BeforePush>,
}

impl std::fmt::Debug for FlowOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FlowOptions")
            .field("work_root", &self.work_root)
            .field("before_push", &self.before_push.is_some())
            .finish()
    }
}

/// Why an attempt stopped.
#[derive(Debug, thiserror::Error)]
enum FlowError {
    #[error(transparent)]
    Git(#[from] GitError),
    #[error("overlay {overlay} does not exist on {base}")]
    OverlayMissing { overlay: String, base: String },
    #[error("editing {overlay}: {message}")]
    Edit { overlay: String, message: String },
    #[error("preflight failed for overlay {overlay} and image {image}: {message}")]
    Preflight {
        overlay: String,
        image: String,
        message: String,
    },
    #[error("push of {branch} was rejected: {detail}")]
    Raced { branch: String, detail: String },
    #[error("push of {branch} was refused: {detail}")]
    Refused { branch: String, detail: String },
    #[error("{0}")]
    Io(String),
    #[error(transparent)]
    Github(#[from] GithubError),
}

impl From<GitDataError> for FlowError {
    fn from(e: GitDataError) -> Self {
        match e {
            GitDataError::Github(e) => FlowError::Github(e),
            GitDataError::Raced(detail) => FlowError::Raced {
                branch: String::new(),
                detail,
            },
            GitDataError::Io(m) => FlowError::Io(m),
        }
    }
}

/// The end of one attempt.
#[derive(Debug, PartialEq, Eq)]
enum Decision {
    /// Nothing to push and no PR to open.
    NoChange(String),
    /// The update branch holds the change.
    Ready { commit: String, pushed: bool },
    /// A dry run: what the edit would change.
    Planned {
        reason: String,
        diff: String,
        images: Vec<ImageChange>,
    },
}

/// The update branch's tip, as far as [`plan_branch`] reads it.
#[derive(Debug)]
struct Tip {
    sha: String,
    /// Its tree (`None` if it could not be read: it then differs from any tree).
    tree: Option<String>,
    /// A record newer than ours named in its `Orchestrator-Record` trailer.
    newer: Option<RecordId>,
}

/// What the outcome texts name.
#[derive(Debug)]
struct Said<'a> {
    overlay: &'a str,
    base: &'a str,
    /// `image:tag`.
    version: &'a str,
    branch: &'a str,
}

/// What to do about the update branch.
#[derive(Debug, PartialEq, Eq)]
enum BranchPlan {
    /// Decided: nothing to commit or move.
    Done(Decision),
    /// The base already runs this version, so the branch (and its PR) is stale: merging it
    /// would roll back. Delete it (leased on `sha`); deleting it closes its pull request.
    DeleteStale { sha: String, reason: String },
    /// Commit the edit on the base and move the branch to it.
    Commit,
}

/// The one decision about the update branch, the same whether the repository was cloned or read
/// through the GitHub API: `tip` is the branch now (`None`: it does not exist), `desired_tree`
/// the base's tree with the edit, `changed` whether the edit changed the overlay.
fn plan_branch(tip: Option<&Tip>, desired_tree: &str, changed: bool, said: &Said) -> BranchPlan {
    let Said {
        overlay,
        base,
        version,
        branch,
    } = said;
    let already = || format!("{overlay} on {base} already uses {version}");
    let Some(tip) = tip else {
        return match changed {
            true => BranchPlan::Commit,
            false => BranchPlan::Done(Decision::NoChange(already())),
        };
    };
    if tip.tree.as_deref() == Some(desired_tree) {
        if changed {
            tracing::info!(branch = %branch, commit = %tip.sha, "the update branch already holds exactly this change");
            return BranchPlan::Done(Decision::Ready {
                commit: tip.sha.clone(),
                pushed: false,
            });
        }
        return BranchPlan::Done(Decision::NoChange(already()));
    }
    if let Some(newer) = tip.newer {
        return BranchPlan::Done(Decision::NoChange(format!(
            "{branch} was already updated for a newer event (record {newer}); this older event changes nothing"
        )));
    }
    if !changed {
        return BranchPlan::DeleteStale {
            sha: tip.sha.clone(),
            reason: format!(
                "{}; deleted the stale branch {branch}, which closes its pull request",
                already()
            ),
        };
    }
    BranchPlan::Commit
}

/// The first record id among trailer `values` that is newer than `ours` (record ids are UUID v7:
/// their text sorts by time).
fn newer_record<'a>(values: impl Iterator<Item = &'a str>, ours: RecordId) -> Option<RecordId> {
    let ours = ours.to_string();
    values
        .filter_map(|v| v.trim().parse::<RecordId>().ok())
        .find(|theirs| theirs.to_string() > ours)
}

/// What the base branch's overlay says about the image.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CurrentImage {
    pub new_name: Option<String>,
    pub new_tag: Option<String>,
    pub digest: Option<String>,
}

impl CurrentImage {
    /// `tag`, `tag@digest`, `@digest`, or `None` when nothing pins a version.
    pub fn version(&self) -> Option<String> {
        match (&self.new_tag, &self.digest) {
            (Some(t), Some(d)) => Some(format!("{t}@{d}")),
            (Some(t), None) => Some(t.clone()),
            (None, Some(d)) => Some(format!("@{d}")),
            (None, None) => None,
        }
    }
}

/// Reads the first `images:` entry named `image` (kustomize keeps the first of duplicates).
/// `None` when the file does not parse or has no such entry.
pub fn current_image(kustomization: &str, image: &str) -> Option<CurrentImage> {
    let doc: yaml_serde::Value = yaml_serde::from_str(kustomization).ok()?;
    let images = doc.get("images")?.as_sequence()?;
    let entry = images
        .iter()
        .find(|e| e.get("name").and_then(|n| n.as_str()) == Some(image))?;
    let field = |k: &str| {
        entry.get(k).and_then(|v| match v {
            yaml_serde::Value::String(s) => Some(s.clone()),
            yaml_serde::Value::Number(n) => Some(n.to_string()),
            _ => None,
        })
    };
    Some(CurrentImage {
        new_name: field("newName"),
        new_tag: field("newTag"),
        digest: field("digest"),
    })
}

/// `update-image/<environment>/<service>`.
pub fn branch_name(job: &Job) -> String {
    format!("update-image/{}/{}", job.environment, job.service)
}

/// Sets the job's image in the overlay file `path` (in the working directory `dir`), then runs the
/// preflight (the overlay still builds and uses the image). Both clone and no-clone attempts edit
/// this way; errors name the overlay and paths relative to the repository.
fn edit_and_check(
    job: &Job,
    path: &Path,
    dir: &Path,
    overlay_text: &str,
) -> Result<kustomize::Edited, FlowError> {
    let edited =
        kustomize::set_image_file(path, &[set_image_arg(job)]).map_err(|e| FlowError::Edit {
            overlay: overlay_text.to_owned(),
            message: e.to_string(),
        })?;
    let report =
        kustomize::preflight(path, job.image.as_str()).map_err(|e| FlowError::Preflight {
            overlay: overlay_text.to_owned(),
            image: job.image.to_string(),
            // Paths relative to the repository, not to this run's temporary directory.
            message: e.to_string().replace(&format!("{}/", dir.display()), ""),
        })?;
    tracing::info!(
        overlay = %overlay_text,
        image = %job.image,
        matched = report.matched.len(),
        changed = edited.changed,
        "overlay edited; preflight passed"
    );
    Ok(edited)
}

/// The overlay exists but is `what` (a symbolic link, a directory), which the task does not edit:
/// a link's target may be shared by other overlays, or lie outside the repository.
fn not_a_file(overlay: &str, what: &str) -> FlowError {
    FlowError::Edit {
        overlay: overlay.to_owned(),
        message: format!("it is {what}, not a regular file; the task edits only a regular file"),
    }
}

/// `overlay` as git names a path in a tree: `/`-separated, no `.` components.
fn repository_path(overlay: &Path) -> String {
    overlay
        .components()
        .filter_map(|c| c.as_os_str().to_str())
        .filter(|c| *c != ".")
        .collect::<Vec<_>>()
        .join("/")
}

/// The `kustomize edit set image` argument: `<image>=*:<tag>`.
///
/// `*` as the new name keeps the overlay's `newName` when it has one (overlays often retarget an
/// image to a registry mirror or ECR: `name: org/app`, `newName: 1234.dkr.ecr.../app`); the plain
/// `<image>:<tag>` form would drop it and silently switch registries, and `<image>=<image>:<tag>`
/// would overwrite it. A `digest` on the entry is dropped (the argument names none), as it must
/// be: a stale digest would keep pinning the old image whatever the tag says.
pub fn set_image_arg(job: &Job) -> String {
    format!("{}=*:{}", job.image, job.tag)
}

/// A full commit SHA (40 or 64 hex digits) shortened to 7 characters; other tags as they are.
pub fn short_tag(tag: &str) -> &str {
    if matches!(tag.len(), 40 | 64) && tag.bytes().all(|b| b.is_ascii_hexdigit()) {
        &tag[..7]
    } else {
        tag
    }
}

/// Only an http(s) URL is worth a link; anything else from a payload is left out.
fn link(url: Option<&str>) -> Option<String> {
    let url = url?.trim();
    let parsed = reqwest::Url::parse(url).ok()?;
    (matches!(parsed.scheme(), "https" | "http") && !url.contains(['<', '>', ' ', '\n']))
        .then(|| url.to_owned())
}

/// Runs jobs against one gitops repository.
#[derive(Debug)]
pub struct Flow {
    settings: Settings,
    github: Option<GithubClient>,
    options: FlowOptions,
    log: InvocationLog,
}

/// Texts of the commit and the PR.
struct Texts {
    title: String,
    commit_message: String,
    pr_body: String,
}

impl Flow {
    /// Builds the GitHub client when the settings ask for one.
    pub fn new(settings: Settings, options: FlowOptions) -> Result<Flow, GithubError> {
        let github = match &settings.github {
            Some(gh) => {
                let mut cfg =
                    GithubConfig::new(gh.owner.clone(), gh.repo.clone(), gh.token.clone());
                cfg.api_base = gh.api_base.clone();
                Some(GithubClient::new(cfg)?)
            }
            None => None,
        };
        Ok(Flow {
            settings,
            github,
            options,
            log: InvocationLog::default(),
        })
    }

    /// The argv of every git command this flow ran.
    pub fn git_invocations(&self) -> Vec<Vec<String>> {
        self.log.lock().map(|l| l.clone()).unwrap_or_default()
    }

    /// Runs one job to its outcome. Never fails: errors become a `failed` outcome with a reason.
    pub async fn execute(&self, req: &FlowRequest<'_>) -> FlowOutcome {
        let job = req.job;
        let mut outcome = FlowOutcome {
            outcome: OutcomeKind::Failed,
            reason: None,
            branch: None,
            pr_url: None,
            pr_created: None,
            commit: None,
            pushed: false,
            old_tag: None,
            new_tag: job.tag.to_string(),
            attempts: 0,
            diff: None,
            images: Vec::new(),
        };
        let fail = |mut o: FlowOutcome, reason: String| {
            tracing::warn!(reason = %reason, "gitops job failed");
            o.outcome = OutcomeKind::Failed;
            o.reason = Some(reason);
            o
        };
        let overlay = match self.settings.overlay.render(&job.service, &job.environment) {
            Ok(p) => p,
            Err(e) => return fail(outcome, format!("OVERLAY_PATH_TEMPLATE: {e}")),
        };
        let branch = branch_name(job);

        // Clones live in a temporary directory unless the caller keeps them.
        let temp;
        let root = match &self.options.work_root {
            Some(dir) => {
                if let Err(e) = std::fs::create_dir_all(dir) {
                    return fail(outcome, format!("cannot create {}: {e}", dir.display()));
                }
                dir.clone()
            }
            None => {
                temp = match tempfile::Builder::new().prefix("gitops-task-").tempdir() {
                    Ok(t) => t,
                    Err(e) => return fail(outcome, format!("cannot create a work directory: {e}")),
                };
                temp.path().to_owned()
            }
        };
        let git = Git::new(
            GitOptions {
                identity: self.settings.author.clone(),
                auth: match (&self.settings.remote, &self.settings.git_token) {
                    (Remote::Http { auth_scope, .. }, Some(token)) => Some(HttpAuth {
                        scope: auth_scope.clone(),
                        token: token.clone(),
                    }),
                    _ => None,
                },
                timeout: self.settings.git_timeout,
                home: root.clone(),
            },
            self.log.clone(),
        );

        let max = self.settings.push_attempts;
        let mut old: Option<CurrentImage> = None;
        let mut notes: Vec<String> = Vec::new();
        let decision = loop {
            outcome.attempts += 1;
            let n = outcome.attempts;
            let dir = root.join(format!("{}-attempt-{n}", req.record_id));
            let attempted = match (&self.github, self.settings.clone) {
                (Some(gh), CloneMode::GithubApi) => {
                    self.attempt_api(gh, req, &overlay, &branch, &dir, n, &mut old, &mut notes)
                        .await
                }
                _ => {
                    self.attempt(&git, req, &overlay, &branch, &dir, n, &mut old, &mut notes)
                        .await
                }
            };
            match attempted {
                Ok(d) => break d,
                Err(FlowError::Raced { detail, .. }) if n < max => {
                    tracing::warn!(attempt = n, branch = %branch, detail = %detail, "push lost a race; starting again from a fresh clone");
                }
                Err(FlowError::Raced { detail, .. }) => {
                    outcome.old_tag = old.as_ref().and_then(CurrentImage::version);
                    return fail(
                        outcome,
                        format!("push of {branch} was rejected {n} times; last: {detail}"),
                    );
                }
                Err(e) => {
                    outcome.old_tag = old.as_ref().and_then(CurrentImage::version);
                    return fail(outcome, e.to_string());
                }
            }
        };
        outcome.old_tag = old.as_ref().and_then(CurrentImage::version);

        let (commit, pushed) = match decision {
            Decision::NoChange(reason) => {
                tracing::info!(reason = %reason, "no change");
                outcome.outcome = OutcomeKind::NoChange;
                outcome.reason = Some(reason);
                return outcome;
            }
            Decision::Ready { commit, pushed } => (commit, pushed),
            Decision::Planned {
                reason,
                diff,
                images,
            } => {
                tracing::info!(reason = %reason, "dry run planned");
                outcome.outcome = OutcomeKind::Planned;
                outcome.reason = Some(reason);
                outcome.diff = Some(diff);
                outcome.images = images;
                return outcome;
            }
        };
        outcome.branch = Some(branch.clone());
        outcome.commit = Some(commit);
        outcome.pushed = pushed;

        let Some(github) = &self.github else {
            outcome.outcome = OutcomeKind::Succeeded;
            tracing::info!(branch = %branch, "branch pushed; no GitHub API configured, so no pull request");
            return outcome;
        };
        let texts = self.texts(req, &overlay, old.as_ref(), &notes);
        let spec = PullRequestSpec {
            head_branch: branch.clone(),
            base_branch: self.settings.base_branch.clone(),
            title: texts.title,
            body: texts.pr_body,
            reviewers: self.settings.reviewers.clone(),
            team_reviewers: self.settings.team_reviewers.clone(),
            labels: self.settings.labels.clone(),
        };
        match github.open_or_update(&spec).await {
            Ok(pr) => {
                outcome.outcome = OutcomeKind::Succeeded;
                outcome.pr_url = Some(pr.html_url);
                outcome.pr_created = Some(pr.created);
            }
            Err(GithubError::FollowUp {
                html_url, cause, ..
            }) => {
                // The PR is open; only reviewers or labels are missing. Say so, but it worked.
                outcome.outcome = OutcomeKind::Succeeded;
                outcome.pr_url = Some(html_url);
                outcome.reason = Some(format!("pull request open, but {cause}"));
                tracing::warn!(error = %cause, "pull request follow-up failed");
            }
            Err(e) => {
                return fail(
                    outcome,
                    format!("pushed {branch}, but the pull request could not be opened: {e}"),
                );
            }
        }
        outcome
    }

    #[allow(clippy::too_many_arguments)]
    async fn attempt(
        &self,
        git: &Git,
        req: &FlowRequest<'_>,
        overlay: &Path,
        branch: &str,
        dir: &Path,
        attempt: u32,
        old: &mut Option<CurrentImage>,
        notes: &mut Vec<String>,
    ) -> Result<Decision, FlowError> {
        let job = req.job;
        let base = &self.settings.base_branch;
        if dir.exists() {
            std::fs::remove_dir_all(dir)
                .map_err(|e| FlowError::Io(format!("cannot clear {}: {e}", dir.display())))?;
        }
        let cone = sparse::first_checkout(overlay);
        let url = self.settings.remote.url();
        let overlay_rel = repository_path(overlay);
        let fetched = sparse::fetch(
            git,
            dir,
            url,
            base,
            branch,
            self.settings.clone,
            &cone,
            &overlay_rel,
            RECORD_TRAILER,
        )
        .await?;
        let sparse_checkout = self.settings.clone == CloneMode::Partial;
        let base_sha = fetched.base.sha;
        let remote = fetched.update.as_ref().map(|t| t.sha.clone());
        tracing::info!(attempt, base = %base, base_sha = %base_sha, branch = %branch, branch_sha = remote.as_deref().unwrap_or(""), filtered = fetched.filtered, "fetched");

        let overlay_text = overlay.display().to_string();
        let path = dir.join(overlay);
        let missing = || FlowError::OverlayMissing {
            overlay: overlay_text.clone(),
            base: base.clone(),
        };
        // A regular file, as the no-clone mode requires too; its mode is kept in the commit.
        let mode = match std::fs::symlink_metadata(&path) {
            Ok(m) if m.is_file() && m.permissions().mode() & 0o111 != 0 => "100755",
            Ok(m) if m.is_file() => "100644",
            Ok(m) if m.file_type().is_symlink() => {
                return Err(not_a_file(&overlay_text, "a symbolic link"));
            }
            Ok(_) => return Err(not_a_file(&overlay_text, "a directory")),
            Err(_) => return Err(missing()),
        };
        let before = std::fs::read_to_string(&path).map_err(|_| missing())?;
        *old = current_image(&before, job.image.as_str());
        if sparse_checkout {
            let widened = sparse::widen_for_preflight(git, dir, &path, job.image.as_str()).await?;
            if !widened.is_empty() {
                tracing::info!(directories = ?widened, "checked out what the overlay builds from");
            }
        }
        let render = |when: &str| {
            kustomize::rendered_images(&path).map_err(|e| FlowError::Preflight {
                overlay: overlay_text.clone(),
                image: job.image.to_string(),
                message: format!(
                    "rendering the images {when} the edit: {}",
                    e.to_string().replace(&format!("{}/", dir.display()), "")
                ),
            })
        };
        let images_before = if req.dry_run {
            render("before")?
        } else {
            Vec::new()
        };
        let edited = edit_and_check(job, &path, dir, &overlay_text)?;
        notes.clone_from(&edited.notes);
        if req.dry_run {
            let images = image_changes(&images_before, &render("after")?);
            let diff = git
                .run(
                    dir,
                    &["diff", "--no-color", "--no-ext-diff", "--", &overlay_text],
                )
                .await?
                .stdout;
            let version = format!("{}:{}", job.image, job.tag);
            let reason = if edited.changed {
                format!(
                    "dry run: {overlay_text} on {base} would be set to {version}; nothing pushed, no pull request"
                )
            } else {
                format!(
                    "dry run: {overlay_text} on {base} already uses {version}; nothing would change"
                )
            };
            return Ok(Decision::Planned {
                reason,
                diff,
                images,
            });
        }

        // The commit is made before the decision (one process, no index; the tree it names is
        // the one to compare) and left unused when the decision is not to push it.
        let committed = if edited.changed {
            let content = std::fs::read_to_string(&path)
                .map_err(|e| FlowError::Io(format!("cannot read the edited overlay: {e}")))?;
            let texts = self.texts(req, overlay, old.as_ref(), &edited.notes);
            Some(
                sparse::commit_file(
                    git,
                    dir,
                    &base_sha,
                    &overlay_rel,
                    mode,
                    &content,
                    &self.signed_off(&texts.commit_message),
                    &self.settings.author,
                )
                .await?,
            )
        } else {
            None
        };
        let desired_tree = committed
            .as_ref()
            .map_or(fetched.base.tree, |c| c.tree.clone());
        let version = format!("{}:{}", job.image, job.tag);

        let tip = fetched.update.map(|t| Tip {
            newer: newer_record(t.trailers.iter().map(String::as_str), req.record_id),
            sha: t.sha,
            tree: Some(t.tree),
        });
        let said = Said {
            overlay: &overlay_text,
            base,
            version: &version,
            branch,
        };
        match plan_branch(tip.as_ref(), &desired_tree, edited.changed, &said) {
            BranchPlan::Done(decision) => return Ok(decision),
            BranchPlan::DeleteStale { sha, reason } => {
                let refspec = format!(":refs/heads/{branch}");
                self.push(git, dir, branch, &sha, &refspec, attempt).await?;
                return Ok(Decision::NoChange(reason));
            }
            BranchPlan::Commit => {}
        }
        // plan_branch commits only a change, and a change was committed above.
        let Some(Committed { commit, .. }) = committed else {
            return Err(FlowError::Io("no commit for a changed overlay".into()));
        };
        self.push(
            git,
            dir,
            branch,
            remote.as_deref().unwrap_or(""),
            &format!("{commit}:refs/heads/{branch}"),
            attempt,
        )
        .await?;
        tracing::info!(branch = %branch, commit = %commit, replaced = remote.as_deref().unwrap_or(""), "pushed");
        Ok(Decision::Ready {
            commit,
            pushed: true,
        })
    }

    /// One attempt without a clone (`GITOPS_CLONE=github-api`): the same steps and decisions as
    /// [`Flow::attempt`], through GitHub's API ([`gitdata`]). Only the overlay and what its
    /// preflight reads are written to `dir`; the commit is made by GitHub (and signed by it for a
    /// GitHub App token) and the branch moved with a lease on the sha read at the start.
    #[allow(clippy::too_many_arguments)]
    async fn attempt_api(
        &self,
        gh: &GithubClient,
        req: &FlowRequest<'_>,
        overlay: &Path,
        branch: &str,
        dir: &Path,
        attempt: u32,
        old: &mut Option<CurrentImage>,
        notes: &mut Vec<String>,
    ) -> Result<Decision, FlowError> {
        let job = req.job;
        let base = &self.settings.base_branch;
        if dir.exists() {
            std::fs::remove_dir_all(dir)
                .map_err(|e| FlowError::Io(format!("cannot clear {}: {e}", dir.display())))?;
        }
        let mut snapshot = Snapshot::read(gh, base, dir).await?;
        let base_sha = snapshot.commit.sha.clone();
        // The update branch as it is now: its sha is the lease for the ref update.
        let remote = gitdata::branch_head(gh, branch).await?;
        tracing::info!(attempt, base = %base, base_sha = %base_sha, branch = %branch, branch_sha = remote.as_deref().unwrap_or(""), "read through the GitHub API");

        let overlay_text = overlay.display().to_string();
        let overlay_rel = repository_path(overlay);
        let missing = || FlowError::OverlayMissing {
            overlay: overlay_text.clone(),
            base: base.clone(),
        };
        let entry = snapshot.entry(&overlay_rel).await?.ok_or_else(missing)?;
        match (entry.kind.as_str(), entry.mode.as_str()) {
            ("blob", "100644" | "100755") => {}
            ("blob", "120000") => return Err(not_a_file(&overlay_text, "a symbolic link")),
            ("tree", _) => return Err(not_a_file(&overlay_text, "a directory")),
            (_, mode) => return Err(not_a_file(&overlay_text, &format!("mode {mode}"))),
        }
        snapshot.write_file(&overlay_rel, &entry).await?;
        let path = dir.join(overlay);
        let before = std::fs::read_to_string(&path).map_err(|_| missing())?;
        *old = current_image(&before, job.image.as_str());
        snapshot
            .materialize_for_preflight(&path, job.image.as_str())
            .await?;
        tracing::info!(files = ?snapshot.files, "fetched what the overlay builds from");
        let edited = edit_and_check(job, &path, dir, &overlay_text)?;
        notes.clone_from(&edited.notes);

        let desired_tree = if edited.changed {
            let after = std::fs::read_to_string(&path)
                .map_err(|e| FlowError::Io(format!("cannot read the edited overlay: {e}")))?;
            gitdata::tree_with_file(gh, &snapshot.commit.tree, &overlay_rel, &entry.mode, &after)
                .await?
        } else {
            snapshot.commit.tree.clone()
        };
        let version = format!("{}:{}", job.image, job.tag);

        let tip = match &remote {
            Some(sha) => {
                let theirs = gitdata::commit(gh, sha).await?;
                Some(Tip {
                    sha: sha.clone(),
                    newer: newer_record(
                        gitdata::trailer_values(&theirs.message, RECORD_TRAILER),
                        req.record_id,
                    ),
                    tree: Some(theirs.tree),
                })
            }
            None => None,
        };
        let said = Said {
            overlay: &overlay_text,
            base,
            version: &version,
            branch,
        };
        match plan_branch(tip.as_ref(), &desired_tree, edited.changed, &said) {
            BranchPlan::Done(decision) => return Ok(decision),
            BranchPlan::DeleteStale { sha, reason } => {
                self.move_branch_api(gh, branch, &sha, ZERO_OID, attempt)
                    .await?;
                return Ok(Decision::NoChange(reason));
            }
            BranchPlan::Commit => {}
        }

        let texts = self.texts(req, overlay, old.as_ref(), &edited.notes);
        let message = self.signed_off(&texts.commit_message);
        let commit = gitdata::create_commit(gh, &message, &desired_tree, &base_sha).await?;
        let lease = remote.as_deref().unwrap_or(ZERO_OID);
        self.move_branch_api(gh, branch, lease, &commit, attempt)
            .await?;
        tracing::info!(branch = %branch, commit = %commit, replaced = remote.as_deref().unwrap_or(""), "branch moved through the GitHub API");
        Ok(Decision::Ready {
            commit,
            pushed: true,
        })
    }

    /// [`gitdata::move_branch`], after the test hook [`FlowOptions::before_push`].
    async fn move_branch_api(
        &self,
        gh: &GithubClient,
        branch: &str,
        lease: &str,
        new: &str,
        attempt: u32,
    ) -> Result<(), FlowError> {
        if let Some(hook) = &self.options.before_push {
            hook(attempt);
        }
        gitdata::move_branch(gh, branch, lease, new)
            .await
            .map_err(|e| match e {
                GitDataError::Raced(detail) => FlowError::Raced {
                    branch: branch.to_owned(),
                    detail,
                },
                other => other.into(),
            })
    }

    /// `git push --force-with-lease=refs/heads/<branch>:<lease> origin <refspec>`; an empty
    /// lease means "the branch must not exist".
    async fn push(
        &self,
        git: &Git,
        dir: &Path,
        branch: &str,
        lease: &str,
        refspec: &str,
        attempt: u32,
    ) -> Result<(), FlowError> {
        if let Some(hook) = &self.options.before_push {
            hook(attempt);
        }
        let out = git
            .output(
                dir,
                &[
                    "push",
                    "--porcelain",
                    "--no-verify",
                    &format!("--force-with-lease=refs/heads/{branch}:{lease}"),
                    "origin",
                    refspec,
                ],
                None,
            )
            .await?;
        match classify_push(&out) {
            PushResult::Accepted => Ok(()),
            PushResult::Raced(detail) => Err(FlowError::Raced {
                branch: branch.to_owned(),
                detail,
            }),
            PushResult::Refused(detail) => Err(FlowError::Refused {
                branch: branch.to_owned(),
                detail,
            }),
        }
    }

    /// `message` with the sign-off `git commit --signoff` would add: it joins the trailer block
    /// the message ends with (the record's trailer).
    fn signed_off(&self, message: &str) -> String {
        format!(
            "{message}Signed-off-by: {} <{}>\n",
            self.settings.author.name, self.settings.author.email
        )
    }

    /// `notes`: why the edit had to quote a value (see [`kustomize::Edited::notes`]), said in
    /// the commit and the PR so that a reviewer knows why the line looks different.
    fn texts(
        &self,
        req: &FlowRequest<'_>,
        overlay: &Path,
        old: Option<&CurrentImage>,
        notes: &[String],
    ) -> Texts {
        let job = req.job;
        let title = format!(
            "Update {} image in {} to {}",
            job.service,
            job.environment,
            short_tag(job.tag.as_str())
        );
        let old_version = old
            .and_then(CurrentImage::version)
            .unwrap_or_else(|| "(not set)".to_owned());
        let pulled_as = old
            .and_then(|o| o.new_name.clone())
            .map(|n| format!(" (pulled as {n})"))
            .unwrap_or_default();
        let build = link(req.build_url.as_deref());
        let record = self
            .settings
            .record_base_url
            .as_ref()
            .map(|base| format!("{base}/pullrequests/{}", req.record_id));
        let base = &self.settings.base_branch;
        let branch = branch_name(job);
        let overlay = overlay.display();

        let mut commit_message = format!(
            "{title}\n\n{image}{pulled_as}: {old_version} → {new}\n\nService: {service}\nEnvironment: {env}\nOverlay: {overlay}\n",
            image = job.image,
            new = job.tag,
            service = job.service,
            env = job.environment,
        );
        if let Some(b) = &build {
            commit_message.push_str(&format!("Build: {b}\n"));
        }
        if !notes.is_empty() {
            commit_message.push('\n');
            for note in notes {
                commit_message.push_str(&format!("{note}.\n"));
            }
        }
        commit_message.push_str(&format!("\n{RECORD_TRAILER}: {}\n", req.record_id));

        let mut pr_body = format!(
            "Updates the image of **{service}** in **{env}**.\n\n\
             | | |\n|---|---|\n\
             | Image | `{image}`{pulled_as} |\n\
             | Tag | `{old_version}` → `{new}` |\n\
             | Overlay | `{overlay}` |\n",
            service = job.service,
            env = job.environment,
            image = job.image,
            new = job.tag,
        );
        if let Some(b) = &build {
            pr_body.push_str(&format!("| Build | {b} |\n"));
        }
        if let Some(run) = &req.port_run {
            let by = run
                .user
                .as_deref()
                .map(|u| format!("`{}`", u.replace(['`', '|', '\n', '\r'], " ")))
                .unwrap_or_else(|| "a Port user".to_owned());
            pr_body.push_str(&format!("| Requested by | {by} in Port |\n"));
            pr_body.push_str(&format!("| Port run | {} |\n", run.url));
        }
        match &record {
            Some(r) => pr_body.push_str(&format!("| Record | {r} |\n")),
            None => pr_body.push_str(&format!("| Record | `{}` |\n", req.record_id)),
        }
        for note in notes {
            pr_body.push_str(&format!("\nNote: {note}.\n"));
        }
        pr_body.push_str(&format!(
            "\nThe branch `{branch}` is rebuilt from `{base}` for every new build of this service \
             in this environment, so this pull request always proposes the newest image; a newer \
             build updates it rather than opening another one.\n"
        ));
        Texts {
            title,
            commit_message,
            pr_body,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every branch of the one decision both ways of working use (clone and GitHub API).
    #[test]
    fn the_update_branch_decision() {
        let said = Said {
            overlay: "o/k.yaml",
            base: "main",
            version: "img:v2",
            branch: "upd",
        };
        let ours: RecordId = "0190f0c0-0000-7000-8000-000000000002".parse().unwrap();
        let newer: RecordId = "0190f0c0-0000-7000-8000-000000000003".parse().unwrap();
        let tip = |tree: &str, newer: Option<RecordId>| Tip {
            sha: "tipsha".into(),
            tree: Some(tree.into()),
            newer,
        };
        let already = "o/k.yaml on main already uses img:v2";
        let no_change = |r: &str| BranchPlan::Done(Decision::NoChange(r.into()));
        let cases = [
            (None, true, BranchPlan::Commit),
            (None, false, no_change(already)),
            (
                Some(tip("want", None)),
                true,
                BranchPlan::Done(Decision::Ready {
                    commit: "tipsha".into(),
                    pushed: false,
                }),
            ),
            (Some(tip("want", Some(newer))), false, no_change(already)),
            (
                Some(tip("other", Some(newer))),
                true,
                no_change(&format!(
                    "upd was already updated for a newer event (record {newer}); this older event changes nothing"
                )),
            ),
            (
                Some(tip("other", None)),
                false,
                BranchPlan::DeleteStale {
                    sha: "tipsha".into(),
                    reason: format!(
                        "{already}; deleted the stale branch upd, which closes its pull request"
                    ),
                },
            ),
            (Some(tip("other", None)), true, BranchPlan::Commit),
        ];
        for (tip, changed, want) in cases {
            let got = plan_branch(tip.as_ref(), "want", changed, &said);
            assert_eq!(got, want, "{tip:?} changed={changed}");
        }
        // Only a newer record counts; ours or an older one is replaced.
        let values = [ours.to_string(), "not-an-id".into(), newer.to_string()];
        assert_eq!(
            newer_record(values.iter().map(String::as_str), ours),
            Some(newer)
        );
        assert_eq!(
            newer_record([ours.to_string()].iter().map(String::as_str), newer),
            None
        );
    }

    fn job() -> Job {
        Job::parse(
            "svc",
            "org/svc",
            "dev",
            "8f59df978e3fa133a2ee39ff66b3382342ce958c",
        )
        .unwrap()
    }

    #[test]
    fn names() {
        assert_eq!(branch_name(&job()), "update-image/dev/svc");
        assert_eq!(
            set_image_arg(&job()),
            "org/svc=*:8f59df978e3fa133a2ee39ff66b3382342ce958c"
        );
        assert_eq!(short_tag(job().tag.as_str()), "8f59df9");
        assert_eq!(short_tag("v1.2.3"), "v1.2.3");
        assert_eq!(short_tag("abc"), "abc");
        assert_eq!(short_tag("202401011234"), "202401011234");
    }

    #[test]
    fn reads_the_current_image() {
        let text = "resources:\n- ../../base\nimages:\n- name: other\n  newTag: x\n- name: org/svc # pinned\n  newName: ecr/svc\n  newTag: \"1234\"\n- name: org/svc\n  newTag: later\n";
        let cur = current_image(text, "org/svc").unwrap();
        assert_eq!(cur.new_name.as_deref(), Some("ecr/svc"));
        assert_eq!(cur.version().as_deref(), Some("1234"));
        assert_eq!(current_image(text, "nope"), None);
        assert_eq!(current_image("images: [", "org/svc"), None);
        let digest = "images:\n- name: a\n  digest: sha256:00\n";
        assert_eq!(
            current_image(digest, "a").unwrap().version().as_deref(),
            Some("@sha256:00")
        );
    }

    /// An unsafe job cannot be built: each identifier goes through its one `parse`.
    #[test]
    fn rejects_unsafe_jobs() {
        let j = |service, image, tag| Job::parse(service, image, "dev", tag);
        let sha = "8f59df978e3fa133a2ee39ff66b3382342ce958c";
        assert!(
            j("svc", "org/svc", "v1 --force")
                .unwrap_err()
                .to_string()
                .contains("tag")
        );
        assert!(
            j("svc", "org/svc=evil", sha)
                .unwrap_err()
                .to_string()
                .contains("image")
        );
        assert!(j("../x", "org/svc", sha).is_err());
        assert!(j("svc", "org/svc", sha).is_ok());
    }

    #[test]
    fn only_http_links() {
        assert_eq!(
            link(Some("https://circleci.com/gh/o/r/1")).as_deref(),
            Some("https://circleci.com/gh/o/r/1")
        );
        assert_eq!(link(Some("javascript:alert(1)")), None);
        assert_eq!(link(Some("https://x/<script>")), None);
        assert_eq!(link(None), None);
    }
}
