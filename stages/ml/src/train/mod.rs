//! `kind: train` — train a small causal language model from scratch, or
//! fine-tune a base model (all weights, or LoRA adapters), with candle.
//!
//! deps: `[train.jsonl, valid.jsonl, (base model folder), (tokenizer.json)]`:
//! the first two are JSONL (Alpaca, ShareGPT, OpenAI-chat or `{"text": ..}`
//! records); an optional folder is the base model (a `train` output or a
//! Hugging Face Llama/Qwen2/Qwen3/Mistral folder with safetensors; see
//! `arch` for the config fields read and refused), an optional file
//! a `tokenizer.json` for a model trained from scratch (default: bytes).
//!
//! outs: `[model folder, metrics.json, (loss.svg)]`.
//!
//! outs[0] holds, for a LoRA adapter, PEFT's layout (`adapter_config.json`,
//! `adapter_model.safetensors`, which `PeftModel.from_pretrained` loads) and
//! `dvx.json` (tokenizer, template, LoRA settings and the base's weights
//! hash); for a merged LoRA model, `model.safetensors` in the base's dtype,
//! `config.json` (Hugging Face fields + a `dvx` section), `tokenizer.json`,
//! `tokenizer_config.json` and `generation_config.json`; for full training,
//! `config.json` and `model.safetensors` (f32). outs[1] `metrics.json`: params, steps,
//! initial/final valid loss, train loss per step, valid loss per eval, data
//! counts. outs[2] a loss-curve SVG.
//!
//! Params (defaults): `model: {layers: 2, width: 128, heads: 4, kv_heads:
//! heads, context: 256, mlp: 4·width, positions: rotary|learned, tied: true,
//! rope_theta: 10000}` (from scratch only); `lora: {rank: 16, alpha: 32,
//! dropout: 0.05, targets: [q, v], merge: false}` (needs a base);
//! `template: auto` (alpaca, chat, chatml, plain, a `{user}…{assistant}`
//! string, or `{system, system_end, user, user_end, assistant,
//! assistant_end}`; default the base's); `eos_token`; `epochs: 1` or `steps`;
//! `batch_size: 8`; `grad_accum: 1`; `lr: 1e-3`; `warmup_steps: 0`;
//! `schedule: cosine|linear|constant`; `min_lr_ratio: 0.1`; `weight_decay:
//! 0.01`; `max_grad_norm: 1.0`; `max_length: context`; `seed: 0`;
//! `eval_every: 50`; `log_every: 10`; `device: cpu|cuda`.
//!
//! Outputs are byte-identical for the same inputs, params and seed on the CPU,
//! whatever the thread count (timings go to the log and the returned
//! metrics' `timing` only). candle sizes its CPU pool once per process from
//! `CANDLE_NUM_THREADS` (else `RAYON_NUM_THREADS`, else the physical cores).

mod data;
mod optim;
pub mod params;
mod run;
mod threads;

#[cfg(test)]
mod template_tests;
#[cfg(test)]
pub(crate) mod tests;

pub(crate) use data::{conversation, encode_record, Example};
pub(crate) use params::DeviceParam;
pub(crate) use run::eval_loss;
pub(crate) use threads::run_on_pool;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use candle_core::{Tensor, Var};
use dvx_stage_api::{Count, Metrics, ParamError, Shape, StageContext, StageFailure, TypedStage};
use serde_json::{json, Value};

use dvx_model::folder::{self, AdapterInfo, DvxMeta, FolderConfig};
use dvx_model::hf_files::{self, TokenizerFiles};
use dvx_model::{lora, model, peft, TemplateParam, TemplateSet, Tok, Transformer};
use params::TrainParams;
use run::{ce, History, LoopConfig};

/// The `train` stage kind.
pub struct Train;

/// What the extra deps turned out to be.
struct Inputs {
    train: PathBuf,
    valid: PathBuf,
    base: Option<PathBuf>,
    /// A LoRA adapter (PEFT's layout or dvx's older one) to train on from.
    adapter: Option<PathBuf>,
    tokenizer: Option<PathBuf>,
}

