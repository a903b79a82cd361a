//! `kind: balance` — even out categories by capping them or by sampling
//! them to given proportions.
//!
//! ```yaml
//! params:
//!   category_field: category
//!   cap: 180                     # at most this many per category
//!   caps: {CRUD: 150}            # per-category overrides of `cap`
//!   # or
//!   proportions: {CRUD: 0.5, Pagination: 0.5}   # fractions adding up to 1
//!   total: 1000                  # default: the largest total every share can fill
//!   seed: 0
//!   on_error: fail               # or `skip` malformed lines
//! ```
//! Which records a category keeps is decided by a seeded hash of each
//! record's canonical content (smallest first, input order breaking ties),
//! so the choice does not depend on where a record sits or what else is in
//! the file. With `stable: true` a category keeps its first records in
//! input order instead: appended records only fill what the cap leaves, so
//! a record kept once stays kept while its category's target does not
//! shrink (a cap, or `proportions` with `total`; without `total`, the
//! largest-remainder split of a growing total can take one record from a
//! share). Kept records stay in input order. Under `proportions`,
//! categories not listed are dropped, and a category with fewer records
//! than its share gives what it has (the shortfall is reported, not
//! redistributed). Records without the category field count as `(none)`.
//!
//! deps: one JSONL file. outs[0]: the kept records. Memory: one hash and one
//! category id per record; the input is read twice, and parsed once: a
//! re-run takes each unchanged record's category and hash from its earlier
//! runs (docs/incremental.md) and parses only new or changed records.
//! Metrics: `records_in`, `records_out`, `dropped`, `malformed`, `before` and
//! `after` ({category: count}), `targets` ({category: wanted}), `shortfall`
//! ({category: missing}, only categories short of their target).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use dvx_stage_api::{Count, Metrics, ParamDoc, ParamError, ParamsDoc, Shape, StageContext, StageFailure, TypedStage};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::field_check::FieldsSeen;
use crate::records::out_writer;
use crate::reuse::{copy_line, for_each_record, is_compact, Batch, Batches, PerItem, Reuse};
use crate::support::{apportion, category_of, content_hash, pool, round4, Categories, OnError};

/// The `balance` stage kind.
pub struct Balance;

/// Params of `balance`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Params {
    #[serde(default = "default_category_field")]
    category_field: String,
    #[serde(default)]
    cap: Option<usize>,
    #[serde(default)]
    caps: BTreeMap<String, usize>,
    #[serde(default)]
    proportions: Option<BTreeMap<String, f64>>,
    #[serde(default)]
    total: Option<usize>,
    #[serde(default)]
    seed: u64,
    #[serde(default)]
    on_error: OnError,
    /// Keep each category's first records in input order instead of the
    /// smallest hashes, so an append never drops a kept record. Left out of
    /// the key when off, so it changes no existing key.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    stable: bool,
    /// Reuse earlier runs' per-record categories and hashes (see
    /// docs/incremental.md). Left out of the key when on.
    #[serde(default = "crate::reuse::on", skip_serializing_if = "crate::reuse::is_on")]
    reuse: bool,
}

impl ParamsDoc for Params {
    fn doc() -> Vec<ParamDoc> {
        vec![
            ParamDoc::new("category_field", "field path", "category", "Field holding a record's category."),
            ParamDoc::new("cap", "integer", "-", "At most this many records per category."),
            ParamDoc::new("caps", "map of category to integer", "{}", "Per-category overrides of `cap`."),
            ParamDoc::new(
                "proportions",
                "map of category to fraction",
                "-",
                "Sample to these shares (adding up to 1) instead of capping.",
            ),
            ParamDoc::new(
                "total",
                "integer",
                "-",
                "Records wanted under `proportions`; default: the largest every share can fill.",
            ),
            ParamDoc::new("seed", "integer", "0", "Seeds the content hash that picks the records kept."),
            ParamDoc::new(
                "on_error",
                "fail | skip",
                "fail",
                "What a malformed line does: stop, or count it and go on.",
            ),
            ParamDoc::new(
                "stable",
                "bool",
                "false",
                "Append-stable: keep each category's first records in input order (not the smallest hashes), \
                 so an append never drops a kept record.",
            ),
            crate::reuse::param_doc(),
        ]
    }
}

fn default_category_field() -> String {
    "category".into()
}

