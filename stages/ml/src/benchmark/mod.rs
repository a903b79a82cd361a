//! `kind: benchmark` — compare trained models on an eval set: size on disk,
//! valid loss and perplexity, accuracy on a labelled task (seed 004's tool
//! choice by default) per class with 95% intervals, automatic checks on the
//! answers (truncation, template bleeding, agent-like openings), load time
//! and generation speed; regressions against a baseline are marked when the
//! difference is larger than chance at the sample size.
//!
//! deps: `[model folder, ..., eval.jsonl, (questions file)]`, the folders
//! named by `models`; the questions file (any record format) is a fixed
//! question set every model answers (seed 003's evaluation).
//! outs: `[table.md, results.json, (chart.svg), (sheet.csv)]`: after the
//! first two, an `.svg` out gets the chart and a `.csv` out the scoring sheet
//! (questions × criteria with the answers; see the `scores` kind).
//!
//! Generation runs for every eval record with an assistant turn, or for a
//! seeded sample of `prompts` stratified by label; sampling as the params
//! say (greedy at `temperature: 0`), with the KV cache.
//!
//! With `deterministic: true` (the default) the outputs leave out timings, so
//! they are byte-identical run to run; the log and the metrics' `timing`
//! always have them.
//!
//! Params: see [`params::BenchParams`] and docs/stages.md.

mod checks;
mod classify;
mod generate;
pub mod params;
mod report;
mod sample;
mod stats;

#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Instant;

use dvx_stage_api::{Count, Metrics, OutError, ParamError, Shape, StageContext, StageFailure, TypedStage};
use serde_json::{json, Value};

use crate::field_check::FieldsSeen;
use crate::records::{field, value_text, Record};
use crate::scores::sheet::{self, Sheet, SheetRow};
use dvx_model::folder::folder_chat_template;
use dvx_model::gguf;
use dvx_model::{load_model, Conversation, TemplateSet, Today, Tok, Transformer};

use crate::train::{conversation, encode_record, eval_loss, run_on_pool, Example};
use checks::{Checker, Counts};
use params::{BenchParams, Task};
use report::{ClassScore, QuestionAnswer, Row, Sample, Timing};

/// The `benchmark` stage kind.
pub struct Benchmark;

impl TypedStage for Benchmark {
    const KIND: &'static str = "benchmark";
    // 2: the model forward now uses the fused kernels.
    // 3: stratified sample, truncated class, intervals, checks, sampling.
    const VERSION: u32 = 3;
    const DEPS: Count = Count::AtLeast(2);
    const OUTS: Count = Count::Between(2, 4);
    const DEPS_ARE: &'static str =
        "one model folder per `models` entry, the eval JSONL, then optionally a questions file";
    const OUTS_ARE: &'static str = "table.md, results.json, then optionally a chart `.svg` and a scoring sheet `.csv`";
    type Params = BenchParams;
    type Prepared = BenchParams;

    fn prepare(&self, p: BenchParams, shape: Shape) -> Result<BenchParams, ParamError> {
        p.check(shape.deps)?;
        Ok(p)
    }

    fn check_outs(&self, outs: &[&str]) -> Result<(), OutError> {
        let mut seen = BTreeSet::new();
        for (index, o) in outs.iter().enumerate().skip(2) {
            let ext = Path::new(o).extension().and_then(|e| e.to_str()).unwrap_or("").to_ascii_lowercase();
            if !(ext == "svg" || ext == "csv") || !seen.insert(ext.clone()) {
                return Err(OutError {
                    index,
                    message: format!(
                        "`{o}`: after table.md and results.json the benchmark writes one `.svg` chart \
                         and one `.csv` scoring sheet"
                    ),
                });
            }
        }
        Ok(())
    }

    fn execute(&self, p: &BenchParams, ctx: &mut StageContext<'_>) -> Result<Metrics, StageFailure> {
        let (deps, outs) = (ctx.deps, ctx.outs);
        run_on_pool(ctx.threads, ctx.log, |log| execute(p, deps, outs, log))
    }
}

/// An eval record picked for generation.
struct Prompt<'a> {
    line: usize,
    record: &'a Record,
    /// The class it is stratified by (its normalised label, `-` if none).
    class: String,
}

/// A question of the questions file.
struct Question {
    id: String,
    text: String,
    conversation: Conversation,
}

