//! A small seeded RNG (splitmix64) and order-keeping sampling, so that the
//! source stages pick the same records for the same seed on every machine
//! and thread count.

/// splitmix64: tiny, fast, and good enough for sampling. Also what dedup
/// derives its MinHash permutations from: its sequence must never change.
#[derive(Debug, Clone)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    /// A generator for `seed`.
    pub fn new(seed: u64) -> Self {
        SplitMix64(seed)
    }

    /// A generator for `seed` mixed with a label, so independent draws made
    /// with one user seed (e.g. one per example pattern) do not correlate.
    pub fn with_label(seed: u64, label: &str) -> Self {
        let h = blake3::hash(label.as_bytes());
        let mut b = [0u8; 8];
        b.copy_from_slice(&h.as_bytes()[..8]);
        SplitMix64(seed ^ u64::from_le_bytes(b))
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A uniform number in `0..n` (`n > 0`), without modulo bias.
    pub fn below(&mut self, n: u64) -> u64 {
        debug_assert!(n > 0);
        let zone = u64::MAX - u64::MAX % n;
        loop {
            let x = self.next_u64();
            if x < zone {
                return x % n;
            }
        }
    }
}

/// Pick `k` of `0..n` uniformly; the chosen indices come back sorted so the
/// caller keeps input order. `k >= n` returns every index.
pub fn sample_indices(n: usize, k: usize, rng: &mut SplitMix64) -> Vec<usize> {
    if k >= n {
        return (0..n).collect();
    }
    // Partial Fisher-Yates over an index array: O(n) memory, fine for the
    // candidate pools these stages handle.
    let mut idx: Vec<usize> = (0..n).collect();
    for i in 0..k {
        let j = i + rng.below((n - i) as u64) as usize;
        idx.swap(i, j);
    }
    let mut chosen = idx[..k].to_vec();
    chosen.sort_unstable();
    chosen
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splitmix64_sequence_is_fixed() {
        // First outputs for seed 0, as published with the algorithm; dedup's
        // permutations and every sample depend on them.
        let mut g = SplitMix64::new(0);
        assert_eq!(g.next_u64(), 0xe220a8397b1dcdaf);
        assert_eq!(g.next_u64(), 0x6e789e6aa1b965f4);
    }

    #[test]
    fn sampling_is_deterministic_sorted_and_complete() {
        let a = sample_indices(100, 10, &mut SplitMix64::new(7));
        let b = sample_indices(100, 10, &mut SplitMix64::new(7));
        assert_eq!(a, b);
        assert_eq!(a.len(), 10);
        assert!(a.windows(2).all(|w| w[0] < w[1]));
        assert_ne!(a, sample_indices(100, 10, &mut SplitMix64::new(8)));
        assert_eq!(sample_indices(3, 10, &mut SplitMix64::new(1)), vec![0, 1, 2]);
    }

    #[test]
    fn labels_decorrelate() {
        let mut a = SplitMix64::with_label(1, "grep");
        let mut b = SplitMix64::with_label(1, "read");
        assert_ne!(a.next_u64(), b.next_u64());
    }
}
