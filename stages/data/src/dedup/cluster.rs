//! Linking duplicates and deciding which copy stays.
//!
//! Records with the same exact key are linked outright. For near-duplicates,
//! each band buckets the sketched records by band hash (a sort, so the order
//! is fixed); every pair sharing a bucket is a candidate and is linked only
//! when the exact Jaccard of its shingle sets reaches the threshold. Pairs
//! already in one cluster are not checked again (the clusters cannot change),
//! and a rejected pair is remembered so other bands do not re-check it.
//! Clusters are the connected components of the links (union-find).

use std::collections::HashSet;

use dvx_stage_api::StageFailure;
use rayon::prelude::*;

use super::corpus::Corpus;
use super::shingle::jaccard;

/// Disjoint sets over record ids.
pub struct UnionFind {
    parent: Vec<u32>,
    size: Vec<u32>,
}

impl UnionFind {
    /// `n` singletons.
    pub fn new(n: usize) -> Self {
        UnionFind { parent: (0..n as u32).collect(), size: vec![1; n] }
    }

    /// The root of `x`'s set.
    pub fn find(&mut self, mut x: u32) -> u32 {
        while self.parent[x as usize] != x {
            let grand = self.parent[self.parent[x as usize] as usize];
            self.parent[x as usize] = grand;
            x = grand;
        }
        x
    }

    /// Join the sets of `a` and `b`.
    pub fn union(&mut self, a: u32, b: u32) {
        let (mut a, mut b) = (self.find(a), self.find(b));
        if a == b {
            return;
        }
        if self.size[a as usize] < self.size[b as usize] {
            std::mem::swap(&mut a, &mut b);
        }
        self.parent[b as usize] = a;
        self.size[a as usize] += self.size[b as usize];
    }
}

/// Counts from the near-duplicate pass.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct PairStats {
    /// Distinct candidate pairs whose Jaccard was computed.
    pub candidates: u64,
    /// Of those, pairs at or above the threshold.
    pub confirmed: u64,
}

/// Link every record to the first record with the same exact key.
pub fn link_exact(corpus: &Corpus, uf: &mut UnionFind) {
    for (id, &rep) in corpus.rep.iter().enumerate() {
        if rep as usize != id {
            uf.union(id as u32, rep);
        }
    }
}

/// Link near-duplicates found through LSH and confirmed by exact Jaccard.
pub fn link_near(corpus: &Corpus, uf: &mut UnionFind, threshold: f64) -> Result<PairStats, StageFailure> {
    let mut stats = PairStats::default();
    let bands = corpus.bands;
    let n = corpus.sketched.len();
    let mut rejected: HashSet<u64> = HashSet::new();
    let mut entries: Vec<(u64, u32)> = Vec::with_capacity(n);
    for band in 0..bands {
        entries.clear();
        entries.extend((0..n).map(|slot| (corpus.band_hash[slot * bands + band], corpus.sketched[slot])));
        // Ids are distinct, so the unstable sort still has one outcome.
        entries.par_sort_unstable();
        for bucket in entries.chunk_by(|x, y| x.0 == y.0).filter(|b| b.len() > 1) {
            link_bucket(corpus, uf, threshold, bucket, &mut rejected, &mut stats)?;
        }
    }
    Ok(stats)
}