fn execute(
    p: &BenchParams,
    deps: &[PathBuf],
    outs: &[PathBuf],
    log: &mut dyn std::io::Write,
) -> Result<Metrics, StageFailure> {
    let fail = |m: String| StageFailure::new(m);
    let eval_path = &deps[p.models.len()];
    let records = read_records(eval_path)?;
    // Before any model loads: a misspelt label field would score nothing.
    let mut watched = FieldsSeen::new();
    if p.task == Task::ToolChoice {
        watched = watched.name("label_field", &p.label_field);
    }
    if let Some(f) = &p.exact_match_field {
        watched = watched.name("exact_match_field", f);
    }
    records.iter().for_each(|(_, r)| watched.observe(r));
    watched.check()?;
    let prompts = pick_prompts(p, &records);
    let questions = match p.has_questions(deps.len()) {
        true => read_questions(p, &deps[deps.len() - 1])?,
        false => Vec::new(),
    };
    let mut by_class: BTreeMap<&str, usize> = BTreeMap::new();
    prompts.iter().for_each(|q| *by_class.entry(&q.class).or_default() += 1);
    writeln!(
        log,
        "eval: {} records; generating for {} ({}){}",
        records.len(),
        prompts.len(),
        by_class.iter().map(|(c, n)| format!("{c} {n}")).collect::<Vec<_>>().join(", "),
        if questions.is_empty() { String::new() } else { format!(", and {} questions", questions.len()) }
    )?;

    let dev = p.device.open().map_err(fail)?;
    let mut rows = Vec::new();
    // Each entry's tokenizer and template, for GGUF files exported from it.
    let mut chats: BTreeMap<&str, (Tok, TemplateSet)> = BTreeMap::new();
    for (i, entry) in p.models.iter().enumerate() {
        let dir = &deps[i];
        let base = entry.base().map(|b| {
            let j = p.models.iter().position(|m| m.name() == b).expect("checked by parse");
            deps[j].clone()
        });
        let name = entry.name();
        let t0 = Instant::now();
        let ready = match is_gguf(dir) {
            true => load_gguf(name, dir, entry.from().and_then(|f| chats.get(f)), &dev),
            false => load_folder(p, name, dir, base.as_deref(), &dev),
        }?;
        let load_s = t0.elapsed().as_secs_f64();
        let input = Inputs { records: &records, eval_path, prompts: &prompts, questions: &questions };
        let mut row = bench_one(p, name, &ready, load_s, &input, log)?;
        row.base = entry.base().map(str::to_string);
        rows.push(row);
        chats.insert(name, (ready.tok, ready.templates));
    }
    let b = p.baseline_index();
    for i in 0..rows.len() {
        if i != b {
            (rows[i].regressions, rows[i].within_noise) = report::regressions(&rows[b], &rows[i], &p.tolerance);
        }
    }
    for r in &rows {
        for n in &r.within_noise {
            writeln!(log, "{}: not flagged, inside the 95% interval: {n}", r.name)?;
        }
    }
    let timings: Vec<Option<Timing>> = rows.iter().map(|r| r.timing).collect();
    if p.deterministic {
        for r in &mut rows {
            r.timing = None;
        }
    }
    write(&outs[0], report::markdown(&rows, b, !p.deterministic).as_bytes())?;
    let doc = json!({
        "baseline": rows[b].name,
        "task": match p.task { Task::ToolChoice => "tool_choice", Task::None => "none" },
        "tolerance": {"accuracy_pts": p.tolerance.accuracy_pts, "loss_pct": p.tolerance.loss_pct},
        "sample": {"prompts": prompts.len(), "per_class": by_class, "seed": p.seed},
        "models": rows,
    });
    let mut json_bytes = serde_json::to_vec_pretty(&doc).map_err(|e| fail(e.to_string()))?;
    json_bytes.push(b'\n');
    write(&outs[1], &json_bytes)?;
    for out in &outs[2..] {
        match out.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase).as_deref() {
            Some("csv") => write(out, &sheet::to_csv(&scoring_sheet(p, &rows, &prompts)).map_err(fail)?)?,
            _ => write(out, chart(p, &rows).map_err(fail)?.as_bytes())?,
        }
    }
    Ok(metrics(&rows, b, &timings))
}

