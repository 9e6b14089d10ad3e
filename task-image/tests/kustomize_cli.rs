//! `gitops-task set-image <kustomization.yaml> <arg>...`: the built binary on a temp file, its
//! exit codes and messages, and the file left untouched on every error.

use std::path::Path;
use std::process::{Command, Output};

const GIVEN: &str = "\
# overlay
kind: Kustomization
images:
- name: app
  newTag: v1 # old
resources:
- deployment.yaml
";

fn run(file: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_gitops-task"))
        .arg("set-image")
        .arg(file)
        .args(args)
        .env_remove("RUST_LOG")
        .output()
        .expect("run gitops-task")
}

fn temp_file(text: &str) -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("kustomization.yaml");
    std::fs::write(&path, text).expect("write");
    (dir, path)
}

#[test]
fn sets_the_image_and_exits_zero() {
    let (_dir, path) = temp_file(GIVEN);
    let out = run(&path, &["app=ghcr.io/acme/app:1234", "zzz:1"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = std::fs::read_to_string(&path).unwrap();
    assert_eq!(
        text,
        // The tag changes in place (quoted: plain 1234 is a number), its comment kept; the new
        // field and the new entry follow the file's layout.
        "# overlay\nkind: Kustomization\nimages:\n- name: app\n  newTag: \"1234\" # old\n  newName: ghcr.io/acme/app\n- name: zzz\n  newTag: \"1\"\nresources:\n- deployment.yaml\n"
    );
    // Again: nothing to change, still success, same bytes.
    let out = run(&path, &["app=ghcr.io/acme/app:1234", "zzz:1"]);
    assert!(out.status.success());
    assert_eq!(std::fs::read_to_string(&path).unwrap(), text);
}

fn assert_fails_untouched(given: &str, args: &[&str], message: &str) {
    let (_dir, path) = temp_file(given);
    let out = run(&path, args);
    assert_eq!(out.status.code(), Some(1), "args {args:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.starts_with(&format!("Error: {message}")),
        "args {args:?}: stderr {stderr:?}"
    );
    assert_eq!(
        std::fs::read_to_string(&path).unwrap(),
        given,
        "file changed"
    );
}

#[test]
fn no_arguments() {
    assert_fails_untouched(GIVEN, &[], "no image specified");
}

#[test]
fn invalid_argument() {
    assert_fails_untouched(
        GIVEN,
        &["good:1", "nginx"],
        "invalid format of image, use one of the following options:\n- <image>=<newimage>:<newtag>",
    );
}

#[test]
fn unquoted_numeric_tag_in_the_file() {
    assert_fails_untouched(
        "images:\n- name: a\n  newTag: 1234\n",
        &["a:1"],
        "invalid Kustomization: json: cannot unmarshal number into Go struct field Image.images.newTag of type string",
    );
}

#[test]
fn yaml_syntax_error() {
    assert_fails_untouched(
        "kind: Kustomization\nimages: [\n",
        &["a:1"],
        "invalid Kustomization: error converting YAML to JSON: yaml: line 2: did not find expected node content",
    );
}

#[test]
fn unknown_field() {
    assert_fails_untouched(
        "kind: Kustomization\nimagess: []\n",
        &["a:1"],
        "invalid Kustomization: json: unknown field \"imagess\"",
    );
}

#[test]
fn missing_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = run(&dir.path().join("kustomization.yaml"), &["a:1"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).starts_with("Error: cannot read"));
    assert!(!dir.path().join("kustomization.yaml").exists());
}
