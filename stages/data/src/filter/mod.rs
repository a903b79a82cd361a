//! `kind: filter` — keep the records that pass their category's rule.
//!
//! ```yaml
//! params:
//!   category_field: category     # default `category`
//!   text_fields: []              # text the rules search; [] = the record's turns
//!   rules:                       # category -> rule (grammar in `rule.rs`)
//!     CRUD: {at_least: 2, of: [db.add, db.commit, Session], and_not: {contains: fake_db}}
//!   default: null                # rule for categories not under `rules`; none = pass
//!   on_error: fail               # or `skip`: malformed lines are counted and rejected
//!   reason_field: _rejected_by
//! ```
//! deps: one JSONL file. outs[0]: kept records, unchanged, in input order.
//! outs[1] (optional): rejected records with `_rejected_by` naming the
//! deciding rule; malformed lines (under `on_error: skip`) appear there as
//! `{_rejected_by, _file, _line, _raw}`.
//! Metrics: `total`, `passed`, `failed`, `rate`, `malformed`, `categories`
//! ({category: {total, passed, failed, rate}}) and `rejected_by` ({rule path:
//! count}). The log gets a Markdown pass-rate table.

mod rule;

use std::collections::BTreeMap;
use std::fmt::Write as _;

use dvx_stage_api::{Count, Metrics, ParamDoc, ParamError, ParamsDoc, Shape, StageContext, StageFailure, TypedStage};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use crate::field_check::FieldsSeen;
use crate::projection::Projection;
use crate::records::{out_writer, BadLine};
use crate::reuse::{Batch, Batches, LineRuns, Reuse};
use crate::support::{bad_line_record, category_of, pool, round4, OnError};
use rule::{parse_rules, Rule, Subject};

/// The `filter` stage kind.
pub struct Filter;

/// Params of `filter`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Params {
    #[serde(default = "default_category_field")]
    category_field: String,
    #[serde(default)]
    text_fields: Vec<String>,
    #[serde(default)]
    rules: Map<String, Value>,
    #[serde(default)]
    default: Option<Value>,
    #[serde(default)]
    on_error: OnError,
    #[serde(default = "default_reason_field")]
    reason_field: String,
    /// Reuse earlier runs' per-record verdicts (see docs/incremental.md).
    /// Left out of the key when on, so it changes no existing key.
    #[serde(default = "crate::reuse::on", skip_serializing_if = "crate::reuse::is_on")]
    reuse: bool,
}

impl ParamsDoc for Params {
    fn doc() -> Vec<ParamDoc> {
        vec![
            ParamDoc::new("category_field", "field path", "category", "Field holding a record's category."),
            ParamDoc::new(
                "text_fields",
                "list of field paths",
                "[]",
                "Text the rules search; `[]` = the record's turns.",
            ),
            ParamDoc::new("rules", "map of category to rule", "{}", "The rule each category must pass."),
            ParamDoc::new("default", "rule", "-", "Rule for categories not under `rules`; none = pass."),
            ParamDoc::new("on_error", "fail | skip", "fail", "What a malformed line does: stop, or count and reject."),
            ParamDoc::new(
                "reason_field",
                "string",
                "_rejected_by",
                "Field naming the deciding rule in rejected records.",
            ),
            crate::reuse::param_doc(),
        ]
    }
}

fn default_category_field() -> String {
    "category".into()
}

fn default_reason_field() -> String {
    "_rejected_by".into()
}

/// Params with every rule compiled.
pub struct Compiled {
    params: Params,
    rules: BTreeMap<String, Rule>,
    default: Option<Rule>,
    /// The fields a verdict reads: a rule on `quality_score` leaves the
    /// texts unparsed.
    projection: Projection,
}

/// Pass counts of one category.
#[derive(Default, Clone, Copy)]
struct Tally {
    total: usize,
    passed: usize,
}

impl Tally {
    fn rate(&self) -> f64 {
        if self.total == 0 {
            0.0
        } else {
            self.passed as f64 / self.total as f64
        }
    }

    fn to_json(self) -> Value {
        json!({
            "total": self.total,
            "passed": self.passed,
            "failed": self.total - self.passed,
            "rate": round4(self.rate()),
        })
    }
}

impl TypedStage for Filter {
    const KIND: &'static str = "filter";
    // 2: a comparison on a missing or non-numeric field is its own reject reason.
    const VERSION: u32 = 2;
    const DEPS: Count = Count::Exactly(1);
    const OUTS: Count = Count::Between(1, 2);
    const DEPS_ARE: &'static str = "JSONL";
    const OUTS_ARE: &'static str = "kept records, then optionally rejected records";
    type Params = Params;
    type Prepared = Compiled;

    fn check_outs(&self, outs: &[&str]) -> Result<(), dvx_stage_api::OutError> {
        crate::support::check_record_outs(outs, ..)
    }

    fn prepare(&self, params: Params, _shape: Shape) -> Result<Compiled, ParamError> {
        let rules: BTreeMap<String, Rule> = parse_rules(&params.rules)?.into_iter().collect();
        let default = params.default.as_ref().map(|d| Rule::parse(d, "default")).transpose()?;
        let projection = projection(&params, rules.values().chain(&default));
        Ok(Compiled { params, rules, default, projection })
    }

