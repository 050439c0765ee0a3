//! The bodies of the `wsio` fuzz targets, kept in a library so that they
//! build with a plain `cargo build` on stable and can be replayed by
//! `cargo test` without libFuzzer (see `tests/replay.rs`).
//!
//! Each module has an `Input` (derived with `arbitrary`) and a `run`.

pub mod cluster_redis;
use std::{
    hash::BuildHasherDefault,
    sync::OnceLock,
    time::{Duration, Instant},
};

pub mod common;
pub mod eio_packet;
pub mod eio_server;
pub mod http_head;
pub mod sio_client;
pub mod sio_msgpack;
pub mod sio_packet;
pub mod sio_server;
pub mod values;
pub mod wire;
pub mod ws_connection;
pub mod ws_frame;
pub mod ws_handshake;

/// A `HashMap` with a fixed hasher. std's default hasher is seeded anew in
/// each process: the harnesses' iteration orders, and the probing of their
/// tables (edges libFuzzer counts), would change from one run to the next,
/// and a fixed `-seed` would no longer give the same fuzzing run.
pub type HashMap<K, V> =
    std::collections::HashMap<K, V, BuildHasherDefault<std::collections::hash_map::DefaultHasher>>;

/// A `HashSet` with a fixed hasher, for the same reason as [`HashMap`].
pub type HashSet<K> =
    std::collections::HashSet<K, BuildHasherDefault<std::collections::hash_map::DefaultHasher>>;

static BASE: OnceLock<Instant> = OnceLock::new();

/// Run once by every fuzz target before libFuzzer starts counting coverage
/// (`fuzz_target!(init: wsio_fuzz::init(), …)`): fixes the harnesses' clock
/// base (see [`base_instant`]), work whose branches depend on the clock.
pub fn init() {
    base_instant();
}

/// The base of the harnesses' clocks, the same for the whole process: the
/// time of the first call, moved on to the next whole second. Time
/// arithmetic inlined from std branches on the nanoseconds of the sums it
/// makes (a carry into the seconds), so with a base of arbitrary
/// nanoseconds the same input would cover different edges from one run to
/// the next, and a fixed `-seed` would no longer give the same fuzzing run.
/// `Instant` shows its nanoseconds only in its `Debug` form (`tv_nsec` on
/// Unix); where that says nothing, the base is the time as it is.
pub fn base_instant() -> Instant {
    *BASE.get_or_init(|| {
        let now = Instant::now();
        let debug = format!("{now:?}");
        let nanos = debug
            .split("tv_nsec: ")
            .nth(1)
            .and_then(|rest| rest.trim_end_matches([' ', '}']).parse::<u64>().ok());
        match nanos {
            Some(n) if n < 1_000_000_000 => now + Duration::from_nanos(1_000_000_000 - n),
            _ => now,
        }
    })
}

/// Decodes `data` as a target's input, the way `fuzz_target!` does, and runs
/// it. Inputs that do not decode are skipped.
pub fn run_bytes<I: for<'a> arbitrary::Arbitrary<'a>>(data: &[u8], run: fn(I)) {
    if let Ok(input) = I::arbitrary_take_rest(arbitrary::Unstructured::new(data)) {
        run(input);
    }
}
