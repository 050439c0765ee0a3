//! Injected randomness.
//!
//! The protocol machines never draw randomness themselves: masking keys,
//! `Sec-WebSocket-Key`, session ids and reconnection jitter all come from an
//! [`Entropy`] the caller supplies. Drivers pass [`OsEntropy`]; tests and the
//! simulator pass [`SeededEntropy`], so every transcript is byte-stable.

/// A source of random bytes.
pub trait Entropy {
    /// Fills `dst` with random bytes.
    fn fill(&mut self, dst: &mut [u8]);

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

    // The same values `fill` gives, without its copy loop (a client draws
    // a masking key per frame).
    fn next_u32(&mut self) -> u32 {
        self.step() as u32
    }

    fn next_u64(&mut self) -> u64 {
        self.step()
    }
}

/// Randomness from the operating system, buffered so that a masking key per
/// frame does not cost a system call per frame.
#[derive(Debug)]
pub struct OsEntropy {
    buf: [u8; 256],
    pos: usize,
}

impl Default for OsEntropy {
    fn default() -> Self {
        Self::new()
    }
}

impl OsEntropy {
    /// Creates a source; the first draw reads from the OS.
    pub fn new() -> Self {
        OsEntropy {
            buf: [0; 256],
            pos: 256,
        }
    }

    fn refill(&mut self) {
        if getrandom::fill(&mut self.buf).is_err() {
            // No OS randomness at all is not something a network library can
            // repair; fall back to a time-and-address seeded generator rather
            // than panic, so the process keeps serving.
            let seed = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(0)
                ^ (self as *const Self as u64);
            SeededEntropy::new(seed).fill(&mut self.buf);
        }
        self.pos = 0;
    }
}

impl Entropy for OsEntropy {
    fn next_u32(&mut self) -> u32 {
        // A fixed-size read where four bytes are left: the per-frame key.
        match self.buf.get(self.pos..self.pos + 4) {
            Some(&[a, b, c, d]) => {
                self.pos += 4;
                u32::from_le_bytes([a, b, c, d])
            }
            _ => {
                let mut b = [0u8; 4];
                self.fill(&mut b);
                u32::from_le_bytes(b)
            }
        }
    }

    fn fill(&mut self, mut dst: &mut [u8]) {
        while !dst.is_empty() {
            if self.pos == self.buf.len() {
                self.refill();
            }
            let n = dst.len().min(self.buf.len() - self.pos);
            dst[..n].copy_from_slice(&self.buf[self.pos..self.pos + n]);
            self.pos += n;
            dst = &mut dst[n..];
        }
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
    fn os_entropy_keys_take_the_next_four_bytes() {
        let mut e = OsEntropy::new();
        e.refill();
        for (i, b) in e.buf.iter_mut().enumerate() {
            *b = i as u8;
        }
        e.pos = 250;
        assert_eq!(e.next_u32(), u32::from_le_bytes([250, 251, 252, 253]));
        assert_eq!(e.pos, 254);
        // Two bytes left: they and two of a fresh buffer.
        let fresh_start = {
            let v = e.next_u32().to_le_bytes();
            assert_eq!(v[..2], [254, 255]);
            assert_eq!(e.pos, 2);
            [v[2], v[3]]
        };
        assert_eq!(fresh_start, [e.buf[0], e.buf[1]]);
    }

    #[test]
    fn os_entropy_fills_across_refills() {
        let mut e = OsEntropy::new();
        let mut big = vec![0u8; 1000];
        e.fill(&mut big);
        assert!(big.iter().any(|&b| b != 0));
    }
}
