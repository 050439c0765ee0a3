#![no_main]
//! See `src/http_head.rs` for what this target checks.

use libfuzzer_sys::fuzz_target;

fuzz_target!(
    init: wsio_fuzz::init(),
    |input: wsio_fuzz::http_head::Input| wsio_fuzz::http_head::run(input)
);