fn parse(p: Params) -> Result<Params, ParamError> {
    match &p.proportions {
        Some(props) => {
            if p.cap.is_some() || !p.caps.is_empty() {
                return Err(ParamError::field("proportions", "give `cap`/`caps` or `proportions`, not both"));
            }
            for (cat, f) in props {
                if !f.is_finite() || *f < 0.0 {
                    return Err(ParamError::field(format!("proportions.{cat}"), "expected a fraction >= 0"));
                }
            }
            let sum: f64 = props.values().sum();
            if (sum - 1.0).abs() > 1e-3 {
                return Err(ParamError::field("proportions", format!("fractions add up to {}, not 1", round4(sum))));
            }
        }
        None => {
            if p.total.is_some() {
                return Err(ParamError::field("total", "`total` goes with `proportions`"));
            }
            if p.cap.is_none() && p.caps.is_empty() {
                return Err(ParamError::whole("give `cap` (or `caps`), or `proportions`"));
            }
        }
    }
    Ok(p)
}

impl TypedStage for Balance {
    const KIND: &'static str = "balance";
    const VERSION: u32 = 1;
    const DEPS: Count = Count::Exactly(1);
    const OUTS: Count = Count::Exactly(1);
    const DEPS_ARE: &'static str = "JSONL";
    const OUTS_ARE: &'static str = "kept records";
    type Params = Params;
    type Prepared = Params;

    fn check_outs(&self, outs: &[&str]) -> Result<(), dvx_stage_api::OutError> {
        crate::support::check_record_outs(outs, ..1)
    }

    fn prepare(&self, params: Params, _shape: Shape) -> Result<Params, ParamError> {
        parse(params)
    }

    fn execute(&self, p: &Params, ctx: &mut StageContext<'_>) -> Result<Metrics, StageFailure> {
        let pool = pool(ctx.threads)?;
        let dep = &ctx.deps[0];

        // Pass 1: a (category, key) per record, from the memo where it can.
        let mut cats = Categories::default();
        let mut keys: Vec<(u32, u64)> = Vec::new();
        // Per item: whether it is a record, for pass 2.
        let mut is_rec: Vec<bool> = Vec::new();
        // Per record: whether its line is already the compact line written.
        let mut compact: Vec<bool> = Vec::new();
        let mut malformed = 0;
        let seen = FieldsSeen::new().name("category_field", &p.category_field);
        let mut reuse = Reuse::new(ctx.memo, Self::KIND, Self::VERSION, p, p.reuse);
        let mut batches = Batches::open(dep)?;
        while let Some(batch) = batches.next_batch()? {
            for (at, r) in reuse.results(&batch, &pool, |i| keyed(p, &seen, &batch, i))?.into_iter().enumerate() {
                match r {
                    PerItem::Record(Keyed { cat, key, has_cat, compact: c }) => {
                        if has_cat {
                            seen.mark(1);
                        }
                        keys.push((cats.id(cat), key));
                        is_rec.push(true);
                        compact.push(c);
                    }
                    PerItem::Bad { .. } if p.on_error == OnError::Skip => {
                        malformed += 1;
                        is_rec.push(false);
                    }
                    PerItem::Bad { reason } => {
                        let (line, item) = &batch.items[at];
                        return Err(batch.bad_line(*line, item, reason).into());
                    }
                }
            }
        }
        seen.check()?;
        let mut before = vec![0usize; cats.len()];
        for (c, _) in &keys {
            before[*c as usize] += 1;
        }
        let targets = targets(p, &cats, &before);

        // Within each category, the smallest keys win; under `stable`, the
        // first records (an append only adds records after them).
        let mut order: Vec<usize> = (0..keys.len()).collect();
        if !p.stable {
            order.sort_by_key(|&i| (keys[i].0, keys[i].1, i));
        }
        let mut keep = vec![false; keys.len()];
        let mut after = vec![0usize; cats.len()];
        for i in order {
            let c = keys[i].0 as usize;
            if after[c] < targets[c] {
                after[c] += 1;
                keep[i] = true;
            }
        }

        // Pass 2: copy the kept records (malformed items were given no key),
        // a line known to be compact as it is, without scanning it again.
        let mut writer = out_writer(ctx, 0)?;
        for_each_record(dep, &is_rec, |i, text| match keep[i] {
            true => copy_line(&mut writer, text, compact[i]),
            false => Ok(()),
        })?;
        let written = writer.finish()?;

        let by_name = |v: &[usize]| -> Value {
            Value::Object(cats.sorted().map(|(n, id)| (n.to_string(), json!(v[id as usize]))).collect())
        };
        // Only proportions promise a count; a cap is a ceiling.
        let mut shortfall = serde_json::Map::new();
        if let Some(props) = &p.proportions {
            let wanted = wanted_totals(p, &cats, &before);
            for (cat, want) in props.keys().zip(wanted) {
                let have = cats.sorted().find(|(n, _)| n == cat).map_or(0, |(_, id)| before[id as usize]);
                if have < want {
                    shortfall.insert(cat.clone(), json!(want - have));
                }
            }
        }
        writeln!(ctx.log, "{}", distribution_table(&cats, &before, &after))?;
        writeln!(ctx.log, "{}", reuse.summary())?;
        for (cat, n) in &shortfall {
            writeln!(ctx.log, "{cat}: {n} short of its target")?;
        }
        let mut m = Metrics::new();
        m.insert("records_in".into(), json!(keys.len()));
        m.insert("records_out".into(), json!(written));
        m.insert("dropped".into(), json!(keys.len() - written));
        m.insert("malformed".into(), json!(malformed));
        m.insert("before".into(), by_name(&before));
        m.insert("after".into(), by_name(&after));
        m.insert("targets".into(), by_name(&targets));
        m.insert("shortfall".into(), Value::Object(shortfall));
        Ok(m)
    }
}

