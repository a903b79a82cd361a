//! `kind: benchmark` — compare trained models on an eval set: size on disk,
//! valid loss and perplexity, accuracy on a labelled task (seed 004's tool
//! choice by default), load time and generation speed; regressions against a
//! baseline are marked.
//!
//! deps: `[model folder, ..., eval.jsonl]`, the folders named by `models`.
//! outs: `[table.md, results.json, (bars.svg)]`.
//!
//! With `deterministic: true` (the default) the outputs leave out timings, so
//! they are byte-identical run to run; the log and the metrics' `timing`
//! always have them.
//!
//! Params (defaults): `models: [name | {name, base}]` (one per model dep;
//! `base` names the entry holding an adapter's base); `baseline: <first>`;
//! `prompts: 16` (eval records generated for; 0 = all); `max_new_tokens: 64`;
//! `task: tool_choice|none`; `label_field: pattern` (dotted path);
//! `exact_match_field`; `tolerance: {accuracy_pts: 0, loss_pct: 2}`;
//! `deterministic: true`; `template` (for folders without one: Hugging Face
//! bases); `max_length: context`; `batch_size: 8`; `device: cpu|cuda`.

mod classify;
mod generate;
pub(crate) mod params;
mod report;

#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};
use std::time::Instant;

use dvx_stage_api::{Count, Metrics, ParamError, Shape, StageContext, StageFailure, TypedStage};
use serde_json::{json, Value};

use crate::field_check::FieldsSeen;
use crate::records::{field, value_text, Record};
use dvx_model::folder::folder_chat_template;
use dvx_model::{load_model, TemplateSet, Today};

use crate::train::{conversation, encode_record, eval_loss, run_on_pool, Example};
use params::{BenchParams, Task};
use report::{Row, Sample, Timing};

/// The `benchmark` stage kind.
pub struct Benchmark;

impl TypedStage for Benchmark {
    const KIND: &'static str = "benchmark";
    // 2: the model forward now uses the fused kernels.
    const VERSION: u32 = 2;
    const DEPS: Count = Count::AtLeast(2);
    const OUTS: Count = Count::Between(2, 3);
    const DEPS_ARE: &'static str = "one model folder per `models` entry, then the eval JSONL";
    const OUTS_ARE: &'static str = "table.md, results.json, then optionally a bar-chart SVG";
    type Params = BenchParams;
    type Prepared = BenchParams;

    fn prepare(&self, p: BenchParams, shape: Shape) -> Result<BenchParams, ParamError> {
        p.check(shape.deps)?;
        Ok(p)
    }

    fn execute(&self, p: &BenchParams, ctx: &mut StageContext<'_>) -> Result<Metrics, StageFailure> {
        let (deps, outs) = (ctx.deps, ctx.outs);
        run_on_pool(ctx.threads, ctx.log, |log| execute(p, deps, outs, log))
    }
}

fn execute(
    p: &BenchParams,
    deps: &[PathBuf],
    outs: &[PathBuf],
    log: &mut dyn std::io::Write,
) -> Result<Metrics, StageFailure> {
    let fail = |m: String| StageFailure::new(m);
    let eval_path = &deps[deps.len() - 1];
    let records: Vec<(usize, Record)> = {
        let mut v = Vec::new();
        for item in crate::records::RecordReader::open(eval_path)? {
            v.push(item?);
        }
        v
    };
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
    let dev = p.device.open().map_err(fail)?;
    let mut rows = Vec::new();
    for (i, entry) in p.models.iter().enumerate() {
        let dir = &deps[i];
        let base = entry.base().map(|b| {
            let j = p.models.iter().position(|m| m.name() == b).expect("checked by parse");
            deps[j].clone()
        });
        let mut row = bench_one(p, entry.name(), dir, base.as_deref(), &records, eval_path, &dev, log)?;
        row.base = entry.base().map(str::to_string);
        rows.push(row);
    }
    let b = p.baseline_index();
    for i in 0..rows.len() {
        if i != b {
            rows[i].regressions = report::regressions(&rows[b], &rows[i], &p.tolerance);
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
        "models": rows,
    });
    let mut json_bytes = serde_json::to_vec_pretty(&doc).map_err(|e| fail(e.to_string()))?;
    json_bytes.push(b'\n');
    write(&outs[1], &json_bytes)?;
    if let Some(svg) = outs.get(2) {
        let labels: Vec<String> = rows.iter().map(|r| r.name.clone()).collect();
        let mut series: Vec<(&str, Vec<f64>)> = vec![("valid loss", rows.iter().map(|r| r.valid_loss).collect())];
        if p.task == Task::ToolChoice {
            series.push(("accuracy", rows.iter().map(|r| r.accuracy.unwrap_or(0.0)).collect()));
        }
        series.push(("size", rows.iter().map(|r| r.size_bytes as f64).collect()));
        write(svg, crate::train::bar_chart("benchmark", &labels, &series).as_bytes())?;
    }

    let mut metrics = Metrics::new();
    metrics.insert("baseline".into(), json!(rows[b].name));
    metrics.insert("regressions".into(), json!(rows.iter().filter(|r| !r.regressions.is_empty()).count()));
    let mut per = serde_json::Map::new();
    let mut timing = serde_json::Map::new();
    for (r, t) in rows.iter().zip(&timings) {
        per.insert(
            r.name.clone(),
            json!({"valid_loss": r.valid_loss, "perplexity": r.perplexity, "accuracy": r.accuracy,
                   "size_bytes": r.size_bytes, "regressed": !r.regressions.is_empty()}),
        );
        if let Some(t) = t {
            timing.insert(r.name.clone(), json!({"load_s": t.load_s, "gen_tokens_per_s": t.gen_tokens_per_s}));
        }
    }
    metrics.insert("models".into(), Value::Object(per));
    metrics.insert("timing".into(), Value::Object(timing));
    Ok(metrics)
}

