#![no_main]
//! See `src/eio_packet.rs` for what this target checks.

use libfuzzer_sys::fuzz_target;

fuzz_target!(
    init: wsio_fuzz::init(),
    |input: wsio_fuzz::eio_packet::Input| wsio_fuzz::eio_packet::run(input)
);
