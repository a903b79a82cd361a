//! `kind: dedup` — drop exact and near-duplicate records (MinHash-LSH with
//! every candidate confirmed by exact Jaccard), and `kind: minhash-index` —
//! sketch reference records once into a signature file dedup can reuse.
//!
//! How it works: each record's text (`fields`, default the record's text) is
//! normalised; its exact key is a 128-bit hash of that text. Each distinct
//! text is cut into shingles (hashed with XXH64), signed with MinHash
//! permutations, and bucketed per LSH band. Pairs sharing a bucket whose
//! shingle sets reach `threshold` Jaccard are linked; clusters are the
//! connected components; each keeps its highest-`score_field` record (first
//! in input order on ties), or none when it holds a reference record.
//!
//! Memory: pass 1 streams the inputs and keeps per record only its place,
//! score and exact key, and per distinct text its band hashes (spilled to
//! disk past a budget, `bands.rs`). Pass 2 finds the texts that share a
//! bucket and reads just those again from the input, in input order, for
//! their shingles (kept up to a budget, then spilled, `shingles.rs`); then
//! links, and writes the kept records in a third streaming pass.
//!
//! The hash scheme (XXH64, splitmix64-derived permutations mod 2^61 − 1,
//! 32-bit signature entries, shingling) is fixed by [`SCHEME_VERSION`]: it
//! is part of `version()` and of every signature file, and must be bumped
//! whenever a signature could change.
//!
//! # `dedup`
//!
//! deps: one or more JSONL inputs (deduplicated together, in order), then
//! `reference` reference deps (JSONL or `minhash-index` signature files).
//! outs: `[0]` kept records (input lines copied byte for byte, input order);
//! optional `[1]` clusters JSONL, one line per cluster that dropped something:
//! `{"kept": i, "dropped": [j, ...], "jaccard": [..]}` with 0-based input
//! indices (`"kept": null, "reference": {"source", "line"}` when a reference
//! covers it); optional `[2]` lineage JSONL, one line per dropped record:
//! `{"index", "source", "line", "match": "exact"|"near", "jaccard",
//! "duplicate_of": {"source", "line", "index" | "reference": true}}`.
//! The Jaccard shown is to the kept record; a record linked through another
//! cluster member may show less than the threshold.
//!
//! params (defaults):
//! - `mode: both` — `exact` (same normalised text), `near` (MinHash-LSH;
//!   identical texts are found as Jaccard 1 and labelled near) or `both`.
//! - `fields: []` — dotted field paths joined by newlines; empty: the
//!   record's text (`records::record_text`).
//! - `normalize: {lowercase: true, collapse_whitespace: true, strip_punctuation: false}`
//! - `shingle: {unit: words, size: 5}` — `words` or `chars`; a text shorter
//!   than one shingle is one shingle (all empty texts are equal).
//! - `num_perm: 128`, `seed: 42` — MinHash permutations.
//! - `threshold: 0.8` — Jaccard at or above which records are duplicates.
//! - `bands`, `rows` — LSH shape (both or neither, `bands × rows ≤
//!   num_perm`); by default the largest `rows`, then fewest `bands`, that
//!   make a pair at `threshold` a candidate with probability ≥ 0.9
//!   (13 × 8 for 0.8 and 128: p = 0.908; datasketch picks 9 × 13: p = 0.40).
//! - `score_field: score` — dotted path; the highest value is kept (numbers
//!   or numeric strings; records without it rank last).
//! - `reference: 0` — how many of the last deps are references.
//!
//! metrics: `input`, `reference` (records read from references; a signature
//! file holds each distinct text once), `exact_dups`, `near_dups`
//! (`exact_dups + near_dups = input − kept`), `reference_dups` (of those,
//! dropped for a reference), `empty_texts`, `kept`, `clusters`,
//! `candidate_pairs` (distinct pairs whose Jaccard was computed; pairs
//! already in one cluster are not re-checked), `confirmed_pairs`, `bands`,
//! `rows` (0 in exact mode). The log's `candidates:` line says how many
//! input texts were read again in pass 2, and how many pairs' Jaccard came
//! from earlier runs (with `reuse`, the memo keeps every pair's Jaccard a
//! run looked at, by the two texts' exact keys, `pairs.rs`: a re-run reads
//! again only the texts of pairs it has not judged before).
//!
//! # `minhash-index`
//!
//! deps: JSONL files; outs: `[0]` a signature file (format in `sigfile.rs`,
//! magic `DVXMHSIG`, header with scheme version, `num_perm`, `seed`,
//! `fields`, `normalize`, `shingle`). params: `fields`, `normalize`,
//! `shingle`, `num_perm`, `seed` as in `dedup`, which must match the dedup
//! that reads it (it refuses the file otherwise; in exact mode only the text
//! settings must match). metrics: `records`, `distinct`, `bytes`.

