//! The no-clone mode (`GITOPS_CLONE=github-api`): the gitops repository read and written
//! through GitHub's API instead of git. Owns the Git Database calls (refs, commits, trees,
//! blobs), the files materialized on disk for the edit and the preflight, and the ref update
//! with a lease.
//!
//! # Why these endpoints
//!
//! - **Reading**: `GET git/ref/heads/{branch}` and `GET git/commits/{sha}` for the base tip, its
//!   tree and the update branch's commit (its tree and message: the decision and the
//!   `Orchestrator-Record` trailer); `GET git/trees/{sha}` non-recursive, one directory at a time
//!   from the root and cached, to find a path (the mode of the overlay comes from it too);
//!   `GET git/blobs/{sha}` for each file read. A recursive tree of a big repository would be the
//!   whole repository's listing; this reads only the directories on the way to what the edit
//!   and the preflight open. A typical run (the overlay four directories deep, `../../base` with
//!   two files) reads 3 refs and commits, 6 trees and 3 blobs.
//! - **Writing the commit**: `POST git/trees` with `base_tree` and the edited overlay's
//!   `content` inline (one call makes the blob and the new root tree), then `POST git/commits`
//!   with `message`, `tree` and `parents` = the base tip, and **no** `author`, `committer` or
//!   `signature`. GitHub signs a commit made through the API with a GitHub App's installation
//!   token only then ("Signature verification for bots" in
//!   <https://docs.github.com/en/authentication/managing-commit-signature-verification/about-commit-signature-verification>:
//!   the request must be authenticated as the App and contain no custom author, committer or
//!   signature information); the commit's author is then the App's bot account, and the commit
//!   shows as verified. The DCO sign-off line still names `GIT_AUTHOR_NAME` / `GIT_AUTHOR_EMAIL`
//!   (set them to the App's bot identity for a DCO check that compares it with the author).
//!   GraphQL's `createCommitOnBranch` signs too, but it commits on top of the branch's current
//!   head, while the branch scheme needs one commit on the *base* tip.
//! - **Moving the branch with a lease**: the REST `PATCH git/refs/heads/{branch}` has `force`
//!   but no expected old value, so a forced update would overwrite a concurrent writer. GraphQL
//!   `updateRefs` (<https://docs.github.com/en/graphql/reference/mutations#updaterefs>) takes
//!   `beforeOid` (the ref must point there, all zeros: must not exist), `afterOid` (all zeros:
//!   delete) and `force`, atomically: that is `git push --force-with-lease`. A new branch is
//!   made with `POST git/refs`, which fails with 422 when the ref already exists: the same lease
//!   (must not exist) without the extra call for the repository's node id that `updateRefs`
//!   needs. When `updateRefs` fails, the ref is read again: moved away from the lease means a
//!   lost race (a new attempt, as for a rejected push), anything else a refusal.
//!
//! REST reference: <https://docs.github.com/en/rest/git/refs>, `/git/commits`, `/git/trees`,
//! `/git/blobs` (API version 2022-11-28).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use kustomize_set_image::{self as kustomize, PreflightError};
use reqwest::{Method, StatusCode};
use serde::Deserialize;
use serde_json::json;

use super::github::{GithubClient, GithubError};
use super::sparse::repo_relative;

/// The all-zero object id: "must not exist" as a lease, "delete" as a new value.
pub const ZERO_OID: &str = "0000000000000000000000000000000000000000";

/// Files materialized for the preflight stop after this many (as [`super::sparse`]'s bound).
const MAX_MATERIALIZE: usize = 64;

/// The names kustomize reads for a kustomization file, in its order.
const KUSTOMIZATION_FILES: [&str; 3] = ["kustomization.yaml", "kustomization.yml", "Kustomization"];

/// Why a Git Database step failed.
#[derive(Debug, thiserror::Error)]
pub enum GitDataError {
    #[error(transparent)]
    Github(#[from] GithubError),
    /// The ref moved since it was read (the lease did not hold).
    #[error("{0}")]
    Raced(String),
    #[error("{0}")]
    Io(String),
}

/// A commit as the Git Database API returns it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Commit {
    pub sha: String,
    pub tree: String,
    pub message: String,
}

/// One entry of a tree listing.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct TreeEntry {
    pub path: String,
    pub mode: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub sha: String,
}

#[derive(Deserialize)]
struct RefJson {
    object: ShaJson,
}

#[derive(Deserialize)]
struct ShaJson {
    sha: String,
}

#[derive(Deserialize)]
struct CommitJson {
    sha: String,
    tree: ShaJson,
    #[serde(default)]
    message: String,
    #[serde(default)]
    verification: Option<VerificationJson>,
}

