//! Confidence intervals for accuracies: the Wilson score interval for one
//! proportion, and Newcombe's hybrid (built from two Wilson intervals) for
//! the difference of two. Both stay inside [0, 1] and behave at 0/n and n/n,
//! where the textbook normal interval collapses to a point.

/// z for a two-sided 95% interval.
pub const Z95: f64 = 1.959_963_984_540_054;

/// Wilson 95% interval of `k` successes in `n` trials; `(0, 1)` when `n` is 0.
pub fn wilson(k: usize, n: usize) -> (f64, f64) {
    if n == 0 {
        return (0.0, 1.0);
    }
    let (k, n, z2) = (k as f64, n as f64, Z95 * Z95);
    let p = k / n;
    let centre = (p + z2 / (2.0 * n)) / (1.0 + z2 / n);
    let half = Z95 / (1.0 + z2 / n) * (p * (1.0 - p) / n + z2 / (4.0 * n * n)).sqrt();
    ((centre - half).max(0.0), (centre + half).min(1.0))
}

/// Newcombe's 95% interval for `k1/n1 - k2/n2` (method 10, from the two
/// Wilson intervals).
pub fn difference(k1: usize, n1: usize, k2: usize, n2: usize) -> (f64, f64) {
    let p = |k: usize, n: usize| if n == 0 { 0.0 } else { k as f64 / n as f64 };
    let (p1, p2) = (p(k1, n1), p(k2, n2));
    let ((l1, u1), (l2, u2)) = (wilson(k1, n1), wilson(k2, n2));
    let d = p1 - p2;
    let lo = d - ((p1 - l1).powi(2) + (u2 - p2).powi(2)).sqrt();
    let hi = d + ((u1 - p1).powi(2) + (p2 - l2).powi(2)).sqrt();
    (lo, hi)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: (f64, f64), b: (f64, f64)) -> bool {
        (a.0 - b.0).abs() < 5e-5 && (a.1 - b.1).abs() < 5e-5
    }

    #[test]
    fn wilson_matches_published_values() {
        // Newcombe (1998), Table I: 81/263 → 0.2553–0.3662; 15/148 → 0.0624–0.1605;
        // 0/20 → 0–0.1611; 1/29 → 0.0061–0.1718.
        assert!(close(wilson(81, 263), (0.2553, 0.3662)), "{:?}", wilson(81, 263));
        assert!(close(wilson(15, 148), (0.0624, 0.1605)), "{:?}", wilson(15, 148));
        assert!(close(wilson(0, 20), (0.0, 0.1611)), "{:?}", wilson(0, 20));
        assert!(close(wilson(1, 29), (0.0061, 0.1718)), "{:?}", wilson(1, 29));
        assert_eq!(wilson(0, 0), (0.0, 1.0));
        let (lo, hi) = wilson(12, 12);
        assert!(hi == 1.0 && lo > 0.75 && lo < 0.76, "{lo}");
    }

    #[test]
    fn difference_matches_newcombe() {
        // Newcombe (1998) Table II, method 10: 56/70 − 48/80 → 0.0524 to 0.3339;
        // 9/10 − 3/10 → 0.1705 to 0.8090.
        assert!(close(difference(56, 70, 48, 80), (0.0524, 0.3339)), "{:?}", difference(56, 70, 48, 80));
        assert!(close(difference(9, 10, 3, 10), (0.1705, 0.8090)), "{:?}", difference(9, 10, 3, 10));
        // Seed 004's phase-7 swing, 7/12 vs 11/12: the interval holds 0, not significant at n=12.
        let (lo, hi) = difference(11, 12, 7, 12);
        assert!(lo < 0.0 && hi > 0.0, "{lo} {hi}");
    }
}
