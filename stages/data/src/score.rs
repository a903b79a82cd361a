//! `kind: score` — score each record as a weighted sum of features, write
//! the score into the record, and keep the best.
//!
//! ```yaml
//! params:
//!   features:                    # score = Σ weight × value / scale
//!     - {feature: turns, weight: 2.0}
//!     - {feature: chars, weight: 1.0, scale: 100}
//!     - {feature: keyword_hits, weight: 3.0, keywords: [João, Softtor, Molting]}
//!     - {feature: questions, weight: 0.5}
//!     - {feature: regex_count, weight: -10, pattern: "I'll start by|Let me analyze"}
//!   top_k: 100                   # keep the k best (ties: earlier record wins)
//!   min_score: null              # keep records scoring at least this
//!   per_category: false          # top_k per category instead of overall
//!   category_field: category
//!   score_field: score           # where the score is written
//!   decimals: 4                  # the score is rounded to this many decimals
//!   text_fields: []              # record text; [] = the record's turns
//!   on_error: fail               # or `skip` malformed lines
//! ```
//! Features: `turns` (number of turns), `chars`, `words` (whitespace
//! tokens), `questions` (count of `?`), `keyword_hits` (occurrences of
//! `keywords`), `regex_count` (matches of `pattern`), `field` (the number at
//! `field`; `default` when missing, else an error). Text features read the
//! record text, or only the turns of `role`, or the text at `field`;
//! `keyword_hits` and `regex_count` take `case_insensitive`.
//!
//! deps: one JSONL file. outs[0]: the kept records, in input order, with the
//! score. Without `top_k` the stage streams; with it, it keeps one score per
//! record in memory and reads the input twice.
//! Metrics: `records_in`, `records_out`, `malformed`, `score` and
//! `kept_score` ({min, mean, max}), `threshold` (the `min_score`, or the
//! lowest kept score under `top_k`; per category when `per_category`),
//! `feature_means` ({feature: mean weighted contribution}).

use std::collections::BTreeMap;
use std::path::Path;

use dvx_stage_api::{Count, Metrics, ParamDoc, ParamError, ParamsDoc, Shape, StageContext, StageFailure, TypedStage};
use regex::{Regex, RegexBuilder};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::field_check::FieldsSeen;
use crate::records::{field, out_writer, record_text, turns, value_text, Record};
use crate::reuse::{Batch, Batches, Item, Reuse};
use crate::support::{category_of, pool, round4, Categories, OnError};

/// The `score` stage kind.
pub struct Score;

/// Params of `score`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Params {
    features: Vec<FeatureSpec>,
    #[serde(default)]
    top_k: Option<usize>,
    #[serde(default)]
    min_score: Option<f64>,
    #[serde(default)]
    per_category: bool,
    #[serde(default = "default_category_field")]
    category_field: String,
    #[serde(default = "default_score_field")]
    score_field: String,
    #[serde(default = "default_decimals")]
    decimals: u32,
    #[serde(default)]
    text_fields: Vec<String>,
    #[serde(default)]
    on_error: OnError,
    /// Reuse earlier runs' per-record scores (docs/incremental.md); left
    /// out of the key when on.
    #[serde(default = "crate::reuse::on", skip_serializing_if = "crate::reuse::is_on")]
    reuse: bool,
}

impl ParamsDoc for Params {
    fn doc() -> Vec<ParamDoc> {
        vec![
            ParamDoc::new("features", "list of features", "required", "`{feature, weight: 1, scale: 1, ...}`; `feature` is `turns chars words questions keyword_hits regex_count field`."),
            ParamDoc::new("features.N.keywords", "list of strings", "[]", "Words counted by `keyword_hits`."),
            ParamDoc::new("features.N.pattern", "regex", "-", "Pattern counted by `regex_count`."),
            ParamDoc::new("features.N.field", "field path", "-", "The field a `field` feature reads, or the text a text feature measures."),
            ParamDoc::new("features.N.role", "string", "-", "Measure only the turns of this role."),
            ParamDoc::new("features.N.case_insensitive", "bool", "false", "For `keyword_hits` and `regex_count`."),
            ParamDoc::new("features.N.default", "number", "-", "Value of a `field` feature when the field is missing."),
            ParamDoc::new("top_k", "integer", "-", "Keep the k best records (or `min_score`)."),
            ParamDoc::new("min_score", "number", "-", "Keep records scoring at least this."),
            ParamDoc::new("per_category", "bool", "false", "`top_k` per category."),
            ParamDoc::new("category_field", "field path", "category", "Field holding a record's category."),
            ParamDoc::new("score_field", "string", "score", "Field the score is written to."),
            ParamDoc::new("decimals", "integer", "4", "Decimals the score is rounded to (at most 12)."),
            ParamDoc::new("text_fields", "list of field paths", "[]", "The text measured; `[]` = the record's turns."),
            ParamDoc::new("on_error", "fail | skip", "fail", "What a malformed line does: stop, or count it and go on."),
            crate::reuse::param_doc(),
        ]
    }
}

