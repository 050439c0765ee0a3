#![no_main]
//! See `src/cluster_redis.rs` for what this target checks.

use libfuzzer_sys::fuzz_target;

fuzz_target!(
    init: wsio_fuzz::init(),
    |input: wsio_fuzz::cluster_redis::Input| wsio_fuzz::cluster_redis::run(input)
);
