#![no_main]
//! See `src/eio_server.rs` for what this target checks.

use libfuzzer_sys::fuzz_target;

fuzz_target!(
    init: wsio_fuzz::init(),
    |input: wsio_fuzz::eio_server::Input| wsio_fuzz::eio_server::run(input)
);
