//! `kind: multiply` — several prompt variations per input record (seed 001's
//! example multiplier): every record gets the `base` templates, and records
//! whose `by_type.field` names a set get that set's templates too.
//!
//! - deps: JSONL files, read in order.
//! - outs[0]: JSONL, one record per (input record, template), in input order:
//!   `{"messages": [user: prompt, assistant: answer], "variation": "base.2",
//!   "type": "angular-component", "source": "file.jsonl:7"}` (or Alpaca with
//!   `format: alpaca`), plus the fields named in `keep`.
//! - Templates are strings (the prompt; the answer is the `answer` param) or
//!   `{prompt, answer}`. `{name}` is the record's field `name` (dotted paths
//!   work); `{{` and `}}` are literal braces. A placeholder a record lacks is
//!   an error naming the template, the placeholder and the record's line.
//! - Limits: fewer than `min` results fail the stage; more than `max` are
//!   sampled down by `seed`, keeping input order; `target` is reported.

use std::collections::BTreeMap;
use std::path::Path;

use dvx_stage_api::{Count, Metrics, ParamDoc, ParamError, ParamsDoc, Shape, StageContext, StageFailure, TypedStage};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::example_record::Format;
use crate::field_check::FieldsSeen;
use crate::records::{field, out_writer, value_text, Record};
use crate::reuse::{Batch, Batches, Reuse};
use crate::seeded::{sample_indices, SplitMix64};
use crate::template::{compile, fill, Piece};

/// A template: a prompt, or a prompt and an answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Template {
    /// Just the prompt.
    Prompt(String),
    /// Prompt and answer.
    Full {
        /// User turn.
        prompt: String,
        /// Assistant turn.
        answer: String,
    },
}

/// Type-specific template sets.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ByType {
    /// The record field holding the type (default `file_type`).
    #[serde(default = "file_type")]
    pub field: String,
    /// Templates per type value, in addition to `base`.
    pub sets: BTreeMap<String, Vec<Template>>,
}

fn file_type() -> String {
    "file_type".into()
}

fn content() -> String {
    "{content}".into()
}

/// Params of `multiply`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Params {
    /// Templates for every record.
    #[serde(default)]
    pub base: Vec<Template>,
    /// Extra templates by record type.
    #[serde(default)]
    pub by_type: Option<ByType>,
    /// Answer of string templates (default `{content}`).
    #[serde(default = "content")]
    pub answer: String,
    /// Fewer results than this fail the stage (default 0).
    #[serde(default)]
    pub min: usize,
    /// Reported as reached or not (default none).
    #[serde(default)]
    pub target: Option<usize>,
    /// More results than this are sampled down (default none).
    #[serde(default)]
    pub max: Option<usize>,
    /// Sampling seed (default 0).
    #[serde(default)]
    pub seed: u64,
    /// `chat` (default) or `alpaca`.
    #[serde(default)]
    pub format: Format,
    /// Input fields copied to every output record.
    #[serde(default)]
    pub keep: Vec<String>,
    /// Reuse earlier runs' results per input record (see docs/incremental.md).
    /// Left out of the key when on, so it changes no existing key.
    #[serde(default = "crate::reuse::on", skip_serializing_if = "crate::reuse::is_on")]
    pub reuse: bool,
}

impl ParamsDoc for Params {
    fn doc() -> Vec<ParamDoc> {
        vec![
            ParamDoc::new(
                "base",
                "list of templates",
                "[]",
                "Templates for every record: a prompt string, or `{prompt, answer}`.",
            ),
            ParamDoc::new(
                "by_type",
                "{field: file_type, sets: {TYPE: [template]}}",
                "-",
                "Extra templates by the record's type.",
            ),
            ParamDoc::new("answer", "template", "{content}", "Answer of string templates."),
            ParamDoc::new("min", "integer", "0", "Fewer results than this fail the stage."),
            ParamDoc::new("target", "integer", "-", "Reported as reached or not."),
            ParamDoc::new("max", "integer", "-", "More results than this are sampled down."),
            ParamDoc::new("seed", "integer", "0", "Sampling seed."),
            ParamDoc::new("format", "chat | alpaca", "chat", "Output record shape."),
            ParamDoc::new("keep", "list of fields", "[]", "Input fields copied to every output record."),
            crate::reuse::param_doc(),
        ]
    }
}

/// A template ready to fill.
struct Compiled {
    id: String,
    prompt: Vec<Piece>,
    answer: Vec<Piece>,
}

