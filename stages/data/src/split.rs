//! `kind: split` — train / valid (/ test) splits decided by each record's
//! own content.
//!
//! ```yaml
//! params:
//!   ratio: [0.9, 0.1]            # one fraction per out, adding up to 1
//!   # or
//!   counts: {valid: 80}          # exact sizes of valid (and test); train gets the rest
//!   seed: 0
//!   stratify_by: null            # a category field: each category split alike
//!   hash_fields: []              # fields hashed; [] = the whole record
//!   on_error: fail               # or `skip` malformed lines
//!   stable: false                # with ratio + stratify_by: place by hash alone
//! ```
//! Every record gets a seeded hash of its canonical content (key order does
//! not matter). With `ratio` and no `stratify_by`, the hash alone places the
//! record (valid below `ratio[1]`, then test, then train), so the stage
//! streams and appending records never moves the others. With `counts`, the
//! smallest hashes go to valid, the next to test, the rest to train. With
//! `stratify_by`, each category gets its share (`ratio` of its size, or
//! `counts` spread in proportion to category sizes, largest remainder)
//! chosen the same way inside the category; that is exact but not
//! append-stable (a category's quota moves as it grows, so a record can move
//! between valid and train). `stable: true` places a stratified record by
//! its hash alone, as without strata: appends never move a record and each
//! category gets `ratio` of its records on average. Identical records hash alike,
//! so exact duplicates land on the same side.
//!
//! deps: one JSONL file. outs: [train, valid] or [train, valid, test],
//! records in input order. A re-run takes each unchanged record's hash and
//! category from its earlier runs and parses only new or changed records
//! (docs/incremental.md).
//! Metrics: `records`, `train`, `valid`, `test` (3 outs), `malformed`, and
//! `categories` ({category: {train, valid[, test]}}) when stratified.

use std::collections::BTreeMap;

use dvx_stage_api::{Count, Metrics, ParamDoc, ParamError, ParamsDoc, Shape, StageContext, StageFailure, TypedStage};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::field_check::FieldsSeen;
use crate::records::{out_writer, RecordWriter};
use crate::reuse::{copy_line, for_each_record, is_compact, Batch, Batches, PerItem, Reuse};
use crate::support::{apportion, category_of, content_hash, pool, round4, Categories, OnError};

/// The `split` stage kind.
pub struct Split;

/// Params of `split`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Params {
    #[serde(default)]
    ratio: Option<Vec<f64>>,
    #[serde(default)]
    counts: Option<Counts>,
    #[serde(default)]
    seed: u64,
    #[serde(default)]
    stratify_by: Option<String>,
    #[serde(default)]
    hash_fields: Vec<String>,
    #[serde(default)]
    on_error: OnError,
    /// With `ratio` and `stratify_by`: place each record by its hash alone,
    /// so appends never move a record. Left out of the key when false.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    stable: bool,
    /// Reuse earlier runs' per-record hashes and categories (see
    /// docs/incremental.md). Left out of the key when on.
    #[serde(default = "crate::reuse::on", skip_serializing_if = "crate::reuse::is_on")]
    reuse: bool,
}

