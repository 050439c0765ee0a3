#![no_main]
//! See `src/sio_msgpack.rs` for what this target checks.

use libfuzzer_sys::fuzz_target;

fuzz_target!(
    init: wsio_fuzz::init(),
    |input: wsio_fuzz::sio_msgpack::Input| wsio_fuzz::sio_msgpack::run(input)
);