fn classify(deps: &[PathBuf]) -> Result<Inputs, StageFailure> {
    let mut inputs =
        Inputs { train: deps[0].clone(), valid: deps[1].clone(), base: None, adapter: None, tokenizer: None };
    for d in &deps[2..] {
        let slot = match (d.is_dir(), peft::is_adapter(d)) {
            (true, true) => &mut inputs.adapter,
            (true, false) => &mut inputs.base,
            _ => &mut inputs.tokenizer,
        };
        if slot.replace(d.clone()).is_some() {
            return Err(StageFailure::bad_input(format!(
                "{}: at most one base folder, one adapter folder and one tokenizer.json after the two JSONL deps",
                d.display()
            )));
        }
    }
    Ok(inputs)
}

/// Round for output files: full f32 noise adds nothing and hurts diffs.
fn r6(x: f64) -> f64 {
    (x * 1e6).round() / 1e6
}

/// Peak resident memory of this process in MiB (Linux), 0 elsewhere.
fn peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

impl TypedStage for Train {
    const KIND: &'static str = "train";
    // 2: fused CPU kernels changed the trained weights.
    // 3: adapters in PEFT's layout; merged models in the base's dtype.
    const VERSION: u32 = 3;
    const DEPS: Count = Count::Between(2, 4);
    const OUTS: Count = Count::Between(2, 3);
    const DEPS_ARE: &'static str = "train.jsonl, valid.jsonl, then optionally a base model folder and a tokenizer.json";
    const OUTS_ARE: &'static str = "model folder, metrics.json, then optionally a loss-curve SVG";
    type Params = TrainParams;
    type Prepared = TrainParams;

    fn prepare(&self, p: TrainParams, _shape: Shape) -> Result<TrainParams, ParamError> {
        p.validate()?;
        Ok(p)
    }

    fn execute(&self, p: &TrainParams, ctx: &mut StageContext<'_>) -> Result<Metrics, StageFailure> {
        let (deps, outs, progress, cancel) = (ctx.deps, ctx.outs, ctx.progress, &ctx.cancel);
        threads::run_on_pool(ctx.threads, ctx.log, |log| execute(p, deps, outs, log, progress, cancel))
    }
}

