//! libFuzzer target `set_image`: see [`orchestrator_fuzz::kustomize::set_image`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| orchestrator_fuzz::kustomize::set_image(data));