/// Eval records with an assistant turn, all or a stratified sample.
fn pick_prompts<'a>(p: &BenchParams, records: &'a [(usize, Record)]) -> Vec<Prompt<'a>> {
    let eligible: Vec<Prompt<'a>> = records
        .iter()
        .filter(|(_, r)| crate::records::turns(r).iter().any(|(role, _)| role == "assistant"))
        .map(|(line, record)| {
            let class = match p.task {
                Task::ToolChoice => label_of(p, record).map_or("-".to_string(), |l| classify::normalise(&l)),
                Task::None => "all".to_string(),
            };
            Prompt { line: *line, record, class }
        })
        .collect();
    let classes: Vec<String> = eligible.iter().map(|e| e.class.clone()).collect();
    let keep: BTreeSet<usize> = sample::stratified(&classes, p.prompts, p.seed).into_iter().collect();
    eligible.into_iter().enumerate().filter(|(i, _)| keep.contains(i)).map(|(_, e)| e).collect()
}

fn label_of(p: &BenchParams, rec: &Record) -> Option<String> {
    field(rec, &p.label_field).map(value_text).filter(|l| !l.trim().is_empty())
}

fn read_records(path: &Path) -> Result<Vec<(usize, Record)>, StageFailure> {
    let mut v = Vec::new();
    for item in crate::records::RecordReader::open(path)? {
        v.push(item?);
    }
    Ok(v)
}

/// The questions file: each record's `question_field` asked as a user turn,
/// or, for a record with an assistant turn, the chat up to that turn.
fn read_questions(p: &BenchParams, path: &Path) -> Result<Vec<Question>, StageFailure> {
    let mut out = Vec::new();
    for (line, rec) in read_records(path)? {
        let id = rec.get("id").map(value_text).unwrap_or_else(|| line.to_string());
        let mut conv =
            conversation(&rec).map_err(|e| StageFailure::bad_input(format!("{}:{line}: {e}", path.display())))?;
        if !conv.turns.iter().any(|(r, _)| r == "assistant") {
            let q =
                field(&rec, &p.question_field).map(value_text).filter(|q| !q.trim().is_empty()).ok_or_else(|| {
                    StageFailure::new(format!(
                        "{}:{line}: no `{}` field and no chat to prompt with (set `question_field`)",
                        path.display(),
                        p.question_field
                    ))
                })?;
            conv = Conversation::chat(vec![("user".into(), q), ("assistant".into(), String::new())]);
        }
        let text = last_user_turn(&conv.turns);
        out.push(Question { id, text, conversation: conv });
    }
    if out.is_empty() {
        return Err(StageFailure::new(format!("{}: no questions", path.display())));
    }
    Ok(out)
}

fn last_user_turn(turns: &[(String, String)]) -> String {
    let last = turns.iter().rposition(|(r, _)| r == "assistant").unwrap_or(turns.len());
    turns[..last].iter().rev().find(|(r, _)| r != "system").map(|(_, t)| t.clone()).unwrap_or_default()
}

fn r6(x: f64) -> f64 {
    (x * 1e6).round() / 1e6
}

/// What every model is run on.
struct Inputs<'a> {
    records: &'a [(usize, Record)],
    eval_path: &'a Path,
    prompts: &'a [Prompt<'a>],
    questions: &'a [Question],
}

/// A loaded model with what generation needs.
struct Generator<'a> {
    model: &'a Transformer,
    tok: &'a Tok,
    templates: &'a TemplateSet,
    p: &'a BenchParams,
}

impl Generator<'_> {
    /// The answer to a conversation's last assistant turn, and whether it was cut.
    fn answer(&self, c: &Conversation) -> Result<(String, bool, usize), String> {
        let prompt = self.templates.prompt(c, Today::fixed())?.ok_or("no assistant turn to answer")?;
        let mut ids: Vec<u32> = self.tok.info.bos_token_id.filter(|_| prompt.bos).into_iter().collect();
        ids.extend(self.tok.encode(&prompt.text)?);
        let a = generate::answer(self.model, self.tok, &ids, self.p).map_err(|e| format!("generation: {e}"))?;
        Ok((self.tok.decode(&a.ids)?, a.truncated, a.ids.len()))
    }
}

/// A model loaded for the benchmark, with what prompts it.
struct Ready {
    model: Transformer,
    tok: Tok,
    templates: TemplateSet,
    params: usize,
    /// Bytes of its own weights on disk (the adapter only, for adapters).
    size_bytes: u64,
    /// `model`, `adapter`, or `gguf <type>`.
    kind: String,
}

fn is_gguf(p: &Path) -> bool {
    p.is_file() && p.extension().is_some_and(|e| e.eq_ignore_ascii_case("gguf"))
}