/// Base templates, and the extra templates of each type.
type TemplateSets = (Vec<Compiled>, BTreeMap<String, Vec<Compiled>>);

fn compile_all(p: &Params) -> Result<TemplateSets, ParamError> {
    let answer = compile(&p.answer).map_err(|e| ParamError::field("answer", e))?;
    let one = |t: &Template, id: String, at: String| -> Result<Compiled, ParamError> {
        match t {
            Template::Prompt(s) => {
                Ok(Compiled { id, prompt: compile(s).map_err(|e| ParamError::field(at, e))?, answer: answer.clone() })
            }
            Template::Full { prompt, answer } => Ok(Compiled {
                id,
                prompt: compile(prompt).map_err(|e| ParamError::field(format!("{at}.prompt"), e))?,
                answer: compile(answer).map_err(|e| ParamError::field(format!("{at}.answer"), e))?,
            }),
        }
    };
    let base = p
        .base
        .iter()
        .enumerate()
        .map(|(i, t)| one(t, format!("base.{i}"), format!("base.{i}")))
        .collect::<Result<Vec<_>, _>>()?;
    let mut sets = BTreeMap::new();
    if let Some(bt) = &p.by_type {
        for (ty, ts) in &bt.sets {
            let compiled = ts
                .iter()
                .enumerate()
                .map(|(i, t)| one(t, format!("{ty}.{i}"), format!("by_type.sets.{ty}.{i}")))
                .collect::<Result<Vec<_>, _>>()?;
            sets.insert(ty.clone(), compiled);
        }
    }
    Ok((base, sets))
}

/// Params with every template compiled.
pub struct Prepared {
    params: Params,
    base: Vec<Compiled>,
    sets: BTreeMap<String, Vec<Compiled>>,
}

fn check_params(p: &Params) -> Result<TemplateSets, ParamError> {
    let sets = compile_all(p)?;
    let templates = p.base.len() + p.by_type.as_ref().map_or(0, |b| b.sets.values().map(Vec::len).sum());
    if templates == 0 {
        return Err(ParamError::field("base", "give at least one template in `base` or `by_type.sets`"));
    }
    if let Some(max) = p.max {
        if max < p.min {
            return Err(ParamError::field("max", format!("max ({max}) is below min ({})", p.min)));
        }
        if p.target.is_some_and(|t| t > max) {
            return Err(ParamError::field("target", "target is above max"));
        }
    }
    Ok(sets)
}

/// The `multiply` kind.
pub struct Multiply;

impl TypedStage for Multiply {
    const KIND: &'static str = "multiply";
    const VERSION: u32 = 1;
    const DEPS: Count = Count::AtLeast(1);
    const OUTS: Count = Count::Exactly(1);
    const DEPS_ARE: &'static str = "JSONL";
    const OUTS_ARE: &'static str = "JSONL";
    type Params = Params;
    type Prepared = Prepared;

    fn check_outs(&self, outs: &[&str]) -> Result<(), dvx_stage_api::OutError> {
        crate::support::check_record_outs(outs, ..1)
    }

    fn prepare(&self, p: Params, _shape: Shape) -> Result<Prepared, ParamError> {
        let (base, sets) = check_params(&p)?;
        Ok(Prepared { params: p, base, sets })
    }

