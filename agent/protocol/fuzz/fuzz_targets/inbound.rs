//! Fuzz target: one control-plane frame through `braid_protocol::inbound::decode`
//! and the envelope parser, with the properties of
//! `braid_protocol::fuzzing::inbound` (no panic, lossless round trip of known
//! messages, invalid payloads name their field).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    braid_protocol::fuzzing::inbound(data);
});