fn r6(x: f64) -> f64 {
    (x * 1e6).round() / 1e6
}

#[allow(clippy::too_many_arguments)]
fn bench_one(
    p: &BenchParams,
    name: &str,
    dir: &Path,
    base: Option<&Path>,
    records: &[(usize, Record)],
    eval_path: &Path,
    dev: &candle_core::Device,
    log: &mut dyn std::io::Write,
) -> Result<Row, StageFailure> {
    let fail = |m: String| StageFailure::new(format!("model `{name}`: {m}"));
    let t0 = Instant::now();
    let loaded = load_model(dir, base, dev).map_err(fail)?;
    let load_s = t0.elapsed().as_secs_f64();
    let tok = loaded.tok.as_ref().ok_or_else(|| fail(format!("{}: no tokenizer", dir.display())))?;
    let templates = match (&loaded.cfg.dvx, &p.template) {
        (Some(meta), _) => meta.template.clone(),
        (None, Some(t)) if !TemplateSet::is_auto(Some(t)) => t.resolve().map_err(fail)?,
        (None, _) => {
            TemplateSet::default_for(None, folder_chat_template(dir, &loaded.cfg).map_err(fail)?).map_err(fail)?
        }
    };
    let model = &loaded.model;
    let ctx_len = model.cfg.max_position_embeddings;
    let max_length = p.max_length.unwrap_or(ctx_len).min(ctx_len);

    let t1 = Instant::now();
    let mut examples: Vec<Example> = Vec::new();
    for (line, rec) in records {
        if let Some((ex, _)) = encode_record(rec, &templates, tok, max_length)
            .map_err(|e| fail(format!("{}:{line}: {e}", eval_path.display())))?
        {
            examples.push(ex);
        }
    }
    let valid_loss = eval_loss(model, &examples, p.batch_size, tok.info.pad_token_id)
        .map_err(|e| fail(format!("valid loss: {e}")))?;
    let eval_s = t1.elapsed().as_secs_f64();

    let t2 = Instant::now();
    let mut samples = Vec::new();
    let (mut correct, mut labelled, mut exact, mut generated) = (0, 0, 0, 0);
    let limit = if p.prompts == 0 { usize::MAX } else { p.prompts };
    let mut prompts = Vec::new();
    for (line, rec) in records {
        if prompts.len() == limit {
            break;
        }
        let prompt = templates.prompt(&conversation(rec), Today::fixed());
        if let Some(pr) = prompt.map_err(|e| fail(format!("{}:{line}: {e}", eval_path.display())))? {
            prompts.push((line, rec, pr));
        }
    }
    for (line, rec, prompt) in prompts {
        let mut ids: Vec<u32> = tok.info.bos_token_id.filter(|_| prompt.bos).into_iter().collect();
        ids.extend(tok.encode(&prompt.text).map_err(fail)?);
        let out = generate::greedy(model, tok, &ids, p.max_new_tokens).map_err(|e| fail(format!("generation: {e}")))?;
        generated += out.len();
        let text = tok.decode(&out).map_err(fail)?;
        let predicted = classify::classify(&text).to_string();
        let label = field(rec, &p.label_field).map(value_text).filter(|l| !l.trim().is_empty());
        if p.task == Task::ToolChoice {
            if let Some(l) = &label {
                labelled += 1;
                correct += usize::from(classify::normalise(l) == predicted);
            }
        }
        if let Some(f) = &p.exact_match_field {
            let want = field(rec, f).map(value_text).unwrap_or_default();
            exact += usize::from(want.trim() == text.trim());
        }
        samples.push(Sample { line: *line, label, predicted, text });
    }
    let gen_s = t2.elapsed().as_secs_f64();
    let timing = Timing {
        load_s: r6(load_s),
        gen_tokens_per_s: (generated as f64 / gen_s.max(1e-9) * 10.0).round() / 10.0,
        gen_s: r6(gen_s),
        eval_s: r6(eval_s),
    };
    let accuracy = (p.task == Task::ToolChoice && labelled > 0).then(|| correct as f64 / labelled as f64);
    writeln!(
        log,
        "{name}: loaded in {load_s:.2} s; valid loss {valid_loss:.4}; accuracy {}; {generated} tokens generated at {:.1} tok/s",
        accuracy.map_or("-".to_string(), |a| format!("{:.1}%", a * 100.0)),
        timing.gen_tokens_per_s
    )?;
    let adapter = loaded.cfg.dvx.as_ref().is_some_and(|m| m.adapter.is_some());
    Ok(Row {
        name: name.to_string(),
        kind: if adapter { "adapter" } else { "model" }.into(),
        base: None,
        params: loaded.params,
        size_bytes: loaded.weight_bytes,
        valid_loss: r6(valid_loss),
        perplexity: r6(valid_loss.exp()),
        accuracy,
        correct,
        labelled,
        exact_match: p.exact_match_field.as_ref().map(|_| exact as f64 / samples.len().max(1) as f64),
        generated_tokens: generated,
        timing: Some(timing),
        regressions: Vec::new(),
        samples,
    })
}

fn write(path: &Path, bytes: &[u8]) -> Result<(), StageFailure> {
    std::fs::write(path, bytes).map_err(|e| StageFailure::new(format!("cannot write {}: {e}", path.display())))
}
