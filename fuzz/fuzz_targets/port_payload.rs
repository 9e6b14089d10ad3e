//! libFuzzer target `port_payload`: see [`orchestrator_fuzz::intake::port_payload`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| orchestrator_fuzz::intake::port_payload(data));