impl ParamsDoc for Params {
    fn doc() -> Vec<ParamDoc> {
        vec![
            ParamDoc::new("ratio", "list of fractions", "-", "One fraction per out, adding up to 1 (or `counts`)."),
            ParamDoc::new("counts", "{valid, test}", "-", "Exact sizes of valid (and test); train gets the rest."),
            ParamDoc::new("seed", "integer", "0", "Seeds the content hash that places each record."),
            ParamDoc::new("stratify_by", "field path", "-", "A category field: each category is split alike."),
            ParamDoc::new("hash_fields", "list of field paths", "[]", "Fields hashed; `[]` = the whole record."),
            ParamDoc::new(
                "stable",
                "bool",
                "false",
                "With `ratio` and `stratify_by`: each record's side from its hash alone, so appends never move a \
                 record (shares per category are `ratio` on average, not exact).",
            ),
            crate::reuse::param_doc(),
            ParamDoc::new(
                "on_error",
                "fail | skip",
                "fail",
                "What a malformed line does: stop, or count it and go on.",
            ),
        ]
    }
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Counts {
    #[serde(default)]
    valid: usize,
    #[serde(default)]
    test: usize,
}

const TRAIN: u8 = 0;
const VALID: u8 = 1;
const TEST: u8 = 2;
const SIDES: [&str; 3] = ["train", "valid", "test"];

fn parse(p: Params, outs: usize) -> Result<Params, ParamError> {
    match (&p.ratio, &p.counts) {
        (Some(_), Some(_)) => return Err(ParamError::field("counts", "give `ratio` or `counts`, not both")),
        (None, None) => return Err(ParamError::whole("give `ratio` or `counts`")),
        (Some(r), None) => {
            if r.len() != outs {
                return Err(ParamError::field("ratio", format!("{} fractions for {outs} outs", r.len())));
            }
            if let Some(i) = r.iter().position(|f| !f.is_finite() || *f < 0.0) {
                return Err(ParamError::field(format!("ratio.{i}"), "expected a fraction >= 0"));
            }
            let sum: f64 = r.iter().sum();
            if (sum - 1.0).abs() > 1e-6 {
                return Err(ParamError::field("ratio", format!("fractions add up to {}, not 1", round4(sum))));
            }
        }
        (None, Some(_)) if p.stable => {
            return Err(ParamError::field(
                "stable",
                "exact `counts` cannot be append-stable; use `ratio` with `stable: true`",
            ))
        }
        (None, Some(c)) => {
            if c.test > 0 && outs < 3 {
                return Err(ParamError::field("counts.test", "a test count needs a third out"));
            }
        }
    }
    Ok(p)
}

impl Params {
    /// Fractions as [train, valid, test].
    fn fractions(&self) -> [f64; 3] {
        let r = self.ratio.as_deref().unwrap_or(&[]);
        [r.first().copied().unwrap_or(0.0), r.get(1).copied().unwrap_or(0.0), r.get(2).copied().unwrap_or(0.0)]
    }
}

impl TypedStage for Split {
    const KIND: &'static str = "split";
    const VERSION: u32 = 1;
    const DEPS: Count = Count::Exactly(1);
    const OUTS: Count = Count::Between(2, 3);
    const DEPS_ARE: &'static str = "JSONL";
    const OUTS_ARE: &'static str = "train, valid, then optionally test";
    type Params = Params;
    type Prepared = Params;

    fn check_outs(&self, outs: &[&str]) -> Result<(), dvx_stage_api::OutError> {
        crate::support::check_record_outs(outs, ..)
    }

    fn prepare(&self, params: Params, shape: Shape) -> Result<Params, ParamError> {
        parse(params, shape.outs)
    }

