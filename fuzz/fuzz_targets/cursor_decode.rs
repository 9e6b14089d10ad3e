//! libFuzzer target `cursor_decode`: see [`orchestrator_fuzz::intake::cursor_decode`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| orchestrator_fuzz::intake::cursor_decode(data));
