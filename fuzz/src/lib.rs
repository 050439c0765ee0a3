//! The bodies of the `wsio` fuzz targets, kept in a library so that they
//! build with a plain `cargo build` on stable and can be replayed by
//! `cargo test` without libFuzzer (see `tests/replay.rs`).
//!
//! Each module has an `Input` (derived with `arbitrary`) and a `run`.

pub mod cluster_redis;
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

/// Decodes `data` as a target's input, the way `fuzz_target!` does, and runs
/// it. Inputs that do not decode are skipped.
pub fn run_bytes<I: for<'a> arbitrary::Arbitrary<'a>>(data: &[u8], run: fn(I)) {
    if let Ok(input) = I::arbitrary_take_rest(arbitrary::Unstructured::new(data)) {
        run(input);
    }
}