    fn execute(&self, prepared: &Prepared, ctx: &mut StageContext<'_>) -> Result<Metrics, StageFailure> {
        let p = &prepared.params;
        let pool = crate::support::pool(ctx.threads)?;
        // Output lines, in order: every example of every record.
        let mut results: Vec<String> = Vec::new();
        // type -> (records, examples)
        let mut per_type: BTreeMap<String, (usize, usize)> = BTreeMap::new();
        let mut records = 0;
        let mut seen = FieldsSeen::new().name_all("keep", &p.keep);
        if let Some(b) = &p.by_type {
            seen = seen.name("by_type.field", &b.field);
        }
        let mut reuse = Reuse::new(ctx.memo, Self::KIND, Self::VERSION, p, p.reuse && seen.fits_mask());
        for dep in ctx.deps {
            let label = dep_label(dep, ctx.cwd);
            let mut batches = Batches::open(dep)?;
            while let Some(batch) = batches.next_batch()? {
                let made = reuse.results(&batch, &pool, |i| examples(prepared, &seen, &batch, i, &label))?;
                for ((line, _), m) in batch.items.iter().zip(made) {
                    seen.mark(m.fields);
                    records += 1;
                    let entry = per_type.entry(m.ty.unwrap_or_else(|| "(none)".into())).or_default();
                    entry.0 += 1;
                    entry.1 += m.lines.len();
                    let at = json!(format!("{label}:{line}")).to_string();
                    results.extend(m.lines.into_iter().map(|l| l.with_source(&at)));
                }
            }
        }
        tracing::info!(stage = ctx.name, processed = reuse.processed, reused = reuse.reused, "multiply done");
        writeln!(ctx.log, "{}", reuse.summary())?;
        seen.check()?;
        let produced = results.len();
        if produced < p.min {
            return Err(StageFailure::new(format!(
                "multiply produced {produced} examples from {records} records, fewer than min {}",
                p.min
            )));
        }
        let kept: Vec<usize> = match p.max {
            Some(max) if produced > max => {
                writeln!(ctx.log, "multiply: {produced} examples, sampling down to max {max}")?;
                sample_indices(produced, max, &mut SplitMix64::new(p.seed))
            }
            _ => (0..produced).collect(),
        };
        let mut w = out_writer(ctx, 0)?;
        for i in &kept {
            w.write_json_line(&results[*i])?;
        }
        let written = w.finish()?;

        let mut m = Metrics::new();
        m.insert("records".into(), json!(records));
        m.insert("produced".into(), json!(produced));
        m.insert("written".into(), json!(written));
        m.insert("dropped_by_max".into(), json!(produced - written));
        if let Some(t) = p.target {
            m.insert("target".into(), json!(t));
            m.insert("reached_target".into(), json!(written >= t));
            if written < t {
                writeln!(ctx.log, "multiply: {written} examples, below the target of {t}")?;
            }
        }
        let table: serde_json::Map<String, Value> =
            per_type.into_iter().map(|(k, (r, e))| (k, json!({"records": r, "examples": e}))).collect();
        m.insert("per_type".into(), Value::Object(table));
        Ok(m)
    }
}

/// What `multiply` made of one input record, kept across runs.
#[derive(Clone, Serialize, Deserialize)]
struct Made {
    /// The record's type (`by_type.field`), if any.
    #[serde(rename = "t", default, skip_serializing_if = "Option::is_none")]
    ty: Option<String>,
    /// The watched fields it has.
    #[serde(rename = "f", default)]
    fields: u64,
    /// Its examples' lines.
    #[serde(rename = "l")]
    lines: Vec<Line>,
}

/// An example's JSON line, which names its source line: kept as the text
/// around the `source` value so a record that moved (a deletion above it)
/// reuses its examples.
#[derive(Clone, Serialize, Deserialize)]
enum Line {
    /// The line with the source value cut out.
    #[serde(rename = "a")]
    Around(String, String),
    /// A line without the source (`keep` names a field `source`).
    #[serde(rename = "w")]
    Whole(String),
}

impl Line {
    /// The record's JSON line with `source` set to `at` (JSON text), cut
    /// where a marker value put there shows alone.
    fn cut(mut out: Record) -> Result<Line, StageFailure> {
        let written = |r: &Record| serde_json::to_string(r).map_err(|e| StageFailure::new(format!("cannot write an example: {e}")));
        if out.get("source") != Some(&Value::String(SOURCE_MARK.into())) {
            return Ok(Line::Whole(written(&out)?));
        }
        for k in 0u32.. {
            let mark = format!("{SOURCE_MARK}{k}");
            out.insert("source".into(), json!(mark));
            let line = written(&out)?;
            let quoted = json!(mark).to_string();
            let mut at = line.match_indices(&quoted);
            if let (Some((i, _)), None) = (at.next(), at.next()) {
                return Ok(Line::Around(line[..i].into(), line[i + quoted.len()..].into()));
            }
        }
        unreachable!("a line holds finitely many markers")
    }

    fn with_source(self, at: &str) -> String {
        match self {
            Line::Around(head, tail) => head + at + &tail,
            Line::Whole(line) => line,
        }
    }
}

/// The `source` value an example is built with, replaced when written.
const SOURCE_MARK: &str = "\u{0}dvx:source\u{0}";

