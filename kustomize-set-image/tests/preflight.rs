//! The preflight check on real directory trees: does the overlay's images entry match a
//! container image in what the overlay builds from?

use std::path::{Path, PathBuf};

use kustomize_set_image::{PreflightError, preflight};

fn write(root: &Path, rel: &str, text: &str) -> PathBuf {
    let path = root.join(rel);
    std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
    std::fs::write(&path, text).expect("write");
    path
}

/// A fresh directory for one test's tree.
fn tempdir() -> tempfile::TempDir {
    tempfile::tempdir().expect("tempdir")
}

/// Writes each `(path relative to root, text)`, as [`write`] does.
fn write_all(root: &Path, files: &[(&str, &str)]) {
    for (rel, text) in files {
        write(root, rel, text);
    }
}

fn deployment(name: &str, containers: &[&str], init: &[&str]) -> String {
    let list = |images: &[&str]| -> String {
        images
            .iter()
            .enumerate()
            .map(|(i, image)| format!("      - name: c{i}\n        image: {image}\n"))
            .collect()
    };
    let mut out = format!(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: {name}\nspec:\n  template:\n    spec:\n"
    );
    if !init.is_empty() {
        out.push_str(&format!("      initContainers:\n{}", list(init)));
    }
    out.push_str(&format!("      containers:\n{}", list(containers)));
    out
}

#[test]
fn overlay_to_base_directory_to_deployment() {
    let dir = tempdir();
    let root = dir.path();
    let deploy = write(
        root,
        "base/deployment.yaml",
        &deployment("svc", &["ghcr.io/acme/svc:1.0", "envoyproxy/envoy:v1"], &[]),
    );
    write(
        root,
        "base/kustomization.yaml",
        "resources:\n- deployment.yaml\n",
    );
    let overlay = write(
        root,
        "overlays/prod/kustomization.yaml",
        "resources:\n- ../../base\nimages:\n- name: ghcr.io/acme/svc\n  newTag: abc\n",
    );

    let report = preflight(&overlay, "ghcr.io/acme/svc").expect("match");
    assert_eq!(report.overlay, overlay);
    assert_eq!(report.image, "ghcr.io/acme/svc");
    assert_eq!(report.matched.len(), 1);
    assert_eq!(report.matched[0].image, "ghcr.io/acme/svc:1.0");
    assert_eq!(
        report.matched[0].file.canonicalize().unwrap(),
        deploy.canonicalize().unwrap()
    );

    // The overlay directory works as well as its file.
    let by_dir = preflight(overlay.parent().unwrap(), "ghcr.io/acme/svc").expect("match");
    assert_eq!(by_dir.matched.len(), 1);
}

#[test]
fn no_match_names_the_overlay_and_the_image() {
    let dir = tempdir();
    let root = dir.path();
    write_all(
        root,
        &[
            (
                "base/deployment.yaml",
                &deployment("svc", &["ghcr.io/acme/other:1.0"], &[]),
            ),
            ("base/kustomization.yaml", "resources:\n- deployment.yaml\n"),
        ],
    );
    let overlay = write(
        root,
        "overlays/dev/kustomization.yaml",
        "resources:\n- ../../base\n",
    );

    let err = preflight(&overlay, "ghcr.io/acme/svc").expect_err("no match");
    match &err {
        PreflightError::NoMatch {
            overlay: o,
            image,
            seen,
        } => {
            assert_eq!(o, &overlay);
            assert_eq!(image, "ghcr.io/acme/svc");
            assert_eq!(seen, &vec!["ghcr.io/acme/other:1.0".to_owned()]);
        }
        other => panic!("expected NoMatch, got {other:?}"),
    }
    let message = err.to_string();
    assert!(
        message.contains(&overlay.display().to_string()),
        "{message}"
    );
    assert!(message.contains("ghcr.io/acme/svc"), "{message}");
    // Matching is kustomize's: no registry normalization.
    assert!(preflight(&overlay, "acme/other").is_err());
}