/// A model folder (a `train` output, a Hugging Face folder, an adapter on `base`).
fn load_folder(
    p: &BenchParams,
    name: &str,
    dir: &Path,
    base: Option<&Path>,
    dev: &candle_core::Device,
) -> Result<Ready, StageFailure> {
    let fail = |m: String| StageFailure::new(format!("model `{name}`: {m}"));
    let loaded = load_model(dir, base, dev).map_err(fail)?;
    let tok = loaded.tok.ok_or_else(|| fail(format!("{}: no tokenizer", dir.display())))?;
    let templates = match (&loaded.cfg.dvx, &p.template) {
        (Some(meta), _) => meta.template.clone(),
        (None, Some(t)) if !TemplateSet::is_auto(Some(t)) => t.resolve().map_err(fail)?,
        (None, _) => {
            TemplateSet::default_for(None, folder_chat_template(dir, &loaded.cfg).map_err(fail)?).map_err(fail)?
        }
    };
    let adapter = loaded.cfg.dvx.as_ref().is_some_and(|m| m.adapter.is_some());
    Ok(Ready {
        model: loaded.model,
        tok,
        templates,
        params: loaded.params,
        size_bytes: loaded.weight_bytes,
        kind: if adapter { "adapter" } else { "model" }.into(),
    })
}

/// A GGUF file `export-model` wrote (f16, q8_0, …), run on its stored
/// blocks, prompted with the tokenizer and template of the entry it names in `from`.
fn load_gguf(
    name: &str,
    path: &Path,
    from: Option<&(Tok, TemplateSet)>,
    dev: &candle_core::Device,
) -> Result<Ready, StageFailure> {
    let fail = |m: String| StageFailure::new(format!("model `{name}`: {m}"));
    let (tok, templates) = from.cloned().ok_or_else(|| {
        fail(format!(
            "{} is a GGUF file: give its entry `from: <entry>`, an earlier model (the one it was exported from) \
             whose tokenizer and chat template it runs with",
            path.display()
        ))
    })?;
    let q = gguf::read_quantized(path, dev).map_err(fail)?;
    let model = q.transformer(dev).map_err(fail)?;
    let ty = q.matrices.values().map(|m| format!("{:?}", m.dtype()).to_ascii_lowercase()).collect::<BTreeSet<_>>();
    let size_bytes = std::fs::metadata(path).map_err(|e| fail(format!("{}: {e}", path.display())))?.len();
    Ok(Ready {
        model,
        tok,
        templates,
        params: q.params(),
        size_bytes,
        kind: format!("gguf {}", ty.into_iter().collect::<Vec<_>>().join("+")),
    })
}

