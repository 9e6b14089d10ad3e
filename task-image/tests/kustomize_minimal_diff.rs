//! The edit a reviewer sees: on a realistic overlay (comments, entries in their own order, a list
//! indented under its key, a quoted tag with a trailing comment), bumping one image changes one
//! line, measured with `git diff --no-index`, and `kubectl kustomize` builds the new image for
//! that container and the old one for the other.

use std::path::Path;
use std::process::Command;

use gitops_task::kustomize::{set_image, set_image_file};

const SHA: &str = "8f59df978e3fa133a2ee39ff66b3382342ce958c";

const OVERLAY: &str = "\
# Production overlay of shop-api.
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
namespace: shop-prod

resources:
  - ../../base   # shared base

images:
  # the app image, bumped by CI
  - name: registry.acme.io/acme/shop-api
    newTag: \"1111111\"   # keep quoted

  # sidecar, bumped by hand
  - name: envoyproxy/envoy
    newTag: v1.31.0

replicas:
  - name: shop-api
    count: 3
";

const DEPLOYMENT: &str = "\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: shop-api
spec:
  selector:
    matchLabels:
      app: shop-api
  template:
    metadata:
      labels:
        app: shop-api
    spec:
      containers:
      - name: app
        image: registry.acme.io/acme/shop-api:0.0.1
      - name: proxy
        image: envoyproxy/envoy:v1.30.0
";

fn write(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
    std::fs::write(path, text).expect("write");
}

/// `git diff --no-index` of two files: (`--numstat` line, the `-`/`+` lines of `-U0`).
fn diff(old: &Path, new: &Path) -> (String, Vec<String>) {
    let run = |extra: &str| {
        let out = Command::new("git")
            .args(["diff", "--no-index", "--no-color", extra, "--"])
            .arg(old)
            .arg(new)
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .output()
            .expect("run git diff");
        // Exit code 1 means "differs".
        assert!(out.status.code() == Some(1) || out.status.success());
        String::from_utf8(out.stdout).expect("utf-8 diff")
    };
    let numstat = run("--numstat");
    let numstat = numstat.split('\t').take(2).collect::<Vec<_>>().join("\t");
    let changed = run("-U0")
        .lines()
        .filter(|l| {
            (l.starts_with('-') || l.starts_with('+'))
                && !l.starts_with("---")
                && !l.starts_with("+++")
        })
        .map(str::to_owned)
        .collect();
    (numstat, changed)
}

/// The images `kubectl kustomize` builds for the Deployment's containers.
fn rendered_images(overlay: &Path) -> Vec<String> {
    let out = Command::new("kubectl")
        .arg("kustomize")
        .arg(overlay)
        .output()
        .expect("kubectl is required (scripts/setup.sh installs it)");
    assert!(
        out.status.success(),
        "kubectl kustomize failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let doc: yaml_serde::Value =
        yaml_serde::from_str(&String::from_utf8(out.stdout).expect("utf-8")).expect("yaml");
    doc["spec"]["template"]["spec"]["containers"]
        .as_sequence()
        .expect("containers")
        .iter()
        .map(|c| c["image"].as_str().expect("image").to_owned())
        .collect()
}

#[test]
fn bumping_one_image_of_a_realistic_overlay_changes_one_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    write(&dir.path().join("base/deployment.yaml"), DEPLOYMENT);
    write(
        &dir.path().join("base/kustomization.yaml"),
        "resources:\n- deployment.yaml\n",
    );
    let overlay = dir.path().join("overlays/prod");
    let file = overlay.join("kustomization.yaml");
    write(&file, OVERLAY);
    let before = dir.path().join("before.yaml");
    write(&before, OVERLAY);

    // What the gitops task passes: keep any newName, set the tag.
    let edited = set_image_file(&file, &[format!("registry.acme.io/acme/shop-api=*:{SHA}")])
        .expect("set image");
    assert!(edited.changed);
    assert!(edited.notes.is_empty(), "{:?}", edited.notes);

    let (numstat, changed) = diff(&before, &file);
    assert_eq!(numstat, "1\t1", "{changed:?}");
    assert_eq!(
        changed,
        vec![
            "-    newTag: \"1111111\"   # keep quoted".to_owned(),
            format!("+    newTag: \"{SHA}\"   # keep quoted"),
        ]
    );
    assert_eq!(
        rendered_images(&overlay),
        vec![
            format!("registry.acme.io/acme/shop-api:{SHA}"),
            "envoyproxy/envoy:v1.31.0".to_owned(),
        ]
    );
}

#[test]
fn a_plain_tag_that_would_read_as_a_number_is_quoted_with_a_reason() {
    let text = "images:\n- name: app\n  newTag: v1   # bumped by CI\n";
    let edited = set_image(text, &["app:1234".to_owned()]).expect("set image");
    assert_eq!(
        edited.text,
        "images:\n- name: app\n  newTag: \"1234\"   # bumped by CI\n"
    );
    assert_eq!(
        edited.notes,
        vec![
            "newTag \"1234\" is quoted: unquoted, YAML would read 1234 as a number, and \
             kustomize needs a string"
                .to_owned()
        ]
    );
    // Already quoted in the file: the style is kept, nothing had to be explained.
    let quoted = set_image(
        "images:\n- name: app\n  newTag: \"v1\"\n",
        &["app:1234".to_owned()],
    )
    .expect("set image");
    assert_eq!(quoted.text, "images:\n- name: app\n  newTag: \"1234\"\n");
    assert!(quoted.notes.is_empty(), "{:?}", quoted.notes);
    // Written in kustomize's form (a flow-style list cannot be edited in place): the same note.
    let flow = set_image(
        "images: [{name: app, newTag: v1}]\n",
        &["app:1234".to_owned()],
    )
    .expect("set image");
    assert_eq!(flow.text, "images:\n- name: app\n  newTag: \"1234\"\n");
    assert_eq!(flow.notes, edited.notes);
    // A tag that reads as a string stays plain.
    let plain = set_image(text, &["app:2024.06.1".to_owned()]).expect("set image");
    assert_eq!(
        plain.text,
        "images:\n- name: app\n  newTag: 2024.06.1   # bumped by CI\n"
    );
    assert!(plain.notes.is_empty());
}
