//! Payload masking (RFC 6455 section 5.3), in place and a word at a time.

/// XORs `buf` with the masking `key`, as if `buf` started `offset` bytes into
/// the payload. Masking twice with the same arguments restores the input.
///
/// ```
/// use wsio::ws::mask::apply_mask;
/// let mut data = *b"Hello";
/// apply_mask(&mut data, [0x37, 0xfa, 0x21, 0x3d], 0);
/// assert_eq!(data, [0x7f, 0x9f, 0x4d, 0x51, 0x58]);
/// // Resuming mid-payload gives the same bytes as masking in one go.
/// let mut parts = *b"Hello";
/// let (a, b) = parts.split_at_mut(2);
/// apply_mask(a, [0x37, 0xfa, 0x21, 0x3d], 0);
/// apply_mask(b, [0x37, 0xfa, 0x21, 0x3d], 2);
/// assert_eq!(parts, data);
/// ```
#[inline]
pub fn apply_mask(buf: &mut [u8], key: [u8; 4], offset: usize) {
    let key = rotate(key, offset);
    let word = u32::from_ne_bytes(key) as u64 | (u32::from_ne_bytes(key) as u64) << 32;
    let mut chunks = buf.chunks_exact_mut(32);
    for chunk in &mut chunks {
        // Four independent 8-byte lanes: the compiler turns this into vector XORs.
        for lane in chunk.chunks_exact_mut(8) {
            let v = u64::from_ne_bytes([
                lane[0], lane[1], lane[2], lane[3], lane[4], lane[5], lane[6], lane[7],
            ]) ^ word;
            lane.copy_from_slice(&v.to_ne_bytes());
        }
    }
    // The tail: 8 and 4 bytes at a time, then single bytes. Small frames
    // (most messages) live entirely here.
    let mut lanes = chunks.into_remainder().chunks_exact_mut(8);
    for lane in &mut lanes {
        let v = u64::from_ne_bytes([
            lane[0], lane[1], lane[2], lane[3], lane[4], lane[5], lane[6], lane[7],
        ]) ^ word;
        lane.copy_from_slice(&v.to_ne_bytes());
    }
    let mut rest = lanes.into_remainder();
    if rest.len() >= 4 {
        let (lane, tail) = rest.split_at_mut(4);
        let v = u32::from_ne_bytes([lane[0], lane[1], lane[2], lane[3]]) ^ u32::from_ne_bytes(key);
        lane.copy_from_slice(&v.to_ne_bytes());
        rest = tail;
    }
    for (i, b) in rest.iter_mut().enumerate() {
        *b ^= key[i & 3];
    }
}

/// Writes `src` masked with `key` (from payload offset 0) to `dst` (of the
/// same length), in one pass: reads `src` once, writes `dst` once.
///
/// ```
/// use wsio::ws::mask::{apply_mask, copy_masked};
/// let key = [0x37, 0xfa, 0x21, 0x3d];
/// let mut a = *b"Hello, world";
/// let mut b = [0u8; 12];
/// copy_masked(&a, key, &mut b);
/// apply_mask(&mut a, key, 0);
/// assert_eq!(a, b);
/// ```
#[inline]
pub fn copy_masked(src: &[u8], key: [u8; 4], dst: &mut [u8]) {
    let n = src.len().min(dst.len());
    let (src, dst) = (&src[..n], &mut dst[..n]);
    let word = u32::from_ne_bytes(key) as u64 | (u32::from_ne_bytes(key) as u64) << 32;
    let mut d = dst.chunks_exact_mut(8);
    let mut s = src.chunks_exact(8);
    for (d, s) in (&mut d).zip(&mut s) {
        // Chunks are 8 bytes: the conversion cannot fail.
        let v = u64::from_ne_bytes(s.try_into().unwrap_or_default()) ^ word;
        d.copy_from_slice(&v.to_ne_bytes());
    }
    for (i, (d, s)) in d.into_remainder().iter_mut().zip(s.remainder()).enumerate() {
        *d = s ^ key[i & 3];
    }
}

/// The key as seen from `offset` bytes into the payload.
#[inline]
fn rotate(key: [u8; 4], offset: usize) -> [u8; 4] {
    // Byte `i` of the result is `key[(i + offset) % 4]`: in little-endian
    // order, a right rotation by whole bytes.
    u32::from_le_bytes(key)
        .rotate_right(8 * (offset & 3) as u32)
        .to_le_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive(buf: &mut [u8], key: [u8; 4], offset: usize) {
        for (i, b) in buf.iter_mut().enumerate() {
            *b ^= key[(i + offset) % 4];
        }
    }

    #[test]
    fn copy_masked_matches_apply_mask() {
        let key = [1, 2, 3, 0xff];
        for len in 0..100 {
            let src: Vec<u8> = (0..len as u8).map(|b| b.wrapping_mul(37)).collect();
            let mut want = src.clone();
            apply_mask(&mut want, key, 0);
            let mut got = vec![0u8; len];
            copy_masked(&src, key, &mut got);
            assert_eq!(got, want, "len {len}");
        }
    }

    #[test]
    fn matches_the_bytewise_definition() {
        let key = [1, 2, 3, 0xff];
        for len in 0..100 {
            for offset in 0..5 {
                let mut a: Vec<u8> = (0..len as u8).collect();
                let mut b = a.clone();
                apply_mask(&mut a, key, offset);
                naive(&mut b, key, offset);
                assert_eq!(a, b, "len {len} offset {offset}");
            }
        }
    }
}