mod bands;
mod cluster;
mod corpus;
mod hash;
mod index;
mod lsh;
mod minhash;
mod output;
mod pairs;
pub mod params;
mod shingle;
mod shingles;
mod sigfile;
mod sketch;
#[cfg(test)]
mod tests;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use dvx_stage_api::{Count, Metrics, ParamError, Shape, StageContext, StageFailure, TypedStage};
use serde_json::json;

use cluster::UnionFind;
use corpus::Corpus;
use params::{DedupParams, Mode, SketchSpec};
use sketch::Sketcher;

use crate::field_check::FieldsSeen;

pub use index::MinhashIndex;

/// Version of the hash scheme; signature files carry it.
pub const SCHEME_VERSION: u32 = 1;
/// Version of dedup's outputs beyond the hashes (formats, keeper rules).
const OUTPUT_REVISION: u32 = 1;

/// The `dedup` stage kind.
pub struct Dedup;

impl TypedStage for Dedup {
    const KIND: &'static str = "dedup";
    const VERSION: u32 = SCHEME_VERSION * 1000 + OUTPUT_REVISION;
    const DEPS: Count = Count::AtLeast(1);
    const OUTS: Count = Count::Between(1, 3);
    const DEPS_ARE: &'static str = "JSONL inputs, then `reference` JSONL or signature files";
    const OUTS_ARE: &'static str = "kept records, then optionally clusters and lineage";
    type Params = DedupParams;
    type Prepared = DedupParams;

    fn check_outs(&self, outs: &[&str]) -> Result<(), dvx_stage_api::OutError> {
        crate::support::check_record_outs(outs, ..1)
    }

    fn prepare(&self, p: DedupParams, shape: Shape) -> Result<DedupParams, ParamError> {
        p.validate(shape.deps)?;
        Ok(p)
    }

    fn execute(&self, p: &DedupParams, ctx: &mut StageContext<'_>) -> Result<Metrics, StageFailure> {
        let pool = crate::support::pool(ctx.threads)?;
        let (deps, outs, cwd, progress, memo) = (ctx.deps, ctx.outs, ctx.cwd, ctx.progress, ctx.memo);
        // The stage log is not `Send`; collect the lines and copy them after.
        let mut log = Vec::new();
        let services = Services {
            progress,
            memo,
            pool: &pool,
            cancel: &ctx.cancel,
            previous_kept: ctx.previous_out(0),
            kept_prefix: ctx.kept_prefix(0),
        };
        let result = pool.install(|| run(p, deps, outs, cwd, &mut log, &services));
        ctx.log.write_all(&log)?;
        result
    }
}

/// A dep's name in outputs: relative to the pipeline folder, so outputs do
/// not depend on where the workspace lives.
fn source_name(cwd: &Path, dep: &Path) -> String {
    let rel = dep.strip_prefix(cwd).unwrap_or(dep);
    rel.components().map(|c| c.as_os_str().to_string_lossy()).collect::<Vec<_>>().join("/")
}

