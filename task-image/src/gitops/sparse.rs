//! Fetch only what the edit needs: one fetch of the base branch and of the update branch, partial,
//! shallow and sparse.
//!
//! A `--depth 1` clone is not cheap for the server on a big repository: it packs every blob at
//! the tip. The task reads one overlay and what that overlay builds from, so it fetches with
//! `--filter=blob:none --depth 1` (commits and trees only) into a repository whose cone-mode
//! sparse checkout of the top level, the overlay's directory and the `base` beside its
//! `overlays` is set before anything is checked out (git fetches those blobs in one batch), and
//! then widens the checkout one directory at a time while the preflight finds a path it needs
//! that is in the tree but not on disk (`../../base`, a shared component, a resource file). Git
//! fetches the blobs of each directory on demand, over the same authenticated remote.
//!
//! The same fetch brings the update branch's tip when it exists (a refspec pattern, which matches
//! nothing when it does not): its sha is the lease for the push, its tree and trailers decide
//! whether to push at all. A `git clone` cannot do that (`--single-branch` fetches one branch), so
//! the task writes the repository itself (`HEAD`, a `config` holding the remote, the refspecs and
//! the partial clone, and the sparse checkout: what `git init` and `git fetch --filter` would
//! write, without their process and file operations), then runs `git fetch`, one
//! `git for-each-ref` for both tips, and `git checkout`: one round trip for both branches, where a
//! clone, an `ls-remote` and a fetch of the update branch were three.
//!
//! The checkout's blobs are a second round trip (the price of a partial clone: on a repository of
//! a few files a shallow clone, `GITOPS_CLONE=shallow`, is one round trip and a few milliseconds
//! faster). Reading the tips runs beside the checkout, and when the update branch exists, so
//! does the fetch of its version of the overlay: the push needs it (see [`prefetch_replaced`]).
//!
//! A server that does not support filters (`uploadpack.allowFilter` off) ignores the filter and
//! sends every file at the tip; git warns, the task logs it, and everything else is the same.
//! The commit is made without the index ([`commit_file`]: one `git fast-import`, which reads the
//! base's trees and writes one pack), and a push sends only the new objects.

use std::path::{Component, Path};

use super::config::{CloneMode, Identity};
use super::git::{Git, GitError};
use kustomize_set_image::{self as kustomize, PreflightError};

/// Widening the checkout stops after this many directories (a kustomization graph is small; a
/// loop here would be a bug, and the preflight then reports the missing path itself).
const MAX_WIDEN: usize = 64;

/// What git prints when the server ignores `--filter`.
const FILTER_IGNORED: &str = "filtering not recognized by server";

/// What [`fetch`] found on the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fetched {
    /// The base branch's tip, checked out.
    pub base: Tip,
    /// The update branch's tip, when the branch exists.
    pub update: Option<Tip>,
    /// Whether the server honoured the filter ([`CloneMode::Partial`] only), for the log.
    pub filtered: bool,
}

/// A branch tip as fetched: what the update-branch decision reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tip {
    pub sha: String,
    pub tree: String,
    /// The values of its `trailer` trailers.
    pub trailers: Vec<String>,
}