/// What pass 1 finds for one record, as kept across runs.
#[derive(Clone, Serialize, Deserialize)]
struct Keyed {
    #[serde(rename = "c")]
    cat: String,
    /// Its seeded content hash, the order within its category.
    #[serde(rename = "k")]
    key: u64,
    /// Whether it has the category field.
    #[serde(rename = "h")]
    has_cat: bool,
    /// Whether its line is already the compact line a JSONL out gets
    /// ([`is_compact`]); absent (false) in entries of earlier runs.
    #[serde(rename = "j", default, skip_serializing_if = "std::ops::Not::not")]
    compact: bool,
}

/// Item `i`'s category and key.
fn keyed(p: &Params, seen: &FieldsSeen, batch: &Batch, i: usize) -> Result<PerItem<Keyed>, StageFailure> {
    let rec = match batch.parse(i) {
        Ok(rec) => rec,
        Err(b) => return Ok(PerItem::Bad { reason: b.reason }),
    };
    seen.observe(&rec);
    let has_cat = seen.present(&rec) != 0;
    let (cat, key) = (category_of(&rec, &p.category_field), content_hash(&rec, p.seed, &[]));
    let compact = is_compact(batch.items[i].1.text().unwrap_or_default());
    Ok(PerItem::Record(Keyed { cat, key, has_cat, compact }))
}

/// How many records each present category may keep (by category id).
fn targets(p: &Params, cats: &Categories, before: &[usize]) -> Vec<usize> {
    let mut out = vec![0usize; cats.len()];
    match &p.proportions {
        None => {
            for (name, id) in cats.sorted() {
                let cap = p.caps.get(name).copied().or(p.cap).unwrap_or(usize::MAX);
                out[id as usize] = cap;
            }
        }
        Some(props) => {
            let wanted = wanted_totals(p, cats, before);
            for ((cat, _), want) in props.iter().zip(wanted) {
                if let Some((_, id)) = cats.sorted().find(|(n, _)| n == cat) {
                    out[id as usize] = want;
                }
            }
        }
    }
    out
}

/// Each listed category's share of the total, in `proportions` order.
fn wanted_totals(p: &Params, cats: &Categories, before: &[usize]) -> Vec<usize> {
    let props = p.proportions.as_ref().expect("proportions");
    let fractions: Vec<f64> = props.values().copied().collect();
    let total = p.total.unwrap_or_else(|| {
        // The largest total whose every share fits what the input has.
        props
            .iter()
            .filter(|(_, f)| **f > 0.0)
            .map(|(cat, f)| {
                let have = cats.sorted().find(|(n, _)| n == cat).map_or(0, |(_, id)| before[id as usize]);
                (have as f64 / f).floor() as usize
            })
            .min()
            .unwrap_or(0)
    });
    apportion(total, &fractions)
}

