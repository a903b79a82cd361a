//! Which eval records the benchmark generates for: all of them, or a
//! seeded sample stratified by label, so a small sample keeps the set's
//! class balance (the first N records of a sorted file may all be one class).

use std::collections::BTreeMap;

use dvx_seeded::{sample_indices, SplitMix64};

use crate::support::apportion;

/// Positions (into `labels`) of a stratified sample of `n` (0 or ≥ the
/// total: all), in input order. Each class gets a share proportional to its
/// size (largest remainder) and at least one record, so `n` below the number
/// of classes still yields one per class.
pub fn stratified(labels: &[String], n: usize, seed: u64) -> Vec<usize> {
    if n == 0 || n >= labels.len() {
        return (0..labels.len()).collect();
    }
    let mut classes: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for (i, l) in labels.iter().enumerate() {
        classes.entry(l).or_default().push(i);
    }
    let sizes: Vec<f64> = classes.values().map(|v| v.len() as f64).collect();
    let mut quota = apportion(n, &sizes);
    for q in &mut quota {
        *q = (*q).max(1);
    }
    // The minimum of one may overshoot `n`: take back from the largest shares.
    while quota.iter().sum::<usize>() > n.max(classes.len()) {
        let (i, _) = quota.iter().enumerate().max_by_key(|(i, q)| (**q, usize::MAX - i)).expect("non-empty");
        quota[i] -= 1;
    }
    let mut chosen = Vec::with_capacity(n);
    for ((class, members), q) in classes.iter().zip(quota) {
        let mut rng = SplitMix64::with_label(seed, class);
        chosen.extend(sample_indices(members.len(), q, &mut rng).into_iter().map(|j| members[j]));
    }
    chosen.sort_unstable();
    chosen
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(spec: &[(&str, usize)]) -> Vec<String> {
        spec.iter().flat_map(|(l, n)| std::iter::repeat_n(l.to_string(), *n)).collect()
    }

    fn counts(labels: &[String], picked: &[usize]) -> BTreeMap<String, usize> {
        let mut m = BTreeMap::new();
        for &i in picked {
            *m.entry(labels[i].clone()).or_default() += 1;
        }
        m
    }

    #[test]
    fn sample_keeps_the_class_balance() {
        // Seed 004's eval set: 34 grep, 17 read, 17 direct, sorted by class.
        let l = labels(&[("grep", 34), ("read", 17), ("direct", 17)]);
        let picked = stratified(&l, 12, 7);
        assert_eq!(picked.len(), 12);
        let c = counts(&l, &picked);
        assert_eq!((c["grep"], c["read"], c["direct"]), (6, 3, 3));
        assert!(picked.windows(2).all(|w| w[0] < w[1]), "input order");
        // Seeded: the same seed picks the same records, another seed others.
        assert_eq!(stratified(&l, 12, 7), picked);
        assert_ne!(stratified(&l, 12, 8), picked);
        // All by default, and when asked for more than there is.
        assert_eq!(stratified(&l, 0, 7).len(), 68);
        assert_eq!(stratified(&l, 100, 7).len(), 68);
    }

    #[test]
    fn every_class_gets_one() {
        let l = labels(&[("a", 50), ("b", 2), ("c", 1)]);
        let c = counts(&l, &stratified(&l, 5, 1));
        assert_eq!((c["a"], c["b"], c["c"]), (3, 1, 1));
        // Fewer prompts than classes: one each.
        let c = counts(&l, &stratified(&l, 2, 1));
        assert_eq!((c["a"], c["b"], c["c"]), (1, 1, 1));
    }
}