/// Refuse a signature file built with other settings than this stage's.
fn check_compatible(path: &Path, theirs: &SketchSpec, ours: &SketchSpec, mode: Mode) -> Result<(), StageFailure> {
    let mut diffs = Vec::new();
    let mut cmp = |name: &str, a: String, b: String| {
        if a != b {
            diffs.push(format!("{name} = {a} (this stage: {b})"));
        }
    };
    cmp("scheme version", theirs.scheme.to_string(), ours.scheme.to_string());
    cmp("fields", json!(theirs.fields).to_string(), json!(ours.fields).to_string());
    cmp("normalize", json!(theirs.normalize).to_string(), json!(ours.normalize).to_string());
    // Exact keys depend on the text only; signatures on everything.
    if mode != Mode::Exact {
        cmp("num_perm", theirs.num_perm.to_string(), ours.num_perm.to_string());
        cmp("seed", theirs.seed.to_string(), ours.seed.to_string());
        cmp("shingle", json!(theirs.shingle).to_string(), json!(ours.shingle).to_string());
    }
    if diffs.is_empty() {
        return Ok(());
    }
    Err(StageFailure::bad_input(format!(
        "reference {} was built with other settings: {}; rebuild it with the same params as this dedup",
        path.display(),
        diffs.join(", ")
    )))
}

/// What `run` is given from the stage context besides paths.
struct Services<'a> {
    progress: &'a dyn dvx_stage_api::Progress,
    memo: &'a dyn dvx_stage_api::Memo,
    pool: &'a rayon::ThreadPool,
    cancel: &'a dvx_stage_api::Cancel,
    /// The kept-records out's earlier content, kept aside by the engine.
    previous_kept: Option<&'a Path>,
    /// Where the kept-records writer says how much of it it kept.
    kept_prefix: Option<dvx_stage_api::KeptPrefix>,
}

