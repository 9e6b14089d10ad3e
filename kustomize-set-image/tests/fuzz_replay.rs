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

#[path = "../../fuzz/replay.rs"]
mod corpus;

fn replay(target: &str, body: fn(&[u8])) {
    corpus::replay(&corpus::fuzz_dir(env!("CARGO_MANIFEST_DIR")), target, body);
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
