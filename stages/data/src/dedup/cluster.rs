//! Linking duplicates and deciding which copy stays.
//!
//! Records with the same exact key are linked outright. For near-duplicates,
//! each band buckets the sketched records by band hash (a sort, so the order
//! is fixed); every pair sharing a bucket is a candidate and is linked only
//! when the exact Jaccard of its shingle sets reaches the threshold. Pairs
//! already in one cluster are not checked again (the clusters cannot change),
//! and a rejected pair is remembered so other bands do not re-check it.
//! Clusters are the connected components of the links (union-find).

use std::collections::{HashMap, HashSet};

use dvx_stage_api::StageFailure;
use rayon::prelude::*;

use super::corpus::Corpus;

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

/// One side's tables for bucketing a band (see [`Buckets::find`]).
struct BandScratch {
    entries: Vec<(u64, u32)>,
    counts: Vec<u8>,
}

impl BandScratch {
    fn for_corpus(corpus: &Corpus) -> BandScratch {
        // Most band hashes occur once: a count per hash's place in a table
        // about twice their number finds those that may occur again, and
        // only they are sorted (a sort of all cost 30 ms a band at 1M).
        let places = (2 * corpus.band_hash.len()).next_power_of_two().max(64);
        BandScratch { entries: Vec::with_capacity(corpus.band_hash.len()), counts: vec![0u8; places] }
    }