/// The examples of item `i` of `batch`.
fn examples(prepared: &Prepared, seen: &FieldsSeen, batch: &Batch, i: usize, label: &str) -> Result<Made, StageFailure> {
    let Prepared { params: p, base, sets } = prepared;
    let rec = batch.parse(i)?;
    seen.observe(&rec);
    let at = format!("{label}:{}", batch.items[i].0);
    let ty = p.by_type.as_ref().and_then(|b| field(&rec, &b.field)).map(value_text);
    let extra = ty.as_ref().and_then(|t| sets.get(t)).map(Vec::as_slice).unwrap_or(&[]);
    let mut lines = Vec::new();
    for t in base.iter().chain(extra) {
        let prompt = fill(&t.prompt, &rec, &t.id, &at)?;
        let answer = fill(&t.answer, &rec, &t.id, &at)?;
        let mut out = Record::new();
        match p.format {
            Format::Chat => {
                out.insert(
                    "messages".into(),
                    json!([{"role": "user", "content": prompt}, {"role": "assistant", "content": answer}]),
                );
            }
            Format::Alpaca => {
                out.insert("instruction".into(), json!(prompt));
                out.insert("input".into(), json!(""));
                out.insert("output".into(), json!(answer));
            }
        }
        out.insert("variation".into(), json!(t.id));
        out.insert("type".into(), json!(ty));
        out.insert("source".into(), json!(SOURCE_MARK));
        for k in &p.keep {
            if let Some(v) = field(&rec, k) {
                out.insert(k.clone(), v.clone());
            }
        }
        lines.push(Line::cut(out)?);
    }
    Ok(Made { ty, fields: seen.present(&rec), lines })
}