fn bench_one(
    p: &BenchParams,
    name: &str,
    ready: &Ready,
    load_s: f64,
    input: &Inputs<'_>,
    log: &mut dyn std::io::Write,
) -> Result<Row, StageFailure> {
    let fail = |m: String| StageFailure::new(format!("model `{name}`: {m}"));
    let (tok, templates) = (&ready.tok, &ready.templates);
    let model = &ready.model;
    let ctx_len = model.cfg.max_position_embeddings;
    let max_length = p.max_length.unwrap_or(ctx_len).min(ctx_len);

    let t1 = Instant::now();
    let mut examples: Vec<Example> = Vec::new();
    for (line, rec) in input.records {
        if let Some((ex, _)) = encode_record(rec, templates, tok, max_length)
            .map_err(|e| fail(format!("{}:{line}: {e}", input.eval_path.display())))?
        {
            examples.push(ex);
        }
    }
    let valid_loss = eval_loss(model, &examples, p.batch_size, tok.info.pad_token_id)
        .map_err(|e| fail(format!("valid loss: {e}")))?;
    let eval_s = t1.elapsed().as_secs_f64();

    let t2 = Instant::now();
    let gen = Generator { model, tok, templates, p };
    let checker = Checker::new(templates, &p.agent_openings);
    let mut checks = Counts::default();
    let mut samples = Vec::new();
    let (mut exact, mut generated) = (0, 0);
    // Per class: (n, correct, truncated).
    let mut classes: BTreeMap<String, (usize, usize, usize)> = BTreeMap::new();
    for q in input.prompts {
        let (text, cut, n) = conversation(q.record)
            .and_then(|c| gen.answer(&c))
            .map_err(|e| fail(format!("{}:{}: {e}", input.eval_path.display(), q.line)))?;
        generated += n;
        let flags = checker.check(&text, cut);
        checks.add(flags);
        let predicted = classify::classify_answer(&text, cut).to_string();
        let label = label_of(p, q.record);
        if p.task == Task::ToolChoice && label.is_some() {
            let c = classes.entry(q.class.clone()).or_default();
            c.0 += 1;
            c.1 += usize::from(q.class == predicted);
            c.2 += usize::from(predicted == "truncated");
        }
        if let Some(f) = &p.exact_match_field {
            let want = field(q.record, f).map(value_text).unwrap_or_default();
            exact += usize::from(want.trim() == text.trim());
        }
        samples.push(Sample { line: q.line, label, predicted, text, flags });
    }
    let mut questions = Vec::new();
    for q in input.questions {
        let (text, cut, n) = gen.answer(&q.conversation).map_err(|e| fail(format!("question `{}`: {e}", q.id)))?;
        generated += n;
        let flags = checker.check(&text, cut);
        checks.add(flags);
        questions.push(QuestionAnswer { id: q.id.clone(), question: q.text.clone(), text, flags });
    }
    let gen_s = t2.elapsed().as_secs_f64();
    let timing = Timing {
        load_s: r6(load_s),
        gen_tokens_per_s: (generated as f64 / gen_s.max(1e-9) * 10.0).round() / 10.0,
        gen_s: r6(gen_s),
        eval_s: r6(eval_s),
    };
    let (labelled, correct, truncated) = classes.values().fold((0, 0, 0), |(n, k, t), c| (n + c.0, k + c.1, t + c.2));
    let accuracy = (p.task == Task::ToolChoice && labelled > 0).then(|| correct as f64 / labelled as f64);
    let overall = ClassScore::new(labelled, correct, truncated);
    let per_class: BTreeMap<String, ClassScore> =
        classes.into_iter().map(|(c, (n, k, t))| (c, ClassScore::new(n, k, t))).collect();
    writeln!(
        log,
        "{name}: loaded in {load_s:.2} s; valid loss {valid_loss:.4}; accuracy {}; {generated} tokens generated at {:.1} tok/s",
        match accuracy {
            Some(a) => format!(
                "{:.1}% ({correct}/{labelled}, 95% CI {:.1}–{:.1}%)",
                a * 100.0,
                overall.ci95[0] * 100.0,
                overall.ci95[1] * 100.0
            ),
            None => "-".to_string(),
        },
        timing.gen_tokens_per_s
    )?;
    for (c, s) in &per_class {
        writeln!(
            log,
            "{name}:   {c}: {}/{} = {:.1}% (95% CI {:.1}–{:.1}%), {} truncated",
            s.correct,
            s.n,
            s.accuracy * 100.0,
            s.ci95[0] * 100.0,
            s.ci95[1] * 100.0,
            s.truncated
        )?;
    }
    writeln!(
        log,
        "{name}: checks over {} answers: {} truncated, {} template bleeding ({}), {} agent-like openings",
        checks.answers,
        checks.truncated,
        checks.template_bleed,
        checker.markers().join(" "),
        checks.agent_opening
    )?;
    Ok(Row {
        name: name.to_string(),
        kind: ready.kind.clone(),
        base: None,
        params: ready.params,
        size_bytes: ready.size_bytes,
        valid_loss: r6(valid_loss),
        perplexity: r6(valid_loss.exp()),
        accuracy,
        correct,
        labelled,
        accuracy_ci95: accuracy.map(|_| overall.ci95),
        per_class,
        truncated,
        checks,
        exact_match: p.exact_match_field.as_ref().map(|_| exact as f64 / samples.len().max(1) as f64),
        generated_tokens: generated,
        timing: Some(timing),
        regressions: Vec::new(),
        within_noise: Vec::new(),
        samples,
        questions,
    })
}

