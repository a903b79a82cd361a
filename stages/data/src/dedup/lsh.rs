//! Locality-sensitive hashing over MinHash signatures: the choice of bands ×
//! rows, and the band hashes records are bucketed by.
//!
//! With `b` bands of `r` rows, two records of Jaccard `t` share at least one
//! band with probability `P(t) = 1 − (1 − t^r)^b`. The choice below makes
//! `P(threshold) ≥ MIN_RECALL`, taking the largest `r` that can (fewest false
//! candidates), then the fewest bands that still reach it. datasketch instead
//! minimises the summed false-positive and false-negative areas, which for
//! threshold 0.8 and 128 permutations gives b = 9, r = 13 and P(0.8) ≈ 0.40:
//! most pairs right at the threshold are never even compared. False
//! candidates cost only an exact Jaccard check here, so recall comes first.

use super::hash::xxh64;

/// The least probability with which a pair at exactly the threshold must
/// become a candidate.
pub const MIN_RECALL: f64 = 0.9;

/// Probability that a pair of Jaccard `t` shares a band.
pub fn candidate_probability(t: f64, bands: usize, rows: usize) -> f64 {
    1.0 - (1.0 - t.powi(rows as i32)).powi(bands as i32)
}

/// `(bands, rows)` for `threshold`, with `bands × rows ≤ num_perm`; `None`
/// when no choice reaches [`MIN_RECALL`].
pub fn choose_bands(threshold: f64, num_perm: usize) -> Option<(usize, usize)> {
    (1..=num_perm).rev().find_map(|rows| {
        (1..=num_perm / rows)
            .find(|&bands| candidate_probability(threshold, bands, rows) >= MIN_RECALL)
            .map(|bands| (bands, rows))
    })
}

/// The hash of each band of a signature, written to `out` (`bands` values).
pub fn band_hashes(sig: &[u32], bands: usize, rows: usize, out: &mut Vec<u64>) {
    let mut buf = Vec::with_capacity(rows * 4);
    for band in 0..bands {
        buf.clear();
        for v in &sig[band * rows..(band + 1) * rows] {
            buf.extend_from_slice(&v.to_le_bytes());
        }
        out.push(xxh64(&buf, band as u64));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn band_choice_for_0_8_and_128() {
        let (b, r) = choose_bands(0.8, 128).unwrap();
        assert_eq!((b, r), (13, 8));
        let p = candidate_probability(0.8, b, r);
        assert!((0.9..0.92).contains(&p), "{p}");
        // One more row cannot reach 0.9 even with every permutation used.
        assert!(candidate_probability(0.8, 128 / 9, 9) < 0.9);
        // Nor can one band fewer.
        assert!(candidate_probability(0.8, 12, 8) < 0.9);
        // datasketch's default for the same settings finds 40% of such pairs.
        let ds = candidate_probability(0.8, 9, 13);
        assert!((ds - 0.399).abs() < 0.001, "{ds}");
        // Unrelated pairs rarely become candidates.
        assert!(candidate_probability(0.3, b, r) < 0.001);
    }

    #[test]
    fn band_choice_edges() {
        assert_eq!(choose_bands(1.0, 128), Some((1, 128)));
        assert_eq!(choose_bands(0.5, 1), None);
        let (b, r) = choose_bands(0.5, 128).unwrap();
        assert!(b * r <= 128 && candidate_probability(0.5, b, r) >= 0.9);
    }

    #[test]
    fn band_hashes_differ_per_band() {
        let mut out = Vec::new();
        band_hashes(&[1, 2, 1, 2], 2, 2, &mut out);
        assert_eq!(out.len(), 2);
        assert_ne!(out[0], out[1]);
    }
}