/// Link the records of one bucket (sorted by id). Members are kept in
/// groups that are already connected; a record is checked against one
/// member of each other group after another until one confirms, so a bucket
/// of m mutual duplicates costs m − 1 checks, not m²/2.
fn link_bucket(
    corpus: &Corpus,
    uf: &mut UnionFind,
    threshold: f64,
    bucket: &[(u64, u32)],
    rejected: &mut HashSet<u64>,
    stats: &mut PairStats,
) -> Result<(), StageFailure> {
    let mut groups: Vec<Vec<u32>> = Vec::new();
    for &(_, j) in bucket {
        let mut joined = vec![j];
        let mut apart = Vec::with_capacity(groups.len());
        // j's shingles, read once they are first needed (they may be on disk).
        let mut of_j = None;
        for group in std::mem::take(&mut groups) {
            let mut linked = uf.find(group[0]) == uf.find(j);
            for &i in &group {
                if linked {
                    break;
                }
                if corpus.is_ref(i) && corpus.is_ref(j) {
                    continue;
                }
                let key = (u64::from(i) << 32) | u64::from(j);
                if rejected.contains(&key) {
                    continue;
                }
                stats.candidates += 1;
                if of_j.is_none() {
                    of_j = Some(corpus.shingles_of(j)?);
                }
                if jaccard(&corpus.shingles_of(i)?, of_j.as_deref().expect("read above")) >= threshold {
                    uf.union(i, j);
                    stats.confirmed += 1;
                    linked = true;
                } else {
                    rejected.insert(key);
                }
            }
            if linked {
                joined.extend(group);
            } else {
                apart.push(group);
            }
        }
        apart.push(joined);
        groups = apart;
    }
    Ok(())
}

/// Why a record was dropped.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Dropped {
    /// The record kept in its place (maybe a reference).
    pub keeper: u32,
    /// Same normalised text as the keeper (and exact matches are labelled).
    pub exact: bool,
    /// Jaccard similarity to the keeper.
    pub jaccard: f64,
}

/// A cluster that drops at least one input record.
#[derive(Debug, Clone, PartialEq)]
pub struct Cluster {
    /// The record kept (a reference when the cluster has one).
    pub keeper: u32,
    /// Dropped input records, in input order.
    pub dropped: Vec<u32>,
}

/// Form clusters and pick each one's keeper: a reference when there is one
/// (all inputs are then dropped), else the input with the highest score,
/// the earliest on ties. Returns the clusters in order of their first input
/// record, and per input record why it was dropped.
pub fn decide(
    corpus: &Corpus,
    uf: &mut UnionFind,
    label_exact: bool,
) -> Result<(Vec<Cluster>, Vec<Option<Dropped>>), StageFailure> {
    const NONE: u32 = u32::MAX;
    let n = corpus.len();
    let roots: Vec<u32> = (0..n as u32).map(|id| uf.find(id)).collect();
    let mut size = vec![0u32; n];
    for &r in &roots {
        size[r as usize] += 1;
    }
    let mut cluster_of = vec![NONE; n];
    let mut members: Vec<Vec<u32>> = Vec::new();
    for (id, &r) in roots.iter().enumerate() {
        if size[r as usize] < 2 {
            continue;
        }
        if cluster_of[r as usize] == NONE {
            cluster_of[r as usize] = members.len() as u32;
            members.push(Vec::new());
        }
        members[cluster_of[r as usize] as usize].push(id as u32);
    }
    let mut clusters = Vec::new();
    let mut drops = vec![None; corpus.n_input];
    for m in members {
        let inputs: Vec<u32> = m.iter().copied().filter(|&id| !corpus.is_ref(id)).collect();
        if inputs.is_empty() {
            continue;
        }
        let keeper = match m.iter().copied().find(|&id| corpus.is_ref(id)) {
            Some(r) => r,
            None => inputs.iter().copied().fold(inputs[0], |best, id| {
                if corpus.score[id as usize] > corpus.score[best as usize] {
                    id
                } else {
                    best
                }
            }),
        };
        let dropped: Vec<u32> = inputs.into_iter().filter(|&id| id != keeper).collect();
        for &d in &dropped {
            let same = corpus.exact[d as usize] == corpus.exact[keeper as usize];
            let jaccard = if same { 1.0 } else { jaccard(&corpus.shingles_of(d)?, &corpus.shingles_of(keeper)?) };
            drops[d as usize] = Some(Dropped { keeper, exact: same && label_exact, jaccard });
        }
        clusters.push(Cluster { keeper, dropped });
    }
    Ok((clusters, drops))
}
