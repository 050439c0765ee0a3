//! Running a property over many seeds, with a one-line replay on failure.

use std::panic::{AssertUnwindSafe, catch_unwind};

/// The seeds to run: `WSIO_SIM_SEED` (one, to replay), else
/// `WSIO_SIM_SEEDS` (a count, for long sweeps), else `default`.
pub fn seeds(default: u64) -> Vec<u64> {
    if let Some(one) = std::env::var("WSIO_SIM_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
    {
        return vec![one];
    }
    let n = std::env::var("WSIO_SIM_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default);
    (0..n).collect()
}

/// Whether to print traces (`WSIO_SIM_TRACE=1`).
pub fn tracing() -> bool {
    std::env::var_os("WSIO_SIM_TRACE").is_some()
}

/// Runs `property` for every seed; the first failure (an `Err` or a panic)
/// fails the test with its seed and the command that replays it.
pub fn for_seeds(
    test: &str,
    file: &str,
    default: u64,
    property: impl Fn(u64) -> Result<(), String>,
) {
    let all = seeds(default);
    for seed in &all {
        let outcome = catch_unwind(AssertUnwindSafe(|| property(*seed)));
        let why = match outcome {
            Ok(Ok(())) => continue,
            Ok(Err(e)) => e,
            Err(p) => p
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "panic".into()),
        };
        panic!(
            "seed {seed} failed: {why}\nreplay: WSIO_SIM_SEED={seed} WSIO_SIM_TRACE=1 cargo test --test {file} {test} -- --nocapture"
        );
    }
    eprintln!("{test}: {} seeds passed", all.len());
}
