//! libFuzzer target `auth_percent_decode`: see [`orchestrator_fuzz::intake::auth_percent_decode`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| orchestrator_fuzz::intake::auth_percent_decode(data));
