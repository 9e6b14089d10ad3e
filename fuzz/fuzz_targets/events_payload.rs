//! libFuzzer target `events_payload`: see [`orchestrator_fuzz::intake::events_payload`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| orchestrator_fuzz::intake::events_payload(data));
