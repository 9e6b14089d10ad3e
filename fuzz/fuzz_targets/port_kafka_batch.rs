//! libFuzzer target `port_kafka_batch`: see [`orchestrator_fuzz::intake::port_kafka_batch`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| orchestrator_fuzz::intake::port_kafka_batch(data));