    fn execute(&self, c: &Compiled, ctx: &mut StageContext<'_>) -> Result<Metrics, StageFailure> {
        let p = &c.params;
        let pool = pool(ctx.threads)?;
        let mut batches = Batches::open(&ctx.deps[0])?;
        let mut kept = out_writer(ctx, 0)?;
        let jsonl_out = kept.writes_jsonl();
        let mut rejected = (ctx.outs.len() > 1).then(|| out_writer(ctx, 1)).transpose()?;
        let mut tallies: BTreeMap<String, Tally> = BTreeMap::new();
        let mut reasons: BTreeMap<String, usize> = BTreeMap::new();
        let mut malformed = 0usize;
        let seen = fields_read(c);
        let mut reuse = Reuse::new(ctx.memo, Self::KIND, Self::VERSION, p, p.reuse && seen.fits_mask());
        // Kept lines written as they stand, a run of them at a time.
        let mut runs = LineRuns::default();
        while let Some(batch) = batches.next_batch()? {
            let verdicts = reuse.results(&batch, &pool, |i| verdict(c, &seen, &batch, i, jsonl_out))?;
            for ((at, item), v) in batch.items.iter().zip(verdicts) {
                match v {
                    Verdict::Bad { reason } => {
                        malformed += 1;
                        if let Some(w) = rejected.as_mut() {
                            let text = item.text().unwrap_or_default().to_string();
                            let b = BadLine { path: batch.source.path.clone(), line: *at, unit: batch.source.unit, text, reason };
                            w.write(&bad_line_record(&b, &p.reason_field))?;
                        }
                    }
                    Verdict::Record { cat, fields, miss, line, compact, compacted } => {
                        seen.mark(fields);
                        let t = tallies.entry(cat).or_default();
                        t.total += 1;
                        match miss {
                            None => {
                                t.passed += 1;
                                let text = item.text().unwrap_or_default();
                                match (line, compacted) {
                                    (None, None) if compact => runs.write(&mut kept, item)?,
                                    // Kept by an earlier run that stored the compact line.
                                    (Some(l), _) | (None, Some(l)) => {
                                        runs.flush(&mut kept)?;
                                        kept.write_json_line(&l)?
                                    }
                                    (None, None) => {
                                        runs.flush(&mut kept)?;
                                        kept.write_json_text(text)?
                                    }
                                }
                            }
                            Some(path) => {
                                *reasons.entry(path).or_default() += 1;
                                if let Some(w) = rejected.as_mut() {
                                    w.write_json_line(line.as_deref().unwrap_or_default())?;
                                }
                            }
                        }
                    }
                }
            }
        }
        tracing::info!(stage = ctx.name, processed = reuse.processed, reused = reuse.reused, "filter done");
        seen.check()?;
        runs.flush(&mut kept)?;
        kept.finish()?;
        if let Some(w) = rejected {
            w.finish()?;
        }
        let total = tallies
            .values()
            .fold(Tally::default(), |a, t| Tally { total: a.total + t.total, passed: a.passed + t.passed });
        writeln!(ctx.log, "{}", pass_rate_table(&tallies, total))?;
        if malformed > 0 {
            writeln!(ctx.log, "skipped {malformed} malformed line(s)")?;
        }
        writeln!(ctx.log, "{}", reuse.summary())?;
        if let Some(l) = seen.text_report("filter") {
            writeln!(ctx.log, "{l}")?;
        }
        let mut m = Metrics::new();
        let Value::Object(totals) = total.to_json() else { unreachable!() };
        m.extend(totals);
        m.insert("malformed".into(), json!(malformed));
        m.insert("categories".into(), Value::Object(tallies.iter().map(|(k, t)| (k.clone(), t.to_json())).collect()));
        m.insert("rejected_by".into(), Value::Object(reasons.into_iter().map(|(k, n)| (k, json!(n))).collect()));
        Ok(m)
    }
}

/// What `filter` decided for one input item, as kept across runs.
#[derive(Clone, Serialize, Deserialize)]
enum Verdict {
    /// Not a record (malformed JSON, not an object, unreadable).
    #[serde(rename = "b")]
    Bad {
        #[serde(rename = "r")]
        reason: String,
    },
    #[serde(rename = "r")]
    Record {
        #[serde(rename = "c")]
        cat: String,
        /// The named fields it has ([`FieldsSeen::present`]).
        #[serde(rename = "f")]
        fields: u64,
        /// The deciding rule's path, when rejected.
        #[serde(rename = "m", default, skip_serializing_if = "Option::is_none")]
        miss: Option<String>,
        /// The rejected record with its reason, as written. (Runs before
        /// 2026-12 also kept the compact line of a kept record whose input
        /// was not compact; now the writer makes it from the input text.)
        #[serde(rename = "l", default, skip_serializing_if = "Option::is_none")]
        line: Option<String>,
        /// A kept record whose input text is known to be the compact line
        /// a JSONL out gets, so a re-run writes it without re-reading it.
        #[serde(rename = "k", default, skip_serializing_if = "std::ops::Not::not")]
        compact: bool,
        /// The compact line of a kept record whose input text is not
        /// compact, made in the parallel pass; this run only.
        #[serde(skip)]
        compacted: Option<String>,
    },
}

