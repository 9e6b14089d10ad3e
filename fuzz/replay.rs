//! Corpus replay for the ordinary test suite, included (`#[path]`) by
//! `functions/tests/fuzz_replay.rs` (intake targets) and `kustomize-set-image/tests/fuzz_replay.rs`
//! (kustomize targets); not part of the fuzz crate. Every file under `fuzz/corpus/<target>/` (the
//! committed seeds) and `fuzz/regressions/<target>/` (inputs that once crashed a target) goes
//! through the target's body, which must not panic.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};

/// The `fuzz/` directory, from a crate directory one level below the repository root.
pub fn fuzz_dir(manifest_dir: &str) -> PathBuf {
    Path::new(manifest_dir).join("../fuzz")
}

/// The files a target replays: its seeds and its regressions, sorted.
fn inputs(fuzz: &Path, target: &str) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for dir in ["corpus", "regressions"] {
        let Ok(entries) = std::fs::read_dir(fuzz.join(dir).join(target)) else {
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

/// Runs every input of `target` through `body`; fails naming each input that panicked.
pub fn replay(fuzz: &Path, target: &str, body: fn(&[u8])) {
    let files = inputs(fuzz, target);
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
