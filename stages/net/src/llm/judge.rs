//! `kind: judge` — LLM-as-judge scores (seed 002: four dimensions, 1–10,
//! keep above 7).
//!
//! - deps: JSONL files, read in order.
//! - outs[0]: the records whose score reaches `min_score` (all scored ones
//!   without it), with `<field>` (default `quality_score`: the mean of the
//!   dimensions), `<dimension>_score` for each dimension and `_judge`.
//! - outs[1] (optional): the rest — scored below `min_score`, or not scored
//!   (`_judge_error` says why).
//! - The request: `system` if given, then the `rubric` filled from the
//!   record (`{field}` placeholders, as in `multiply`) and a line asking for
//!   a JSON object with each dimension's score. The answer is parsed
//!   robustly (see `parse_scores`); an unparseable one is asked again up to
//!   `parse_retries` times, then counted as `unparseable`. Only parsed
//!   answers are memoised.
//! - Teachers, routing, limits, memo and metrics as `generate`, plus
//!   `scored`, `kept`, `below`, `unparseable`, `mean_score`,
//!   `dimensions.<d>.mean` and `distribution`; the log has the score
//!   distribution table and the mean.

use std::collections::BTreeMap;

use dvx_stage_api::{
    Count, Metrics, ParamDoc, ParamError, ParamsDoc, Shape, StageContext, StageFailure, TypedStage,
};
use regex::Regex;
use serde::Deserialize;
use serde_json::{json, Value};

use super::generate::default_limits;
use super::runner::{ask_all, requests_for, Sending};
use super::teachers::{self, Teacher};
use crate::template::{compile, fill, Piece};
use crate::records::RecordWriter;
use crate::support::round4;

/// Params of `judge`.
#[derive(Debug, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct Params {
    teachers: Vec<Teacher>,
    #[serde(default)]
    seed: u64,
    rubric: String,
    #[serde(default)]
    system: Option<String>,
    #[serde(default = "quality")]
    dimensions: Vec<String>,
    #[serde(default = "one_to_ten")]
    scale: [f64; 2],
    #[serde(default)]
    min_score: Option<f64>,
    #[serde(default = "quality_score")]
    field: String,
    #[serde(default = "two")]
    parse_retries: u32,
    #[serde(default = "default_limits")]
    limits: Sending,
    #[serde(default)]
    max_failures: usize,
}

fn quality() -> Vec<String> {
    vec!["quality".into()]
}
fn one_to_ten() -> [f64; 2] {
    [1.0, 10.0]
}
fn quality_score() -> String {
    "quality_score".into()
}
fn two() -> u32 {
    2
}

impl ParamsDoc for Params {
    fn doc() -> Vec<ParamDoc> {
        let mut d = teachers::docs();
        d.extend([
            ParamDoc::new("rubric", "template", "required", "What the judge is told about the record (`{field}` placeholders, as in `multiply`)."),
            ParamDoc::new("system", "string", "-", "System message sent first."),
            ParamDoc::new("dimensions", "list of names", "[quality]", "What is scored; each becomes `<name>_score`."),
            ParamDoc::new("scale", "[min, max]", "[1, 10]", "The range of each score; answers outside it do not parse."),
            ParamDoc::new("min_score", "number", "-", "Records whose score is at least this go to outs[0], the rest to outs[1]."),
            ParamDoc::new("field", "name", "quality_score", "Field for the mean of the dimensions."),
            ParamDoc::new("parse_retries", "integer", "2", "Times an unparseable answer is asked again before it is counted."),
            ParamDoc::new("limits", "map", "{}", "As `generate`: `max_concurrent`, `rpm`, `tpm`, `max_retries`, `backoff_s`, `timeout_s`."),
            ParamDoc::new("max_failures", "integer", "0", "Failed or unparseable records allowed before the stage fails."),
        ]);
        d
    }
}

/// Checked params, the compiled rubric and the score parser.
pub struct Prepared {
    p: Params,
    rubric: Vec<Piece>,
    parser: ScoreParser,
}

/// The `judge` kind.
pub struct Judge;

impl TypedStage for Judge {
    const KIND: &'static str = "judge";
    const VERSION: u32 = 1;
    const DETERMINISTIC: bool = false;
    const DEPS: Count = Count::AtLeast(1);
    const OUTS: Count = Count::Between(1, 2);
    const DEPS_ARE: &'static str = "JSONL";
    const OUTS_ARE: &'static str = "JSONL kept, then optionally the rest";
    type Params = Params;
    type Prepared = Prepared;

