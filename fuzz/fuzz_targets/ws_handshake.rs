#![no_main]
//! See `src/ws_handshake.rs` for what this target checks.

use libfuzzer_sys::fuzz_target;

fuzz_target!(
    init: wsio_fuzz::init(),
    |input: wsio_fuzz::ws_handshake::Input| wsio_fuzz::ws_handshake::run(input)
);