fn execute(
    p: &TrainParams,
    deps: &[PathBuf],
    outs: &[PathBuf],
    log: &mut dyn std::io::Write,
    progress: &dyn dvx_stage_api::Progress,
    cancel: &dvx_stage_api::Cancel,
) -> Result<Metrics, StageFailure> {
    let started = Instant::now();
    let fail = |m: String| StageFailure::new(m);
    let inputs = classify(deps)?;
    let dev = p.device.open().map_err(fail)?;

    // Architecture, tokenizer and default template: from the base, or fresh.
    let (arch, tok, tok_file, base_template) = match &inputs.base {
        Some(base) => {
            if p.model.is_some() {
                return Err(fail(
                    "`model` is for training from scratch; a base model brings its own architecture".into(),
                ));
            }
            if peft::is_peft(base) {
                return Err(fail(format!(
                    "{}: a LoRA adapter cannot be a base; train it with `lora.merge: true`",
                    base.display()
                )));
            }
            let cfg = folder::read_config(base).map_err(fail)?;
            let meta = cfg.dvx.clone();
            if meta.as_ref().is_some_and(|m| m.adapter.is_some()) {
                return Err(fail(format!(
                    "{}: a LoRA adapter cannot be a base; train it with `lora.merge: true`",
                    base.display()
                )));
            }
            let own = folder::folder_tokenizer(base, &cfg, p.eos_token.clone()).map_err(fail)?;
            let (tok, file) = match (own, &inputs.tokenizer) {
                (Some(_), Some(t)) => {
                    return Err(fail(format!("{}: the base model brings its own tokenizer", t.display())))
                }
                (Some(tok), None) => {
                    let file = (tok.info.kind == "tokenizer.json").then(|| base.join("tokenizer.json"));
                    (tok, file)
                }
                (None, Some(t)) => (Tok::from_file(t, p.eos_token.clone(), None).map_err(fail)?, Some(t.clone())),
                (None, None) => return Err(fail(format!("{}: no tokenizer.json; add one as a dep", base.display()))),
            };
            if tok.vocab_size() > cfg.arch.vocab_size {
                return Err(fail(format!(
                    "the tokenizer has {} ids but the base embeds only {}",
                    tok.vocab_size(),
                    cfg.arch.vocab_size
                )));
            }
            let model_template = folder::folder_chat_template(base, &cfg).map_err(fail)?;
            (cfg.arch, tok, file, Some((meta.map(|m| m.template), model_template)))
        }
        None => {
            if p.lora.is_some() {
                return Err(fail("`lora` needs a base model: add its folder to deps".into()));
            }
            let tok = match &inputs.tokenizer {
                Some(t) => Tok::from_file(t, p.eos_token.clone(), None).map_err(fail)?,
                None => Tok::bytes(),
            };
            let arch = p.model.clone().unwrap_or_default().arch(tok.vocab_size());
            (arch, tok, inputs.tokenizer.clone(), None)
        }
    };
    let templates = match (&p.template, base_template) {
        (Some(t), _) if !TemplateSet::is_auto(Some(t)) => t.resolve().map_err(fail)?,
        (_, Some((own, model))) => {
            if own.is_none() && model.is_some() {
                writeln!(log, "template: the base model's own chat template (tokenizer_config.json)")?;
            }
            TemplateSet::default_for(own, model).map_err(fail)?
        }
        (_, None) => TemplateParam::default().resolve().map_err(fail)?,
    };
    let context = arch.max_position_embeddings;
    let max_length = p.max_length.unwrap_or(context);
    if max_length > context {
        return Err(fail(format!("max_length: {max_length} is longer than the model's context ({context})")));
    }

    // Data.
    let (train_ex, train_stats) = data::load(&inputs.train, &templates, &tok, max_length)?;
    let (valid_ex, valid_stats) = data::load(&inputs.valid, &templates, &tok, max_length)?;
    for (path, stats) in [(&inputs.train, &train_stats), (&inputs.valid, &valid_stats)] {
        if stats.examples == 0 {
            return Err(fail(format!(
                "{}: no example to train on ({} records, {} with no assistant turn or `text`)",
                path.display(),
                stats.records,
                stats.skipped
            )));
        }
    }
    writeln!(
        log,
        "data: {} train examples ({} skipped, {} truncated), {} valid; {} tokens",
        train_stats.examples, train_stats.skipped, train_stats.truncated, valid_stats.examples, train_stats.tokens
    )?;

    // An adapter to continue from brings its own LoRA settings.
    let resumed = resume_adapter(p, &inputs, &arch, &dev)?;
    let lora_p = resumed.as_ref().map(|ad| ad.lora.clone()).or(p.lora.clone());

    // Weights: base (frozen under LoRA) and the trainable variables.
    let seed = p.seed;
    let base_files = match &inputs.base {
        Some(b) => Some(folder::weight_files(b, false).map_err(fail)?),
        None => None,
    };
    let base_w = match &base_files {
        // A frozen base stays in its stored dtype (bf16: half of f32's memory).
        Some(files) if p.lora.is_some() => {
            dvx_model::frozen::load_stored(files, &arch.weight_shapes(), &dev).map_err(fail)?
        }
        Some(files) => folder::load_tensors(files, &arch.weight_shapes(), &dev).map_err(fail)?,
        None => model::init_weights(&arch, seed, &dev).map_err(ce("init"))?,
    };
    let to_vars = |w: &BTreeMap<String, Tensor>| -> Result<Vec<(String, Var)>, StageFailure> {
        w.iter().map(|(k, t)| Ok((k.clone(), Var::from_tensor(t).map_err(ce("init"))?))).collect()
    };
    let var_tensors = |v: &[(String, Var)]| -> BTreeMap<String, Tensor> {
        v.iter().map(|(k, var)| (k.clone(), var.as_tensor().clone())).collect()
    };
    let (vars, model) = match &lora_p {
        Some(lp) => {
            let init = match &resumed {
                Some(ad) => ad.weights.clone(),
                None => lora::init_adapters(&arch, lp, seed, &dev).map_err(ce("init"))?,
            };
            let vars = to_vars(&init)?;
            let mut m = Transformer::new(&arch, &base_w, &dev).map_err(ce("model"))?;
            lora::attach(&mut m, lp, &var_tensors(&vars)).map_err(ce("lora"))?;
            // A frozen base is where memory is tight: keep only block inputs
            // when the activations would outgrow the weights.
            m.set_checkpointing(dvx_model::model::Checkpointing::Auto);
            (vars, m)
        }
        None => {
            let vars = to_vars(&base_w)?;
            let m = Transformer::new(&arch, &var_tensors(&vars), &dev).map_err(ce("model"))?;
            (vars, m)
        }
    };
    let params_total = model::count_params(base_w.values())
        + if lora_p.is_some() { model::count_params(vars.iter().map(|(_, v)| v.as_tensor())) } else { 0 };
    let trainable = model::count_params(vars.iter().map(|(_, v)| v.as_tensor()));
    writeln!(log, "model: {params_total} params, {trainable} trainable, context {context}, vocab {}", arch.vocab_size)?;

    // Loop.
    let per_step = p.batch_size * p.grad_accum;
    let steps = p.steps.unwrap_or_else(|| (p.epochs.unwrap_or(1) * train_ex.len()).div_ceil(per_step));
    let cfg = LoopConfig {
        steps,
        grad_accum: p.grad_accum,
        batch_size: p.batch_size,
        lr: p.lr,
        warmup: p.warmup_steps,
        schedule: p.schedule,
        min_lr_ratio: p.min_lr_ratio,
        weight_decay: p.weight_decay,
        max_grad_norm: p.max_grad_norm,
        eval_every: p.eval_every,
        log_every: p.log_every,
        pad: tok.info.pad_token_id,
        seed,
    };
    tracing::info!(steps, examples = train_ex.len(), params = params_total, trainable, "training");
    let hist = run::train(&model, &vars, &train_ex, &valid_ex, &cfg, log, progress, cancel)?;

    // Outputs.
    let trained = var_tensors(&vars);
    let meta = |adapter: Option<AdapterInfo>| DvxMeta {
        format: folder::FORMAT,
        tokenizer: tok.info.clone(),
        template: templates.clone(),
        adapter,
    };
    write_model_folder(
        &outs[0],
        p,
        lora_p.as_ref(),
        &arch,
        Written { base: inputs.base.as_deref(), base_files: base_files.as_deref(), base_w: &base_w, trained },
        &tok,
        tok_file.as_deref(),
        meta,
    )?;

    let summary = Summary::new(&hist, params_total, trainable, train_ex.len());
    let mut doc = summary.json();
    doc.insert("data".into(), json!({"train": train_stats, "valid": valid_stats}));
    doc.insert(
        "train_loss".into(),
        hist.train.iter().map(|(s, l, lr)| json!({"step": s, "loss": r6(*l), "lr": lr})).collect(),
    );
    doc.insert("valid_loss".into(), hist.valid.iter().map(|(s, l)| json!({"step": s, "loss": r6(*l)})).collect());
    write_file(&outs[1], &serde_json::to_vec_pretty(&Value::Object(doc)).map_err(|e| fail(e.to_string()))?)?;
    if let Some(svg) = outs.get(2) {
        let train_pts: Vec<(f64, f64)> = hist.train.iter().map(|(s, l, _)| (*s as f64, *l)).collect();
        let valid_pts: Vec<(f64, f64)> = hist.valid.iter().map(|(s, l)| (*s as f64, *l)).collect();
        let rank = p.lora.as_ref().map(|l| l.rank);
        let title = crate::plots::train_title(&outs[0], inputs.base.as_deref(), rank, params_total);
        write_file(svg, crate::plots::loss_curve(&title, &train_pts, &valid_pts).map_err(fail)?.as_bytes())?;
    }

    let tps = hist.tokens as f64 / hist.train_secs.max(1e-9);
    let wall = started.elapsed().as_secs_f64();
    let rss = peak_rss_mib();
    writeln!(log, "done: {steps} steps, {:.0} tok/s, {wall:.1} s, peak RSS {rss:.0} MiB", tps)?;
    let mut metrics = summary.json();
    metrics.insert(
        "timing".into(),
        json!({"wall_s": r6(wall), "train_s": r6(hist.train_secs), "tokens_per_s": tps.round(), "peak_rss_mib": rss.round()}),
    );
    Ok(metrics)
}

