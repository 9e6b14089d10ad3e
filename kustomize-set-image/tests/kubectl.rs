//! End to end with the real kustomize: edit an overlay with `set_image_file`, render it with
//! `kubectl kustomize` (kustomize v5), and check the image Kubernetes would run is exactly the
//! one asked for, for the main container and an init container.
//!
//! Requires `kubectl` under `REQUIRE_KUBECTL=1` (scripts/test.sh); otherwise skipped without it,
//! and the skip is listed (see `tools`).

#[path = "../../tests/support/tools.rs"]
mod tools;

use std::path::Path;

use kustomize_set_image::set_image_file;

const SHA: &str = "8f59df978e3fa133a2ee39ff66b3382342ce958c";
const DIGEST: &str = "sha256:24a0c4b4a4c0eb97a1aabb8e29f18e917d05abfe1b7a7c07857230879ce7d3d3";

const DEPLOYMENT: &str = "\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: svc
spec:
  selector:
    matchLabels:
      app: svc
  template:
    metadata:
      labels:
        app: svc
    spec:
      initContainers:
      - name: migrate
        image: ghcr.io/acme/svc:0.9.0
        args: [migrate]
      containers:
      - name: svc
        image: ghcr.io/acme/svc:0.9.0
      - name: proxy
        image: envoyproxy/envoy:v1.30.1
";

const OVERLAY: &str = "\
# production overlay
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources:
- ../../base   # the shared base
namePrefix: prod-
";

fn write(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
    std::fs::write(path, text).expect("write");
}

/// A gitops tree: `base/` with the Deployment, `overlays/prod/` on top of it.
fn tree() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    write(&dir.path().join("base/deployment.yaml"), DEPLOYMENT);
    write(
        &dir.path().join("base/kustomization.yaml"),
        "resources:\n- deployment.yaml\n",
    );
    write(
        &dir.path().join("overlays/prod/kustomization.yaml"),
        OVERLAY,
    );
    dir
}

/// `(init container images, container images)` of the rendered Deployment.
fn rendered_images(overlay: &Path) -> (Vec<String>, Vec<String>) {
    let text = tools::kustomize_build(overlay).unwrap_or_else(|e| panic!("{e}"));
    let doc: yaml_serde::Value = yaml_serde::from_str(&text).expect("one rendered document");
    assert_eq!(doc["kind"].as_str(), Some("Deployment"));
    let images = |key: &str| -> Vec<String> {
        doc["spec"]["template"]["spec"][key]
            .as_sequence()
            .expect("a container list")
            .iter()
            .map(|c| c["image"].as_str().expect("image string").to_owned())
            .collect()
    };
    (images("initContainers"), images("containers"))
}

fn edit_and_render(test: &str, args: &[&str]) -> Option<(Vec<String>, Vec<String>, String)> {
    if !tools::kubectl(test) {
        return None;
    }
    let dir = tree();
    let overlay = dir.path().join("overlays/prod");
    let file = overlay.join("kustomization.yaml");
    let args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
    let edited = set_image_file(&file, &args).expect("set image");
    assert!(edited.changed);
    let (init, containers) = rendered_images(&overlay);
    let text = std::fs::read_to_string(&file).expect("read overlay");
    Some((init, containers, text))
}

#[test]
fn commit_sha_tag_reaches_the_rendered_deployment() {
    let Some((init, containers, text)) = edit_and_render(
        "commit_sha_tag_reaches_the_rendered_deployment",
        &[&format!("ghcr.io/acme/svc=ghcr.io/acme/svc:{SHA}")],
    ) else {
        return;
    };
    let expected = format!("ghcr.io/acme/svc:{SHA}");
    assert_eq!(init, vec![expected.clone()]);
    assert_eq!(
        containers,
        vec![expected, "envoyproxy/envoy:v1.30.1".to_owned()]
    );
    // The overlay's comments are still there.
    assert!(text.starts_with("# production overlay\n"), "{text}");
    assert!(
        text.contains("- ../../base   # the shared base\n"),
        "{text}"
    );
}