/// The scoring sheet: the questions file's answers, or the eval prompts'
/// when there is no questions file; one row per model and question.
fn scoring_sheet(p: &BenchParams, rows: &[Row], prompts: &[Prompt<'_>]) -> Sheet {
    let mut out = Vec::new();
    for r in rows {
        let answers: Vec<(String, String, &str, checks::Flags)> = if r.questions.is_empty() {
            r.samples
                .iter()
                .zip(prompts)
                .map(|(s, q)| {
                    (s.line.to_string(), last_user_turn(&crate::records::turns(q.record)), s.text.as_str(), s.flags)
                })
                .collect()
        } else {
            r.questions.iter().map(|q| (q.id.clone(), q.question.clone(), q.text.as_str(), q.flags)).collect()
        };
        for (id, question, answer, f) in answers {
            out.push(SheetRow {
                model: r.name.clone(),
                id,
                question,
                answer: answer.to_string(),
                flags: [f.truncated, f.template_bleed, f.agent_opening],
                scores: vec![None; p.criteria.len()],
                notes: String::new(),
            });
        }
    }
    Sheet { criteria: p.criteria.clone(), rows: out }
}

/// The chart: one panel per metric, each with its direction, every model
/// on one scale per metric.
fn chart(p: &BenchParams, rows: &[Row]) -> Result<String, String> {
    use crate::plots::{panels, Direction, Panel};
    let labels: Vec<String> = rows.iter().map(|r| r.name.clone()).collect();
    let mut list = vec![Panel {
        title: "valid loss".into(),
        direction: Direction::LowerIsBetter,
        values: rows.iter().map(|r| r.valid_loss.is_finite().then_some(r.valid_loss)).collect(),
        intervals: vec![],
        top: None,
        decimals: 3,
    }];
    if p.task == Task::ToolChoice {
        list.push(Panel {
            title: "accuracy (%, 95% CI)".into(),
            direction: Direction::HigherIsBetter,
            values: rows.iter().map(|r| r.accuracy.map(|a| a * 100.0)).collect(),
            intervals: rows.iter().map(|r| r.accuracy_ci95.map(|[lo, hi]| (lo * 100.0, hi * 100.0))).collect(),
            top: Some(100.0),
            decimals: 1,
        });
    }
    list.push(Panel {
        title: "truncated answers".into(),
        direction: Direction::LowerIsBetter,
        values: rows.iter().map(|r| Some(r.checks.truncated as f64)).collect(),
        intervals: vec![],
        top: None,
        decimals: 0,
    });
    // Adapters are MBs next to a base's GBs: a log scale would hide that, so
    // the unit follows the largest.
    let largest = rows.iter().map(|r| r.size_bytes).max().unwrap_or(0) as f64;
    let (unit, div) = if largest >= 1e9 {
        ("GB", 1e9)
    } else if largest >= 1e6 {
        ("MB", 1e6)
    } else {
        ("kB", 1e3)
    };
    list.push(Panel {
        title: format!("weights on disk ({unit})"),
        direction: Direction::Neutral,
        values: rows.iter().map(|r| Some(r.size_bytes as f64 / div)).collect(),
        intervals: vec![],
        top: None,
        decimals: 2,
    });
    panels(
        &format!("benchmark: {} on {} prompts", labels.join(", "), rows[0].labelled.max(rows[0].samples.len())),
        &labels,
        &list,
    )
}

/// Stage metrics: per model the headline numbers (seed 004's columns:
/// accuracy, adapter size; load time and tokens/s under `timing`).
fn metrics(rows: &[Row], b: usize, timings: &[Option<Timing>]) -> Metrics {
    let mut metrics = Metrics::new();
    metrics.insert("baseline".into(), json!(rows[b].name));
    metrics.insert("regressions".into(), json!(rows.iter().filter(|r| !r.regressions.is_empty()).count()));
    let mut per = serde_json::Map::new();
    let mut timing = serde_json::Map::new();
    for (r, t) in rows.iter().zip(timings) {
        let classes: serde_json::Map<String, Value> = r
            .per_class
            .iter()
            .map(|(c, s)| (c.clone(), json!({"n": s.n, "accuracy": s.accuracy, "ci95": s.ci95})))
            .collect();
        per.insert(
            r.name.clone(),
            json!({"valid_loss": r.valid_loss, "perplexity": r.perplexity, "accuracy": r.accuracy,
                   "accuracy_ci95": r.accuracy_ci95, "per_class": classes, "truncated": r.truncated,
                   "checks": r.checks, "size_bytes": r.size_bytes,
                   "adapter_bytes": (r.kind == "adapter").then_some(r.size_bytes),
                   "regressed": !r.regressions.is_empty()}),
        );
        if let Some(t) = t {
            timing.insert(r.name.clone(), json!({"load_s": t.load_s, "gen_tokens_per_s": t.gen_tokens_per_s}));
        }
    }
    metrics.insert("models".into(), Value::Object(per));
    metrics.insert("timing".into(), Value::Object(timing));
    metrics
}

fn write(path: &Path, bytes: &[u8]) -> Result<(), StageFailure> {
    std::fs::write(path, bytes).map_err(|e| StageFailure::new(format!("cannot write {}: {e}", path.display())))
}