    fn execute(&self, p: &Params, ctx: &mut StageContext<'_>) -> Result<Metrics, StageFailure> {
        let pool = pool(ctx.threads)?;
        let dep = &ctx.deps[0];
        let mut writers: Vec<RecordWriter> =
            (0..ctx.outs.len()).map(|i| out_writer(ctx, i)).collect::<Result<_, _>>()?;
        let mut malformed = 0;
        let mut cats = Categories::default();
        // Without strata, or with `stable`, the hash alone places a record.
        let streaming = p.ratio.is_some() && (p.stratify_by.is_none() || p.stable);
        let [_, fv, ft] = p.fractions();
        let by_hash = |h: u64| {
            // The hash as a point in [0, 1).
            let u = (h >> 11) as f64 / (1u64 << 53) as f64;
            if u < fv {
                VALID
            } else if u < fv + ft {
                TEST
            } else {
                TRAIN
            }
        };

        // Streaming: place each record as it comes. Otherwise remember
        // (category, hash) and place records once all are known. Each
        // record's hash and category come from earlier runs where they can.
        let mut keys: Vec<(u32, u64)> = Vec::new();
        // Per item (not streaming): whether it is a record, for the second pass.
        let mut is_rec: Vec<bool> = Vec::new();
        // Per record (not streaming): whether its line is already the compact line written.
        let mut compact: Vec<bool> = Vec::new();
        // Records per (category, side), for the metrics when stratified.
        let mut per_cat: Vec<[usize; 3]> = Vec::new();
        let mut seen = FieldsSeen::new().name_all("hash_fields", &p.hash_fields);
        if let Some(f) = &p.stratify_by {
            seen = seen.name("stratify_by", f);
        }
        let mut reuse = Reuse::new(ctx.memo, Self::KIND, Self::VERSION, p, p.reuse && seen.fits_mask());
        let mut batches = Batches::open(dep)?;
        while let Some(batch) = batches.next_batch()? {
            let results = reuse.results(&batch, &pool, |i| hashed(p, &seen, &batch, i))?;
            for ((line, item), h) in batch.items.iter().zip(results) {
                let Hashed { hash, cat, fields, compact: c } = match h {
                    PerItem::Record(h) => h,
                    PerItem::Bad { reason } if p.on_error == OnError::Fail => {
                        return Err(batch.bad_line(*line, item, reason).into());
                    }
                    PerItem::Bad { .. } => {
                        malformed += 1;
                        is_rec.push(false);
                        continue;
                    }
                };
                seen.mark(fields);
                let cat = cats.id(cat);
                if streaming {
                    let side = by_hash(hash);
                    if p.stratify_by.is_some() {
                        per_cat.resize(cats.len(), [0; 3]);
                        per_cat[cat as usize][side as usize] += 1;
                    }
                    copy_line(&mut writers[side as usize], item.text().unwrap_or_default(), c)?;
                } else {
                    keys.push((cat, hash));
                    is_rec.push(true);
                    compact.push(c);
                }
            }
        }
        seen.check()?;
        if !streaming {
            per_cat = vec![[0usize; 3]; cats.len()];
            let sides = self.place(p, &keys, &cats)?;
            for (i, side) in sides.iter().enumerate() {
                per_cat[keys[i].0 as usize][*side as usize] += 1;
            }
            for_each_record(dep, &is_rec, |i, text| copy_line(&mut writers[sides[i] as usize], text, compact[i]))?;
        }
        let sizes: Vec<usize> = writers.into_iter().map(|w| w.finish()).collect::<Result<_, _>>()?;
        let mut m = Metrics::new();
        m.insert("records".into(), json!(sizes.iter().sum::<usize>()));
        for (name, n) in SIDES.iter().zip(&sizes) {
            m.insert((*name).into(), json!(n));
        }
        m.insert("malformed".into(), json!(malformed));
        let line: Vec<String> = SIDES.iter().zip(&sizes).map(|(s, n)| format!("{s} {n}")).collect();
        writeln!(ctx.log, "{}", line.join(", "))?;
        writeln!(ctx.log, "{}", reuse.summary())?;
        if p.stratify_by.is_some() {
            let table: BTreeMap<&str, Value> = cats
                .sorted()
                .map(|(name, id)| {
                    let c = per_cat[id as usize];
                    let row: serde_json::Map<String, Value> =
                        SIDES.iter().zip(c).take(sizes.len()).map(|(s, n)| ((*s).to_string(), json!(n))).collect();
                    (name, Value::Object(row))
                })
                .collect();
            m.insert("categories".into(), json!(table));
        }
        Ok(m)
    }
}

/// What the first pass finds for one record, as kept across runs.
#[derive(Clone, Serialize, Deserialize)]
struct Hashed {
    /// The seeded content hash that places it.
    #[serde(rename = "h")]
    hash: u64,
    /// Its `stratify_by` category; empty without strata.
    #[serde(rename = "c")]
    cat: String,
    /// The named fields it has ([`FieldsSeen::present`]).
    #[serde(rename = "f")]
    fields: u64,
    /// Whether its line is already the compact line a JSONL out gets
    /// ([`is_compact`]); absent (false) in entries of earlier runs.
    #[serde(rename = "j", default, skip_serializing_if = "std::ops::Not::not")]
    compact: bool,
}

/// Item `i`'s hash and category.
fn hashed(p: &Params, seen: &FieldsSeen, batch: &Batch, i: usize) -> Result<PerItem<Hashed>, StageFailure> {
    let rec = match batch.parse(i) {
        Ok(rec) => rec,
        Err(b) => return Ok(PerItem::Bad { reason: b.reason }),
    };
    seen.observe(&rec);
    let cat = p.stratify_by.as_deref().map(|f| category_of(&rec, f)).unwrap_or_default();
    let hash = content_hash(&rec, p.seed, &p.hash_fields);
    let compact = is_compact(batch.items[i].1.text().unwrap_or_default());
    Ok(PerItem::Record(Hashed { hash, cat, fields: seen.present(&rec), compact }))
}

impl Split {
    /// The side of every record when all hashes are known: per group
    /// (category, or everything), the smallest hashes fill valid, then test.
    fn place(&self, p: &Params, keys: &[(u32, u64)], cats: &Categories) -> Result<Vec<u8>, StageFailure> {
        let mut sizes = vec![0usize; cats.len()];
        for (c, _) in keys {
            sizes[*c as usize] += 1;
        }
        // (valid, test) wanted per group.
        let wanted: Vec<(usize, usize)> = match (&p.counts, p.fractions()) {
            (Some(c), _) => {
                if c.valid + c.test > keys.len() {
                    return Err(StageFailure::bad_input(format!(
                        "asked for {} valid and {} test records but the input has {}",
                        c.valid,
                        c.test,
                        keys.len()
                    )));
                }
                let weights: Vec<f64> = sizes.iter().map(|&n| n as f64).collect();
                let v = apportion(c.valid, &weights);
                let t = apportion(c.test, &weights);
                sizes.iter().zip(v.into_iter().zip(t)).map(|(&n, (v, t))| (v.min(n), t.min(n - v.min(n)))).collect()
            }
            (None, f) => sizes
                .iter()
                .map(|&n| {
                    let parts = apportion(n, &f);
                    (parts[1], parts[2])
                })
                .collect(),
        };
        let mut order: Vec<usize> = (0..keys.len()).collect();
        order.sort_by_key(|&i| (keys[i].0, keys[i].1, i));
        let mut sides = vec![TRAIN; keys.len()];
        let mut taken = vec![0usize; cats.len()];
        for i in order {
            let c = keys[i].0 as usize;
            let (v, t) = wanted[c];
            sides[i] = if taken[c] < v {
                VALID
            } else if taken[c] < v + t {
                TEST
            } else {
                TRAIN
            };
            taken[c] += 1;
        }
        Ok(sides)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::{jsonl, run};

    #[test]
    fn a_rerun_hashes_only_new_records_and_writes_what_a_full_run_does() {
        use crate::reuse::testing::{assert_incremental, incremental_line, lines};
        for params in [
            json!({"ratio": [0.8, 0.2], "seed": 5}),
            json!({"ratio": [0.7, 0.2, 0.1], "stratify_by": "category"}),
            json!({"counts": {"valid": 300}, "stratify_by": "category", "on_error": "skip"}),
            json!({"ratio": [0.9, 0.1], "stratify_by": "category", "stable": true}),
        ] {
            let outs: &[&str] = if params["ratio"].as_array().is_some_and(|r| r.len() == 3) {
                &["t.jsonl", "v.jsonl", "x.jsonl"]
            } else {
                &["t.jsonl", "v.jsonl"]
            };
            assert_incremental(|| Split, lines(0, 4000), lines(4000, 4300), incremental_line(55_555), outs, params);
        }
    }

    #[test]
    fn entries_from_before_the_compact_flag_are_reused_and_write_the_same_bytes() {
        use crate::reuse::testing::{assert_reuses_entries_without, lines};
        for params in
            [json!({"ratio": [0.8, 0.2], "seed": 5}), json!({"counts": {"valid": 300}, "stratify_by": "category"})]
        {
            assert_reuses_entries_without(
                || Split,
                lines(0, 4000),
                lines(4000, 4300),
                &["t.jsonl", "v.jsonl"],
                params,
                ",\"j\":true",
            );
        }
    }

    fn records(n: usize, cats: usize) -> String {
        let recs: Vec<Value> = (0..n).map(|i| json!({"id": i, "category": format!("c{}", i % cats)})).collect();
        jsonl(&recs)
    }

    #[test]
    fn seed_004_counts_794_to_714_80() {
        let text = records(794, 1);
        let r = run(Split, &[&text], &["train", "valid"], json!({"counts": {"valid": 80}, "seed": 42}), 2).unwrap();
        assert_eq!((r.metric("train"), r.metric("valid")), (&json!(714), &json!(80)));
        assert_eq!(r.records(0).len(), 714);
        // Appending records never pulls an old train record into valid:
        // valid is the 80 smallest hashes, and new records only lower the bar.
        let more = records(824, 1);
        let r2 = run(Split, &[&more], &["train", "valid"], json!({"counts": {"valid": 80}, "seed": 42}), 1).unwrap();
        let v1: Vec<Value> = r.records(1);
        assert!(r2.records(1).iter().all(|x| v1.contains(x) || x["id"].as_i64().unwrap() >= 794));
    }

    #[test]
    fn ratio_streams_and_is_stable_under_appending() {
        let text = records(1000, 1);
        let params = json!({"ratio": [0.8, 0.1, 0.1], "seed": 1});
        let r = run(Split, &[&text], &["a", "b", "c"], params.clone(), 1).unwrap();
        let (tr, va, te) = (r.records(0).len(), r.records(1).len(), r.records(2).len());
        assert_eq!(tr + va + te, 1000);
        assert!((750..850).contains(&tr) && (70..130).contains(&va) && (70..130).contains(&te), "{tr} {va} {te}");
        let more = records(1200, 1);
        let r2 = run(Split, &[&more], &["a", "b", "c"], params, 3).unwrap();
        // Every old record kept its side.
        for side in 0..3 {
            let new: Vec<Value> = r2.records(side);
            assert!(r.records(side).iter().all(|x| new.contains(x)));
        }
    }

    #[test]
    fn stratified_ratio_is_exact_per_category() {
        let text = records(100, 3); // c0: 34, c1: 33, c2: 33
        let params = json!({"ratio": [0.9, 0.1], "seed": 3, "stratify_by": "category"});
        let r = run(Split, &[&text], &["t", "v"], params, 2).unwrap();
        assert_eq!(
            r.metric("categories"),
            &json!({"c0": {"train": 31, "valid": 3}, "c1": {"train": 30, "valid": 3}, "c2": {"train": 30, "valid": 3}})
        );
        assert_eq!(r.metric("valid"), &json!(9));
        let params = json!({"counts": {"valid": 10, "test": 5}, "seed": 3, "stratify_by": "category"});
        let r = run(Split, &[&text], &["t", "v", "x"], params, 2).unwrap();
        assert_eq!(r.metric("categories")["c0"], json!({"train": 28, "valid": 4, "test": 2}));
        assert_eq!((r.metric("valid"), r.metric("test")), (&json!(10), &json!(5)));
        // Records keep input order on each side.
        let ids: Vec<i64> = r.records(0).iter().map(|x| x["id"].as_i64().unwrap()).collect();
        assert!(ids.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn stable_stratified_ratio_never_moves_a_record_on_append() {
        let params = json!({"ratio": [0.9, 0.1], "seed": 3, "stratify_by": "category", "stable": true});
        let r = run(Split, &[&records(3000, 3)], &["t", "v"], params.clone(), 2).unwrap();
        let r2 = run(Split, &[&records(3300, 3)], &["t", "v"], params, 1).unwrap();
        for side in 0..2 {
            let new: Vec<Value> = r2.records(side);
            assert!(r.records(side).iter().all(|x| new.contains(x)), "a record left side {side}");
        }
        let valid = r.metric("valid").as_u64().unwrap();
        assert!((240..360).contains(&valid), "{valid}");
        let c0 = &r.metric("categories")["c0"];
        assert_eq!(c0["train"].as_u64().unwrap() + c0["valid"].as_u64().unwrap(), 1000);
        // The exact mode, by contrast, moves some on the same append.
        let exact = json!({"ratio": [0.9, 0.1], "seed": 3, "stratify_by": "category"});
        let a = run(Split, &[&records(3000, 3)], &["t", "v"], exact.clone(), 1).unwrap();
        let b = run(Split, &[&records(3300, 3)], &["t", "v"], exact, 1).unwrap();
        let still: Vec<Value> = b.records(1);
        assert!(a.records(1).iter().any(|x| !still.contains(x)), "exact mode happened to be stable");
        let e = run(Split, &["{}\n"], &["t", "v"], json!({"counts": {"valid": 1}, "stable": true}), 1).unwrap_err();
        assert!(e.starts_with("stable: exact `counts` cannot be append-stable"), "{e}");
    }

    #[test]
    fn key_order_and_duplicates_do_not_matter() {
        let a = "{\"a\":1,\"b\":2}\n".repeat(5) + "{\"b\":2,\"a\":1}\n";
        let r = run(Split, &[&a], &["t", "v"], json!({"ratio": [0.5, 0.5], "seed": 9}), 1).unwrap();
        let sizes = (r.records(0).len(), r.records(1).len());
        assert!(sizes == (6, 0) || sizes == (0, 6), "{sizes:?}");
    }

    #[test]
    fn deterministic() {
        let text = records(5000, 4);
        let params = json!({"counts": {"valid": 500}, "seed": 5, "stratify_by": "category"});
        let a = run(Split, &[&text], &["t", "v"], params.clone(), 1).unwrap();
        let b = run(Split, &[&text], &["t", "v"], params, 4).unwrap();
        assert_eq!(a.text(0), b.text(0));
        assert_eq!(a.text(1), b.text(1));
        let c = run(
            Split,
            &[&text],
            &["t", "v"],
            json!({"counts": {"valid": 500}, "seed": 6, "stratify_by": "category"}),
            1,
        )
        .unwrap();
        assert_ne!(a.text(1), c.text(1));
    }

    #[test]
    fn errors() {
        let bad = |outs: &[&str], params: Value| run(Split, &["{}\n"], outs, params, 1).unwrap_err();
        assert_eq!(bad(&["t", "v"], json!({"ratio": [0.9, 0.1, 0.0]})), "ratio: 3 fractions for 2 outs");
        assert_eq!(bad(&["t", "v"], json!({"ratio": [0.9, 0.2]})), "ratio: fractions add up to 1.1, not 1");
        assert_eq!(bad(&["t", "v"], json!({"ratio": [1.5, -0.5]})), "ratio.1: expected a fraction >= 0");
        assert_eq!(bad(&["t", "v"], json!({})), ": give `ratio` or `counts`");
        assert_eq!(bad(&["t", "v"], json!({"counts": {"test": 3}})), "counts.test: a test count needs a third out");
        assert!(bad(&["t", "v"], json!({"counts": {"train": 3}})).starts_with("counts.train: unknown field"));
        assert_eq!(
            bad(&["t"], json!({"ratio": [1.0]})),
            ": a `split` stage takes 2 to 3 outs (train, valid, then optionally test), got 1"
        );
        assert_eq!(
            bad(&["t", "v"], json!({"counts": {"valid": 2}})),
            "asked for 2 valid and 0 test records but the input has 1"
        );
    }
}
