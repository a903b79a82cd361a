//! MinHash signatures: `num_perm` universal hash permutations
//! `h_i(x) = (a_i·x + b_i) mod p` over the Mersenne prime `p = 2^61 − 1`,
//! with `a_i ∈ [1, p)` and `b_i ∈ [0, p)` drawn in turn from splitmix64
//! seeded with the stage's `seed`. A shingle hash is reduced mod `p` first.
//! Each signature entry is the minimum over the shingles, kept as its low
//! 32 bits (two different minima agree there with probability 2^-32, which
//! is far below MinHash's own error, and it halves the size of signatures).

use super::hash::SplitMix64;

/// The Mersenne prime 2^61 − 1.
pub const P: u64 = (1 << 61) - 1;

/// `x mod p` for any `x < 2^122`, using `2^61 ≡ 1 (mod p)`.
fn reduce(x: u128) -> u64 {
    let folded = (x as u64 & P) + (x >> 61) as u64;
    let folded = (folded & P) + (folded >> 61);
    if folded >= P {
        folded - P
    } else {
        folded
    }
}

/// The permutations of one `(num_perm, seed)`.
#[derive(Debug, Clone)]
pub struct Permutations {
    a: Vec<u64>,
    b: Vec<u64>,
}

impl Permutations {
    /// Draw `num_perm` permutations from `seed`.
    pub fn new(num_perm: usize, seed: u64) -> Self {
        let mut rng = SplitMix64::new(seed);
        let mut a = Vec::with_capacity(num_perm);
        let mut b = Vec::with_capacity(num_perm);
        for _ in 0..num_perm {
            a.push(1 + rng.next_u64() % (P - 1));
            b.push(rng.next_u64() % P);
        }
        Permutations { a, b }
    }

    /// The signature of a (non-empty) set of shingle hashes.
    pub fn signature(&self, shingles: &[u64]) -> Vec<u32> {
        let mut mins = vec![u64::MAX; self.a.len()];
        for &s in shingles {
            let x = reduce(u128::from(s));
            for ((m, &a), &b) in mins.iter_mut().zip(&self.a).zip(&self.b) {
                // a·x < 2^122, so one reduction; adding b < p keeps it < 2p.
                let mut v = reduce(u128::from(a) * u128::from(x)) + b;
                if v >= P {
                    v -= P;
                }
                if v < *m {
                    *m = v;
                }
            }
        }
        mins.into_iter().map(|m| m as u32).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reduce_is_mod_p() {
        for x in [0u128, 1, P as u128 - 1, P as u128, P as u128 + 5, (P as u128) * (P as u128 - 1), u64::MAX as u128] {
            assert_eq!(u128::from(reduce(x)), x % P as u128, "{x}");
        }
    }

    #[test]
    fn permutations_are_fixed_by_seed() {
        let p = Permutations::new(4, 42);
        let q = Permutations::new(4, 42);
        assert_eq!(p.signature(&[1, 2, 3]), q.signature(&[1, 2, 3]));
        assert_ne!(Permutations::new(4, 43).signature(&[1, 2, 3]), p.signature(&[1, 2, 3]));
        // Pinned, so a change to the scheme cannot go unnoticed.
        assert_eq!(p.signature(&[0xdead_beef]), PINNED.to_vec());
    }

    const PINNED: [u32; 4] = [2098522560, 3303122410, 4018095663, 818912288];

    #[test]
    fn signatures_estimate_jaccard() {
        let p = Permutations::new(256, 7);
        let a: Vec<u64> = (0..1000).map(|i| i * 7919).collect();
        let b: Vec<u64> = (200..1200).map(|i| i * 7919).collect(); // J = 800/1200
        let (sa, sb) = (p.signature(&a), p.signature(&b));
        let est = sa.iter().zip(&sb).filter(|(x, y)| x == y).count() as f64 / 256.0;
        assert!((est - 2.0 / 3.0).abs() < 0.1, "{est}");
    }
}
