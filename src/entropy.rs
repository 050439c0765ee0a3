//! Injected randomness.
//!
//! The protocol machines never draw randomness themselves: masking keys,
//! `Sec-WebSocket-Key`, session ids and reconnection jitter all come from an
//! [`Entropy`] the caller supplies. Drivers pass [`OsEntropy`]; tests and the
//! simulator pass [`SeededEntropy`], so every transcript is byte-stable.
//! A machine that makes sub-machines gives each its own source with
//! [`Entropy::fork`] rather than sharing one.

use rand_chacha::{
    ChaCha12Rng,
    rand_core::{RngCore, SeedableRng},
};

/// A source of random bytes.
pub trait Entropy {
    /// Fills `dst` with random bytes.
    fn fill(&mut self, dst: &mut [u8]);

    /// An independent source for a sub-machine (a client's WebSocket, a
    /// reconnection's engine), so that no source is shared between owners
    /// and no machine holds a lock. A deterministic source forks
    /// deterministically; a secure one forks a secure one.
    fn fork(&mut self) -> BoxEntropy;

    /// Returns a random `u32`.
    fn next_u32(&mut self) -> u32 {
        let mut b = [0u8; 4];
        self.fill(&mut b);
        u32::from_le_bytes(b)
    }

    /// Returns a random `u64`.
    fn next_u64(&mut self) -> u64 {
        let mut b = [0u8; 8];
        self.fill(&mut b);
        u64::from_le_bytes(b)
    }
}

impl<E: Entropy + ?Sized> Entropy for Box<E> {
    fn fill(&mut self, dst: &mut [u8]) {
        (**self).fill(dst)
    }

    fn fork(&mut self) -> BoxEntropy {
        (**self).fork()
    }

    // Forwarded, so that a boxed source's own (faster) draws are used.
    fn next_u32(&mut self) -> u32 {
        (**self).next_u32()
    }

    fn next_u64(&mut self) -> u64 {
        (**self).next_u64()
    }
}

/// The boxed entropy the machines hold.
pub type BoxEntropy = Box<dyn Entropy + Send>;

/// A deterministic generator (xoshiro256**), seeded from one `u64`.
///
/// Not cryptographically secure: for tests and simulation only.
///
/// ```
/// use wsio::entropy::{Entropy, SeededEntropy};
/// let mut a = SeededEntropy::new(7);
/// let mut b = SeededEntropy::new(7);
/// assert_eq!(a.next_u64(), b.next_u64());
/// ```
#[derive(Debug, Clone)]
pub struct SeededEntropy {
    s: [u64; 4],
}

impl SeededEntropy {
    /// Creates a generator whose whole output is decided by `seed`.
    pub fn new(seed: u64) -> Self {
        // splitmix64 expands the seed so that nearby seeds diverge at once.
        let mut x = seed;
        let mut next = || {
            x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = x;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        };
        SeededEntropy {
            s: [next(), next(), next(), next()],
        }
    }

    /// A generator seeded from another source: for a machine that hands a
    /// sub-machine randomness of its own.
    pub fn from_entropy(e: &mut dyn Entropy) -> Self {
        Self::new(e.next_u64())
    }

    fn step(&mut self) -> u64 {
        let s = &mut self.s;
        let result = s[1].wrapping_mul(5).rotate_left(7).wrapping_mul(9);
        let t = s[1] << 17;
        s[2] ^= s[0];
        s[3] ^= s[1];
        s[1] ^= s[2];
        s[0] ^= s[3];
        s[2] ^= t;
        s[3] = s[3].rotate_left(45);
        result
    }
}