/// A dep as shown in messages: relative to the stage folder when inside it.
fn dep_label(dep: &Path, cwd: &Path) -> String {
    dep.strip_prefix(cwd).unwrap_or(dep).display().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::records::read_all;
    use crate::source_files::testing::run;
    use dvx_stage_api::{Stage, StageShape, Typed};

    fn params() -> Value {
        json!({
            "base": [
                "Generate code for {component} following patterns",
                "Implement {component} based on repository structure",
                "Create a {file_type} component similar to {file}",
                "Adapt this {component} pattern for new feature",
                "Write {component} following coding standards",
                {"prompt": "Replicate the structure and patterns of {file}", "answer": "```\n{content}\n```"}
            ],
            "by_type": {"sets": {
                "angular-component": ["Write an Angular component like {component}", "Add inputs and outputs to {component}"],
                "dotnet-controller": ["Write a .NET controller like {component}", "Add a DTO for {component}", "Inject IMongoDBSettings into {component}"]
            }}
        })
    }

    fn input(dir: &Path) -> std::path::PathBuf {
        let p = dir.join("in.jsonl");
        std::fs::write(
            &p,
            concat!(
                "{\"file\": \"user.component.ts\", \"component\": \"UserComponent\", \"file_type\": \"angular-component\", \"content\": \"@Component({})\"}\n",
                "{\"file\": \"UsersController.cs\", \"component\": \"UsersController\", \"file_type\": \"dotnet-controller\", \"content\": \"class UsersController {}\"}\n",
                "{\"file\": \"util.ts\", \"component\": \"util\", \"file_type\": \"typescript\", \"content\": \"export {}\"}\n",
            ),
        )
        .unwrap();
        p
    }

    #[test]
    fn counts_per_type_follow_the_templates() {
        let dir = tempfile::tempdir().unwrap();
        let inp = input(dir.path());
        let out = dir.path().join("out.jsonl");
        let (m, _) = run(Multiply, dir.path(), &[inp], std::slice::from_ref(&out), params());
        let m = m.unwrap();
        assert_eq!(
            m["per_type"],
            json!({
                "angular-component": {"records": 1, "examples": 8},
                "dotnet-controller": {"records": 1, "examples": 9},
                "typescript": {"records": 1, "examples": 6}
            })
        );
        assert_eq!(m["written"], json!(23));
        let recs = read_all(&out).unwrap();
        assert_eq!(
            recs[2]["messages"][0]["content"],
            json!("Create a angular-component component similar to user.component.ts")
        );
        assert_eq!(recs[5]["messages"][1]["content"], json!("```\n@Component({})\n```"));
        assert_eq!(recs[7]["variation"], json!("angular-component.1"));
        assert_eq!(recs[7]["source"], json!("in.jsonl:1"));
        assert_eq!(recs[16]["messages"][0]["content"], json!("Inject IMongoDBSettings into UsersController"));
        assert_eq!(recs[22]["type"], json!("typescript"));
    }

    #[test]
    fn min_fails_and_max_samples_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let inp = input(dir.path());
        let out = dir.path().join("out.jsonl");
        let mut p = params();
        p["min"] = json!(30);
        let (r, _) = run(Multiply, dir.path(), std::slice::from_ref(&inp), std::slice::from_ref(&out), p);
        assert_eq!(r.unwrap_err().message, "multiply produced 23 examples from 3 records, fewer than min 30");

        let mut p = params();
        p["max"] = json!(10);
        p["target"] = json!(10);
        p["seed"] = json!(4);
        let (m, _) = run(Multiply, dir.path(), std::slice::from_ref(&inp), std::slice::from_ref(&out), p.clone());
        let m = m.unwrap();
        assert_eq!(
            (m["written"].clone(), m["dropped_by_max"].clone(), m["reached_target"].clone()),
            (json!(10), json!(13), json!(true))
        );
        let first = std::fs::read(&out).unwrap();
        let recs = read_all(&out).unwrap();
        let order: Vec<(String, String)> = recs
            .iter()
            .map(|r| (r["source"].as_str().unwrap().to_string(), r["variation"].as_str().unwrap().to_string()))
            .collect();
        let mut sorted = order.clone();
        sorted.sort_by_key(|(s, v)| (s.clone(), if v.starts_with("base") { 0 } else { 1 }, v.clone()));
        assert_eq!(order, sorted, "input order kept");
        run(Multiply, dir.path(), &[inp], std::slice::from_ref(&out), p).0.unwrap();
        assert_eq!(std::fs::read(&out).unwrap(), first);
    }

    #[test]
    fn unknown_placeholder_names_template_and_line() {
        let dir = tempfile::tempdir().unwrap();
        let inp = input(dir.path());
        let out = dir.path().join("out.jsonl");
        let p = json!({"base": ["ok {component}"], "by_type": {"sets": {"typescript": ["Port {framework} code"]}}});
        let (r, _) = run(Multiply, dir.path(), &[inp], &[out], p);
        assert_eq!(
            r.unwrap_err().message,
            "in.jsonl:3: template `typescript.0` uses `{framework}`, which this record does not have"
        );
    }

    #[test]
    fn bad_templates_are_param_errors() {
        let check =
            |p: Value| Typed::new(Multiply).check(&StageShape { params: &p, deps: 1, outs: 1, cmd: None }).unwrap_err();
        let e = check(json!({"base": ["a {oops"]}));
        assert_eq!((e.field.as_deref(), e.message.as_str()), (Some("base.0"), "unclosed placeholder `{oops`"));
        let e = check(json!({"base": ["x"], "by_type": {"sets": {"t": [{"prompt": "p", "answer": "a } b"}]}}}));
        assert_eq!(e.field.as_deref(), Some("by_type.sets.t.0.answer"));
        let e = check(json!({"base": []}));
        assert_eq!(e.field.as_deref(), Some("base"));
        let e = check(json!({"base": ["x"], "min": 5, "max": 2}));
        assert_eq!(e.field.as_deref(), Some("max"));
        assert!(
            compile("{{literal}} {a.b}").unwrap() == vec![Piece::Text("{literal} ".into()), Piece::Field("a.b".into())]
        );
    }

    #[test]
    fn a_rerun_makes_examples_only_for_new_records_and_writes_what_a_full_run_does() {
        // Examples name their source line: a deletion above a record moves
        // it, and its reused examples must carry the new line.
        let line = |i: usize| {
            let ty = ["a", "b", "c"][i % 3];
            format!(r#"{{"component": "C{i}", "file_type": "{ty}", "content": "body {i}", "file": "f{i}.ts", "source": "s{i}"}}"#)
        };
        let params = json!({"base": ["Write {component}"], "by_type": {"sets": {"a": ["A: {file}"]}}, "keep": ["file"]});
        let lines: Vec<String> = (0..5000).map(line).collect();
        let more: Vec<String> = (5000..5200).map(line).collect();
        crate::reuse::testing::assert_incremental(|| Multiply, lines.clone(), more.clone(), line(9999), &["o.jsonl"], params);
        // `keep: [source]` overrides the source with the record's own.
        let params = json!({"base": ["Write {component}"], "keep": ["source"], "max": 3000, "seed": 4});
        crate::reuse::testing::assert_incremental(|| Multiply, lines, more, line(9999), &["o.jsonl"], params);
    }
}
