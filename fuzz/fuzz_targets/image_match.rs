//! libFuzzer target `image_match`: see [`orchestrator_fuzz::kustomize::image_match`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| orchestrator_fuzz::kustomize::image_match(data));
