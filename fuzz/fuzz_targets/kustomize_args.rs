//! libFuzzer target `kustomize_args`: see [`orchestrator_fuzz::kustomize::kustomize_args`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| orchestrator_fuzz::kustomize::kustomize_args(data));