#[derive(Deserialize)]
struct VerificationJson {
    verified: bool,
    #[serde(default)]
    reason: String,
}

#[derive(Deserialize)]
struct TreeJson {
    sha: String,
    #[serde(default)]
    tree: Vec<TreeEntry>,
    #[serde(default)]
    truncated: bool,
}

#[derive(Deserialize)]
struct BlobJson {
    content: String,
    #[serde(default)]
    encoding: String,
}

fn decode<T: serde::de::DeserializeOwned>(op: &'static str, text: &str) -> Result<T, GithubError> {
    serde_json::from_str(text).map_err(|e| GithubError::Decode {
        op,
        detail: e.to_string(),
    })
}

/// `refs/heads/<branch>` as path segments (`git/ref/heads/a/b`).
fn ref_tail<'a>(prefix: &[&'a str], branch: &'a str) -> Vec<&'a str> {
    prefix.iter().copied().chain(branch.split('/')).collect()
}

/// The sha `refs/heads/<branch>` points at, `None` when the branch does not exist.
pub async fn branch_head(gh: &GithubClient, branch: &str) -> Result<Option<String>, GithubError> {
    const OP: &str = "read a branch";
    match gh
        .rest(
            OP,
            Method::GET,
            &ref_tail(&["git", "ref", "heads"], branch),
            None,
        )
        .await
    {
        Ok(text) => Ok(Some(decode::<RefJson>(OP, &text)?.object.sha)),
        Err(e) if e.status() == Some(StatusCode::NOT_FOUND) => Ok(None),
        Err(e) => Err(e),
    }
}

/// The commit `sha`: its tree and message.
pub async fn commit(gh: &GithubClient, sha: &str) -> Result<Commit, GithubError> {
    const OP: &str = "read a commit";
    let text = gh
        .rest(OP, Method::GET, &["git", "commits", sha], None)
        .await?;
    let c: CommitJson = decode(OP, &text)?;
    Ok(Commit {
        sha: c.sha,
        tree: c.tree.sha,
        message: c.message,
    })
}

/// Makes the tree `base_tree` with `path` (mode `mode`) holding `content`; returns its sha.
pub async fn tree_with_file(
    gh: &GithubClient,
    base_tree: &str,
    path: &str,
    mode: &str,
    content: &str,
) -> Result<String, GithubError> {
    const OP: &str = "create a tree";
    let body = json!({
        "base_tree": base_tree,
        "tree": [{ "path": path, "mode": mode, "type": "blob", "content": content }],
    });
    let text = gh
        .rest(OP, Method::POST, &["git", "trees"], Some(&body))
        .await?;
    Ok(decode::<TreeJson>(OP, &text)?.sha)
}

/// Makes a commit of `tree` on `parent`, with no author or committer so that GitHub signs it
/// when the token is a GitHub App's (see the module docs); returns its sha.
pub async fn create_commit(
    gh: &GithubClient,
    message: &str,
    tree: &str,
    parent: &str,
) -> Result<String, GithubError> {
    const OP: &str = "create a commit";
    let body = json!({ "message": message, "tree": tree, "parents": [parent] });
    let text = gh
        .rest(OP, Method::POST, &["git", "commits"], Some(&body))
        .await?;
    let c: CommitJson = decode(OP, &text)?;
    match &c.verification {
        Some(v) => {
            tracing::info!(commit = %c.sha, verified = v.verified, reason = %v.reason, "commit created through the GitHub API")
        }
        None => tracing::info!(commit = %c.sha, "commit created through the GitHub API"),
    }
    Ok(c.sha)
}