    fn check_outs(&self, outs: &[&str]) -> Result<(), dvx_stage_api::OutError> {
        crate::support::check_record_outs(outs, ..)
    }

    fn prepare(&self, p: Params, _shape: Shape) -> Result<Prepared, ParamError> {
        teachers::check(&p.teachers)?;
        p.limits.check()?;
        let rubric = compile(&p.rubric).map_err(|e| ParamError::field("rubric", e))?;
        if p.dimensions.is_empty() {
            return Err(ParamError::field("dimensions", "name at least one dimension"));
        }
        for (i, d) in p.dimensions.iter().enumerate() {
            if d.is_empty() || !d.chars().all(|c| c.is_alphanumeric() || c == '_') {
                return Err(ParamError::field(format!("dimensions.{i}"), "use letters, digits and `_` only"));
            }
            if p.dimensions[..i].contains(d) {
                return Err(ParamError::field(format!("dimensions.{i}"), format!("`{d}` is named twice")));
            }
        }
        let [lo, hi] = p.scale;
        if !(lo.is_finite() && hi.is_finite() && lo < hi) {
            return Err(ParamError::field("scale", "give [min, max] with min below max"));
        }
        let parser = ScoreParser::new(&p.dimensions, lo, hi);
        Ok(Prepared { p, rubric, parser })
    }

    fn execute(&self, prepared: &Prepared, ctx: &mut StageContext<'_>) -> Result<Metrics, StageFailure> {
        let Prepared { p, rubric, parser } = prepared;
        let [lo, hi] = p.scale;
        let ask = format!(
            "\n\nScore the above on each of these dimensions from {lo} to {hi}: {}. Answer with a JSON object only, e.g. {{{}}}.",
            p.dimensions.join(", "),
            p.dimensions.iter().map(|d| format!("\"{d}\": {hi}")).collect::<Vec<_>>().join(", ")
        );
        let (records, requests) = requests_for(ctx.deps, ctx.cwd, &p.teachers, p.seed, |rec, at| {
            let mut messages = Vec::new();
            if let Some(s) = &p.system {
                messages.push(json!({"role": "system", "content": s}));
            }
            messages.push(json!({"role": "user", "content": fill(rubric, rec, "rubric", at)? + &ask}));
            Ok(messages)
        })?;
        let accept = |a: &super::client::Answer| parser.parse(&a.content).is_some();
        let report = ask_all(&p.teachers, &requests, &p.limits, ctx.memo, &accept, p.parse_retries, &ctx.cancel, ctx.need_http()?)?;

        let mut kept = RecordWriter::create(&ctx.outs[0])?;
        let mut rest = ctx.outs.get(1).map(|o| RecordWriter::create(o)).transpose()?;
        let (mut scores, mut unparseable, mut failed, mut below) = (Vec::new(), 0usize, 0usize, 0usize);
        let mut dim_sums = vec![0.0; p.dimensions.len()];
        let mut first_error = None;
        for ((mut rec, req), done) in records.into_iter().zip(&requests).zip(&report.done) {
            rec.insert("_judge".into(), json!(p.teachers[req.teacher].name));
            let parsed = match &done.answer {
                Ok(a) => parser.parse(&a.content).ok_or_else(|| {
                    unparseable += 1;
                    format!("unparseable answer: {}", a.content.chars().take(200).collect::<String>())
                }),
                Err(e) => {
                    failed += 1;
                    Err(e.clone())
                }
            };
            match parsed {
                Ok(values) => {
                    let mean = values.iter().sum::<f64>() / values.len() as f64;
                    for ((d, v), sum) in p.dimensions.iter().zip(&values).zip(&mut dim_sums) {
                        rec.insert(format!("{d}_score"), json!(v));
                        *sum += v;
                    }
                    rec.insert(p.field.clone(), json!(round4(mean)));
                    scores.push(mean);
                    if p.min_score.is_none_or(|m| mean >= m) {
                        kept.write(&rec)?;
                    } else {
                        below += 1;
                        if let Some(w) = rest.as_mut() {
                            w.write(&rec)?;
                        }
                    }
                }
                Err(e) => {
                    first_error.get_or_insert_with(|| e.clone());
                    rec.insert("_judge_error".into(), json!(e));
                    if let Some(w) = rest.as_mut() {
                        w.write(&rec)?;
                    }
                }
            }
        }
        let written = kept.finish()?;
        if let Some(w) = rest {
            w.finish()?;
        }

        let table = distribution(&scores, lo, hi);
        let mean = if scores.is_empty() { None } else { Some(round4(scores.iter().sum::<f64>() / scores.len() as f64)) };
        writeln!(ctx.log, "judge: {} records, {} scored, {unparseable} unparseable, {failed} failed", requests.len(), scores.len())?;
        writeln!(ctx.log, "{:<10} {:>7} {:>7}", "score", "records", "share")?;
        for (label, n) in &table {
            let share = if scores.is_empty() { 0.0 } else { 100.0 * *n as f64 / scores.len() as f64 };
            writeln!(ctx.log, "{label:<10} {n:>7} {share:>6.1}%")?;
        }
        writeln!(ctx.log, "mean score: {}", mean.map_or("n/a".to_string(), |m| format!("{m:.2}")))?;
        if failed + unparseable > p.max_failures {
            return Err(StageFailure::transient(format!(
                "{failed} requests failed and {unparseable} answers did not parse, more than max_failures {}; every parsed answer is kept in the memo, so a re-run asks only for these",
                p.max_failures
            ))
            .caused_by_text(first_error.unwrap_or_default()));
        }
        let mut m = report.metrics;
        m.insert("records".into(), json!(requests.len()));
        m.insert("scored".into(), json!(scores.len()));
        m.insert("kept".into(), json!(written));
        m.insert("below".into(), json!(below));
        m.insert("unparseable".into(), json!(unparseable));
        m.insert("mean_score".into(), json!(mean));
        let dims: serde_json::Map<String, Value> = p
            .dimensions
            .iter()
            .zip(&dim_sums)
            .map(|(d, s)| (d.clone(), json!({"mean": (!scores.is_empty()).then(|| round4(s / scores.len() as f64))})))
            .collect();
        m.insert("dimensions".into(), Value::Object(dims));
        m.insert("distribution".into(), Value::Object(table.into_iter().map(|(k, n)| (k, json!(n))).collect()));
        Ok(m)
    }
}

