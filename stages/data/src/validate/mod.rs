//! `kind: validate` — schema checks and a statistics report; the stage
//! fails when a configured rule is broken.
//!
//! ```yaml
//! params:
//!   required_fields: []          # present and not null
//!   non_empty: []                # not blank / empty (missing counts as empty)
//!   types: {}                    # field: string|number|integer|boolean|array|object|null
//!   check_turns: true            # chat records: [system] user, assistant, user, ... assistant; no empty turn
//!   category_field: category
//!   score_field: score           # scores summarised when present
//!   text_fields: []              # the text measured and compared; [] = the record's turns
//!   min_records: null
//!   max_records: null
//!   min_per_category: null
//!   max_duplicate_rate: null     # e.g. 0.01: exact duplicates (case/whitespace folded) over records
//!   max_invalid: 0               # records breaking a schema rule that are tolerated
//!   max_malformed: null          # malformed lines tolerated under on_error: skip
//!   histogram_bins: 20
//!   examples: 5                  # locations listed per broken rule
//!   on_error: fail               # or `skip`: malformed lines are counted (and go to outs[3])
//! ```
//! deps: one or more JSONL files, reported together (with counts per file).
//! outs[0]: report JSON. outs[1] (optional): the report in Markdown.
//! outs[2] (optional): SVG chart (records per category, length histogram).
//! outs[3] (optional): the malformed lines, as JSONL.
//! Outputs are written before the stage fails, so a failed report can be read.
//! Metrics: `status`, `records`, `malformed`, `invalid`, `duplicates`
//! ({count, rate}), `categories`, `lengths` ({chars, tokens} × {prompt,
//! response, total} × {min, mean, p50, p95, max}), `score`, `violations`
//! ({rule: count}), `failed_checks`.

mod chart;
mod collect;
mod report;

use std::collections::BTreeMap;

use dvx_stage_api::{Count, Metrics, ParamDoc, ParamError, ParamsDoc, Shape, StageContext, StageFailure, TypedStage};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::field_check::FieldsSeen;
use crate::records::out_writer;
use crate::reuse::{Batches, Reuse};
use crate::support::{bad_line_record, file_name, pool, OnError};
use collect::{facts, Facts, Totals};

/// What one input item gave, as kept across runs.
#[derive(Clone, Serialize, Deserialize)]
enum Found {
    #[serde(rename = "b")]
    Bad {
        #[serde(rename = "r")]
        reason: String,
    },
    #[serde(rename = "r")]
    Record {
        #[serde(rename = "f")]
        fields: u64,
        #[serde(rename = "x")]
        facts: Facts,
    },
}
use report::Check;

/// The `validate` stage kind.
pub struct Validate;

/// Params of `validate`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Params {
    #[serde(default)]
    required_fields: Vec<String>,
    #[serde(default)]
    non_empty: Vec<String>,
    #[serde(default)]
    types: BTreeMap<String, JsonType>,
    #[serde(default = "yes")]
    check_turns: bool,
    #[serde(default = "default_category_field")]
    category_field: String,
    #[serde(default = "default_score_field")]
    score_field: String,
    #[serde(default)]
    text_fields: Vec<String>,
    #[serde(default)]
    min_records: Option<usize>,
    #[serde(default)]
    max_records: Option<usize>,
    #[serde(default)]
    min_per_category: Option<usize>,
    #[serde(default)]
    max_duplicate_rate: Option<f64>,
    #[serde(default)]
    max_invalid: usize,
    #[serde(default)]
    max_malformed: Option<usize>,
    #[serde(default = "default_bins")]
    histogram_bins: usize,
    #[serde(default = "default_examples")]
    examples: usize,
    #[serde(default)]
    on_error: OnError,
    /// Reuse earlier runs' per-record facts (docs/incremental.md); left out
    /// of the key when on.
    #[serde(default = "crate::reuse::on", skip_serializing_if = "crate::reuse::is_on")]
    reuse: bool,
}

