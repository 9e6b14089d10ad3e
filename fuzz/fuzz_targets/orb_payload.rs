//! libFuzzer target `orb_payload`: see [`orchestrator_fuzz::intake::orb_payload`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| orchestrator_fuzz::intake::orb_payload(data));