/// Makes `dir` (a new repository) with `base` checked out and the tip of `update` fetched beside
/// it when that branch exists, from one fetch of `url`, shallow.
/// [`CloneMode::Partial`]: commits and trees only, and a sparse checkout (a cone of the top level
/// and of `cone`: directories, `/`-separated), so the checkout fetches the blobs of the cone in
/// one batch; and when the update branch exists, its version of `edited` (the file the edit
/// changes, repository-relative) is fetched beside the checkout ([`prefetch_replaced`]).
/// `trailer` names the trailer whose values [`Tip::trailers`] holds.
#[allow(clippy::too_many_arguments)]
pub async fn fetch(
    git: &Git,
    dir: &Path,
    url: &str,
    base: &str,
    update: &str,
    mode: CloneMode,
    cone: &[String],
    edited: &str,
    trailer: &str,
) -> Result<Fetched, GitError> {
    make_repository(
        dir,
        base,
        &repository_config(url, base, update, mode),
        mode,
        cone,
    )
    .map_err(|e| GitError::Spawn {
        command: "git fetch".into(),
        detail: format!("cannot make the repository {}: {e}", dir.display()),
    })?;
    // The tips are read with for-each-ref: no FETCH_HEAD to write.
    let mut args = vec![
        "fetch",
        "--quiet",
        "--depth",
        "1",
        "--no-tags",
        "--no-write-fetch-head",
    ];
    if mode == CloneMode::Partial {
        args.push("--filter=blob:none");
    }
    args.push("origin");
    let out = git.run(dir, &args).await?;
    let filtered = mode == CloneMode::Partial && !out.stderr.contains(FILTER_IGNORED);
    if mode == CloneMode::Partial && !filtered {
        tracing::info!(
            "the git server ignores partial-clone filters (uploadpack.allowFilter): fetched every file at the tip instead"
        );
    }
    let base_ref = format!("refs/remotes/origin/{base}");
    let update_ref = format!("refs/remotes/origin/{update}");
    let format = format!(
        "--format=%(objectname) %(tree) %(refname)%00%(trailers:key={trailer},valueonly)%00"
    );
    // The checkout needs only the base's ref; reading both tips (and fetching the update branch's
    // overlay) runs beside it.
    let checkout_args = ["checkout", "--quiet", "--no-track", "-B", base, &base_ref];
    let tips = async {
        let listed = git
            .run(
                dir,
                &["for-each-ref", &format, "--", &base_ref, &update_ref],
            )
            .await?
            .stdout;
        let tips = parse_tips(&listed);
        let find = |name: &str| tips.iter().find(|(r, _)| r == name).map(|(_, t)| t.clone());
        let base_tip = find(&base_ref).ok_or_else(|| GitError::Failed {
            command: "git for-each-ref".into(),
            code: 0,
            stderr: format!("no {base_ref} after the fetch"),
        })?;
        let update_tip = find(&update_ref);
        if let (Some(tip), true) = (&update_tip, filtered) {
            prefetch_replaced(git, dir, &base_tip, tip, edited).await?;
        }
        Ok::<_, GitError>((base_tip, update_tip))
    };
    let (checked_out, tips) = tokio::join!(git.run(dir, &checkout_args), tips);
    checked_out?;
    let (base_tip, update_tip) = tips?;
    Ok(Fetched {
        base: base_tip,
        update: update_tip,
        filtered,
    })
}

/// Fetches the update branch's version of `path` (the file the edit changes) when it differs
/// from the base's, beside the checkout. The push needs it: git packs the new file as a delta
/// against the version the server has (a thin pack, which pushes over HTTPS always send), and in
/// a partial clone a missing version would be fetched then, one more round trip before the push.
async fn prefetch_replaced(
    git: &Git,
    dir: &Path,
    base: &Tip,
    update: &Tip,
    path: &str,
) -> Result<(), GitError> {
    // Trees only: resolving a path fetches nothing. rev-parse prints each name it resolves and
    // stops at the first it cannot: the update branch's first, so a path missing there ends it.
    let at = |tip: &Tip| format!("{}:{path}", tip.sha);
    let out = git
        .output(dir, &["rev-parse", &at(update), &at(base)], None)
        .await?;
    let mut resolved = out.stdout.lines().map(str::trim);
    let Some(theirs) = resolved.next().filter(|oid| !oid.is_empty()) else {
        return Ok(());
    };
    if resolved.next() == Some(theirs) {
        return Ok(());
    }
    // What git itself runs to fetch a missing object from the promisor remote.
    git.run(
        dir,
        &[
            "-c",
            "fetch.negotiationAlgorithm=noop",
            "fetch",
            "--quiet",
            "--no-tags",
            "--no-write-fetch-head",
            "--recurse-submodules=no",
            "--filter=blob:none",
            "origin",
            theirs,
        ],
    )
    .await?;
    Ok(())
}

