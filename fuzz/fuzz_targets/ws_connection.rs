#![no_main]
//! See `src/ws_connection.rs` for what this target checks.

use libfuzzer_sys::fuzz_target;

fuzz_target!(
    init: wsio_fuzz::init(),
    |input: wsio_fuzz::ws_connection::Input| wsio_fuzz::ws_connection::run(input)
);