/// Counts of scores by unit-wide bands from the top (`9-10`, `8-9`, …);
/// the top band holds the maximum, each other `[k, k+1)`.
fn distribution(scores: &[f64], lo: f64, hi: f64) -> Vec<(String, usize)> {
    let mut bands = Vec::new();
    let mut top = hi;
    while top > lo {
        let bottom = (top - 1.0).max(lo);
        let n = scores.iter().filter(|s| **s >= bottom && (**s < top || (top == hi && **s <= hi))).count();
        bands.push((format!("{bottom}-{top}"), n));
        top = bottom;
    }
    bands
}

/// Reads scores out of a judge's answer: a JSON object with the dimensions
/// (anywhere in the text, keys in any case), else `dimension: number`
/// pairs in prose, else — for one dimension — the first number (`8/10`).
/// Every score must lie in the scale.
struct ScoreParser {
    dims: Vec<String>,
    named: Vec<Regex>,
    number: Regex,
    lo: f64,
    hi: f64,
}

impl ScoreParser {
    fn new(dims: &[String], lo: f64, hi: f64) -> ScoreParser {
        let named = dims
            .iter()
            .map(|d| Regex::new(&format!(r#"(?i)\b{}\b["'*\s]*[:=\-]?\s*\**\s*(-?\d+(?:\.\d+)?)"#, regex::escape(d))).expect("regex"))
            .collect();
        ScoreParser { dims: dims.to_vec(), named, number: Regex::new(r"-?\d+(?:\.\d+)?").expect("regex"), lo, hi }
    }

    fn parse(&self, text: &str) -> Option<Vec<f64>> {
        let values = self.json_scores(text).or_else(|| self.prose_scores(text))?;
        values.iter().all(|v| (self.lo..=self.hi).contains(v)).then_some(values)
    }

    fn json_scores(&self, text: &str) -> Option<Vec<f64>> {
        let (a, b) = (text.find('{')?, text.rfind('}')?);
        let obj: BTreeMap<String, Value> = serde_json::from_str(text.get(a..=b)?).ok()?;
        let lower: BTreeMap<String, &Value> = obj.iter().map(|(k, v)| (k.to_lowercase(), v)).collect();
        self.dims
            .iter()
            .map(|d| {
                let v = lower.get(&d.to_lowercase())?;
                v.as_f64().or_else(|| v.as_str()?.trim().parse().ok())
            })
            .collect()
    }

    fn prose_scores(&self, text: &str) -> Option<Vec<f64>> {
        let named: Option<Vec<f64>> =
            self.named.iter().map(|r| r.captures(text)?.get(1)?.as_str().parse().ok()).collect();
        named.or_else(|| {
            (self.dims.len() == 1).then(|| self.number.find(text)?.as_str().parse().ok()).flatten().map(|v| vec![v])
        })
    }
}

#[cfg(test)]
mod tests {
    use dvx_stage_api::MemoryMemo;

    use super::super::fake::Fake;
    use super::*;
    use super::super::testing::run_with_memo;
    use crate::testkit::jsonl;

    fn dims(names: &[&str]) -> Vec<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn parses_json_prose_and_bare_numbers() {
        let p = ScoreParser::new(&dims(&["helpfulness", "correctness"]), 1.0, 10.0);
        assert_eq!(p.parse(r#"Sure! {"Helpfulness": 8, "correctness": "7.5"} done"#), Some(vec![8.0, 7.5]));
        assert_eq!(p.parse("**Helpfulness**: 9\nCorrectness = 6"), Some(vec![9.0, 6.0]));
        assert_eq!(p.parse(r#"{"helpfulness": 8}"#), None, "a missing dimension");
        assert_eq!(p.parse(r#"{"helpfulness": 11, "correctness": 5}"#), None, "outside the scale");
        assert_eq!(p.parse("I cannot rate this."), None);
        let one = ScoreParser::new(&dims(&["quality"]), 1.0, 10.0);
        assert_eq!(one.parse("Score: 8/10"), Some(vec![8.0]));
    }

    #[test]
    fn bands_from_the_top() {
        let t = distribution(&[10.0, 9.5, 9.0, 8.2, 7.0, 6.9], 1.0, 10.0);
        assert_eq!(t[0], ("9-10".to_string(), 3));
        assert_eq!(t[1], ("8-9".to_string(), 1));
        assert_eq!(t[2], ("7-8".to_string(), 1));
        assert_eq!(t[3], ("6-7".to_string(), 1));
        assert_eq!(t.len(), 9);
    }

    #[test]
    fn scores_keeps_and_retries_unparseable_answers() {
        // Scores from the record's `n`; record 3's first answer does not parse.
        let asked = std::sync::Arc::new(std::sync::Mutex::new(std::collections::HashMap::<String, usize>::new()));
        let seen = asked.clone();
        let fake = Fake::with(move |body| {
            let text = body["messages"][0]["content"].as_str().unwrap().to_string();
            let n: f64 = text.split_whitespace().nth(1).unwrap().parse().unwrap();
            let mut seen = seen.lock().unwrap();
            let times = seen.entry(text).or_default();
            *times += 1;
            if n == 3.0 && *times == 1 {
                return "hmm, hard to say".into();
            }
            format!(r#"{{"helpfulness": {}, "correctness": {}}}"#, n + 1.0, n + 2.0)
        });
        let recs: Vec<Value> = (0..8).map(|n| json!({"n": n})).collect();
        let params = json!({
            "teachers": [{"name": "j", "base_url": fake.base_url, "model": "judge"}],
            "rubric": "Record {n}",
            "dimensions": ["helpfulness", "correctness"],
            "min_score": 7,
            "limits": {"backoff_s": 0.0, "max_concurrent": 2},
        });
        let memo = MemoryMemo::default();
        let r = run_with_memo(Judge, &[&jsonl(&recs)], &["kept.jsonl", "rest.jsonl"], params.clone(), 1, &memo)
            .unwrap();
        let kept = r.records(0);
        // mean = n + 1.5 >= 7 for n >= 6 (n = 5.5 is not a record).
        assert_eq!(kept.len(), 2);
        assert_eq!(kept[0]["quality_score"], json!(7.5));
        assert_eq!(kept[0]["helpfulness_score"], json!(7.0));
        assert_eq!(r.records(1).len(), 6);
        assert_eq!(r.metric("unparseable"), &json!(0));
        assert_eq!(fake.count(), 9, "record 3 asked twice");
        assert!(r.log.contains("9-10") && r.log.contains("mean score: 5.00"), "{}", r.log);

        run_with_memo(Judge, &[&jsonl(&recs)], &["kept.jsonl"], params, 1, &memo).unwrap();
        assert_eq!(fake.count(), 9, "everything from the memo");
    }
}