impl Entropy for SeededEntropy {
    fn fill(&mut self, dst: &mut [u8]) {
        for chunk in dst.chunks_mut(8) {
            let v = self.step().to_le_bytes();
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
    }

    fn fork(&mut self) -> BoxEntropy {
        Box::new(SeededEntropy::from_entropy(self))
    }

    // The same values `fill` gives, without its copy loop (a client draws
    // a masking key per frame).
    fn next_u32(&mut self) -> u32 {
        self.step() as u32
    }

    fn next_u64(&mut self) -> u64 {
        self.step()
    }
}

/// The operating system gave no randomness: a driver cannot make session
/// ids or masking keys that others cannot predict, so it must not start.
#[derive(Debug, thiserror::Error)]
#[error("the operating system has no randomness to give: {0}")]
pub struct EntropyUnavailable(getrandom::Error);

impl From<EntropyUnavailable> for std::io::Error {
    fn from(e: EntropyUnavailable) -> Self {
        std::io::Error::other(e)
    }
}

/// Secure randomness for drivers: ChaCha12 keyed once from the operating
/// system, so that a masking key per frame costs no system call, and a
/// source can never fall back to anything predictable (it either gets its
/// key from the OS or is never made).
pub struct OsEntropy {
    rng: ChaCha12Rng,
}

impl std::fmt::Debug for OsEntropy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("OsEntropy")
    }
}

impl OsEntropy {
    /// A source keyed from the operating system; an error if it has no
    /// randomness to give.
    pub fn new() -> Result<Self, EntropyUnavailable> {
        let mut seed = [0u8; 32];
        getrandom::fill(&mut seed).map_err(EntropyUnavailable)?;
        Ok(OsEntropy {
            rng: ChaCha12Rng::from_seed(seed),
        })
    }
}

impl Entropy for OsEntropy {
    fn fill(&mut self, dst: &mut [u8]) {
        self.rng.fill_bytes(dst)
    }

    fn fork(&mut self) -> BoxEntropy {
        // A key drawn from a secure stream is as good as one from the OS.
        let mut seed = [0u8; 32];
        self.rng.fill_bytes(&mut seed);
        Box::new(OsEntropy {
            rng: ChaCha12Rng::from_seed(seed),
        })
    }

    fn next_u32(&mut self) -> u32 {
        self.rng.next_u32()
    }

    fn next_u64(&mut self) -> u64 {
        self.rng.next_u64()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeded_is_reproducible_and_seed_sensitive() {
        let mut a = SeededEntropy::new(1);
        let mut b = SeededEntropy::new(1);
        let mut c = SeededEntropy::new(2);
        let (mut x, mut y, mut z) = ([0u8; 37], [0u8; 37], [0u8; 37]);
        a.fill(&mut x);
        b.fill(&mut y);
        c.fill(&mut z);
        assert_eq!(x, y);
        assert_ne!(x, z);
    }

    #[test]
    fn seeded_draws_are_the_bytes_fill_gives() {
        // Transcripts recorded before the fast draws existed stay valid.
        let (mut a, mut b) = (SeededEntropy::new(3), SeededEntropy::new(3));
        let mut boxed: BoxEntropy = Box::new(SeededEntropy::new(3));
        for _ in 0..10 {
            let (mut four, mut eight) = ([0u8; 4], [0u8; 8]);
            b.fill(&mut four);
            let want = u32::from_le_bytes(four);
            assert_eq!(a.next_u32(), want);
            assert_eq!(boxed.next_u32(), want);
            b.fill(&mut eight);
            let want = u64::from_le_bytes(eight);
            assert_eq!(a.next_u64(), want);
            assert_eq!(boxed.next_u64(), want);
        }
    }

    #[test]
    fn forks_are_independent_and_seeded_forks_reproducible() {
        let (mut a, mut b) = (SeededEntropy::new(5), SeededEntropy::new(5));
        let (mut fa, mut fb) = (a.fork(), b.fork());
        assert_eq!(fa.next_u64(), fb.next_u64());
        assert_ne!(fa.next_u64(), a.next_u64());
        let mut os = OsEntropy::new().unwrap();
        let mut fork = os.fork();
        assert_ne!(os.next_u64(), fork.next_u64());
    }

    #[test]
    fn os_entropy_fills_across_refills() {
        let mut e = OsEntropy::new().unwrap();
        let mut big = vec![0u8; 1000];
        e.fill(&mut big);
        assert!(big.iter().any(|&b| b != 0));
    }
}
