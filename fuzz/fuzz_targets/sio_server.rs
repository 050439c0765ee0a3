#![no_main]
//! See `src/sio_server.rs` for what this target checks.

use libfuzzer_sys::fuzz_target;

fuzz_target!(
    init: wsio_fuzz::init(),
    |input: wsio_fuzz::sio_server::Input| wsio_fuzz::sio_server::run(input)
);