#[test]
fn all_digit_tag_is_quoted_so_kustomize_reads_a_string() {
    let Some((init, containers, text)) = edit_and_render(
        "all_digit_tag_is_quoted_so_kustomize_reads_a_string",
        &["ghcr.io/acme/svc:1234"],
    ) else {
        return;
    };
    assert!(text.contains("newTag: \"1234\""), "{text}");
    assert_eq!(init, vec!["ghcr.io/acme/svc:1234".to_owned()]);
    assert_eq!(containers[0], "ghcr.io/acme/svc:1234");
}

#[test]
fn yaml_1_1_lookalike_tags_survive_kustomize() {
    for tag in ["1.10", "yes", "1e3", "0x1F", "2024-06-01"] {
        let Some((_, containers, _)) = edit_and_render(
            "yaml_1_1_lookalike_tags_survive_kustomize",
            &[&format!("ghcr.io/acme/svc:{tag}")],
        ) else {
            return;
        };
        assert_eq!(
            containers[0],
            format!("ghcr.io/acme/svc:{tag}"),
            "tag {tag}"
        );
    }
}

#[test]
fn digest_pins_the_image() {
    let Some((init, containers, _)) = edit_and_render(
        "digest_pins_the_image",
        &[&format!("ghcr.io/acme/svc=ghcr.io/acme/svc@{DIGEST}")],
    ) else {
        return;
    };
    let expected = format!("ghcr.io/acme/svc@{DIGEST}");
    assert_eq!(init, vec![expected.clone()]);
    assert_eq!(containers[0], expected);
}

#[test]
fn tag_and_digest_together() {
    let Some((_, containers, _)) = edit_and_render(
        "tag_and_digest_together",
        &[&format!("ghcr.io/acme/svc:{SHA}@{DIGEST}")],
    ) else {
        return;
    };
    assert_eq!(containers[0], format!("ghcr.io/acme/svc:{SHA}@{DIGEST}"));
}

/// Every image of the rendered Deployment, init containers first (the render's order).
fn all_rendered(overlay: &Path) -> Vec<String> {
    let (mut init, containers) = rendered_images(overlay);
    init.extend(containers);
    init
}

/// The images the crate says the built overlay runs, sorted (the render's order is kustomize's).
fn crate_rendered(overlay: &Path) -> Vec<String> {
    let mut v: Vec<String> = kustomize_set_image::rendered_images(overlay)
        .expect("rendered images")
        .into_iter()
        .map(|r| r.rendered)
        .collect();
    v.sort();
    v
}

/// `rendered_images` (the dry run's before and after) says what `kubectl kustomize` renders:
/// with a base that retargets an image itself, an overlay entry with `newName` listed after
/// another entry, before and after an edit.
#[test]
fn rendered_images_agree_with_kubectl_kustomize_before_and_after_an_edit() {
    if !tools::kubectl("rendered_images_agree_with_kubectl_kustomize_before_and_after_an_edit") {
        return;
    }
    let dir = tree();
    write(
        &dir.path().join("base/kustomization.yaml"),
        "resources:\n- deployment.yaml\nimages:\n- name: envoyproxy/envoy\n  newTag: v1.31.0\n",
    );
    write(
        &dir.path().join("overlays/prod/kustomization.yaml"),
        "resources:\n- ../../base\nimages:\n- name: envoyproxy/envoy\n  newName: mirror.example/envoy\n- name: ghcr.io/acme/svc\n  newName: 1234.dkr.ecr.eu-west-1.amazonaws.com/svc\n  newTag: 0.9.1\n",
    );
    let overlay = dir.path().join("overlays/prod");
    let mut kubectl = all_rendered(&overlay);
    kubectl.sort();
    assert_eq!(crate_rendered(&overlay), kubectl, "before the edit");
    assert!(
        kubectl.contains(&"mirror.example/envoy:v1.31.0".to_owned()),
        "{kubectl:?}"
    );

    let edited = set_image_file(
        &overlay.join("kustomization.yaml"),
        &[format!("ghcr.io/acme/svc=*:{SHA}")],
    )
    .expect("set image");
    assert!(edited.changed);
    let mut kubectl = all_rendered(&overlay);
    kubectl.sort();
    assert_eq!(crate_rendered(&overlay), kubectl, "after the edit");
    assert!(
        kubectl.contains(&format!("1234.dkr.ecr.eu-west-1.amazonaws.com/svc:{SHA}")),
        "{kubectl:?}"
    );
}
