//! Fuzz target bodies for the orchestrator, shared by the libFuzzer targets in `fuzz_targets/`
//! and the corpus replay test of the main workspace (`functions/tests/fuzz_replay.rs`).
//!
//! - [`input`]: how a byte string is cut into a target's arguments (NUL-separated parts).
//! - [`intake`]: the webhook payload parsers, signature headers, token decoding, list cursors.
//! - [`kustomize`]: the `kustomize-set-image` crate's `kustomize edit set image` arguments and edit.
//!
//! Run with `scripts/fuzz.sh`; see `docs/fuzzing.md`.

pub mod input;
pub mod intake;
pub mod kustomize;