/// The verdict on item `i` of `batch`: the rule its category picks, tested.
fn verdict(c: &Compiled, seen: &FieldsSeen, batch: &Batch, i: usize, jsonl_out: bool) -> Result<Verdict, StageFailure> {
    let p = &c.params;
    let full = || match batch.parse(i) {
        Ok(rec) => Ok(Ok(rec)),
        Err(b) if p.on_error == OnError::Skip => Ok(Err(Verdict::Bad { reason: b.reason })),
        Err(b) => Err(StageFailure::from(b)),
    };
    let projected = batch.items[i].1.text().ok().and_then(|t| c.projection.parse(t));
    let rec = match projected {
        Some(rec) => rec,
        None => match full()? {
            Ok(rec) => rec,
            Err(bad) => return Ok(bad),
        },
    };
    seen.observe(&rec);
    let fields = seen.present(&rec);
    let cat = category_of(&rec, &p.category_field);
    let rule = c.rules.get(&cat).or(c.default.as_ref());
    let miss = rule.and_then(|r| r.test(&Subject::new(&rec, &p.text_fields)).err().map(|m| (m.counted_as(), m.describe())));
    let (mut compact, mut compacted) = (false, None);
    if miss.is_none() && jsonl_out {
        // Compacting here runs on every thread, not in the one that writes.
        let text = batch.items[i].1.text().unwrap_or_default();
        let mut l = String::with_capacity(text.len());
        if dvx_records::compact_into(text, &mut l) {
            compact = l == text;
            compacted = (!compact).then_some(l);
        }
    }
    let line = match &miss {
        None => None,
        Some((_, why)) => {
            // A rejected record is written whole: parsed again if projected.
            let mut rec = if c.projection.is_all() {
                rec
            } else {
                match full()? {
                    Ok(rec) => rec,
                    Err(bad) => return Ok(bad),
                }
            };
            rec.insert(p.reason_field.clone(), Value::String(why.clone()));
            Some(serde_json::to_string(&rec).map_err(|e| StageFailure::new(format!("cannot write a record: {e}")))?)
        }
    };
    Ok(Verdict::Record { cat, fields, miss: miss.map(|(path, _)| path), line, compact, compacted })
}

/// What a verdict parses in full: the category and text fields, every
/// field a rule reads, and a chat record's turns (its answer, for the log);
/// every field when a rule reads the text of a record's turns, which for an
/// unknown shape is all its strings.
fn projection<'r>(p: &Params, rules: impl Iterator<Item = &'r Rule>) -> Projection {
    let mut read = vec![p.category_field.clone(), "messages".into(), "conversations".into()];
    read.extend(p.text_fields.iter().cloned());
    let reads_text = rules.fold(false, |t, r| r.reads(&mut read) | t);
    if reads_text && p.text_fields.is_empty() {
        Projection::all()
    } else {
        Projection::fields(read.iter().map(String::as_str))
    }
}

/// The record fields the params name: the category field (when a rule is
/// chosen by category), the text fields and every rule's `field`.
fn fields_read(c: &Compiled) -> FieldsSeen {
    let p = &c.params;
    let mut seen = FieldsSeen::new();
    if !c.rules.is_empty() {
        seen = seen.name("category_field", &p.category_field);
    }
    seen = seen.name_all("text_fields", &p.text_fields).text_from(&p.text_fields);
    let mut named = Vec::new();
    c.rules.values().chain(&c.default).for_each(|r| r.named_fields(&mut named));
    named.into_iter().fold(seen, |s, (param, field)| s.name(param, &field))
}

/// The pass-rate table: categories by pass rate (highest first, then name),
/// then a total row.
fn pass_rate_table(tallies: &BTreeMap<String, Tally>, total: Tally) -> String {
    let mut rows: Vec<(&String, &Tally)> = tallies.iter().collect();
    rows.sort_by(|a, b| b.1.rate().total_cmp(&a.1.rate()).then(a.0.cmp(b.0)));
    let mut s = String::from("| Category | Total | Passed | Failed | Pass Rate | Status |\n");
    s.push_str("|----------|-------|--------|--------|-----------|--------|\n");
    for (name, t) in rows {
        let _ = writeln!(
            s,
            "| **{name}** | {} | {} | {} | {:.1}% | {} |",
            t.total,
            t.passed,
            t.total - t.passed,
            100.0 * t.rate(),
            status(t.rate())
        );
    }
    let _ = write!(
        s,
        "| **TOTAL** | **{}** | **{}** | **{}** | **{:.1}%** | |",
        total.total,
        total.passed,
        total.total - total.passed,
        100.0 * total.rate()
    );
    s
}

fn status(rate: f64) -> &'static str {
    match rate {
        r if r >= 1.0 => "perfect",
        r if r >= 0.9 => "excellent",
        r if r >= 0.6 => "good",
        _ => "poor",
    }
}

#[cfg(test)]
mod tests;
