//! libFuzzer target `circleci_payload`: see [`orchestrator_fuzz::intake::circleci_payload`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| orchestrator_fuzz::intake::circleci_payload(data));
