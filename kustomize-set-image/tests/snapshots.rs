//! Snapshot tests for the text `set_image` writes, on realistic kustomization files: comments,
//! CRLF, no final newline, flow-style `images`, no `images` key, deprecated `imageTags`, a
//! second YAML document.
//!
//! Inputs and reviewed expected outputs live in `tests/snapshots/kustomize/` (`<case>.input.yaml`,
//! `<case>.expected.yaml`), compared byte for byte. Set `UPDATE_SNAPSHOTS=1` to rewrite the
//! expected files after a deliberate change: each case then fails (nothing was checked); review
//! the diff and run again without it. Independently of the
//! snapshots, every case checks that the bytes outside the `images:`/`imageTags:` blocks are
//! unchanged and that a second run changes nothing.

use std::path::PathBuf;

use kustomize_set_image::set_image;
use outside_images::without_images_blocks;

mod outside_images;

const SHA: &str = "8f59df978e3fa133a2ee39ff66b3382342ce958c";

fn snapshot_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/snapshots/kustomize")
}

fn check(case: &str, args: &[&str]) {
    let dir = snapshot_dir();
    let input_path = dir.join(format!("{case}.input.yaml"));
    let expected_path = dir.join(format!("{case}.expected.yaml"));
    let input = std::fs::read_to_string(&input_path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", input_path.display()));
    let args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();

    let edited = set_image(&input, &args).unwrap_or_else(|e| panic!("{case}: {e}"));
    assert!(edited.changed, "{case}: expected a change");

    // Rewriting then comparing would compare the file with itself: rewrite, then fail.
    if std::env::var_os("UPDATE_SNAPSHOTS").is_some() {
        std::fs::write(&expected_path, &edited.text).expect("write snapshot");
        panic!(
            "{case}: UPDATE_SNAPSHOTS is set, so {} was rewritten, not checked; review the diff and run again without it",
            expected_path.display()
        );
    }
    let expected = std::fs::read_to_string(&expected_path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", expected_path.display()));
    assert_eq!(
        edited.text,
        expected,
        "{case}: output differs from {}",
        expected_path.display()
    );

    // The newline convention of the input is kept inside the new block too.
    if input.contains("\r\n") {
        assert!(
            !edited.text.replace("\r\n", "").contains('\n'),
            "{case}: LF line in a CRLF file"
        );
    }
    // Every byte outside the images blocks is the input's.
    let (before, after) = (
        without_images_blocks(&input),
        without_images_blocks(&edited.text),
    );
    // (Appending to a file without a final newline adds exactly that newline.)
    assert!(
        after == before || (!input.ends_with('\n') && after == format!("{before}\n")),
        "{case}: bytes outside the images block changed:\n--- before\n{before}\n--- after\n{after}"
    );

    // Idempotent: the same arguments on the result change nothing, byte for byte.
    let again = set_image(&edited.text, &args).unwrap_or_else(|e| panic!("{case} again: {e}"));
    assert!(!again.changed, "{case}: second run changed the text");
    assert_eq!(again.text, edited.text);
}

#[test]
fn commented_overlay_keeps_every_comment_outside_images() {
    check(
        "commented",
        &[&format!("ghcr.io/acme/svc=ghcr.io/acme/svc:{SHA}")],
    );
}

#[test]
fn crlf_line_endings_are_kept() {
    check("crlf", &["app:v2"]);
}

#[test]
fn missing_final_newline_is_kept() {
    check("no-final-newline", &["app:v2"]);
}

#[test]
fn flow_style_images_become_a_block() {
    check(
        "flow",
        &["app@sha256:24a0c4b4a4c0eb97a1aabb8e29f18e917d05abfe1b7a7c07857230879ce7d3d3"],
    );
}

#[test]
fn images_appended_when_absent() {
    check("no-images", &["app=registry.example.com/team/app:1234"]);
}

#[test]
fn images_appended_after_a_newline_when_the_file_lacks_one() {
    check("no-images-no-final-newline", &["app:v1"]);
}

#[test]
fn deprecated_image_tags_are_folded_into_images() {
    check("image-tags", &["app:3"]);
}

#[test]
fn only_the_first_document_is_edited() {
    check("multi-document", &["app:v1"]);
}

/// Expectations written here by hand rather than read from an expected file (which
/// `UPDATE_SNAPSHOTS` writes from the code's own output): a change to what the edit writes fails
/// here even if the snapshots were regenerated.
#[test]
fn hand_written_expectations() {
    let args = |a: &str| vec![a.to_owned()];
    // No `images:` yet: the block is appended, every other byte kept.
    let input = "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources:\n- ../../base\n";
    let edited = set_image(input, &args("app=registry.example.com/team/app:1234")).unwrap();
    assert_eq!(
        edited.text,
        "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources:\n- ../../base\nimages:\n- name: app\n  newName: registry.example.com/team/app\n  newTag: \"1234\"\n"
    );
    // The deprecated `imageTags:` folded into a sorted `images:` where it stood.
    let input = std::fs::read_to_string(snapshot_dir().join("image-tags.input.yaml")).unwrap();
    assert_eq!(
        input,
        "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nimageTags:\n- name: legacy\n  newTag: \"1.0\"\nresources:\n- deployment.yaml\n"
    );
    let edited = set_image(&input, &args("app:3")).unwrap();
    assert_eq!(
        edited.text,
        "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nimages:\n- name: app\n  newTag: \"3\"\n- name: legacy\n  newTag: \"1.0\"\nresources:\n- deployment.yaml\n"
    );
}
