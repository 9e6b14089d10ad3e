//! A GitHub Git Database API mock backed by a real bare repository: the no-clone mode's tests
//! run against it. Reads answer from the repository with the git CLI (`rev-parse`, `cat-file`,
//! `ls-tree`); writes create real objects (`hash-object -w`, a temporary index with `read-tree`,
//! `update-index` and `write-tree`, `commit-tree`) and move refs with `git update-ref <ref> <new>
//! <old>`, so a lease that does not hold fails in git itself. The shapes follow GitHub's REST and
//! GraphQL documentation (see `README.md` beside this file); only the fields the task reads are
//! answered.
//!
//! Commits made without `author` / `committer` / `signature` get the App's bot identity, as
//! GitHub gives them, and `verification.verified: true`, which is GitHub's documented rule for
//! an App installation token; any of those fields makes the commit unverified.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};
use wiremock::matchers::{method, path, path_regex};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

/// The identity GitHub gives commits made through the API with an App installation token.
pub const BOT_NAME: &str = "gitops-app[bot]";
pub const BOT_EMAIL: &str = "41898282+gitops-app[bot]@users.noreply.github.com";
pub const REPO_NODE_ID: &str = "R_kgDOmock";
const ZERO: &str = "0000000000000000000000000000000000000000";

/// Serves `/repos/acme/gitops/git/*`, `/repos/acme/gitops` and `/graphql` from `bare`.
#[derive(Debug, Clone)]
pub struct GitDatabase {
    pub bare: PathBuf,
}

/// Mounts the Git Database mock for `bare` on `server` (beside the pull request mocks).
pub async fn mount(server: &MockServer, bare: &Path) {
    let db = GitDatabase {
        bare: bare.to_owned(),
    };
    Mock::given(path_regex(r"^/repos/acme/gitops/git/"))
        .respond_with(db.clone())
        .mount(server)
        .await;
    Mock::given(method("GET"))
        .and(path("/repos/acme/gitops"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({ "node_id": REPO_NODE_ID, "full_name": "acme/gitops" })),
        )
        .mount(server)
        .await;
    Mock::given(method("POST"))
        .and(path("/graphql"))
        .respond_with(db)
        .mount(server)
        .await;
}

fn not_found() -> ResponseTemplate {
    ResponseTemplate::new(404).set_body_json(json!({
        "message": "Not Found",
        "documentation_url": "https://docs.github.com/rest",
        "status": "404"
    }))
}

fn unprocessable(message: &str) -> ResponseTemplate {
    ResponseTemplate::new(422).set_body_json(json!({ "message": message, "status": "422" }))
}