fn run(
    p: &DedupParams,
    deps: &[PathBuf],
    outs: &[PathBuf],
    cwd: &Path,
    log: &mut Vec<u8>,
    services: &Services<'_>,
) -> Result<Metrics, StageFailure> {
    let Services { progress, memo, pool, cancel, previous_kept, ref kept_prefix } = *services;
    let started = Instant::now();
    // Progress: the bytes of the deps read and sketched, then the phases after.
    let size = |d: &PathBuf| std::fs::metadata(d).map(|m| m.len()).unwrap_or(0);
    progress.set_total(deps.iter().map(size).sum(), "bytes");
    let reading = |dep: &PathBuf| -> u64 {
        progress.message(&format!("sketching {}", source_name(cwd, dep)));
        size(dep)
    };
    let (bands, rows) = match p.mode {
        Mode::Exact => (0, 0),
        _ => p.bands_rows()?,
    };
    let spec = p.spec();
    // `score_field` only breaks ties when present, so the default is not
    // required of the records; one named on purpose is.
    let mut watched = FieldsSeen::new().name_all("fields", &p.fields).text_from(&p.fields);
    if p.score_field != DedupParams::default().score_field {
        watched = watched.name("score_field", &p.score_field);
    }
    let input_sketcher = Sketcher::new(spec.clone(), bands * rows, Some(p.score_field.clone())).watching(watched);
    let ref_sketcher = Sketcher::new(spec.clone(), bands * rows, None);
    let n_inputs = deps.len() - p.reference;
    // Spill files go beside the outputs: on the disk meant for this data.
    let spill_dir = outs[0].parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let mut corpus = Corpus::new(bands, rows, spill_dir);
    // A record's sketch depends on these alone, so only they salt the memo
    // (a new threshold with the same LSH shape still reuses every sketch).
    // `packed`: entries hold `corpus::Packed` records (earlier ones, JSON
    // objects, are not read: one full sketch after the upgrade).
    let salt = json!({"spec": spec, "bands": bands, "rows": rows, "score_field": p.score_field,
                      "watched": p.score_field != DedupParams::default().score_field, "packed": true});
    let mut reuse =
        crate::reuse::Reuse::new(memo, "dedup", Dedup::VERSION, &salt, p.reuse && input_sketcher.fits_mask());
    let keep_pairs = p.reuse && bands > 0 && memo.keeps();
    if keep_pairs {
        corpus.pairs = pairs::KnownPairs::load(memo, &spec);
    }
    for dep in &deps[..n_inputs] {
        if sigfile::is_signature_file(dep) {
            return Err(StageFailure::bad_input(format!(
                "{} is a signature file; only reference deps (the last `reference` deps) may be",
                dep.display()
            )));
        }
        cancel.check()?;
        let bytes = reading(dep);
        corpus.add_input(&input_sketcher, dep, source_name(cwd, dep), &mut reuse, pool)?;
        progress.inc(bytes);
    }
    tracing::info!(processed = reuse.processed, reused = reuse.reused, "dedup sketches");
    input_sketcher.check_fields()?;
    log.extend(input_sketcher.text_report("dedup").map(|l| l + "\n").unwrap_or_default().bytes());
    corpus.end_inputs();
    for dep in &deps[n_inputs..] {
        cancel.check()?;
        let bytes = reading(dep);
        if sigfile::is_signature_file(dep) {
            let reader = sigfile::Reader::open(dep)?;
            check_compatible(dep, &reader.header.spec, &spec, p.mode)?;
            corpus.add_signatures(reader)?;
        } else {
            corpus.add_jsonl(&ref_sketcher, dep, source_name(cwd, dep))?;
        }
        progress.inc(bytes);
    }
    corpus.seal_bands()?;
    let sketched_at = started.elapsed();
    cancel.check()?;

    // Pass 2: the input texts that share a bucket with another are the only
    // ones whose Jaccard may be checked; read them again, in input order.
    let band_done = || progress.inc(1);
    progress.set_total(bands as u64, "bands");
    progress.message("finding candidates");
    let buckets = cluster::Buckets::find(&corpus, &band_done)?;
    let lacking = buckets.lacking_shingles(&corpus);
    if !lacking.is_empty() {
        progress.set_total(lacking.len() as u64, "records");
        progress.message("reading candidates again");
        corpus.fill_shingles(&input_sketcher, &deps[..n_inputs], &lacking, &|n| progress.inc(n))?;
    }
    corpus.seal_shingles()?;
    tracing::info!(candidates = lacking.len(), spilled = ?corpus.spilled(), "dedup re-read candidate texts");
    let reread_at = started.elapsed();
    cancel.check()?;
    progress.set_total(bands as u64, "bands");
    progress.message("linking duplicates");
    let mut read_late = 0;
    let (clusters, drops, pairs) = if p.stable {
        cluster::decide_stable(&corpus, &buckets, p.threshold, p.mode != Mode::Near, &band_done)?
    } else {
        let mut uf = UnionFind::new(corpus.len());
        cluster::link_exact(&corpus, &mut uf);
        let pairs = match p.mode {
            Mode::Exact => cluster::PairStats::default(),
            _ => cluster::link_near(&corpus, &buckets, &mut uf, p.threshold, &band_done)?,
        };
        let clusters = cluster::clusters(&corpus, &mut uf);
        // A dropped record's Jaccard to its keeper, when they were linked
        // through others: their texts may not have been read yet.
        let late = cluster::lacking_for_drops(&corpus, &clusters);
        if !late.is_empty() {
            corpus.unseal_shingles();
            corpus.fill_shingles(&input_sketcher, &deps[..n_inputs], &late, &|_| {})?;
            corpus.seal_shingles()?;
            read_late = late.len();
        }
        let drops = cluster::drops(&corpus, &clusters, p.mode != Mode::Near)?;
        (clusters, drops, pairs)
    };
    if keep_pairs {
        buckets.note_all_pairs(&corpus)?;
        corpus.pairs.save(memo, &spec);
    }
    let linked_at = started.elapsed();
    progress.set_total(deps[..n_inputs].iter().map(size).sum(), "bytes");
    progress.message("writing");

    let over = (previous_kept, kept_prefix.clone());
    let kept = output::write_kept(&deps[..n_inputs], &drops, &outs[0], over, &|dep| progress.inc(size(dep)))?;
    if let Some(path) = outs.get(1) {
        output::write_clusters(&corpus, &clusters, &drops, path)?;
    }
    if let Some(path) = outs.get(2) {
        output::write_lineage(&corpus, &drops, path)?;
    }

    let exact_dups = drops.iter().flatten().filter(|d| d.exact).count();
    let near_dups = drops.iter().flatten().filter(|d| !d.exact).count();
    let reference_dups = drops.iter().flatten().filter(|d| corpus.is_ref(d.keeper)).count();
    let recall = if bands > 0 { lsh::candidate_probability(p.threshold, bands, rows) } else { 1.0 };
    writeln!(
        log,
        "dedup: {} input records, {} reference records, {} distinct texts sketched",
        corpus.n_input,
        corpus.len() - corpus.n_input,
        corpus.sketched.len()
    )?;
    if corpus.empty_inputs > 0 {
        writeln!(
            log,
            "warning: {} input records have an empty text (check `fields`); they all count as one text",
            corpus.empty_inputs
        )?;
    }
    if bands > 0 {
        writeln!(
            log,
            "lsh: {bands} bands × {rows} rows of {} permutations; a pair at Jaccard {} is a candidate with p = {recall:.3}",
            p.num_perm, p.threshold
        )?;
        let spilled = match corpus.spilled() {
            (false, false) => "",
            (true, false) => "; band hashes spilled to disk",
            (false, true) => "; shingles spilled to disk",
            (true, true) => "; band hashes and shingles spilled to disk",
        };
        writeln!(
            log,
            "candidates: {} input texts were read again to check their Jaccard with texts they share an LSH bucket with \
             ({} pairs' Jaccard found by earlier runs){spilled}",
            lacking.len(),
            corpus.pairs.reused(),
        )?;
        if read_late > 0 {
            writeln!(
                log,
                "candidates: {read_late} more texts read after linking, for the Jaccard of a dropped record to a \
                 keeper it is linked to through others"
            )?;
        }
    }
    writeln!(
        log,
        "kept {kept}, dropped {exact_dups} exact + {near_dups} near ({reference_dups} matched a reference); \
         {} candidate pairs, {} confirmed",
        pairs.candidates, pairs.confirmed
    )?;
    writeln!(log, "{}", reuse.summary())?;
    writeln!(
        log,
        "time: read+sketch {:.2}s, read candidates {:.2}s, link {:.2}s, write {:.2}s",
        sketched_at.as_secs_f64(),
        (reread_at - sketched_at).as_secs_f64(),
        (linked_at - reread_at).as_secs_f64(),
        (started.elapsed() - linked_at).as_secs_f64()
    )?;

    let mut m = Metrics::new();
    m.insert("input".into(), json!(corpus.n_input));
    m.insert("reference".into(), json!(corpus.len() - corpus.n_input));
    m.insert("exact_dups".into(), json!(exact_dups));
    m.insert("near_dups".into(), json!(near_dups));
    m.insert("reference_dups".into(), json!(reference_dups));
    m.insert("empty_texts".into(), json!(corpus.empty_inputs));
    m.insert("kept".into(), json!(kept));
    m.insert("clusters".into(), json!(clusters.len()));
    m.insert("candidate_pairs".into(), json!(pairs.candidates));
    m.insert("confirmed_pairs".into(), json!(pairs.confirmed));
    m.insert("bands".into(), json!(bands));
    m.insert("rows".into(), json!(rows));
    Ok(m)
}