/// The adapter deps name to continue training from: read, checked against
/// the base (its weights hash, when dvx wrote it) and against `lora` (rank,
/// alpha and targets must be the adapter's; dropout and merge are the run's).
fn resume_adapter(
    p: &TrainParams,
    inputs: &Inputs,
    arch: &dvx_model::model::ArchConfig,
    dev: &candle_core::Device,
) -> Result<Option<peft::PeftAdapter>, StageFailure> {
    let fail = |m: String| StageFailure::new(m);
    let Some(dir) = &inputs.adapter else { return Ok(None) };
    let Some(base) = &inputs.base else {
        return Err(fail(format!("{}: a LoRA adapter trains on its base: add the base folder to deps", dir.display())));
    };
    let mut ad = peft::read_any(dir, arch.num_hidden_layers, dev).map_err(fail)?;
    if let Some(info) = ad.meta.as_ref().and_then(|m| m.adapter.as_ref()) {
        let files = folder::weight_files(base, false).map_err(fail)?;
        if folder::fingerprint(&files).map_err(fail)? != info.base_weights {
            return Err(fail(format!(
                "{}: the adapter was trained on other base weights than {}",
                dir.display(),
                base.display()
            )));
        }
    }
    for (name, shape) in lora::adapter_shapes(arch, &ad.lora) {
        if ad.weights[&name].dims() != shape.as_slice() {
            return Err(fail(format!("{}: `{name}` does not fit base {}", dir.display(), base.display())));
        }
    }
    if let Some(lp) = &p.lora {
        let mut want = lp.targets.clone();
        want.sort();
        let mut have = ad.lora.targets.clone();
        have.sort();
        if (lp.rank, lp.alpha, want) != (ad.lora.rank, ad.lora.alpha, have) {
            return Err(fail(format!(
                "lora: rank {}, alpha {} and targets [{}] must be the adapter's ({})",
                ad.lora.rank,
                ad.lora.alpha,
                ad.lora.targets.join(", "),
                dir.display()
            )));
        }
        ad.lora.dropout = lp.dropout;
        ad.lora.merge = lp.merge;
        ad.lora.targets = lp.targets.clone();
    }
    Ok(Some(ad))
}

