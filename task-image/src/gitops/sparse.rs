//! Fetch only what the edit needs: a partial, shallow, sparse clone of the base branch.
//!
//! A `--depth 1` clone is not cheap for the server on a big repository: it packs every blob at
//! the tip. The task reads one overlay and what that overlay builds from, so it clones with
//! `--filter=blob:none --depth 1` (commits and trees only) into a repository whose cone-mode
//! sparse checkout of the top level, the overlay's directory and the `base` beside its
//! `overlays` is set before the clone checks out (git fetches those blobs in one batch), and
//! then widens the checkout one directory at a time while the preflight finds a path it needs
//! that is in the tree but not on disk (`../../base`, a shared component, a resource file). Git fetches the blobs of each
//! directory on demand, over the same authenticated remote.
//!
//! A server that does not support filters (`uploadpack.allowFilter` off) ignores the filter and
//! sends a plain shallow clone; git warns, the task logs it, and everything else is the same.
//! Commit and push work as in a full clone: the overlay is inside the sparse checkout, and a push
//! sends only the new objects.

use std::path::{Component, Path};

use super::config::CloneMode;
use super::git::{Git, GitError};
use kustomize_set_image::{self as kustomize, PreflightError};

/// Widening the checkout stops after this many directories (a kustomization graph is small; a
/// loop here would be a bug, and the preflight then reports the missing path itself).
const MAX_WIDEN: usize = 64;

/// What git prints when the server ignores `--filter`, and when the remote is a plain local path
/// (git then copies the repository whole; `file://` URLs go through the server side).
const FILTER_IGNORED: [&str; 2] = [
    "filtering not recognized by server",
    "--filter is ignored in local clones",
];

/// Clones `branch` of `url` into `dir` (run from `parent`), shallow. [`CloneMode::Partial`]:
/// one `git clone --filter=blob:none` whose checkout is already sparse (a cone of the top level
/// and of `cone`: directories, `/`-separated), so git fetches the commit and trees, then the
/// blobs of the cone in one batch; a sparse checkout even when the server ignores the filter and
/// sends every blob. Returns whether the server honoured the filter, for the log.
///
/// The sparse checkout is in place before the clone checks out: the new repository's
/// `info/sparse-checkout` comes from a template directory (`--template`) and cone mode is turned
/// on with `-c` (which git applies right after creating the repository), where `--no-checkout`,
/// `sparse-checkout set` and `checkout` would be three processes.
pub async fn clone(
    git: &Git,
    parent: &Path,
    dir: &Path,
    url: &str,
    branch: &str,
    mode: CloneMode,
    cone: &[String],
) -> Result<bool, GitError> {
    let dir_arg = dir.display().to_string();
    let template = parent.join(".clone-template");
    let template_arg = format!("--template={}", template.display());
    let mut args = vec!["clone", "--quiet", "--depth", "1"];
    if mode == CloneMode::Partial {
        write_template(&template, cone).map_err(|e| GitError::Spawn {
            command: "git clone".into(),
            detail: format!("cannot write the sparse-checkout template: {e}"),
        })?;
        args.extend([
            "--filter=blob:none",
            &template_arg,
            "-c",
            "core.sparseCheckout=true",
            "-c",
            "core.sparseCheckoutCone=true",
        ]);
    }
    args.extend([
        "--single-branch",
        "--no-tags",
        "--branch",
        branch,
        "--",
        url,
        &dir_arg,
    ]);
    let out = git.run(parent, &args).await?;
    if mode == CloneMode::Shallow {
        return Ok(false);
    }
    let partial = !FILTER_IGNORED.iter().any(|w| out.stderr.contains(w));
    if !partial {
        tracing::info!(
            "the git server ignores partial-clone filters (uploadpack.allowFilter), or the remote is a local path: cloned every file at the tip instead"
        );
    }
    Ok(partial)
}

/// A template directory for `git clone --template` holding only `info/sparse-checkout`.
fn write_template(template: &Path, cone: &[String]) -> std::io::Result<()> {
    let info = template.join("info");
    std::fs::create_dir_all(&info)?;
    std::fs::write(info.join("sparse-checkout"), cone_patterns(cone))
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