impl GitDatabase {
    fn git(&self, args: &[&str], env: &[(&str, &str)], input: Option<&[u8]>) -> Option<Vec<u8>> {
        let mut cmd = Command::new("git");
        cmd.args(args)
            .current_dir(&self.bare)
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .envs(env.iter().copied())
            .stdin(if input.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("git runs");
        if let Some(input) = input {
            use std::io::Write;
            child.stdin.take().unwrap().write_all(input).unwrap();
        }
        let out = child.wait_with_output().unwrap();
        out.status.success().then_some(out.stdout)
    }

    fn text(&self, args: &[&str]) -> Option<String> {
        self.git(args, &[], None)
            .map(|o| String::from_utf8_lossy(&o).trim_end().to_owned())
    }

    fn object_type(&self, sha: &str) -> Option<String> {
        self.text(&["cat-file", "-t", sha])
    }

    fn get_ref(&self, branch: &str) -> ResponseTemplate {
        let name = format!("refs/heads/{branch}");
        match self.text(&["rev-parse", "--verify", "--quiet", &name]) {
            Some(sha) => ResponseTemplate::new(200).set_body_json(json!({
                "ref": name,
                "node_id": "REF_mock",
                "object": { "type": "commit", "sha": sha }
            })),
            None => not_found(),
        }
    }

    fn get_commit(&self, sha: &str) -> ResponseTemplate {
        if self.object_type(sha).as_deref() != Some("commit") {
            return not_found();
        }
        let raw = self.text(&["cat-file", "commit", sha]).unwrap();
        let (header, message) = raw.split_once("\n\n").unwrap_or((&raw, ""));
        let field = |k: &str| {
            header
                .lines()
                .filter_map(move |l| l.strip_prefix(k).map(str::to_owned))
                .collect::<Vec<_>>()
        };
        let tree = field("tree ").remove(0);
        let parents: Vec<Value> = field("parent ")
            .into_iter()
            .map(|p| json!({ "sha": p }))
            .collect();
        ResponseTemplate::new(200).set_body_json(json!({
            "sha": sha,
            "tree": { "sha": tree },
            "parents": parents,
            // `text` trimmed the commit's final newline.
            "message": format!("{message}\n"),
        }))
    }

    fn get_tree(&self, sha: &str) -> ResponseTemplate {
        if self.object_type(sha).as_deref() != Some("tree") {
            return not_found();
        }
        let listing = self.text(&["ls-tree", sha]).unwrap();
        let tree: Vec<Value> = listing
            .lines()
            .filter_map(|line| {
                let (meta, path) = line.split_once('\t')?;
                let mut parts = meta.split(' ');
                let (mode, kind, sha) = (parts.next()?, parts.next()?, parts.next()?);
                Some(json!({ "path": path, "mode": mode, "type": kind, "sha": sha }))
            })
            .collect();
        ResponseTemplate::new(200).set_body_json(json!({
            "sha": sha,
            "tree": tree,
            "truncated": false
        }))
    }

    fn get_blob(&self, sha: &str) -> ResponseTemplate {
        if self.object_type(sha).as_deref() != Some("blob") {
            return not_found();
        }
        let bytes = self.git(&["cat-file", "blob", sha], &[], None).unwrap();
        // GitHub wraps the base64 text in lines of 60 characters.
        let encoded = STANDARD.encode(&bytes);
        let wrapped: Vec<String> = encoded
            .as_bytes()
            .chunks(60)
            .map(|c| String::from_utf8_lossy(c).into_owned())
            .collect();
        ResponseTemplate::new(200).set_body_json(json!({
            "sha": sha,
            "size": bytes.len(),
            "encoding": "base64",
            "content": wrapped.join("\n") + "\n",
        }))
    }

    fn create_tree(&self, body: &Value) -> ResponseTemplate {
        let index = tempfile::NamedTempFile::new().unwrap();
        let index_path = index.path().display().to_string();
        let env = [("GIT_INDEX_FILE", index_path.as_str())];
        std::fs::remove_file(index.path()).ok();
        if let Some(base) = body["base_tree"].as_str()
            && self.git(&["read-tree", base], &env, None).is_none()
        {
            return unprocessable("base_tree is not a valid tree");
        }
        for entry in body["tree"].as_array().cloned().unwrap_or_default() {
            let (Some(path), Some(mode)) = (entry["path"].as_str(), entry["mode"].as_str()) else {
                return unprocessable("tree entries need a path and a mode");
            };
            let sha = match (entry["content"].as_str(), entry["sha"].as_str()) {
                (Some(content), None) => self
                    .text_with_input(&["hash-object", "-w", "--stdin"], content.as_bytes())
                    .unwrap(),
                (None, Some(sha)) => sha.to_owned(),
                _ => return unprocessable("use either content or sha"),
            };
            let info = format!("{mode},{sha},{path}");
            if self
                .git(&["update-index", "--add", "--cacheinfo", &info], &env, None)
                .is_none()
            {
                return unprocessable("tree entry is not valid");
            }
        }
        let sha = String::from_utf8(self.git(&["write-tree"], &env, None).unwrap())
            .unwrap()
            .trim()
            .to_owned();
        ResponseTemplate::new(201)
            .set_body_json(json!({ "sha": sha, "tree": [], "truncated": false }))
    }

    fn text_with_input(&self, args: &[&str], input: &[u8]) -> Option<String> {
        self.git(args, &[], Some(input))
            .map(|o| String::from_utf8_lossy(&o).trim().to_owned())
    }

    fn create_commit(&self, body: &Value) -> ResponseTemplate {
        let (Some(message), Some(tree)) = (body["message"].as_str(), body["tree"].as_str()) else {
            return unprocessable("message and tree are required");
        };
        let custom = ["author", "committer", "signature"]
            .iter()
            .any(|k| !body[*k].is_null());
        let person = |k: &str, field: &str, default: &str| {
            body[k][field]
                .as_str()
                .map_or_else(|| default.to_owned(), str::to_owned)
        };
        let (an, ae) = (
            person("author", "name", BOT_NAME),
            person("author", "email", BOT_EMAIL),
        );
        let (cn, ce) = (
            person("committer", "name", &an),
            person("committer", "email", &ae),
        );
        let mut args = vec!["commit-tree".to_owned(), tree.to_owned()];
        for p in body["parents"].as_array().cloned().unwrap_or_default() {
            args.push("-p".to_owned());
            args.push(p.as_str().unwrap_or_default().to_owned());
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let env = [
            ("GIT_AUTHOR_NAME", an.as_str()),
            ("GIT_AUTHOR_EMAIL", ae.as_str()),
            ("GIT_COMMITTER_NAME", cn.as_str()),
            ("GIT_COMMITTER_EMAIL", ce.as_str()),
        ];
        let Some(out) = self.git(&args, &env, Some(message.as_bytes())) else {
            return unprocessable("tree or parents are not valid");
        };
        let sha = String::from_utf8_lossy(&out).trim().to_owned();
        ResponseTemplate::new(201).set_body_json(json!({
            "sha": sha,
            "tree": { "sha": tree },
            "message": message,
            "verification": {
                "verified": !custom,
                "reason": if custom { "unsigned" } else { "valid" },
            },
        }))
    }

    /// `git update-ref` with the lease: `old` all zeros means "must not exist", `new` all zeros
    /// deletes.
    fn update_ref(&self, name: &str, old: &str, new: &str) -> bool {
        if new == ZERO {
            self.git(&["update-ref", "-d", name, old], &[], None)
                .is_some()
        } else {
            self.git(&["update-ref", name, new, old], &[], None)
                .is_some()
        }
    }

    fn create_ref(&self, body: &Value) -> ResponseTemplate {
        let (Some(name), Some(sha)) = (body["ref"].as_str(), body["sha"].as_str()) else {
            return unprocessable("ref and sha are required");
        };
        if !name.starts_with("refs/") || name.matches('/').count() < 2 {
            return unprocessable("Reference name is not valid");
        }
        if self.object_type(sha).is_none() {
            return unprocessable("Object does not exist");
        }
        if self.update_ref(name, ZERO, sha) {
            ResponseTemplate::new(201)
                .set_body_json(json!({ "ref": name, "object": { "type": "commit", "sha": sha } }))
        } else {
            unprocessable("Reference already exists")
        }
    }

    fn graphql(&self, body: &Value) -> ResponseTemplate {
        let query = body["query"].as_str().unwrap_or_default();
        if !query.contains("updateRefs(") {
            return ResponseTemplate::new(200).set_body_json(
                json!({ "errors": [{ "message": "the mock answers updateRefs only" }] }),
            );
        }
        let input = &body["variables"]["input"];
        if input["repositoryId"] != REPO_NODE_ID {
            return ResponseTemplate::new(200).set_body_json(json!({
                "data": { "updateRefs": null },
                "errors": [{ "type": "NOT_FOUND", "message": "Could not resolve to a node with the global id" }]
            }));
        }
        let updates = input["refUpdates"].as_array().cloned().unwrap_or_default();
        // One transaction: all or nothing, as GitHub documents.
        let mut script = String::from("start\n");
        for u in &updates {
            let name = u["name"].as_str().unwrap_or_default();
            let after = u["afterOid"].as_str().unwrap_or_default();
            let before = u["beforeOid"].as_str().unwrap_or(ZERO);
            if after == ZERO {
                script.push_str(&format!("delete {name} {before}\n"));
            } else {
                script.push_str(&format!("update {name} {after} {before}\n"));
            }
        }
        script.push_str("prepare\ncommit\n");
        let ok = self
            .git(&["update-ref", "--stdin"], &[], Some(script.as_bytes()))
            .is_some();
        if ok {
            ResponseTemplate::new(200)
                .set_body_json(json!({ "data": { "updateRefs": { "clientMutationId": null } } }))
        } else {
            ResponseTemplate::new(200).set_body_json(json!({
                "data": { "updateRefs": null },
                "errors": [{ "message": "A ref was not updated: its current value is not beforeOid" }]
            }))
        }
    }
}

impl Respond for GitDatabase {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let body: Value = serde_json::from_slice(&request.body).unwrap_or(Value::Null);
        let path = request.url.path();
        if path == "/graphql" {
            return self.graphql(&body);
        }
        let Some(rest) = path.strip_prefix("/repos/acme/gitops/git/") else {
            return not_found();
        };
        let method = request.method.as_str();
        let (kind, arg) = rest.split_once('/').unwrap_or((rest, ""));
        match (method, kind) {
            ("GET", "ref") => match arg.strip_prefix("heads/") {
                Some(branch) => self.get_ref(branch),
                None => not_found(),
            },
            ("GET", "commits") => self.get_commit(arg),
            ("GET", "trees") => self.get_tree(arg),
            ("GET", "blobs") => self.get_blob(arg),
            ("POST", "trees") if arg.is_empty() => self.create_tree(&body),
            ("POST", "commits") if arg.is_empty() => self.create_commit(&body),
            ("POST", "refs") if arg.is_empty() => self.create_ref(&body),
            _ => not_found(),
        }
    }
}