/// A commit made by [`commit_file`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Committed {
    pub commit: String,
    pub tree: String,
}

/// Commits `content` as `path` (repository-relative, `/`-separated; `mode` `100644` or `100755`)
/// on top of `parent`, with `message` (kept as it is) by `who`, author and committer, now. One
/// `git fast-import`: it reads the trees on the way to `path` (a partial clone has them) and
/// writes the file, those trees and the commit as one pack (`fastimport.unpackLimit=0`), where
/// `git add`, `write-tree` and `commit-tree` were three processes writing loose objects one file
/// each. No index and no branch change; the commit is left under a private ref.
#[allow(clippy::too_many_arguments)]
pub async fn commit_file(
    git: &Git,
    dir: &Path,
    parent: &str,
    path: &str,
    mode: &str,
    content: &str,
    message: &str,
    who: &Identity,
) -> Result<Committed, GitError> {
    let ident = format!("{} <{}> now", who.name, who.email);
    let stream = format!(
        "feature done\n\
         commit refs/orchestrator/commit\nmark :1\n\
         author {ident}\ncommitter {ident}\n\
         data {}\n{message}\n\
         from {parent}\n\
         M {mode} inline {}\ndata {}\n{content}\n\n\
         ls :1 \"\"\nget-mark :1\ndone\n",
        message.len(),
        c_quoted(path),
        content.len(),
    );
    let out = git
        .run_with_input(
            dir,
            &["fast-import", "--quiet", "--force", "--date-format=now"],
            Some(&stream),
        )
        .await?;
    // `040000 tree <tree>\t` for `ls`, then `<commit>` for `get-mark`.
    let mut lines = out.stdout.lines();
    let tree = lines.next().and_then(|l| l.split_whitespace().nth(2));
    let commit = lines.next().map(str::trim);
    match (tree, commit) {
        (Some(tree), Some(commit)) if is_object_id(tree) && is_object_id(commit) => Ok(Committed {
            commit: commit.to_owned(),
            tree: tree.to_owned(),
        }),
        _ => Err(GitError::Failed {
            command: "git fast-import".into(),
            code: out.code,
            stderr: format!("unexpected output: {:?}", out.stdout),
        }),
    }
}