/// Markdown: category, count before and after, share of the result.
fn distribution_table(cats: &Categories, before: &[usize], after: &[usize]) -> String {
    let total: usize = after.iter().sum();
    let mut s =
        String::from("| Category | Before | After | % of Total |\n|----------|--------|-------|------------|\n");
    for (name, id) in cats.sorted() {
        let (b, a) = (before[id as usize], after[id as usize]);
        let pct = if total == 0 { 0.0 } else { 100.0 * a as f64 / total as f64 };
        let _ = writeln!(s, "| {name} | {b} | {a} | {pct:.1}% |");
    }
    let _ = write!(s, "| **Total** | **{}** | **{total}** | **100%** |", before.iter().sum::<usize>());
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::{jsonl, run, Run};

    fn input(counts: &[(&str, usize)]) -> String {
        let mut recs = Vec::new();
        for (cat, n) in counts {
            for i in 0..*n {
                recs.push(json!({"id": format!("{cat}{i}"), "category": cat}));
            }
        }
        jsonl(&recs)
    }

    fn per_cat(r: &Run) -> BTreeMap<String, usize> {
        let mut m = BTreeMap::new();
        for c in r.column(0, "category") {
            *m.entry(c).or_default() += 1;
        }
        m
    }

    #[test]
    fn cap_per_category() {
        let text = input(&[("a", 10), ("b", 3), ("c", 6)]);
        let r = run(Balance, &[&text], &["o"], json!({"cap": 5, "caps": {"c": 2}, "seed": 1}), 2).unwrap();
        assert_eq!(r.metric("before"), &json!({"a": 10, "b": 3, "c": 6}));
        assert_eq!(r.metric("after"), &json!({"a": 5, "b": 3, "c": 2}));
        assert_eq!(r.metric("dropped"), &json!(9));
        assert_eq!(r.metric("shortfall"), &json!({}));
        // Kept records stay in input order.
        let ids = r.column(0, "id");
        let pos: Vec<usize> = ids.iter().map(|id| text.find(&format!("\"{id}\"")).unwrap()).collect();
        assert!(pos.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(
            r.log,
            "| Category | Before | After | % of Total |\n|----------|--------|-------|------------|\n\
             | a | 10 | 5 | 50.0% |\n| b | 3 | 3 | 30.0% |\n| c | 6 | 2 | 20.0% |\n\
             | **Total** | **19** | **10** | **100%** |\n\
             records processed: 19, reused from earlier runs: 0\n"
        );
    }

    #[test]
    fn choice_depends_on_content_and_seed_not_position() {
        let text = input(&[("a", 50)]);
        let r1 = run(Balance, &[&text], &["o"], json!({"cap": 10, "seed": 7}), 1).unwrap();
        // Reversed input: the same ten records are chosen.
        let rev: String = text.lines().rev().map(|l| format!("{l}\n")).collect();
        let r2 = run(Balance, &[&rev], &["o"], json!({"cap": 10, "seed": 7}), 3).unwrap();
        let mut a = r1.column(0, "id");
        let mut b = r2.column(0, "id");
        a.sort();
        b.sort();
        assert_eq!(a, b);
        let r3 = run(Balance, &[&text], &["o"], json!({"cap": 10, "seed": 8}), 1).unwrap();
        assert_ne!(r1.text(0), r3.text(0));
        let again = run(Balance, &[&text], &["o"], json!({"cap": 10, "seed": 7}), 4).unwrap();
        assert_eq!(r1.text(0), again.text(0));
    }

    #[test]
    fn proportions_with_and_without_total() {
        let text = input(&[("a", 10), ("b", 30), ("x", 5)]);
        let props = json!({"a": 0.25, "b": 0.75});
        let r = run(Balance, &[&text], &["o"], json!({"proportions": props, "total": 20}), 1).unwrap();
        assert_eq!(per_cat(&r), BTreeMap::from([("a".into(), 5), ("b".into(), 15)]));
        assert_eq!(r.metric("targets"), &json!({"a": 5, "b": 15, "x": 0}));
        // Without a total: a's 10 records allow 40 in all.
        let r = run(Balance, &[&text], &["o"], json!({"proportions": props}), 1).unwrap();
        assert_eq!(r.metric("after"), &json!({"a": 10, "b": 30, "x": 0}));
        // Asking for more than there is: a is short.
        let r =
            run(Balance, &[&text], &["o"], json!({"proportions": {"a": 0.5, "b": 0.25, "z": 0.25}, "total": 40}), 1)
                .unwrap();
        assert_eq!(r.metric("after"), &json!({"a": 10, "b": 10, "x": 0}));
        assert_eq!(r.metric("shortfall"), &json!({"a": 10, "z": 10}));
        assert!(r.log.ends_with("a: 10 short of its target\nz: 10 short of its target\n"));
    }

    #[test]
    fn entries_from_before_the_compact_flag_are_reused_and_write_the_same_bytes() {
        use crate::reuse::testing::{assert_reuses_entries_without, lines};
        let params = json!({"cap": 500, "seed": 4});
        assert_reuses_entries_without(
            || Balance,
            lines(0, 4000),
            lines(4000, 4300),
            &["o.jsonl"],
            params,
            ",\"j\":true",
        );
    }

    #[test]
    fn a_rerun_parses_only_new_records_and_writes_what_a_full_run_does() {
        use crate::reuse::testing::{assert_incremental, incremental_line, lines};
        for params in [json!({"cap": 900, "seed": 3}), json!({"cap": 900, "stable": true, "on_error": "skip"})] {
            assert_incremental(
                || Balance,
                lines(0, 4000),
                lines(4000, 4300),
                incremental_line(77_777),
                &["o.jsonl"],
                params,
            );
        }
    }

    #[test]
    fn stable_keeps_what_was_kept_when_records_are_appended() {
        let n = 3000;
        let recs = |from: usize, to: usize| -> Vec<Value> {
            (from..to).map(|i| json!({"id": i, "category": (["a", "b", "c"][i % 3])})).collect()
        };
        let first = jsonl(&recs(0, n));
        let appended = first.clone() + &jsonl(&recs(n, n + 1000));
        let kept = |r: &Run| r.text(0).lines().map(str::to_string).collect::<std::collections::BTreeSet<_>>();
        for params in
            [json!({"cap": 400, "seed": 3}), json!({"proportions": {"a": 0.5, "b": 0.3, "c": 0.2}, "total": 1500})]
        {
            let lost = |stable: bool| {
                let mut p = params.clone();
                p["stable"] = json!(stable);
                let before = run(Balance, &[&first], &["o"], p.clone(), 2).unwrap();
                let after = run(Balance, &[&appended], &["o"], p.clone(), 2).unwrap();
                assert_eq!(after.metric("after"), before.metric("after"), "{p}");
                kept(&before).difference(&kept(&after)).count()
            };
            assert!(lost(false) > 50, "{params}: the hash choice happened to be stable");
            assert_eq!(lost(true), 0, "{params}");
        }
        // From scratch on the combined input, `stable` keeps each category's
        // first records: the same as the run after the append.
        let r = run(Balance, &[&appended], &["o"], json!({"cap": 2, "stable": true}), 1).unwrap();
        let ids: Vec<u64> = r.records(0).iter().map(|x| x["id"].as_u64().unwrap()).collect();
        assert_eq!(ids, vec![0, 1, 2, 3, 4, 5]);
    }

    #[test]
    fn errors() {
        let bad = |params: Value| run(Balance, &["{}\n"], &["o"], params, 1).unwrap_err();
        assert_eq!(bad(json!({})), ": give `cap` (or `caps`), or `proportions`");
        assert_eq!(bad(json!({"proportions": {"a": 0.5}})), "proportions: fractions add up to 0.5, not 1");
        assert_eq!(bad(json!({"proportions": {"a": -1, "b": 2}})), "proportions.a: expected a fraction >= 0");
        assert_eq!(bad(json!({"cap": 1, "total": 3})), "total: `total` goes with `proportions`");
        assert!(bad(json!({"cap": -1})).starts_with("cap: invalid value"));
        let e = run(Balance, &["{}\n{x\n"], &["o"], json!({"cap": 1}), 1).unwrap_err();
        assert!(e.contains("in0.jsonl:2: malformed JSON"), "{e}");
        let ok = "{\"category\": \"a\"}\n{x\n{}\n";
        let r = run(Balance, &[ok], &["o"], json!({"cap": 1, "on_error": "skip"}), 1).unwrap();
        assert_eq!(r.metric("malformed"), &json!(1));
        assert_eq!(r.metric("after"), &json!({"(none)": 1, "a": 1}));
        // A category field no record has is a typo, not one big `(none)`.
        let e = run(Balance, &[ok], &["o"], json!({"cap": 1, "category_field": "categroy", "on_error": "skip"}), 1)
            .unwrap_err();
        assert!(e.contains("no input record has a field `categroy` (did you mean `category`?)"), "{e}");
    }
}