fn default_category_field() -> String {
    "category".into()
}
fn default_score_field() -> String {
    "score".into()
}
fn default_decimals() -> u32 {
    4
}
fn one() -> f64 {
    1.0
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Kind {
    Turns,
    Chars,
    Words,
    Questions,
    KeywordHits,
    RegexCount,
    Field,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct FeatureSpec {
    feature: Kind,
    #[serde(default = "one")]
    weight: f64,
    #[serde(default = "one")]
    scale: f64,
    #[serde(default)]
    keywords: Vec<String>,
    #[serde(default)]
    pattern: Option<String>,
    #[serde(default)]
    field: Option<String>,
    #[serde(default)]
    role: Option<String>,
    #[serde(default)]
    case_insensitive: bool,
    #[serde(default)]
    default: Option<f64>,
}

/// A feature ready to evaluate.
struct Feature {
    spec: FeatureSpec,
    label: String,
    regex: Option<Regex>,
    /// Keywords, lowercased when case-insensitive.
    keywords: Vec<String>,
}

/// Params with every feature compiled.
pub struct Compiled {
    params: Params,
    features: Vec<Feature>,
}

fn compile(params: Params) -> Result<Compiled, ParamError> {
    if params.features.is_empty() {
        return Err(ParamError::field("features", "at least one feature is needed"));
    }
    if params.per_category && params.top_k.is_none() {
        return Err(ParamError::field("per_category", "`per_category` goes with `top_k`"));
    }
    if params.decimals > 12 {
        return Err(ParamError::field("decimals", "at most 12 decimals"));
    }
    let mut features = Vec::new();
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    for (i, f) in params.features.iter().enumerate() {
        let at = |k: &str| format!("features.{i}.{k}");
        if f.scale == 0.0 || !f.scale.is_finite() {
            return Err(ParamError::field(at("scale"), "must be a non-zero number"));
        }
        if f.role.is_some() && f.field.is_some() {
            return Err(ParamError::field(at("role"), "give `role` or `field`, not both"));
        }
        if f.field.is_some() && f.feature == Kind::Turns {
            return Err(ParamError::field(at("field"), "`turns` counts turns; `field` does not apply"));
        }
        let allowed = |ok: bool, key: &str| {
            if ok {
                Ok(())
            } else {
                Err(ParamError::field(at(key), "does not apply to this feature".to_string()))
            }
        };
        allowed(f.feature == Kind::KeywordHits || f.keywords.is_empty(), "keywords")?;
        allowed(f.feature == Kind::RegexCount || f.pattern.is_none(), "pattern")?;
        allowed(f.feature == Kind::Field || f.default.is_none(), "default")?;
        allowed(f.feature != Kind::Field || f.role.is_none(), "role")?;
        allowed(matches!(f.feature, Kind::KeywordHits | Kind::RegexCount) || !f.case_insensitive, "case_insensitive")?;
        let regex = match (&f.feature, &f.pattern) {
            (Kind::RegexCount, Some(p)) => Some(
                RegexBuilder::new(p)
                    .case_insensitive(f.case_insensitive)
                    .build()
                    .map_err(|e| ParamError::field(at("pattern"), format!("invalid regex: {e}")))?,
            ),
            (Kind::RegexCount, None) => return Err(ParamError::field(at("feature"), "`regex_count` needs `pattern`")),
            _ => None,
        };
        if f.feature == Kind::KeywordHits && f.keywords.is_empty() {
            return Err(ParamError::field(at("feature"), "`keyword_hits` needs `keywords`"));
        }
        if f.feature == Kind::KeywordHits && f.keywords.iter().any(String::is_empty) {
            return Err(ParamError::field(at("keywords"), "keywords must not be empty"));
        }
        if f.feature == Kind::Field && f.field.is_none() {
            return Err(ParamError::field(at("feature"), "`field` needs `field: <path>`"));
        }
        let keywords =
            if f.case_insensitive { f.keywords.iter().map(|k| k.to_lowercase()).collect() } else { f.keywords.clone() };
        // Labels name features in metrics; repeats get `#2`, `#3`.
        let base = match f.feature {
            Kind::Turns => "turns",
            Kind::Chars => "chars",
            Kind::Words => "words",
            Kind::Questions => "questions",
            Kind::KeywordHits => "keyword_hits",
            Kind::RegexCount => "regex_count",
            Kind::Field => "field",
        };
        let base = match (&f.field, &f.role) {
            (Some(fl), _) => format!("{base}({fl})"),
            (None, Some(r)) => format!("{base}[{r}]"),
            _ => base.to_string(),
        };
        let n = seen.entry(base.clone()).or_default();
        *n += 1;
        let label = if *n == 1 { base } else { format!("{base}#{n}") };
        features.push(Feature { label, regex, keywords, spec: f.clone() });
    }
    Ok(Compiled { params, features })
}

impl Compiled {
    /// The score of one record and each feature's weighted contribution.
    fn score(&self, rec: &Record) -> Result<(f64, Vec<f64>), String> {
        let mut text: Option<String> = None;
        let mut parts = Vec::with_capacity(self.features.len());
        for f in &self.features {
            let s = &f.spec;
            let owned;
            let subject: &str = if matches!(s.feature, Kind::Turns | Kind::Field) {
                ""
            } else if let Some(path) = &s.field {
                owned = field(rec, path).map(value_text).unwrap_or_default();
                &owned
            } else if let Some(role) = &s.role {
                owned =
                    turns(rec).into_iter().filter(|(r, _)| r == role).map(|(_, t)| t).collect::<Vec<_>>().join("\n");
                &owned
            } else {
                text.get_or_insert_with(|| record_text(rec, &self.params.text_fields))
            };
            let raw = match s.feature {
                Kind::Turns => match &s.role {
                    Some(role) => turns(rec).iter().filter(|(r, _)| r == role).count() as f64,
                    None => turns(rec).len() as f64,
                },
                Kind::Chars => subject.chars().count() as f64,
                Kind::Words => subject.split_whitespace().count() as f64,
                Kind::Questions => subject.matches('?').count() as f64,
                Kind::KeywordHits => {
                    let lowered;
                    let hay = if s.case_insensitive {
                        lowered = subject.to_lowercase();
                        lowered.as_str()
                    } else {
                        subject
                    };
                    f.keywords.iter().map(|k| hay.matches(k.as_str()).count()).sum::<usize>() as f64
                }
                Kind::RegexCount => f.regex.as_ref().map_or(0, |re| re.find_iter(subject).count()) as f64,
                Kind::Field => {
                    let path = s.field.as_deref().unwrap_or_default();
                    let got = field(rec, path);
                    match (got.and_then(Value::as_f64), s.default) {
                        (Some(x), _) => x,
                        (None, Some(d)) => d,
                        (None, None) => {
                            return Err(match got {
                                None => format!("{path} is missing (give the feature a `default`)"),
                                Some(v) => format!("{path} is not a number: {v}"),
                            })
                        }
                    }
                }
            };
            parts.push(s.weight * raw / s.scale);
        }
        let total: f64 = parts.iter().sum();
        let p = 10f64.powi(self.params.decimals as i32);
        Ok(((total * p).round() / p, parts))
    }
}

impl TypedStage for Score {
    const KIND: &'static str = "score";
    const VERSION: u32 = 1;
    const DEPS: Count = Count::Exactly(1);
    const OUTS: Count = Count::Exactly(1);
    const DEPS_ARE: &'static str = "JSONL";
    const OUTS_ARE: &'static str = "kept records";
    type Params = Params;
    type Prepared = Compiled;

    fn check_outs(&self, outs: &[&str]) -> Result<(), dvx_stage_api::OutError> {
        crate::support::check_record_outs(outs, ..1)
    }

    fn prepare(&self, params: Params, _shape: Shape) -> Result<Compiled, ParamError> {
        compile(params)
    }

    fn execute(&self, c: &Compiled, ctx: &mut StageContext<'_>) -> Result<Metrics, StageFailure> {
        let p = &c.params;
        let pool = pool(ctx.threads)?;
        let dep = &ctx.deps[0];
        let mut malformed = 0;
        let mut all = Stats::default();
        let mut kept = Stats::default();
        let mut sums = vec![0.0; c.features.len()];
        let mut writer = out_writer(ctx, 0)?;
        let seen = fields_read(c);
        let mut reuse = Reuse::new(ctx.memo, Self::KIND, Self::VERSION, p, p.reuse && seen.fits_mask());
        // One pass scores every record (from the memo where it can); without
        // `top_k` it also writes, with it a second pass writes the chosen ones.
        let streaming = p.top_k.is_none();
        let mut cats = Categories::default();
        let mut scored: Vec<(f64, u32)> = Vec::new();
        let mut lines: Vec<Option<String>> = Vec::new();
        // Per item (top_k only): whether it is a record, for the second pass.
        let mut is_rec: Vec<bool> = Vec::new();
        let mut batches = Batches::open(dep)?;
        while let Some(batch) = batches.next_batch()? {
            let results = reuse.results(&batch, &pool, |i| scored_item(c, &seen, &batch, i, dep))?;
            for ((_, item), r) in batch.items.iter().zip(results) {
                let Scored::Record { score, parts, cat, fields, line } = r else {
                    malformed += 1;
                    is_rec.push(false);
                    continue;
                };
                is_rec.push(true);
                seen.mark(fields);
                let score = f64::from_bits(score);
                all.add(score);
                sums.iter_mut().zip(&parts).for_each(|(s, x)| *s += f64::from_bits(*x));
                if streaming {
                    if p.min_score.is_none_or(|m| score >= m) {
                        kept.add(score);
                        writer.write_json_line(&out_line(p, item, score, line.as_deref()))?;
                    }
                } else {
                    let cat = if p.per_category { cats.id(cat) } else { 0 };
                    scored.push((score, cat));
                    lines.push(line);
                }
            }
        }
        seen.check()?;
        let threshold;
        if streaming {
            threshold = p.min_score.map_or(Value::Null, |m| json!(m));
        } else {
            let (keep, cut) = select_top(&scored, p.top_k.unwrap_or(0), p.min_score, p.per_category);
            threshold = if p.per_category {
                Value::Object(
                    cats.sorted()
                        .map(|(name, id)| (name.to_string(), cut[id as usize].map_or(Value::Null, |x| json!(x))))
                        .collect(),
                )
            } else {
                cut.first().copied().flatten().map_or(Value::Null, |x| json!(x))
            };
            // Pass 2: write the chosen records, in input order (malformed
            // items have no score and are passed over).
            let mut reader = dvx_records::RecordReader::open(dep)?;
            let (mut item, mut i) = (0, 0);
            while let Some(chunk) = reader.raw_chunk(crate::support::CHUNK)? {
                for (_, raw) in chunk.items {
                    let record = is_rec.get(item).copied().unwrap_or(false);
                    item += 1;
                    if !record {
                        continue;
                    }
                    if keep[i] {
                        let score = scored[i].0;
                        kept.add(score);
                        let text = match raw {
                            dvx_records::Raw::Text(Ok(t)) => t,
                            dvx_records::Raw::Value(v) => v.to_string(),
                            dvx_records::Raw::Text(Err(_)) => String::new(),
                        };
                        writer.write_json_line(&out_line(p, &Item::Text(text), score, lines[i].as_deref()))?;
                    }
                    i += 1;
                }
            }
        }
        writer.finish()?;
        writeln!(
            ctx.log,
            "scored {} record(s), kept {}; score min {} mean {} max {}",
            all.n,
            kept.n,
            all.min,
            round4(all.mean()),
            all.max
        )?;
        writeln!(ctx.log, "{}", reuse.summary())?;
        if let Some(l) = seen.text_report("score") {
            writeln!(ctx.log, "{l}")?;
        }
        let mut m = Metrics::new();
        m.insert("records_in".into(), json!(all.n));
        m.insert("records_out".into(), json!(kept.n));
        m.insert("malformed".into(), json!(malformed));
        m.insert("score".into(), all.to_json());
        m.insert("kept_score".into(), kept.to_json());
        m.insert("threshold".into(), threshold);
        let n = all.n.max(1) as f64;
        m.insert(
            "feature_means".into(),
            Value::Object(c.features.iter().zip(&sums).map(|(f, s)| (f.label.clone(), json!(round4(s / n)))).collect()),
        );
        Ok(m)
    }
}

/// What `score` computed for one input item, as kept across runs (floats
/// as their bits, so a replayed score is the very same number).
#[derive(Clone, Serialize, Deserialize)]
enum Scored {
    #[serde(rename = "b")]
    Bad,
    #[serde(rename = "r")]
    Record {
        #[serde(rename = "s")]
        score: u64,
        #[serde(rename = "p")]
        parts: Vec<u64>,
        #[serde(rename = "c")]
        cat: String,
        #[serde(rename = "f")]
        fields: u64,
        /// The record with its score, when [`spliced`] does not give it.
        #[serde(rename = "l", default, skip_serializing_if = "Option::is_none")]
        line: Option<String>,
    },
}

/// Score item `i` of `batch`.
fn scored_item(c: &Compiled, seen: &FieldsSeen, batch: &Batch, i: usize, dep: &Path) -> Result<Scored, StageFailure> {
    let p = &c.params;
    let mut rec = match batch.parse(i) {
        Ok(rec) => rec,
        Err(_) if p.on_error == OnError::Skip => return Ok(Scored::Bad),
        Err(b) => return Err(b.into()),
    };
    seen.observe(&rec);
    let line = batch.items[i].0;
    let (score, parts) = c.score(&rec).map_err(|e| StageFailure::bad_input(format!("{}:{line}: {e}", dep.display())))?;
    let cat = if p.per_category { category_of(&rec, &p.category_field) } else { String::new() };
    let fields = seen.present(&rec);
    rec.insert(p.score_field.clone(), json!(score));
    let full = serde_json::to_string(&rec).map_err(|e| StageFailure::new(format!("cannot write a record: {e}")))?;
    let line = match batch.items[i].1.text() {
        Ok(text) if spliced(p, text, score).as_deref() == Some(full.as_str()) => None,
        _ => Some(full),
    };
    Ok(Scored::Record { score: score.to_bits(), parts: parts.iter().map(|x| x.to_bits()).collect(), cat, fields, line })
}

/// The input text with `,"<score_field>":<score>` before its closing brace:
/// the output line when the input was compact and had no score field
/// (checked against the real writing when the item was scored).
fn spliced(p: &Params, text: &str, score: f64) -> Option<String> {
    let body = text.strip_suffix('}')?;
    let sep = if body.ends_with('{') { "" } else { "," };
    Some(format!("{body}{sep}{}:{}}}", Value::String(p.score_field.clone()), json!(score)))
}

/// The line written for a kept record.
fn out_line(p: &Params, item: &Item, score: f64, line: Option<&str>) -> String {
    match line {
        Some(l) => l.to_string(),
        None => spliced(p, item.text().unwrap_or_default(), score).unwrap_or_default(),
    }
}

/// The record fields the params name: the text fields, each feature's
/// `field`, and the category field when `top_k` is per category.
fn fields_read(c: &Compiled) -> FieldsSeen {
    let p = &c.params;
    let mut seen = FieldsSeen::new().name_all("text_fields", &p.text_fields).text_from(&p.text_fields);
    for (i, f) in c.features.iter().enumerate() {
        if let Some(path) = &f.spec.field {
            seen = seen.name(format!("features.{i}.field"), path);
        }
    }
    if p.per_category {
        seen = seen.name("category_field", &p.category_field);
    }
    seen
}

/// Which records `top_k` keeps, and the lowest kept score per group
/// (group 0 when not per category). Highest score first; equal scores go to
/// the earlier record.
fn select_top(scored: &[(f64, u32)], k: usize, min: Option<f64>, per_category: bool) -> (Vec<bool>, Vec<Option<f64>>) {
    let groups = if per_category { scored.iter().map(|s| s.1 as usize + 1).max().unwrap_or(0) } else { 1 };
    let mut order: Vec<usize> = (0..scored.len()).filter(|&i| min.is_none_or(|m| scored[i].0 >= m)).collect();
    order.sort_by(|&a, &b| scored[b].0.total_cmp(&scored[a].0).then(a.cmp(&b)));
    let mut taken = vec![0usize; groups];
    let mut cut = vec![None; groups];
    let mut keep = vec![false; scored.len()];
    for i in order {
        let g = if per_category { scored[i].1 as usize } else { 0 };
        if taken[g] < k {
            taken[g] += 1;
            keep[i] = true;
            cut[g] = Some(scored[i].0);
        }
    }
    (keep, cut)
}

/// Running min / mean / max.
#[derive(Default)]
struct Stats {
    n: usize,
    sum: f64,
    min: f64,
    max: f64,
}

impl Stats {
    fn add(&mut self, x: f64) {
        if self.n == 0 {
            self.min = x;
            self.max = x;
        }
        self.n += 1;
        self.sum += x;
        self.min = self.min.min(x);
        self.max = self.max.max(x);
    }

    fn mean(&self) -> f64 {
        if self.n == 0 {
            0.0
        } else {
            self.sum / self.n as f64
        }
    }

    fn to_json(&self) -> Value {
        if self.n == 0 {
            return Value::Null;
        }
        json!({"min": round4(self.min), "mean": round4(self.mean()), "max": round4(self.max)})
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::{jsonl, run};

    /// Seed 003's formula as one YAML block.
    fn seed_003() -> Value {
        let yaml = r#"
features:
  - {feature: turns, weight: 2.0}
  - {feature: chars, weight: 1.0, scale: 100}
  - {feature: keyword_hits, weight: 3.0, keywords: [João, Softtor, Molting]}
  - {feature: questions, weight: 0.5}
  - {feature: regex_count, weight: -10, pattern: "I'll start by|Let me analyze|I need to"}
"#;
        serde_saphyr::from_str(yaml).unwrap()
    }

    fn chat(user: &str, assistant: &str) -> Value {
        json!({"messages": [{"role": "user", "content": user}, {"role": "assistant", "content": assistant}]})
    }

    #[test]
    fn seed_003_formula() {
        // 2 turns, "Who is João?" (12 chars) + "\n" + 87 chars = 100 chars,
        // 3 keyword hits, 1 question, 1 agent pattern.
        let answer = format!("João works at Softtor. Let me analyze{}", ".".repeat(87 - 37));
        let input = [chat("Who is João?", &answer), chat("hi", "hello")];
        let r = run(Score, &[&jsonl(&input)], &["o.jsonl"], seed_003(), 1).unwrap();
        let scores: Vec<Value> = r.records(0).iter().map(|x| x["score"].clone()).collect();
        // 2×2 + 100/100 + 3×3 + 0.5 − 10 = 4.5 ; 2×2 + 8/100 = 4.08
        assert_eq!(scores, vec![json!(4.5), json!(4.08)]);
        assert_eq!(r.metric("score"), &json!({"min": 4.08, "mean": 4.29, "max": 4.5}));
        assert_eq!(
            r.metric("feature_means"),
            &json!({"turns": 4.0, "chars": 0.54, "keyword_hits": 4.5, "questions": 0.25, "regex_count": -5.0})
        );
        assert_eq!(r.metric("threshold"), &Value::Null);
    }

    fn scored(scores: &[(f64, &str)]) -> String {
        let recs: Vec<Value> =
            scores.iter().enumerate().map(|(i, (s, c))| json!({"id": i, "q": s, "category": c})).collect();
        jsonl(&recs)
    }

    fn ids(r: &crate::testkit::Run) -> Vec<i64> {
        r.records(0).iter().map(|x| x["id"].as_i64().unwrap()).collect()
    }

    #[test]
    fn top_k_ties_go_to_the_earlier_record() {
        let input = scored(&[(1.0, "a"), (3.0, "b"), (2.0, "a"), (3.0, "a"), (2.0, "b"), (0.5, "b")]);
        let params = json!({"features": [{"feature": "field", "field": "q"}], "top_k": 3});
        let r = run(Score, &[&input], &["o"], params, 2).unwrap();
        assert_eq!(ids(&r), vec![1, 2, 3]);
        assert_eq!(r.metric("threshold"), &json!(2.0));
        assert_eq!(r.metric("records_out"), &json!(3));
        assert_eq!(r.metric("kept_score"), &json!({"min": 2.0, "mean": 2.6667, "max": 3.0}));
        let params = json!({"features": [{"feature": "field", "field": "q"}], "top_k": 1, "per_category": true});
        let r = run(Score, &[&input], &["o"], params, 2).unwrap();
        assert_eq!(ids(&r), vec![1, 3]);
        assert_eq!(r.metric("threshold"), &json!({"a": 3.0, "b": 3.0}));
        let params = json!({"features": [{"feature": "field", "field": "q"}], "top_k": 5, "min_score": 2.0});
        let r = run(Score, &[&input], &["o"], params, 2).unwrap();
        assert_eq!(ids(&r), vec![1, 2, 3, 4]);
    }

    #[test]
    fn min_score_streams() {
        let input = scored(&[(1.0, "a"), (3.0, "b"), (2.0, "a")]);
        let params =
            json!({"features": [{"feature": "field", "field": "q", "weight": 2}], "min_score": 4, "score_field": "s"});
        let r = run(Score, &[&input], &["o"], params, 1).unwrap();
        assert_eq!(
            r.records(0),
            vec![
                json!({"id": 1, "q": 3.0, "category": "b", "s": 6.0}),
                json!({"id": 2, "q": 2.0, "category": "a", "s": 4.0})
            ]
        );
        assert_eq!(r.metric("threshold"), &json!(4.0));
    }

    #[test]
    fn text_features_by_role_and_field() {
        let input = [json!({"instruction": "Why? How?", "output": "one two three", "n": "x"})];
        let params = json!({"features": [
            {"feature": "questions", "role": "user"},
            {"feature": "words", "field": "output", "weight": 10},
            {"feature": "turns", "role": "assistant", "weight": 100},
            {"feature": "keyword_hits", "keywords": ["WHY"], "case_insensitive": true, "weight": 1000},
            {"feature": "field", "field": "n", "default": 0.25},
        ]});
        let r = run(Score, &[&jsonl(&input)], &["o"], params, 1).unwrap();
        assert_eq!(r.records(0)[0]["score"], json!(1132.25));
    }

    #[test]
    fn errors() {
        let bad = |params: Value| run(Score, &["{}\n"], &["o"], params, 1).unwrap_err();
        assert!(bad(json!({"features": [{"feature": "regex_count", "pattern": "("}]}))
            .starts_with("features.0.pattern: invalid regex"));
        assert!(
            bad(json!({"features": [{"feature": "size"}]})).starts_with("features.0.feature: unknown variant `size`")
        );
        assert_eq!(
            bad(json!({"features": [{"feature": "chars", "scale": 0}]})),
            "features.0.scale: must be a non-zero number"
        );
        assert_eq!(
            bad(json!({"features": [{"feature": "keyword_hits"}]})),
            "features.0.feature: `keyword_hits` needs `keywords`"
        );
        assert_eq!(bad(json!({"features": []})), "features: at least one feature is needed");
        assert_eq!(
            bad(json!({"features": [{"feature": "chars"}], "per_category": true})),
            "per_category: `per_category` goes with `top_k`"
        );
        assert!(bad(json!({})).contains("missing field `features`"));
        let e = run(
            Score,
            &["{\"a\":1}\n{\"n\":1}\n"],
            &["o"],
            json!({"features": [{"feature": "field", "field": "n"}]}),
            1,
        )
        .unwrap_err();
        assert!(e.ends_with("in0.jsonl:1: n is missing (give the feature a `default`)"), "{e}");
        let e = run(
            Score,
            &["{\"n\":1}\n{\"n\":\"8.5\"}\n"],
            &["o"],
            json!({"features": [{"feature": "field", "field": "n"}]}),
            1,
        )
        .unwrap_err();
        assert!(e.ends_with("in0.jsonl:2: n is not a number: \"8.5\""), "{e}");
    }

    #[test]
    fn deterministic_across_threads() {
        let recs: Vec<Value> =
            (0..4500).map(|i| json!({"output": "?".repeat(i % 7), "category": format!("c{}", i % 3)})).collect();
        let input = jsonl(&recs);
        let params = json!({"features": [{"feature": "questions"}], "top_k": 100, "per_category": true});
        let a = run(Score, &[&input], &["o"], params.clone(), 1).unwrap();
        let b = run(Score, &[&input], &["o"], params, 3).unwrap();
        assert_eq!(a.text(0), b.text(0));
        assert_eq!(a.metrics, b.metrics);
        assert_eq!(a.records(0).len(), 300);
    }

    #[test]
    fn a_rerun_scores_only_new_records_and_writes_what_a_full_run_does() {
        use crate::reuse::testing::{assert_incremental, incremental_line, lines};
        let params = json!({"features": [{"feature": "words"}, {"feature": "questions"}], "top_k": 3000});
        assert_incremental(|| Score, lines(0, 5000), lines(5000, 5200), incremental_line(99_999), &["o.jsonl"], params);
    }
}