/// A path in git's C-style quotes, as fast-import reads one: `"` and `\\` escaped, line breaks
/// and tabs as `\n`, `\r`, `\t`.
fn c_quoted(path: &str) -> String {
    let mut out = String::from("\"");
    for c in path.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A full object name (SHA-1 or SHA-256, hex).
fn is_object_id(s: &str) -> bool {
    matches!(s.len(), 40 | 64) && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// The repository's `config`: the remote, fetching the base branch and every branch whose name
/// starts with the update branch's (a pattern matches nothing without an error; the caller picks
/// the exact name), and, for [`CloneMode::Partial`], the partial clone (what `git fetch
/// --filter` would otherwise write into it, one rewrite of the file per key) and cone-mode
/// sparse checkout.
fn repository_config(url: &str, base: &str, update: &str, mode: CloneMode) -> String {
    let partial = mode == CloneMode::Partial;
    let mut config = format!(
        "[core]\n\trepositoryformatversion = {}\n\tbare = false\n",
        if partial { 1 } else { 0 }
    );
    if partial {
        config.push_str("\tsparseCheckout = true\n\tsparseCheckoutCone = true\n");
        config.push_str("[extensions]\n\tpartialClone = origin\n");
    }
    config.push_str(&format!(
        "[remote \"origin\"]\n\turl = {}\n\tfetch = {}\n\tfetch = {}\n",
        quoted(url),
        quoted(&format!("+refs/heads/{base}:refs/remotes/origin/{base}")),
        quoted(&format!(
            "+refs/heads/{update}*:refs/remotes/origin/{update}*"
        )),
    ));
    if partial {
        config.push_str("\tpromisor = true\n\tpartialclonefilter = blob:none\n");
    }
    config
}

/// A git configuration value as git writes one: `\\` and `"` escaped, in double quotes only when
/// it needs them (space at either end, `;` or `#`), line breaks dropped (a URL or ref name has
/// none; dropping them keeps one value on one line whatever comes in).
fn quoted(value: &str) -> String {
    let mut out = String::new();
    for c in value.chars() {
        match c {
            '\\' | '"' => {
                out.push('\\');
                out.push(c);
            }
            '\n' | '\r' => {}
            c => out.push(c),
        }
    }
    if out.starts_with(' ') || out.ends_with(' ') || out.contains([';', '#']) {
        format!("\"{out}\"")
    } else {
        out
    }
}

/// `for-each-ref` output in [`fetch`]'s format: `<sha> <tree> <ref>\0<trailer values>\0\n` per ref.
fn parse_tips(listed: &str) -> Vec<(String, Tip)> {
    let mut parts = listed.split('\0');
    let mut tips = Vec::new();
    while let (Some(head), Some(trailers)) = (parts.next(), parts.next()) {
        let mut fields = head.trim_start_matches('\n').splitn(3, ' ');
        let (Some(sha), Some(tree), Some(name)) = (fields.next(), fields.next(), fields.next())
        else {
            continue;
        };
        tips.push((
            name.to_owned(),
            Tip {
                sha: sha.to_owned(),
                tree: tree.to_owned(),
                trailers: trailers
                    .lines()
                    .map(str::trim)
                    .filter(|v| !v.is_empty())
                    .map(str::to_owned)
                    .collect(),
            },
        ));
    }
    tips
}

/// Makes the repository `dir` as `git init` would, with `HEAD` on `base`, `config` and, for
/// [`CloneMode::Partial`], `info/sparse-checkout`, and nothing else (no sample hooks, no
/// `description`). Written directly, not with `git init`: one process and a dozen file
/// operations fewer (`git init` probes the file system for symlinks, case and file modes, whose
/// defaults on Linux are right), and the layout is git's documented one (gitrepository-layout).
fn make_repository(
    dir: &Path,
    base: &str,
    config: &str,
    mode: CloneMode,
    cone: &[String],
) -> std::io::Result<()> {
    let git_dir = dir.join(".git");
    std::fs::create_dir_all(git_dir.join("objects"))?;
    std::fs::create_dir(git_dir.join("refs"))?;
    std::fs::write(git_dir.join("HEAD"), format!("ref: refs/heads/{base}\n"))?;
    std::fs::write(git_dir.join("config"), config)?;
    if mode == CloneMode::Partial {
        let info = git_dir.join("info");
        std::fs::create_dir(&info)?;
        std::fs::write(info.join("sparse-checkout"), cone_patterns(cone))?;
    }
    Ok(())
}

/// The `info/sparse-checkout` of a cone-mode checkout of the top level and of `dirs`, as
/// `git sparse-checkout set --cone` writes it: every file at the top level; then, for each
/// parent of a directory, its files (`/a/`) but not its subdirectories (`!/a/*/`); then each
/// directory whole.
/// A directory inside another one of `dirs` is covered by it and left out.
pub fn cone_patterns(dirs: &[String]) -> String {
    let dirs: Vec<&str> = dirs
        .iter()
        .map(|d| d.trim_matches('/'))
        .filter(|d| !d.is_empty())
        .collect();
    let covered = |d: &str| {
        dirs.iter()
            .any(|o| d.len() > o.len() && d.starts_with(o) && d.as_bytes()[o.len()] == b'/')
    };
    let recursive: std::collections::BTreeSet<&str> =
        dirs.iter().copied().filter(|d| !covered(d)).collect();
    let parents: std::collections::BTreeSet<&str> = recursive
        .iter()
        .flat_map(|d| d.match_indices('/').map(|(i, _)| &d[..i]))
        .collect();
    let mut out = String::from("/*\n!/*/\n");
    for p in &parents {
        out.push_str(&format!("/{p}/\n!/{p}/*/\n"));
    }
    for d in &recursive {
        out.push_str(&format!("/{d}/\n"));
    }
    out
}

/// The directories to check out first for the overlay file `overlay` (repository-relative): the
/// overlay's directory and, for an overlay in `<service>/overlays/<env>/`, `<service>/base`
/// (where an overlay usually builds from; a directory that does not exist is no error). Empty
/// for an overlay at the top level.
pub fn first_checkout(overlay: &Path) -> Vec<String> {
    let Some(overlay_dir) = overlay
        .parent()
        .and_then(Path::to_str)
        .filter(|d| !d.is_empty())
    else {
        return Vec::new();
    };
    let mut dirs = vec![overlay_dir.to_owned()];
    let base = Path::new(overlay_dir)
        .parent()
        .filter(|p| p.file_name().is_some_and(|n| n == "overlays"))
        .and_then(Path::parent)
        .and_then(Path::to_str)
        .filter(|p| !p.is_empty());
    if let Some(service_dir) = base {
        dirs.push(format!("{service_dir}/base"));
    }
    dirs
}

/// Adds `paths` (directories, relative to the repository, `/`-separated) to the sparse checkout.
pub async fn add(git: &Git, dir: &Path, paths: &[&str]) -> Result<(), GitError> {
    let input = paths.iter().map(|p| format!("{p}\n")).collect::<String>();
    git.run_with_input(dir, &["sparse-checkout", "add", "--stdin"], Some(&input))
        .await?;
    Ok(())
}

/// Widens the sparse checkout of `dir` until the preflight of `overlay_file` (a path inside
/// `dir`) for `image` no longer stops on a path that exists in `HEAD` but not on disk. Returns the
/// directories added. Any other preflight result is left for the caller's own preflight to
/// report: this only makes the working tree complete enough for it.
pub async fn widen_for_preflight(
    git: &Git,
    dir: &Path,
    overlay_file: &Path,
    image: &str,
) -> Result<Vec<String>, GitError> {
    let mut added: Vec<String> = Vec::new();
    while added.len() < MAX_WIDEN {
        let Err(PreflightError::Io { path, .. }) = kustomize::preflight(overlay_file, image) else {
            break;
        };
        if path.exists() {
            break; // present but unreadable: not a sparse-checkout matter
        }
        let Some(rel) = repo_relative(dir, &path) else {
            break; // outside the repository
        };
        let Some(widen) = directory_in_head(git, dir, &rel).await? else {
            break; // not in the commit either: the preflight names it
        };
        if widen.is_empty() || added.contains(&widen) {
            break;
        }
        add(git, dir, &[&widen]).await?;
        tracing::debug!(directory = %widen, "sparse checkout widened for the preflight");
        added.push(widen);
    }
    Ok(added)
}

/// The directory to check out for `rel` in `HEAD`: `rel` itself when it is a directory, its
/// parent when it is a file, `None` when `HEAD` has no such path. Reads trees only (a partial
/// clone has them all), so nothing is fetched.
async fn directory_in_head(git: &Git, dir: &Path, rel: &str) -> Result<Option<String>, GitError> {
    let out = git.run(dir, &["ls-tree", "HEAD", "--", rel]).await?;
    // `<mode> SP <type> SP <object> TAB <path>`, one line for the path itself.
    let kind = out
        .stdout
        .lines()
        .find(|l| l.split_once('\t').map(|(_, p)| p) == Some(rel))
        .and_then(|l| l.split_whitespace().nth(1));
    Ok(match kind {
        Some("tree") => Some(rel.to_owned()),
        Some(_) => Some(rel.rsplit_once('/').map_or("", |(d, _)| d).to_owned()),
        None => None,
    })
}

/// `path` relative to `root`, with `.` and `..` resolved lexically and `/` separators; `None` when
/// it is not under `root` or climbs out of it.
pub fn repo_relative(root: &Path, path: &Path) -> Option<String> {
    let rest = path.strip_prefix(root).ok()?;
    let mut parts: Vec<&str> = Vec::new();
    for component in rest.components() {
        match component {
            Component::Normal(part) => parts.push(part.to_str()?),
            Component::CurDir => {}
            Component::ParentDir => {
                parts.pop()?;
            }
            Component::RootDir | Component::Prefix(_) => return None,
        }
    }
    if parts.is_empty() {
        return None;
    }
    Some(parts.join("/"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The patterns are the ones `git sparse-checkout set --cone` writes for the same
    /// directories (real git, in a scratch repository), so git reads them in cone mode and
    /// `sparse-checkout add` can extend them.
    #[test]
    fn cone_patterns_are_what_git_writes() {
        let cases: [&[&str]; 4] = [
            &["kustomize/billing/overlays/dev", "kustomize/billing/base"],
            &[
                "apps/billing/dev",
                "apps/shared",
                "zeta",
                "apps/billing/dev/sub",
            ],
            &["overlays/dev/"],
            &[],
        ];
        for dirs in cases {
            let repo = tempfile::tempdir().unwrap();
            let git = |args: &[&str]| {
                let out = std::process::Command::new("git")
                    .args(args)
                    .current_dir(repo.path())
                    .env("GIT_CONFIG_NOSYSTEM", "1")
                    .env("GIT_CONFIG_GLOBAL", "/dev/null")
                    .output()
                    .unwrap();
                assert!(out.status.success(), "git {args:?}: {out:?}");
            };
            git(&["init", "--quiet"]);
            let mut set = vec!["sparse-checkout", "set", "--cone"];
            set.extend(dirs.iter().map(|d| d.trim_end_matches('/')));
            git(&set);
            let wrote =
                std::fs::read_to_string(repo.path().join(".git/info/sparse-checkout")).unwrap();
            let dirs: Vec<String> = dirs.iter().map(|d| (*d).to_owned()).collect();
            assert_eq!(cone_patterns(&dirs), wrote, "{dirs:?}");
        }
    }

    /// Runs git in `dir` with no user or system configuration; returns stdout.
    fn scratch_git(dir: &Path, args: &[&str]) -> String {
        let out = std::process::Command::new("git")
            .args(args)
            .current_dir(dir)
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .env("GIT_AUTHOR_NAME", "A")
            .env("GIT_AUTHOR_EMAIL", "a@example.com")
            .env("GIT_COMMITTER_NAME", "A")
            .env("GIT_COMMITTER_EMAIL", "a@example.com")
            .output()
            .unwrap();
        assert!(out.status.success(), "git {args:?}: {out:?}");
        String::from_utf8(out.stdout).unwrap()
    }

    /// A working repository `<root>/work` on `main` with `files` committed, and its bare clone
    /// `<root>/<name>`, the server: `(work, server)`.
    fn scratch_server(
        root: &Path,
        name: &str,
        files: &[(&str, &str)],
    ) -> (std::path::PathBuf, std::path::PathBuf) {
        let work = root.join("work");
        let server = root.join(name);
        scratch_git(
            root,
            &["init", "--quiet", "-b", "main", work.to_str().unwrap()],
        );
        for (path, text) in files {
            let full = work.join(path);
            std::fs::create_dir_all(full.parent().unwrap()).unwrap();
            std::fs::write(full, text).unwrap();
        }
        scratch_git(&work, &["add", "."]);
        scratch_git(&work, &["commit", "--quiet", "-m", "base"]);
        scratch_git(
            &work,
            &["clone", "--quiet", "--bare", ".", server.to_str().unwrap()],
        );
        (work, server)
    }

    /// The repository's configuration is what git reads back (quoting included), git takes the
    /// repository made without `git init` as its own, and its refspecs fetch the base branch and
    /// the update branch, which may be missing, in one fetch: the `for-each-ref` output that
    /// fetch reads is parsed into each tip's sha, tree and trailers.
    #[test]
    fn the_repository_fetches_both_branches_and_the_tips_parse() {
        let tmp = tempfile::tempdir().unwrap();
        let (work, server) = scratch_server(tmp.path(), "odd \"name\\ #1.git", &[("a.txt", "a\n")]);
        let url = server.display().to_string();
        let config = repository_config(&url, "main", "upd/dev/svc", CloneMode::Partial);
        std::fs::write(tmp.path().join("config"), &config).unwrap();
        let read = |key: &str| {
            scratch_git(
                tmp.path(),
                &["config", "--file", "config", "--get-all", key],
            )
        };
        assert_eq!(read("remote.origin.url"), format!("{url}\n"));
        assert_eq!(
            read("remote.origin.fetch"),
            "+refs/heads/main:refs/remotes/origin/main\n\
             +refs/heads/upd/dev/svc*:refs/remotes/origin/upd/dev/svc*\n"
        );
        assert_eq!(read("core.sparseCheckoutCone"), "true\n");
        assert_eq!(read("core.repositoryformatversion"), "1\n");
        assert_eq!(read("extensions.partialClone"), "origin\n");
        assert_eq!(read("remote.origin.promisor"), "true\n");

        let format =
            "--format=%(objectname) %(tree) %(refname)%00%(trailers:key=Record,valueonly)%00";
        let refs = [
            "refs/remotes/origin/main",
            "refs/remotes/origin/upd/dev/svc",
        ];
        let fetch_into = |name: &str| {
            let dir = tmp.path().join(name);
            make_repository(&dir, "main", &config, CloneMode::Partial, &[]).unwrap();
            assert_eq!(
                scratch_git(&dir, &["rev-parse", "--absolute-git-dir"]),
                format!("{}\n", dir.join(".git").display())
            );
            assert_eq!(
                scratch_git(&dir, &["symbolic-ref", "HEAD"]),
                "refs/heads/main\n"
            );
            scratch_git(&dir, &["fetch", "--quiet", "--depth", "1", "origin"]);
            let mut args = vec!["for-each-ref", format, "--"];
            args.extend(refs);
            parse_tips(&scratch_git(&dir, &args))
        };

        // No update branch yet: the pattern matches nothing, and that is no error.
        let base = scratch_git(&work, &["rev-parse", "HEAD", "HEAD^{tree}"]);
        let (base_sha, base_tree) = base.split_once('\n').unwrap();
        let tips = fetch_into("first");
        assert_eq!(
            tips,
            vec![(
                refs[0].to_owned(),
                Tip {
                    sha: base_sha.to_owned(),
                    tree: base_tree.trim().to_owned(),
                    trailers: vec![],
                }
            )]
        );

        // The update branch, with two trailer values, and a sibling the pattern also matches.
        std::fs::write(work.join("a.txt"), "b\n").unwrap();
        scratch_git(
            &work,
            &["commit", "--quiet", "-am", "upd\n\nRecord: 01\nRecord: 02"],
        );
        scratch_git(
            &work,
            &[
                "push",
                "--quiet",
                server.to_str().unwrap(),
                "HEAD:refs/heads/upd/dev/svc",
                "HEAD:refs/heads/upd/dev/svc-two",
            ],
        );
        let upd = scratch_git(&work, &["rev-parse", "HEAD", "HEAD^{tree}"]);
        let (upd_sha, upd_tree) = upd.split_once('\n').unwrap();
        let tips = fetch_into("second");
        assert_eq!(tips.len(), 2, "{tips:?}");
        assert_eq!(tips[0].1.sha, base_sha);
        assert_eq!(
            tips[1],
            (
                refs[1].to_owned(),
                Tip {
                    sha: upd_sha.to_owned(),
                    tree: upd_tree.trim().to_owned(),
                    trailers: vec!["01".to_owned(), "02".to_owned()],
                }
            )
        );
    }

    /// `commit_file` in a partial clone: the commit is the base plus the one file (mode, content
    /// and an odd path kept), with the message as given and the identity as author and
    /// committer, and it fetches nothing (the server is gone by then).
    #[tokio::test]
    async fn a_file_is_committed_on_the_base_without_its_blobs() {
        let tmp = tempfile::tempdir().unwrap();
        let odd = "dir with space/sub/k\"y\\z.yaml";
        let files = [(odd, "old\n"), ("other.txt", "other\n")];
        let (work, server) = scratch_server(tmp.path(), "server.git", &files);
        scratch_git(&server, &["config", "uploadpack.allowFilter", "true"]);
        let base = scratch_git(&work, &["rev-parse", "HEAD"]).trim().to_owned();

        let dir = tmp.path().join("clone");
        let url = format!("file://{}", server.display());
        let config = repository_config(&url, "main", "upd", CloneMode::Partial);
        make_repository(&dir, "main", &config, CloneMode::Partial, &[]).unwrap();
        let fetch = [
            "fetch",
            "--quiet",
            "--depth",
            "1",
            "--filter=blob:none",
            "origin",
        ];
        scratch_git(&dir, &fetch);
        std::fs::rename(&server, tmp.path().join("gone.git")).unwrap();

        let who = Identity {
            name: "Bot Name".into(),
            email: "bot@example.com".into(),
        };
        let git = Git::new(
            super::super::git::GitOptions {
                identity: who.clone(),
                auth: None,
                timeout: std::time::Duration::from_secs(30),
                home: tmp.path().to_owned(),
            },
            Default::default(),
        );
        let message =
            "Update image\n\n  kept as is  \n\nSigned-off-by: Bot Name <bot@example.com>\n";
        let committed = commit_file(&git, &dir, &base, odd, "100755", "new\n", message, &who)
            .await
            .unwrap();

        let show = |rev: &str| scratch_git(&dir, &["cat-file", "-p", rev]);
        let commit = show(&committed.commit);
        let (head, body) = commit.split_once("\n\n").unwrap();
        let lines: Vec<&str> = head.lines().collect();
        assert_eq!(lines[0], format!("tree {}", committed.tree));
        assert_eq!(lines[1], format!("parent {base}"));
        for (line, role) in lines[2..].iter().zip(["author", "committer"]) {
            assert!(
                line.starts_with(&format!("{role} Bot Name <bot@example.com> "))
                    && line.ends_with(" +0000"),
                "{line}"
            );
        }
        assert_eq!(lines.len(), 4, "{commit}");
        assert_eq!(body, message);
        let listed = scratch_git(&dir, &["ls-tree", "-r", "-z", &committed.commit]);
        let entries: Vec<&str> = listed.split('\0').filter(|e| !e.is_empty()).collect();
        let base_other = scratch_git(&dir, &["rev-parse", &format!("{base}:other.txt")]);
        let new_blob = scratch_git(&dir, &["rev-parse", &format!("{}:{odd}", committed.commit)]);
        assert_eq!(
            entries,
            [
                format!("100755 blob {}\t{odd}", new_blob.trim()),
                format!("100644 blob {}\tother.txt", base_other.trim()),
            ]
        );
        assert_eq!(show(new_blob.trim()), "new\n");
    }

    #[test]
    fn the_first_checkout_is_the_overlay_and_its_base() {
        let cases: [(&str, &[&str]); 4] = [
            (
                "kustomize/billing/overlays/dev/kustomization.yaml",
                &["kustomize/billing/overlays/dev", "kustomize/billing/base"],
            ),
            ("apps/billing/dev/kustomization.yaml", &["apps/billing/dev"]),
            ("overlays/dev/kustomization.yaml", &["overlays/dev"]),
            ("kustomization.yaml", &[]),
        ];
        for (overlay, want) in cases {
            assert_eq!(first_checkout(Path::new(overlay)), want, "{overlay}");
        }
    }

    #[test]
    fn paths_are_made_relative_to_the_repository_lexically() {
        let root = Path::new("/work/clone");
        let cases = [
            (
                "/work/clone/kustomize/svc/overlays/dev/../../base",
                Some("kustomize/svc/base"),
            ),
            ("/work/clone/a/./b/c.yaml", Some("a/b/c.yaml")),
            ("/work/clone/a/../../outside", None),
            ("/work/clone", None),
            ("/elsewhere/a", None),
            ("/work/clone/a/..", None),
        ];
        for (path, want) in cases {
            assert_eq!(
                repo_relative(root, Path::new(path)).as_deref(),
                want,
                "{path}"
            );
        }
    }
}