/// Points `refs/heads/<branch>` at `new` (all zeros: deletes it) if it still points at `lease`
/// (all zeros: if it does not exist). [`GitDataError::Raced`] when it moved.
pub async fn move_branch(
    gh: &GithubClient,
    branch: &str,
    lease: &str,
    new: &str,
) -> Result<(), GitDataError> {
    let name = format!("refs/heads/{branch}");
    if lease == ZERO_OID {
        const OP: &str = "create a branch";
        let body = json!({ "ref": name, "sha": new });
        return match gh
            .rest(OP, Method::POST, &["git", "refs"], Some(&body))
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if e.status() == Some(StatusCode::UNPROCESSABLE_ENTITY) => {
                match branch_head(gh, branch).await? {
                    // A repeated request whose first try had in fact succeeded.
                    Some(now) if now == new => Ok(()),
                    Some(now) => Err(GitDataError::Raced(format!(
                        "{branch} was created meanwhile (now {now}): {e}"
                    ))),
                    None => Err(e.into()),
                }
            }
            Err(e) => Err(e.into()),
        };
    }
    const REPO: &str = "read the repository id";
    #[derive(Deserialize)]
    struct RepoJson {
        node_id: String,
    }
    let text = gh.rest(REPO, Method::GET, &[], None).await?;
    let repository_id = decode::<RepoJson>(REPO, &text)?.node_id;
    const QUERY: &str =
        "mutation($input: UpdateRefsInput!) { updateRefs(input: $input) { clientMutationId } }";
    let variables = json!({ "input": {
        "repositoryId": repository_id,
        "refUpdates": [{ "name": name, "beforeOid": lease, "afterOid": new, "force": true }],
    }});
    match gh.graphql("update a branch", QUERY, variables).await {
        Ok(_) => Ok(()),
        Err(e @ GithubError::GraphQl { .. }) => {
            let now = branch_head(gh, branch).await?;
            let now = now.as_deref().unwrap_or(ZERO_OID);
            if now == new {
                Ok(()) // a repeated request whose first try had in fact succeeded
            } else if now != lease {
                Err(GitDataError::Raced(format!(
                    "{branch} moved from {lease} to {now} meanwhile: {e}"
                )))
            } else {
                Err(e.into())
            }
        }
        Err(e) => Err(e.into()),
    }
}

/// The shas named in the `Orchestrator-Record`-style `key` trailers of `message` (its last
/// paragraph, as git reads trailers).
pub fn trailer_values<'a>(message: &'a str, key: &'a str) -> impl Iterator<Item = &'a str> + 'a {
    let trimmed = message.trim_end();
    let last = trimmed.rsplit("\n\n").next().unwrap_or(trimmed);
    last.lines().filter_map(move |line| {
        let (k, v) = line.split_once(':')?;
        (k.trim() == key).then(|| v.trim())
    })
}

/// The base branch's tip as read for one attempt: its commit, and the directories and files read
/// so far, written under a local directory for the edit and the preflight.
#[derive(Debug)]
pub struct Snapshot<'a> {
    gh: &'a GithubClient,
    pub commit: Commit,
    /// Tree listings by directory (`""`: the root).
    trees: HashMap<String, Vec<TreeEntry>>,
    /// Where files are written, at their paths in the repository.
    root: PathBuf,
    /// Files written so far (repository paths).
    pub files: Vec<String>,
}

