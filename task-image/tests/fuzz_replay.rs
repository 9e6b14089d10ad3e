//! Replays the kustomize fuzz corpora in the ordinary test suite: every file under
//! `fuzz/corpus/<target>/` (the committed seeds) and `fuzz/regressions/<target>/` (inputs that once
//! crashed a target) goes through the same target body the libFuzzer build runs, and must not
//! panic. This file includes the fuzz crate's own bodies (`fuzz/src/kustomize.rs`) and input
//! convention (`fuzz/src/input.rs`), so the code is shared, not copied. The intake targets are
//! replayed by `functions/tests/fuzz_replay.rs`, which also checks that every target is replayed.

// Shared with every fuzz target; each replay uses only some of its helpers.
#[allow(dead_code)]
#[path = "../../fuzz/src/input.rs"]
mod input;
#[path = "../../fuzz/src/kustomize.rs"]
mod kustomize;

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz")
}

/// The files a target replays: its seeds and its regressions.
fn inputs(target: &str) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for dir in ["corpus", "regressions"] {
        let Ok(entries) = std::fs::read_dir(fuzz_dir().join(dir).join(target)) else {
            continue;
        };
        files.extend(
            entries.map(|e| e.unwrap().path()).filter(|p| {
                p.is_file() && !p.file_name().unwrap().to_string_lossy().starts_with('.')
            }),
        );
    }
    files.sort();
    files
}

fn replay(target: &str, body: fn(&[u8])) {
    let files = inputs(target);
    assert!(
        !files.is_empty(),
        "fuzz/corpus/{target}/ has no seed: run `python3 fuzz/seeds.py`"
    );
    let mut failures = Vec::new();
    for file in &files {
        let data = std::fs::read(file).unwrap();
        if let Err(p) = catch_unwind(AssertUnwindSafe(|| body(&data))) {
            let why = p
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "panicked".into());
            failures.push(format!("{}: {why}", file.display()));
        }
    }
    assert!(
        failures.is_empty(),
        "{target}: {} of {} inputs failed:\n{}",
        failures.len(),
        files.len(),
        failures.join("\n")
    );
}

#[test]
fn set_image() {
    replay("set_image", kustomize::set_image);
}

#[test]
fn kustomize_args() {
    replay("kustomize_args", kustomize::kustomize_args);
}

#[test]
fn image_match() {
    replay("image_match", kustomize::image_match);
}
