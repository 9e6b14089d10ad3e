//! Replays the fuzz corpora in the ordinary test suite: every file under `fuzz/corpus/<target>/`
//! (the committed seeds) and `fuzz/regressions/<target>/` (inputs that once crashed a target) goes
//! through the same target body the libFuzzer build runs, and must not panic.
//!
//! The loop itself is `fuzz/replay.rs`, shared with the task crate's replay.
//!
//! - Intake targets run here, in-process: this file includes the fuzz crate's own bodies
//!   (`fuzz/src/intake.rs`) and input convention (`fuzz/src/input.rs`), so the code is shared,
//!   not copied.
//! - Kustomize targets live in the task binary's crate, which this crate does not (and must not)
//!   depend on: `kustomize-set-image/tests/fuzz_replay.rs` replays them the same way, in-process.
//!
//! Fuzzing itself (`scripts/fuzz.sh`) needs cargo-fuzz and sanitizer flags; this replay needs
//! nothing but `cargo test`, so a regression input added to the tree fails the test command until
//! the bug is fixed.

// Shared with every fuzz target; each replay uses only some of its helpers.
#[path = "../../fuzz/replay.rs"]
mod corpus;
#[allow(dead_code)]
#[path = "../../fuzz/src/input.rs"]
mod input;
#[path = "../../fuzz/src/intake.rs"]
mod intake;

use std::path::{Path, PathBuf};

/// A fuzz target body: any bytes in, a panic is a finding.
type Body = fn(&[u8]);

/// The intake fuzz targets this file replays.
const TARGETS: &[(&str, Body)] = &[
    ("orb_payload", intake::orb_payload),
    ("auth_percent_decode", intake::auth_percent_decode),
    ("cursor_decode", intake::cursor_decode),
    ("circleci_payload", intake::circleci_payload),
    (
        "circleci_signature_header",
        intake::circleci_signature_header,
    ),
    ("port_payload", intake::port_payload),
    ("events_payload", intake::events_payload),
    ("port_kafka_batch", intake::port_kafka_batch),
    ("port_signature_header", intake::port_signature_header),
];

/// The kustomize targets, replayed by `kustomize-set-image/tests/fuzz_replay.rs`.
const TASK_TARGETS: &[&str] = &["set_image", "kustomize_args", "image_match"];

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("functions/ has a parent")
        .to_path_buf()
}

fn replay(target: &str) {
    let (_, body) = TARGETS
        .iter()
        .find(|(name, _)| *name == target)
        .unwrap_or_else(|| panic!("unknown target {target}"));
    corpus::replay(&corpus::fuzz_dir(env!("CARGO_MANIFEST_DIR")), target, *body);
}

#[test]
fn orb_payload() {
    replay("orb_payload");
}

#[test]
fn auth_percent_decode() {
    replay("auth_percent_decode");
}

#[test]
fn cursor_decode() {
    replay("cursor_decode");
}

#[test]
fn circleci_payload() {
    replay("circleci_payload");
}

#[test]
fn circleci_signature_header() {
    replay("circleci_signature_header");
}

#[test]
fn port_payload() {
    replay("port_payload");
}

#[test]
fn events_payload() {
    replay("events_payload");
}

#[test]
fn port_kafka_batch() {
    replay("port_kafka_batch");
}

#[test]
fn port_signature_header() {
    replay("port_signature_header");
}

/// The fuzz crate's targets, the corpus directories and this file's list stay in step.
#[test]
fn every_fuzz_target_is_replayed() {
    let names = |dir: &str, strip: &str| -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(repo_root().join("fuzz").join(dir))
            .map(|rd| {
                rd.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                    .filter_map(|n| n.strip_suffix(strip).map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        v.sort();
        v
    };
    let mut known: Vec<String> = TARGETS
        .iter()
        .map(|(n, _)| n.to_string())
        .chain(TASK_TARGETS.iter().map(|n| n.to_string()))
        .collect();
    known.sort();
    assert_eq!(
        names("fuzz_targets", ".rs"),
        known,
        "fuzz/fuzz_targets/*.rs and TARGETS + TASK_TARGETS in this file differ"
    );
    let task_replay =
        std::fs::read_to_string(repo_root().join("kustomize-set-image/tests/fuzz_replay.rs"))
            .unwrap();
    for name in TASK_TARGETS {
        assert!(
            task_replay.contains(&format!("replay(\"{name}\"")),
            "kustomize-set-image/tests/fuzz_replay.rs does not replay {name}"
        );
    }
    for dir in ["corpus", "regressions"] {
        for name in names(dir, "") {
            assert!(
                known.contains(&name),
                "fuzz/{dir}/{name}/ belongs to no fuzz target"
            );
        }
    }
}
