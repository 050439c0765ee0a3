//! The network's settings, and the seeded generator every random choice
//! of a run comes from.

use std::time::Duration;

use crate::entropy::{Entropy, SeededEntropy};

/// A seeded generator with a few conveniences for simulations.
#[derive(Debug, Clone)]
pub struct Rng(SeededEntropy);

impl Rng {
    /// A generator from a seed.
    pub fn new(seed: u64) -> Self {
        Rng(SeededEntropy::new(seed))
    }

    /// A new independent generator, for a machine's own entropy.
    pub fn fork(&mut self) -> SeededEntropy {
        SeededEntropy::new(self.0.next_u64())
    }

    /// A number in `0..n` (`0` when `n` is 0).
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 { 0 } else { self.0.next_u64() % n }
    }

    /// True with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        p > 0.0 && (self.0.next_u64() >> 11) as f64 / (1u64 << 53) as f64 <= p
    }

    /// A duration in `0..=max`.
    pub fn duration(&mut self, max: Duration) -> Duration {
        Duration::from_micros(self.below(max.as_micros() as u64 + 1))
    }
}

impl Entropy for Rng {
    fn fill(&mut self, dst: &mut [u8]) {
        self.0.fill(dst)
    }

    fn fork(&mut self) -> crate::entropy::BoxEntropy {
        self.0.fork()
    }
}

/// How the simulated network behaves.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Config {
    /// The seed of everything random.
    pub seed: u64,
    /// One-way delay of every segment.
    pub latency: Duration,
    /// Extra random delay, up to this much (order within a connection is
    /// kept, as TCP keeps it).
    pub jitter: Duration,
    /// Writes are cut into pieces of 1 to this many bytes.
    pub max_chunk: usize,
    /// Probability that a delivered piece resets its connection instead.
    pub reset_rate: f64,
    /// Record a trace of the run.
    pub trace: bool,
}

impl Config {
    /// A network with 1 ms latency, no jitter, no faults and writes split
    /// into random pieces of up to 1500 bytes.
    pub fn new(seed: u64) -> Self {
        Config {
            seed,
            latency: Duration::from_millis(1),
            jitter: Duration::ZERO,
            max_chunk: 1500,
            reset_rate: 0.0,
            trace: false,
        }
    }
    /// Sets [`latency`](Self::latency).
    pub fn latency(mut self, d: Duration) -> Self {
        self.latency = d;
        self
    }
    /// Sets [`jitter`](Self::jitter).
    pub fn jitter(mut self, d: Duration) -> Self {
        self.jitter = d;
        self
    }
    /// Sets [`max_chunk`](Self::max_chunk) (at least 1).
    pub fn max_chunk(mut self, n: usize) -> Self {
        self.max_chunk = n.max(1);
        self
    }
    /// Sets [`reset_rate`](Self::reset_rate).
    pub fn reset_rate(mut self, p: f64) -> Self {
        self.reset_rate = p;
        self
    }
    /// Sets [`trace`](Self::trace).
    pub fn trace(mut self, on: bool) -> Self {
        self.trace = on;
        self
    }
}