impl<'a> Snapshot<'a> {
    /// Reads the tip of `branch` (2 calls); files go under `root`.
    pub async fn read(
        gh: &'a GithubClient,
        branch: &str,
        root: &Path,
    ) -> Result<Snapshot<'a>, GitDataError> {
        let sha = branch_head(gh, branch)
            .await?
            .ok_or_else(|| GitDataError::Io(format!("the base branch {branch} does not exist")))?;
        let commit = commit(gh, &sha).await?;
        Ok(Snapshot {
            gh,
            commit,
            trees: HashMap::new(),
            root: root.to_owned(),
            files: Vec::new(),
        })
    }

    /// The listing of directory `dir` (`/`-separated, `""` for the root), each directory on the
    /// way read once; `None` when there is no such directory.
    async fn listing(&mut self, dir: &str) -> Result<Option<&Vec<TreeEntry>>, GitDataError> {
        let mut current = String::new();
        let mut sha = self.commit.tree.clone();
        let parts: Vec<&str> = dir.split('/').filter(|p| !p.is_empty()).collect();
        for i in 0..=parts.len() {
            if !self.trees.contains_key(&current) {
                let entries = self.read_tree(&current, &sha).await?;
                self.trees.insert(current.clone(), entries);
            }
            let Some(part) = parts.get(i) else { break };
            let entries = &self.trees[&current];
            match entries.iter().find(|e| e.path == *part && e.kind == "tree") {
                Some(e) => sha.clone_from(&e.sha),
                None => return Ok(None),
            }
            if !current.is_empty() {
                current.push('/');
            }
            current.push_str(part);
        }
        Ok(self.trees.get(&current))
    }

    async fn read_tree(&self, dir: &str, sha: &str) -> Result<Vec<TreeEntry>, GitDataError> {
        const OP: &str = "read a tree";
        let text = self
            .gh
            .rest(OP, Method::GET, &["git", "trees", sha], None)
            .await?;
        let tree: TreeJson = decode(OP, &text)?;
        if tree.truncated {
            return Err(GitDataError::Io(format!(
                "GitHub truncated the listing of {dir}/: too many entries"
            )));
        }
        Ok(tree.tree)
    }

    /// The entry at `path` in the base tip, `None` when there is none.
    pub async fn entry(&mut self, path: &str) -> Result<Option<TreeEntry>, GitDataError> {
        let (dir, name) = path.rsplit_once('/').unwrap_or(("", path));
        Ok(self
            .listing(dir)
            .await?
            .and_then(|entries| entries.iter().find(|e| e.path == name).cloned()))
    }

    /// Fetches the blob of `entry` (a regular file at `path`) and writes it under the root.
    pub async fn write_file(&mut self, path: &str, entry: &TreeEntry) -> Result<(), GitDataError> {
        const OP: &str = "read a blob";
        let text = self
            .gh
            .rest(OP, Method::GET, &["git", "blobs", &entry.sha], None)
            .await?;
        let blob: BlobJson = decode(OP, &text)?;
        if blob.encoding != "base64" {
            return Err(GitDataError::Io(format!(
                "{path}: unexpected blob encoding {:?}",
                blob.encoding
            )));
        }
        let compact: String = blob
            .content
            .chars()
            .filter(|c| !c.is_whitespace())
            .collect();
        let bytes = STANDARD
            .decode(compact)
            .map_err(|e| GitDataError::Io(format!("{path}: blob is not base64: {e}")))?;
        let full = self.root.join(path);
        if let Some(parent) = full.parent() {
            std::fs::create_dir_all(parent).map_err(|e| {
                GitDataError::Io(format!("cannot create {}: {e}", parent.display()))
            })?;
        }
        std::fs::write(&full, bytes)
            .map_err(|e| GitDataError::Io(format!("cannot write {}: {e}", full.display())))?;
        self.files.push(path.to_owned());
        Ok(())
    }

    /// Fetches what the preflight of `overlay_file` (under the root) for `image` reads, one path
    /// at a time, until it no longer stops on a path that is in the base tip but not on disk: a
    /// file is fetched; a directory is created with its kustomization file. Any other preflight
    /// result is left for the caller's own preflight to report.
    pub async fn materialize_for_preflight(
        &mut self,
        overlay_file: &Path,
        image: &str,
    ) -> Result<(), GitDataError> {
        for _ in 0..MAX_MATERIALIZE {
            let Err(PreflightError::Io { path, .. }) = kustomize::preflight(overlay_file, image)
            else {
                break;
            };
            // A directory already on disk (made for a file inside it) may still lack its
            // kustomization; any other path on disk is present but unreadable.
            let dir_on_disk = path.is_dir();
            if path.exists() && !dir_on_disk {
                break;
            }
            let Some(rel) = repo_relative(&self.root, &path) else {
                break; // outside the repository
            };
            if dir_on_disk
                && KUSTOMIZATION_FILES
                    .iter()
                    .any(|name| self.files.contains(&format!("{rel}/{name}")))
            {
                break; // fetched already: the preflight reports what is wrong with it
            }
            let Some(entry) = self.entry(&rel).await? else {
                break; // not in the commit either: the preflight names it
            };
            match (entry.kind.as_str(), entry.mode.as_str()) {
                ("blob", "100644" | "100755") => self.write_file(&rel, &entry).await?,
                ("tree", _) => {
                    let dir = self.root.join(&rel);
                    std::fs::create_dir_all(&dir).map_err(|e| {
                        GitDataError::Io(format!("cannot create {}: {e}", dir.display()))
                    })?;
                    let listing = self.listing(&rel).await?.cloned().unwrap_or_default();
                    let kustomization = KUSTOMIZATION_FILES.iter().find_map(|name| {
                        listing.iter().find(|e| e.path == *name && e.kind == "blob")
                    });
                    match kustomization {
                        Some(k) => {
                            let path = format!("{rel}/{}", k.path);
                            self.write_file(&path, k).await?;
                        }
                        None if dir_on_disk => break, // none in the commit either
                        None => {}
                    }
                }
                _ => break, // a symlink or a submodule: not followed
            }
            tracing::debug!(path = %rel, "fetched for the preflight");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trailers_come_from_the_last_paragraph() {
        let m = "Title\n\nOrchestrator-Record: not-a-trailer-here\nbody\n\nOrchestrator-Record: 01\nSigned-off-by: a <b>\n";
        assert_eq!(
            trailer_values(m, "Orchestrator-Record").collect::<Vec<_>>(),
            ["01"]
        );
        assert_eq!(trailer_values("Title\n", "Orchestrator-Record").count(), 0);
    }

    #[test]
    fn branch_refs_are_split_into_segments() {
        assert_eq!(
            ref_tail(&["git", "ref", "heads"], "update-image/dev/svc"),
            ["git", "ref", "heads", "update-image", "dev", "svc"]
        );
    }
}
