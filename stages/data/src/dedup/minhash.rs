//! MinHash signatures: `num_perm` universal hash permutations
//! `h_i(x) = (a_i·x + b_i) mod p` over the Mersenne prime `p = 2^61 − 1`,
//! with `a_i ∈ [1, p)` and `b_i ∈ [0, p)` drawn in turn from splitmix64
//! seeded with the stage's `seed`. A shingle hash is reduced mod `p` first.
//! Each signature entry is the minimum over the shingles, kept as its low
//! 32 bits (two different minima agree there with probability 2^-32, which
//! is far below MinHash's own error, and it halves the size of signatures).
//!
//! Speed: the portable path multiplies in 128 bits. Where the CPU has AVX2
//! or AVX-512, the same arithmetic written with 32×32-bit products (which
//! those units do four or eight at a time) is compiled for it and picked at
//! run time; both give identical bits, which a test checks.

use crate::seeded::SplitMix64;

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
    /// Low and high 32 bits of each `a`, for the split multiplication.
    a_lo: Vec<u64>,
    a_hi: Vec<u64>,
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
        let a_lo = a.iter().map(|&x| x & LO32).collect();
        let a_hi = a.iter().map(|&x| x >> 32).collect();
        Permutations { a, b, a_lo, a_hi }
    }

    /// The first `n` entries of the signature of a (non-empty) set of
    /// shingle hashes (LSH needs only `bands × rows` of them).
    pub fn signature(&self, shingles: &[u64], n: usize) -> Vec<u32> {
        let mut mins = vec![u64::MAX; n];
        #[cfg(target_arch = "x86_64")]
        {
            let (lo, hi, b) = (&self.a_lo[..n], &self.a_hi[..n], &self.b[..n]);
            if std::arch::is_x86_feature_detected!("avx512f") {
                // SAFETY: the CPU has the feature the function is compiled for.
                unsafe { split_avx512(lo, hi, b, shingles, &mut mins) };
                return narrow(mins);
            }
            if std::arch::is_x86_feature_detected!("avx2") {
                // SAFETY: as above.
                unsafe { split_avx2(lo, hi, b, shingles, &mut mins) };
                return narrow(mins);
            }
        }
        self.mins_u128(shingles, &mut mins);
        narrow(mins)
    }

    /// The portable path: 128-bit products.
    fn mins_u128(&self, shingles: &[u64], mins: &mut [u64]) {
        let n = mins.len();
        for &s in shingles {
            let x = u128::from(reduce(u128::from(s)));
            for ((m, &a), &b) in mins.iter_mut().zip(&self.a[..n]).zip(&self.b[..n]) {
                // a·x + b < 2^122 + 2^61: one fold leaves it below 2p + 2,
                // two conditional subtractions finish the reduction.
                let v = u128::from(a) * x + u128::from(b);
                let mut f = (v as u64 & P) + (v >> 61) as u64;
                if f >= P {
                    f -= P;
                }
                if f >= P {
                    f -= P;
                }
                *m = (*m).min(f);
            }
        }
    }
}

fn narrow(mins: Vec<u64>) -> Vec<u32> {
    mins.into_iter().map(|m| m as u32).collect()
}

const LO32: u64 = 0xFFFF_FFFF;
const LO29: u64 = (1 << 29) - 1;

/// `mins[i] = min(mins[i], (a_i·x + b_i) mod p)` over the shingles, with
/// `a_i = hi·2^32 + lo` and `x = xh·2^32 + xl` multiplied in 32-bit halves:
/// `a·x = t2·2^64 + t1·2^32 + t0`, and mod p `2^64 ≡ 8`, `2^61 ≡ 1`, so
/// `t1·2^32 ≡ (t1 >> 29) + (t1 mod 2^29)·2^32`. The sum of the reduced
/// terms and `b` stays below 2^64; one fold and one subtraction finish.
#[inline(always)]
fn split_mins(lo: &[u64], hi: &[u64], b: &[u64], shingles: &[u64], mins: &mut [u64]) {
    for &s in shingles {
        let x = reduce(u128::from(s));
        let (xl, xh) = (x & LO32, x >> 32);
        for (((m, &al), &ah), &b) in mins.iter_mut().zip(lo).zip(hi).zip(b) {
            let t0 = al * xl;
            let t1 = ah * xl + al * xh;
            let t2 = ah * xh;
            let sum = (t2 << 3) + (t1 >> 29) + ((t1 & LO29) << 32) + (t0 & P) + (t0 >> 61) + b;
            let f = (sum & P) + (sum >> 61);
            let f = if f >= P { f - P } else { f };
            *m = (*m).min(f);
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn split_avx2(lo: &[u64], hi: &[u64], b: &[u64], shingles: &[u64], mins: &mut [u64]) {
    split_mins(lo, hi, b, shingles, mins)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn split_avx512(lo: &[u64], hi: &[u64], b: &[u64], shingles: &[u64], mins: &mut [u64]) {
    split_mins(lo, hi, b, shingles, mins)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::seeded::SplitMix64;

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
        assert_eq!(p.signature(&[1, 2, 3], 4), q.signature(&[1, 2, 3], 4));
        assert_ne!(Permutations::new(4, 43).signature(&[1, 2, 3], 4), p.signature(&[1, 2, 3], 4));
        // Pinned, so a change to the scheme cannot go unnoticed.
        assert_eq!(p.signature(&[0xdead_beef], 4), PINNED.to_vec());
    }

    const PINNED: [u32; 4] = [2098522560, 3303122410, 4018095663, 818912288];

    #[test]
    fn every_path_gives_the_same_bits() {
        let p = Permutations::new(128, 3);
        let mut rng = SplitMix64::new(11);
        for len in [1usize, 2, 7, 100] {
            let set: Vec<u64> = (0..len).map(|_| rng.next_u64()).chain([0, u64::MAX, P, P - 1]).collect();
            let mut want = vec![u64::MAX; 128];
            p.mins_u128(&set, &mut want);
            let mut split = vec![u64::MAX; 128];
            split_mins(&p.a_lo, &p.a_hi, &p.b, &set, &mut split);
            assert_eq!(split, want);
            assert_eq!(p.signature(&set, 128), narrow(want));
        }
    }

    #[test]
    fn signatures_estimate_jaccard() {
        let p = Permutations::new(256, 7);
        let a: Vec<u64> = (0..1000).map(|i| i * 7919).collect();
        let b: Vec<u64> = (200..1200).map(|i| i * 7919).collect(); // J = 800/1200
        let (sa, sb) = (p.signature(&a, 256), p.signature(&b, 256));
        assert_eq!(p.signature(&a, 10), sa[..10].to_vec());
        let est = sa.iter().zip(&sb).filter(|(x, y)| x == y).count() as f64 / 256.0;
        assert!((est - 2.0 / 3.0).abs() < 0.1, "{est}");
    }
}
