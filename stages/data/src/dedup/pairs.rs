//! Jaccard similarities kept across runs, so a re-run reads again only the
//! texts of candidate pairs it has not judged before.
//!
//! A pair is known by its two texts' exact keys (128-bit hashes of the
//! normalised texts, the smaller first); its Jaccard depends on those texts
//! and the shingling alone, so the memo entry is keyed by the sketch spec
//! (scheme version, normalisation, shingles), not by threshold or LSH shape.
//! One entry holds every pair a run looked at (about 40 bytes a pair); the
//! next run takes those it meets again and writes its own. The entry is a
//! hint: a lost or damaged one only means reading candidates again.

use std::collections::HashMap;
use std::sync::Mutex;

use dvx_stage_api::{Memo, MemoKey};

use super::params::SketchSpec;

const MAGIC: &[u8; 8] = b"dvxjac1\n";
const PAIR: usize = 40;

pub type PairKey = (u128, u128);

/// The pair key of two texts' exact keys: the smaller first.
pub fn pair_key(a: u128, b: u128) -> PairKey {
    (a.min(b), a.max(b))
}

/// Similarities an earlier run found, and those this run used.
type PairMap = HashMap<PairKey, f64, foldhash::fast::FixedState>;

#[derive(Default)]
pub struct KnownPairs {
    known: PairMap,
    used: Mutex<PairMap>,
}

impl KnownPairs {
    /// The entry an earlier run with this spec kept, if any.
    pub fn load(memo: &dyn Memo, spec: &SketchSpec) -> KnownPairs {
        let known = memo.get(&memo_key(spec)).and_then(|b| decode(&b)).unwrap_or_default();
        KnownPairs { known, used: Mutex::default() }
    }

    /// The Jaccard of `key` found earlier, if any.
    pub fn get(&self, key: PairKey) -> Option<f64> {
        self.known.get(&key).copied()
    }

    /// Note that this run used (found or took) `jaccard` for `key`.
    pub fn note(&self, key: PairKey, jaccard: f64) {
        self.used.lock().expect("pairs lock").insert(key, jaccard);
    }

    /// How many pairs this run took from an earlier one.
    pub fn reused(&self) -> usize {
        let used = self.used.lock().expect("pairs lock");
        used.keys().filter(|k| self.known.contains_key(k)).count()
    }

    /// Keep the pairs this run used for the next run.
    pub fn save(&self, memo: &dyn Memo, spec: &SketchSpec) {
        let used = self.used.lock().expect("pairs lock");
        if let Err(e) = memo.put_hint(&memo_key(spec), &encode(&used)) {
            tracing::warn!("cannot keep dedup's pair similarities for the next run: {e}");
        }
    }
}

fn memo_key(spec: &SketchSpec) -> MemoKey {
    // The permutations and fields play no part in a Jaccard of two texts.
    let spec = serde_json::json!({"scheme": spec.scheme, "normalize": spec.normalize, "shingle": spec.shingle});
    *blake3::Hasher::new()
        .update(b"dvx dedup pair jaccard\0")
        .update(&dvx_cache::canonical_json(&spec))
        .finalize()
        .as_bytes()
}

/// Sorted by key, so the same pairs give the same bytes.
fn encode(pairs: &PairMap) -> Vec<u8> {
    let mut sorted: Vec<(&PairKey, &f64)> = pairs.iter().collect();
    sorted.sort_unstable_by_key(|(k, _)| **k);
    let mut b = Vec::with_capacity(MAGIC.len() + 8 + sorted.len() * PAIR + 32);
    b.extend_from_slice(MAGIC);
    b.extend_from_slice(&(sorted.len() as u64).to_le_bytes());
    for ((x, y), j) in sorted {
        b.extend_from_slice(&x.to_le_bytes());
        b.extend_from_slice(&y.to_le_bytes());
        b.extend_from_slice(&j.to_le_bytes());
    }
    let sum = blake3::hash(&b);
    b.extend_from_slice(sum.as_bytes());
    b
}

fn decode(bytes: &[u8]) -> Option<PairMap> {
    let (body, sum) = bytes.split_at_checked(bytes.len().checked_sub(32)?)?;
    if blake3::hash(body).as_bytes() != sum {
        return None;
    }
    let rest = body.strip_prefix(MAGIC)?;
    let (n, rest) = rest.split_at_checked(8)?;
    let n = u64::from_le_bytes(n.try_into().ok()?) as usize;
    if rest.len() != n.checked_mul(PAIR)? {
        return None;
    }
    let u128_at = |b: &[u8]| u128::from_le_bytes(b.try_into().expect("16 bytes"));
    let pairs = rest.chunks_exact(PAIR).map(|p| {
        let j = f64::from_le_bytes(p[32..].try_into().expect("8 bytes"));
        ((u128_at(&p[..16]), u128_at(&p[16..32])), j)
    });
    let pairs: PairMap = pairs.collect();
    pairs.values().all(|j| (0.0..=1.0).contains(j)).then_some(pairs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use dvx_stage_api::MemoryMemo;

    fn spec() -> SketchSpec {
        super::super::params::DedupParams::default().spec()
    }

    #[test]
    fn pairs_used_come_back_in_the_next_run_and_others_are_dropped() {
        let memo = MemoryMemo::default();
        let first = KnownPairs::load(&memo, &spec());
        assert_eq!(first.get(pair_key(1, 2)), None);
        first.note(pair_key(2, 1), 0.5);
        first.note(pair_key(3, 4), 0.875);
        first.save(&memo, &spec());
        let second = KnownPairs::load(&memo, &spec());
        assert_eq!(second.get((1, 2)), Some(0.5));
        assert_eq!(second.get((3, 4)), Some(0.875));
        second.note((3, 4), 0.875);
        assert_eq!(second.reused(), 1);
        second.save(&memo, &spec());
        let third = KnownPairs::load(&memo, &spec());
        assert_eq!((third.get((1, 2)), third.get((3, 4))), (None, Some(0.875)));
        // Another shingling knows nothing.
        let mut other = spec();
        other.shingle.size += 1;
        assert_eq!(KnownPairs::load(&memo, &other).get((3, 4)), None);
    }

    #[test]
    fn a_damaged_entry_reads_as_none() {
        let mut pairs = PairMap::default();
        pairs.insert((1u128, 2u128), 0.25);
        let good = encode(&pairs);
        assert_eq!(decode(&good), Some(pairs.clone()));
        for cut in [0, 8, 20, good.len() - 1] {
            assert_eq!(decode(&good[..cut]), None);
        }
        let mut bad = good.clone();
        bad[20] ^= 1;
        assert_eq!(decode(&bad), None);
        pairs.insert((3, 4), 1.5);
        assert_eq!(decode(&encode(&pairs)), None, "a Jaccard outside 0..=1");
    }
}