/// What training produced and what it started from.
struct Written<'a> {
    base: Option<&'a Path>,
    base_files: Option<&'a [PathBuf]>,
    base_w: &'a BTreeMap<String, Tensor>,
    trained: BTreeMap<String, Tensor>,
}

/// outs[0]: a PEFT adapter (LoRA), a merged model in the base's dtype with
/// the files transformers loads (LoRA with `merge`), or full weights.
fn write_model_folder(
    dir: &Path,
    p: &TrainParams,
    lora_p: Option<&lora::LoraParams>,
    arch: &dvx_model::model::ArchConfig,
    w: Written<'_>,
    tok: &Tok,
    tok_file: Option<&Path>,
    meta: impl Fn(Option<AdapterInfo>) -> DvxMeta,
) -> Result<(), StageFailure> {
    let fail = |m: String| StageFailure::new(m);
    let fcfg = |m: DvxMeta| FolderConfig { arch: arch.clone(), bos_token_id: None, eos_token_id: None, dvx: Some(m) };
    match (lora_p, w.base, w.base_files) {
        (Some(lp), Some(base), Some(files)) if !lp.merge => {
            let info = AdapterInfo { lora: lp.clone(), base_weights: folder::fingerprint(files).map_err(fail)? };
            // The base's folder name: a path would tie the bytes to where the pipeline ran.
            let base_name = base.file_name().map_or(String::new(), |n| n.to_string_lossy().into_owned());
            peft::write(dir, lp, &base_name, &w.trained, Some(&meta(Some(info))), tok_file).map_err(fail)
        }
        (Some(lp), Some(base), Some(files)) => {
            let merged = lora::merge(arch, lp, w.base_w, &w.trained).map_err(ce("merge"))?;
            let m = meta(None);
            let dtype = hf_files::folder_dtype(files).map_err(fail)?;
            // The base's own tokenizer_config (its chat template) when training used the base's template.
            let tf = TokenizerFiles {
                tok,
                tokenizer_json: tok_file,
                base: p.template.is_none().then_some(base),
                template: &m.template.chat,
            };
            hf_files::write_model(dir, &fcfg(m.clone()), &merged, dtype, &tf).map_err(fail)
        }
        _ => folder::write(dir, &fcfg(meta(None)), &w.trained, "model.safetensors", tok_file).map_err(fail),
    }
}

