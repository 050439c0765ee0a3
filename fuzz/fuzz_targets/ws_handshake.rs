#![no_main]
//! See `src/ws_handshake.rs` for what this target checks.

use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: wsio_fuzz::ws_handshake::Input| wsio_fuzz::ws_handshake::run(input));