    /// The buckets of more than one record in `band`: their ids, bucket
    /// after bucket, and each bucket's length.
    fn buckets(&mut self, corpus: &Corpus, band: usize) -> Result<(Vec<u32>, Vec<usize>), StageFailure> {
        let (entries, counts) = (&mut self.entries, &mut self.counts);
        let places = counts.len();
        let place = |h: u64| ((h ^ (h >> 29)).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 32) as usize & (places - 1);
        entries.clear();
        counts.fill(0);
        corpus.band_hash.for_each_in_band(band, |slot, h| {
            let c = &mut counts[place(h)];
            *c = c.saturating_add(1);
            entries.push((h, corpus.sketched[slot]))
        })?;
        entries.retain(|&(h, _)| counts[place(h)] > 1);
        // Ids are distinct, so the unstable sort still has one outcome.
        entries.par_sort_unstable();
        let (mut ids, mut lens) = (Vec::new(), Vec::new());
        for bucket in entries.chunk_by(|x, y| x.0 == y.0).filter(|b| b.len() > 1) {
            ids.extend(bucket.iter().map(|x| x.1));
            lens.push(bucket.len());
        }
        Ok((ids, lens))
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

/// The LSH buckets of more than one record, band by band, each sorted by
/// record id: found once (a sort of every band), then read by both the
/// candidate search and the linking.
pub struct Buckets {
    /// Record ids, bucket after bucket.
    ids: Vec<u32>,
    /// Where each bucket ends in `ids`.
    ends: Vec<usize>,
    /// How many buckets each band's end brings the count to.
    band_ends: Vec<usize>,
}

impl Buckets {
    /// Bucket every band of `corpus`, calling `band_done` after each.
    /// Bands are bucketed two at a time, one on each side of a
    /// `rayon::join`, each with its own scratch tables.
    pub fn find(corpus: &Corpus, band_done: &dyn Fn()) -> Result<Buckets, StageFailure> {
        let mut b = Buckets { ids: Vec::new(), ends: Vec::new(), band_ends: Vec::new() };
        let (mut left, mut right) = (BandScratch::for_corpus(corpus), BandScratch::for_corpus(corpus));
        let mut band = 0;
        while band < corpus.bands {
            let (first, second) = if band + 1 < corpus.bands {
                let (x, y) = rayon::join(|| left.buckets(corpus, band), || right.buckets(corpus, band + 1));
                (x?, Some(y?))
            } else {
                (left.buckets(corpus, band)?, None)
            };
            for (ids, lens) in std::iter::once(first).chain(second) {
                let mut at = b.ids.len();
                b.ids.extend(ids);
                for len in lens {
                    at += len;
                    b.ends.push(at);
                }
                b.band_ends.push(b.ends.len());
                band_done();
            }
            band += 2;
        }
        Ok(b)
    }

    /// Calls `f` with each bucket in order, and `band_done` after each band.
    fn each(
        &self,
        band_done: &dyn Fn(),
        mut f: impl FnMut(&[u32]) -> Result<(), StageFailure>,
    ) -> Result<(), StageFailure> {
        let (mut from, mut bucket) = (0, 0);
        for &band_end in &self.band_ends {
            for &end in &self.ends[bucket..band_end] {
                f(&self.ids[from..end])?;
                from = end;
            }
            bucket = band_end;
            band_done();
        }
        Ok(())
    }

    /// The records whose shingles a Jaccard check may need but which are
    /// not at hand (input texts), by id: those in a pair of a bucket whose
    /// similarity an earlier run did not find (any pair of a bucket may be
    /// checked; in a bucket too large to list its pairs, every member).
    pub fn lacking_shingles(&self, corpus: &Corpus) -> Vec<u32> {
        let mut want: Vec<u32> = Vec::new();
        let mut from = 0;
        for &end in &self.ends {
            let bucket = &self.ids[from..end];
            from = end;
            if bucket.len() > LIST_PAIRS_UP_TO {
                want.extend(bucket.iter().copied().filter(|&id| corpus.lacks(id)));
                continue;
            }
            for_each_pair(corpus, bucket, |i, j| {
                if !corpus.knows_similarity(i, j) {
                    want.extend([i, j].into_iter().filter(|&id| corpus.lacks(id)));
                }
            });
        }
        want.sort_unstable();
        want.dedup();
        want
    }

    /// Note the similarity of every pair of every bucket whose pairs
    /// [`Buckets::lacking_shingles`] lists, as far as known or computable
    /// from shingles at hand, so the next run knows them all: linking
    /// checks only some (not those already in one cluster), and which ones
    /// depends on the order the records come in.
    pub fn note_all_pairs(&self, corpus: &Corpus) -> Result<(), StageFailure> {
        let mut from = 0;
        for &end in &self.ends {
            let bucket = &self.ids[from..end];
            from = end;
            if bucket.len() > LIST_PAIRS_UP_TO {
                continue;
            }
            let mut result = Ok(());
            for_each_pair(corpus, bucket, |i, j| {
                if result.is_ok() && (corpus.knows_similarity(i, j) || !(corpus.lacks(i) || corpus.lacks(j))) {
                    result = corpus.similarity(i, j).map(drop);
                }
            });
            result?;
        }
        Ok(())
    }
}

/// Buckets larger than this are not listed pair by pair: all their members'
/// texts are read (m²/2 pairs would cost more than reading m texts).
const LIST_PAIRS_UP_TO: usize = 64;

/// Calls `f` for every pair of a bucket that linking may check (not two
/// references).
fn for_each_pair(corpus: &Corpus, bucket: &[u32], mut f: impl FnMut(u32, u32)) {
    for (k, &i) in bucket.iter().enumerate() {
        for &j in &bucket[k + 1..] {
            if !(corpus.is_ref(i) && corpus.is_ref(j)) {
                f(i, j);
            }
        }
    }
}

/// Link near-duplicates found through LSH and confirmed by exact Jaccard.
pub fn link_near(
    corpus: &Corpus,
    buckets: &Buckets,
    uf: &mut UnionFind,
    threshold: f64,
    band_done: &dyn Fn(),
) -> Result<PairStats, StageFailure> {
    let mut stats = PairStats::default();
    let mut rejected: HashSet<u64> = HashSet::new();
    buckets.each(band_done, |bucket| link_bucket(corpus, uf, threshold, bucket, &mut rejected, &mut stats))?;
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
    bucket: &[u32],
    rejected: &mut HashSet<u64>,
    stats: &mut PairStats,
) -> Result<(), StageFailure> {
    let mut groups: Vec<Vec<u32>> = Vec::new();
    for &j in bucket {
        let mut joined = vec![j];
        let mut apart = Vec::with_capacity(groups.len());
        for group in groups.drain(..) {
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
                if corpus.similarity(i, j)? >= threshold {
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

/// The records [`drops`] needs the shingles of and lacks: a dropped record
/// and its keeper whose similarity was neither checked when linking (they
/// may be linked through others) nor found by an earlier run.
pub fn lacking_for_drops(corpus: &Corpus, clusters: &[Cluster]) -> Vec<u32> {
    let mut want: Vec<u32> = Vec::new();
    for c in clusters {
        for &d in &c.dropped {
            if corpus.exact[d as usize] != corpus.exact[c.keeper as usize] && !corpus.knows_similarity(d, c.keeper) {
                want.extend([d, c.keeper].into_iter().filter(|&id| corpus.lacks(id)));
            }
        }
    }
    want.sort_unstable();
    want.dedup();
    want
}

/// Per input record why it was dropped: its keeper, and its Jaccard to it.
pub fn drops(corpus: &Corpus, clusters: &[Cluster], label_exact: bool) -> Result<Vec<Option<Dropped>>, StageFailure> {
    let mut drops = vec![None; corpus.n_input];
    for c in clusters {
        for &d in &c.dropped {
            let same = corpus.exact[d as usize] == corpus.exact[c.keeper as usize];
            let jaccard = if same { 1.0 } else { corpus.similarity(d, c.keeper)? };
            drops[d as usize] = Some(Dropped { keeper: c.keeper, exact: same && label_exact, jaccard });
        }
    }
    Ok(drops)
}

/// Form clusters and pick each one's keeper: a reference when there is one
/// (all inputs are then dropped), else the input with the highest score,
/// the earliest on ties. Returns the clusters in order of their first input
/// record.
pub fn clusters(corpus: &Corpus, uf: &mut UnionFind) -> Vec<Cluster> {
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
        clusters.push(Cluster { keeper, dropped });
    }
    clusters
}

/// What [`decide_stable`] finds: clusters, drops and the pairs it checked.
pub type StableVerdicts = (Vec<Cluster>, Vec<Option<Dropped>>, PairStats);

/// The append-stable choice (`stable: true`): records are judged in order,
/// references first, then inputs in input order; a record is dropped when
/// its text equals, or reaches `threshold` Jaccard with, a record kept
/// before it (the most similar one, the earliest on ties, is its keeper),
/// and kept otherwise. A record's fate depends only on what precedes it, so
/// appending records never changes an earlier one's; scores play no part.
pub fn decide_stable(
    corpus: &Corpus,
    buckets: &Buckets,
    threshold: f64,
    label_exact: bool,
    band_done: &dyn Fn(),
) -> Result<StableVerdicts, StageFailure> {
    let n_refs = corpus.len() - corpus.n_input;
    // Where a record comes in the judging order.
    let pos = |id: u32| if corpus.is_ref(id) { id as usize - corpus.n_input } else { id as usize + n_refs };
    // The LSH buckets of more than one record, and each record's buckets.
    let mut in_bucket: Vec<(u32, u32)> = Vec::new();
    let mut n_buckets = 0u32;
    buckets.each(band_done, |bucket| {
        in_bucket.extend(bucket.iter().map(|&id| (id, n_buckets)));
        n_buckets += 1;
        Ok(())
    })?;
    in_bucket.sort_unstable();
    let buckets_of = |id: u32| {
        let from = in_bucket.partition_point(|x| x.0 < id);
        let to = in_bucket.partition_point(|x| x.0 <= id);
        in_bucket[from..to].iter().map(|x| x.1 as usize)
    };
    let mut kept_in: Vec<Vec<u32>> = vec![Vec::new(); n_buckets as usize];
    let mut kept_text: HashMap<u128, u32> = HashMap::new();
    let mut drops: Vec<Option<Dropped>> = vec![None; corpus.n_input];
    let mut stats = PairStats::default();
    for i in (corpus.n_input..corpus.len()).chain(0..corpus.n_input) {
        let id = i as u32;
        let rep = corpus.rep[i];
        let verdict = if corpus.is_ref(id) {
            None
        } else if let Some(&k) = kept_text.get(&corpus.exact[i]) {
            Some(Dropped { keeper: k, exact: label_exact, jaccard: 1.0 })
        } else if rep != id {
            // The same text came earlier and was dropped: so is this one.
            drops[rep as usize].map(|d| Dropped { exact: false, ..d })
        } else {
            let mut cands: Vec<u32> = buckets_of(id).flat_map(|b| kept_in[b].iter().copied()).collect();
            cands.sort_unstable_by_key(|&c| pos(c));
            cands.dedup();
            let mut best: Option<(f64, u32)> = None;
            for c in cands {
                stats.candidates += 1;
                let j = corpus.similarity(c, id)?;
                if j >= threshold {
                    stats.confirmed += 1;
                    if best.is_none_or(|(b, _)| j > b) {
                        best = Some((j, c));
                    }
                }
            }
            best.map(|(jaccard, keeper)| Dropped { keeper, exact: false, jaccard })
        };
        match verdict {
            Some(d) => drops[i] = Some(d),
            None => {
                kept_text.entry(corpus.exact[i]).or_insert(id);
                for b in buckets_of(rep) {
                    kept_in[b].push(id);
                }
            }
        }
    }
    // Clusters: per keeper its drops, in order of their first input record.
    let mut by_keeper: HashMap<u32, Vec<u32>> = HashMap::new();
    for (i, d) in drops.iter().enumerate() {
        if let Some(d) = d {
            by_keeper.entry(d.keeper).or_default().push(i as u32);
        }
    }
    let mut clusters: Vec<Cluster> =
        by_keeper.into_iter().map(|(keeper, dropped)| Cluster { keeper, dropped }).collect();
    let first = |c: &Cluster| if corpus.is_ref(c.keeper) { c.dropped[0] } else { c.keeper.min(c.dropped[0]) };
    clusters.sort_unstable_by_key(first);
    Ok((clusters, drops, stats))
}