fn write_file(path: &Path, bytes: &[u8]) -> Result<(), StageFailure> {
    let mut b = bytes.to_vec();
    if !b.ends_with(b"\n") {
        b.push(b'\n');
    }
    std::fs::write(path, b).map_err(|e| StageFailure::new(format!("cannot write {}: {e}", path.display())))
}

/// The headline numbers, shared by `metrics.json` and the stage metrics.
struct Summary {
    params: usize,
    trainable: usize,
    steps: usize,
    epochs: f64,
    tokens: usize,
    initial_valid: f64,
    final_valid: f64,
    final_train: f64,
}

impl Summary {
    fn new(h: &History, params: usize, trainable: usize, n_train: usize) -> Self {
        // The last tenth of the steps: one step's loss is too noisy to report.
        let tail = (h.train.len() / 10).max(1);
        // `steps: 0` (evaluation only) has no train loss.
        let final_train = match h.train.is_empty() {
            true => f64::NAN,
            false => h.train.iter().rev().take(tail).map(|t| t.1).sum::<f64>() / tail as f64,
        };
        Summary {
            params,
            trainable,
            steps: h.train.len(),
            epochs: h.examples_seen as f64 / n_train as f64,
            tokens: h.tokens,
            initial_valid: h.valid.first().map_or(f64::NAN, |v| v.1),
            final_valid: h.valid.last().map_or(f64::NAN, |v| v.1),
            final_train,
        }
    }

    fn json(&self) -> serde_json::Map<String, Value> {
        let improvement = 100.0 * (self.initial_valid - self.final_valid) / self.initial_valid;
        let v = json!({
            "params": self.params,
            "trainable_params": self.trainable,
            "steps": self.steps,
            "epochs": (self.epochs * 1000.0).round() / 1000.0,
            "train_tokens": self.tokens,
            "initial_valid_loss": r6(self.initial_valid),
            "final_valid_loss": r6(self.final_valid),
            "final_train_loss": r6(self.final_train),
            "valid_improvement_pct": (improvement * 100.0).round() / 100.0,
        });
        match v {
            Value::Object(m) => m,
            _ => unreachable!("json! of an object"),
        }
    }
}
