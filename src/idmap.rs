//! Maps keyed by ids the machines hand out themselves (connection handles,
//! session and socket ids).
//!
//! A peer can name such a key (a `sid` in a query) but never choose one
//! into the map: connection handles count up and ids are random. So the
//! keyed, flood-resistant default hasher buys nothing here, and a
//! multiply-per-word hasher makes each lookup several times cheaper (these
//! lookups are a fifth of the server's work per echoed message).

use std::{
    collections::HashMap,
    hash::{BuildHasherDefault, Hasher},
};

/// A hash map for server-assigned ids.
pub(crate) type IdMap<K, V> = HashMap<K, V, BuildHasherDefault<IdHasher>>;

/// Folds each 8-byte word in with a rotate, an xor and a multiply.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct IdHasher(u64);

impl IdHasher {
    #[inline]
    fn add(&mut self, word: u64) {
        // An odd constant with well-spread bits (from the golden ratio).
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

impl Hasher for IdHasher {
    #[inline]
    fn finish(&self) -> u64 {
        self.0
    }

    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        let mut words = bytes.chunks_exact(8);
        for w in &mut words {
            self.add(u64::from_le_bytes([
                w[0], w[1], w[2], w[3], w[4], w[5], w[6], w[7],
            ]));
        }
        let rest = words.remainder();
        if !rest.is_empty() {
            let mut w = [0u8; 8];
            w[..rest.len()].copy_from_slice(rest);
            self.add(u64::from_le_bytes(w));
        }
    }

    #[inline]
    fn write_u64(&mut self, n: u64) {
        self.add(n);
    }

    #[inline]
    fn write_usize(&mut self, n: usize) {
        self.add(n as u64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spreads_sequential_and_text_keys() {
        let mut m: IdMap<u64, u64> = IdMap::default();
        for i in 0..10_000 {
            m.insert(i, i * 2);
        }
        assert!((0..10_000).all(|i| m[&i] == i * 2));
        let mut s: IdMap<[u8; 20], usize> = IdMap::default();
        for i in 0..1000usize {
            let mut k = [b'a'; 20];
            k[..8].copy_from_slice(&(i as u64).to_le_bytes());
            s.insert(k, i);
        }
        assert_eq!(s.len(), 1000);
    }
}