impl ParamsDoc for Params {
    fn doc() -> Vec<ParamDoc> {
        vec![
            ParamDoc::new("required_fields", "list of field paths", "[]", "Fields that must be present and not null."),
            ParamDoc::new(
                "non_empty",
                "list of field paths",
                "[]",
                "Fields that must not be blank (missing counts as empty).",
            ),
            ParamDoc::new("types", "map of field to type", "{}", "`string number integer boolean array object null`."),
            ParamDoc::new(
                "check_turns",
                "bool",
                "true",
                "Chat records alternate [system] user, assistant, ... with no empty turn.",
            ),
            ParamDoc::new("category_field", "field path", "category", "Field holding a record's category."),
            ParamDoc::new("score_field", "field path", "score", "Scores summarised when present."),
            ParamDoc::new(
                "text_fields",
                "list of field paths",
                "[]",
                "The text measured and compared; `[]` = the record's turns.",
            ),
            ParamDoc::new("min_records", "integer", "-", "Fail below this many records."),
            ParamDoc::new("max_records", "integer", "-", "Fail above this many records."),
            ParamDoc::new("min_per_category", "integer", "-", "Fail when a category has fewer records."),
            ParamDoc::new(
                "max_duplicate_rate",
                "fraction",
                "-",
                "Fail above this rate of exact duplicates (case and whitespace folded).",
            ),
            ParamDoc::new("max_invalid", "integer", "0", "Records breaking a schema rule that are tolerated."),
            ParamDoc::new("max_malformed", "integer", "-", "Malformed lines tolerated under `on_error: skip`."),
            ParamDoc::new("histogram_bins", "integer", "20", "Bins of the length histogram (1 to 1000)."),
            ParamDoc::new("examples", "integer", "5", "Locations listed per broken rule."),
            ParamDoc::new(
                "on_error",
                "fail | skip",
                "fail",
                "What a malformed line does: stop, or count it (to outs[3]) and go on.",
            ),
            crate::reuse::param_doc(),
        ]
    }
}

fn yes() -> bool {
    true
}
/// The record fields the params name and must find somewhere. The schema
/// rules (`required_fields`, `types`, `non_empty`) report missing fields
/// themselves; the category and score fields are summarised when present,
/// so only one named other than the default is required of the records.
fn fields_read(p: &Params) -> FieldsSeen {
    let mut seen = FieldsSeen::new().name_all("text_fields", &p.text_fields).text_from(&p.text_fields);
    if p.category_field != default_category_field() {
        seen = seen.name("category_field", &p.category_field);
    }
    if p.score_field != default_score_field() {
        seen = seen.name("score_field", &p.score_field);
    }
    seen
}

fn default_category_field() -> String {
    "category".into()
}
fn default_score_field() -> String {
    "score".into()
}
fn default_bins() -> usize {
    20
}
fn default_examples() -> usize {
    5
}

/// A JSON type a field may be required to have.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
enum JsonType {
    String,
    Number,
    Integer,
    Boolean,
    Array,
    Object,
    Null,
}

impl JsonType {
    fn matches(self, v: &Value) -> bool {
        match self {
            JsonType::String => v.is_string(),
            JsonType::Number => v.is_number(),
            JsonType::Integer => v.is_i64() || v.is_u64(),
            JsonType::Boolean => v.is_boolean(),
            JsonType::Array => v.is_array(),
            JsonType::Object => v.is_object(),
            JsonType::Null => v.is_null(),
        }
    }

    fn name(self) -> &'static str {
        match self {
            JsonType::String => "string",
            JsonType::Number => "number",
            JsonType::Integer => "integer",
            JsonType::Boolean => "boolean",
            JsonType::Array => "array",
            JsonType::Object => "object",
            JsonType::Null => "null",
        }
    }
}

fn parse(p: Params) -> Result<Params, ParamError> {
    if let Some(r) = p.max_duplicate_rate {
        if !(0.0..=1.0).contains(&r) {
            return Err(ParamError::field("max_duplicate_rate", "expected a fraction between 0 and 1"));
        }
    }
    if let (Some(lo), Some(hi)) = (p.min_records, p.max_records) {
        if lo > hi {
            return Err(ParamError::field("min_records", format!("{lo} is above max_records {hi}")));
        }
    }
    if p.histogram_bins == 0 || p.histogram_bins > 1000 {
        return Err(ParamError::field("histogram_bins", "expected 1 to 1000"));
    }
    Ok(p)
}

/// The configured rules against what was found.
fn checks(p: &Params, t: &Totals) -> Vec<Check> {
    let mut out = Vec::new();
    let mut add = |rule: String, limit: String, actual: String, ok: bool| out.push(Check { rule, limit, actual, ok });
    if let Some(n) = p.min_records {
        add("min_records".into(), format!(">= {n}"), t.records.to_string(), t.records >= n);
    }
    if let Some(n) = p.max_records {
        add("max_records".into(), format!("<= {n}"), t.records.to_string(), t.records <= n);
    }
    if let Some(n) = p.min_per_category {
        for (cat, &c) in &t.categories {
            add(format!("min_per_category: {cat}"), format!(">= {n}"), c.to_string(), c >= n);
        }
    }
    if let Some(r) = p.max_duplicate_rate {
        let rate = t.duplicate_rate();
        add("max_duplicate_rate".into(), format!("<= {r}"), format!("{:.4}", rate), rate <= r);
    }
    add("max_invalid".into(), format!("<= {}", p.max_invalid), t.invalid.to_string(), t.invalid <= p.max_invalid);
    if let Some(n) = p.max_malformed {
        add("max_malformed".into(), format!("<= {n}"), t.malformed.to_string(), t.malformed <= n);
    }
    out
}

