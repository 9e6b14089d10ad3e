//! libFuzzer target `port_signature_header`: see [`orchestrator_fuzz::intake::port_signature_header`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| orchestrator_fuzz::intake::port_signature_header(data));