#[test]
fn nested_directories_and_own_resource_files() {
    let dir = tempdir();
    let root = dir.path();
    write_all(
        root,
        &[
            (
                "common/workers/deploy.yaml",
                &deployment("worker", &["ghcr.io/acme/worker:2"], &[]),
            ),
            (
                "common/workers/kustomization.yml",
                "resources:\n- deploy.yaml\n",
            ),
            (
                "common/Kustomization",
                "resources:\n- workers\n- https://github.com/acme/shared//base?ref=v1\n",
            ),
            ("base/kustomization.yaml", "resources:\n- ../common\n"),
        ],
    );
    write(
        root,
        "overlays/prod/cron.yaml",
        "apiVersion: batch/v1\nkind: CronJob\nmetadata:\n  name: nightly\nspec:\n  jobTemplate:\n    spec:\n      template:\n        spec:\n          containers:\n          - name: job\n            image: ghcr.io/acme/nightly:5\n",
    );
    let overlay = write(
        root,
        "overlays/prod/kustomization.yaml",
        "resources:\n- ../../base\n- cron.yaml\n",
    );

    let worker = preflight(&overlay, "ghcr.io/acme/worker").expect("worker three levels down");
    assert_eq!(worker.matched[0].image, "ghcr.io/acme/worker:2");
    assert!(
        worker.matched[0]
            .file
            .ends_with("common/workers/deploy.yaml")
    );
    let nightly = preflight(&overlay, "ghcr.io/acme/nightly").expect("overlay's own file");
    assert!(nightly.matched[0].file.ends_with("overlays/prod/cron.yaml"));
}

#[test]
fn an_init_container_counts() {
    let dir = tempdir();
    let root = dir.path();
    write(
        root,
        "base/all.yaml",
        &format!(
            "{}---\n{}",
            deployment("svc", &["nginx:1.25"], &["ghcr.io/acme/migrate:7"]),
            "apiVersion: v1\nkind: Service\nmetadata:\n  name: svc\n"
        ),
    );
    write(root, "base/kustomization.yaml", "resources:\n- all.yaml\n");
    let overlay = write(
        root,
        "overlay/kustomization.yaml",
        "resources:\n- ../base\n",
    );
    let report = preflight(&overlay, "ghcr.io/acme/migrate").expect("init container");
    assert_eq!(report.matched[0].image, "ghcr.io/acme/migrate:7");
}

#[test]
fn custom_resource_definitions_are_not_looked_into() {
    let dir = tempdir();
    let root = dir.path();
    write(
        root,
        "crd.yaml",
        "apiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\nspec:\n  containers:\n  - image: ghcr.io/acme/svc:1\n",
    );
    let overlay = write(root, "kustomization.yaml", "resources:\n- crd.yaml\n");
    assert!(matches!(
        preflight(&overlay, "ghcr.io/acme/svc"),
        Err(PreflightError::NoMatch { .. })
    ));
}

#[test]
fn base_image_rewrites_are_seen_by_the_overlay() {
    let dir = tempdir();
    let root = dir.path();
    write_all(
        root,
        &[
            (
                "base/deployment.yaml",
                &deployment("svc", &["svc-placeholder"], &[]),
            ),
            (
                "base/kustomization.yaml",
                "resources:\n- deployment.yaml\nimages:\n- name: svc-placeholder\n  newName: ghcr.io/acme/svc\n",
            ),
        ],
    );
    let overlay = write(
        root,
        "overlay/kustomization.yaml",
        "resources:\n- ../base\n",
    );
    let report = preflight(&overlay, "ghcr.io/acme/svc").expect("match after the base rename");
    assert_eq!(report.matched[0].image, "svc-placeholder");
    assert_eq!(report.matched[0].seen_as, "ghcr.io/acme/svc");
    assert!(preflight(&overlay, "svc-placeholder").is_err());
}

#[test]
fn missing_and_broken_files_are_errors_with_paths() {
    let dir = tempdir();
    let root = dir.path();
    let overlay = write(root, "o/kustomization.yaml", "resources:\n- ../gone\n");
    match preflight(&overlay, "x") {
        Err(PreflightError::Io { path, image, .. }) => {
            assert!(path.ends_with("gone"), "{}", path.display());
            assert_eq!(image, "x");
        }
        other => panic!("expected Io, got {other:?}"),
    }
    write(root, "p/bad.yaml", "kind: Deployment\nspec: [\n");
    let overlay = write(root, "p/kustomization.yaml", "resources:\n- bad.yaml\n");
    match preflight(&overlay, "x") {
        Err(e @ PreflightError::Parse { .. }) => {
            assert!(e.to_string().contains("bad.yaml"), "{e}");
        }
        other => panic!("expected Parse, got {other:?}"),
    }
}
