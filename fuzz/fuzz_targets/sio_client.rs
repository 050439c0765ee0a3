#![no_main]
//! See `src/sio_client.rs` for what this target checks.

use libfuzzer_sys::fuzz_target;

fuzz_target!(
    init: wsio_fuzz::init(),
    |input: wsio_fuzz::sio_client::Input| wsio_fuzz::sio_client::run(input)
);