impl TypedStage for Validate {
    const KIND: &'static str = "validate";
    const VERSION: u32 = 1;
    const DEPS: Count = Count::AtLeast(1);
    const OUTS: Count = Count::Between(1, 4);
    const DEPS_ARE: &'static str = "JSONL";
    const OUTS_ARE: &'static str = "report JSON, then optionally Markdown, SVG chart, malformed lines";
    type Params = Params;
    type Prepared = Params;

    fn check_outs(&self, outs: &[&str]) -> Result<(), dvx_stage_api::OutError> {
        crate::support::check_record_outs(outs, 3..4)
    }

    fn prepare(&self, params: Params, _shape: Shape) -> Result<Params, ParamError> {
        parse(params)
    }

    fn execute(&self, p: &Params, ctx: &mut StageContext<'_>) -> Result<Metrics, StageFailure> {
        let pool = pool(ctx.threads)?;
        let mut rejects = (ctx.outs.len() > 3).then(|| out_writer(ctx, 3)).transpose()?;
        let mut t = Totals::default();
        let seen = fields_read(p);
        let mut reuse = Reuse::new(ctx.memo, Self::KIND, Self::VERSION, p, p.reuse && seen.fits_mask());
        for dep in ctx.deps {
            let name = file_name(dep);
            let before = t.records;
            let mut batches = Batches::open(dep)?;
            while let Some(batch) = batches.next_batch()? {
                let found = reuse.results(&batch, &pool, |i| match batch.parse(i) {
                    Ok(rec) => {
                        seen.observe(&rec);
                        Ok(Found::Record { fields: seen.present(&rec), facts: facts(p, &rec) })
                    }
                    Err(b) if p.on_error == OnError::Skip => Ok(Found::Bad { reason: b.reason }),
                    Err(b) => Err(b.into()),
                })?;
                for ((line, item), f) in batch.items.iter().zip(found) {
                    match f {
                        Found::Record { fields, facts } => {
                            seen.mark(fields);
                            t.add(facts, || format!("{name}:{line}"), p.examples);
                        }
                        Found::Bad { reason } => {
                            t.malformed += 1;
                            if let Some(w) = rejects.as_mut() {
                                w.write(&bad_line_record(&batch.bad_line(*line, item, reason), "_error"))?;
                            }
                        }
                    }
                }
            }
            t.inputs.push((name, t.records - before));
        }
        seen.check()?;
        if let Some(w) = rejects {
            w.finish()?;
        }
        let checks = checks(p, &t);
        let failed: Vec<&Check> = checks.iter().filter(|c| !c.ok).collect();
        let report = report::json(&t, &checks, p.histogram_bins);
        std::fs::write(&ctx.outs[0], serde_json::to_string_pretty(&report).expect("json") + "\n")?;
        let markdown = report::markdown(&t, &checks, &report);
        if let Some(out) = ctx.outs.get(1) {
            std::fs::write(out, &markdown)?;
        }
        if let Some(out) = ctx.outs.get(2) {
            std::fs::write(out, chart::svg(&t, &report))?;
        }
        ctx.log.write_all(markdown.as_bytes())?;
        writeln!(ctx.log, "{}", reuse.summary())?;
        if let Some(l) = seen.text_report("validate") {
            writeln!(ctx.log, "{l}")?;
        }
        if !failed.is_empty() {
            let why: Vec<String> =
                failed.iter().map(|c| format!("{} (limit {}, got {})", c.rule, c.limit, c.actual)).collect();
            let mut msg = format!("validation failed: {}", why.join("; "));
            if t.invalid > p.max_invalid {
                let rules: Vec<String> = t.violations.iter().map(|(r, v)| format!("{r} ×{}", v.count)).collect();
                msg.push_str(&format!("; broken schema rules: {}", rules.join(", ")));
            }
            return Err(StageFailure::bad_input(msg));
        }
        Ok(report::metrics(&report))
    }
}

#[cfg(test)]
mod tests;
