//! The training loop and validation loss.

use std::io::Write;
use std::time::Instant;

use candle_core::{Device, Tensor, Var};
use dvx_stage_api::{Progress, StageFailure};

use dvx_model::model::Transformer;
use dvx_model::rng::Rng;

use super::data::{batch, Batch, Example, Sampler};
use super::optim::{clip, lr_at, AdamW, GradAccum, Schedule};

/// Map a candle error to a stage failure with context.
pub fn ce(what: &str) -> impl Fn(candle_core::Error) -> StageFailure + '_ {
    move |e| StageFailure::new(format!("{what}: {e}"))
}

/// Settings of one run of the loop.
pub struct LoopConfig {
    /// Optimizer steps.
    pub steps: usize,
    /// Micro-batches per step.
    pub grad_accum: usize,
    /// Examples per micro-batch.
    pub batch_size: usize,
    /// Peak learning rate.
    pub lr: f64,
    /// Warmup steps.
    pub warmup: usize,
    /// After warmup.
    pub schedule: Schedule,
    /// Final lr fraction.
    pub min_lr_ratio: f64,
    /// AdamW decay.
    pub weight_decay: f64,
    /// Gradient clipping (0 = off).
    pub max_grad_norm: f64,
    /// Validation every N steps (0 = first and last only).
    pub eval_every: usize,
    /// Progress line every N steps.
    pub log_every: usize,
    /// Padding id.
    pub pad: u32,
    /// Seeds shuffling and dropout.
    pub seed: u64,
}

/// What a run leaves behind (deterministic, apart from the timings).
#[derive(Debug, Default)]
pub struct History {
    /// `(step, loss, lr)` per optimizer step, 1-based.
    pub train: Vec<(usize, f64, f64)>,
    /// `(step, loss)`: step 0 is before training.
    pub valid: Vec<(usize, f64)>,
    /// Input tokens seen (padding excluded).
    pub tokens: usize,
    /// Examples seen.
    pub examples_seen: usize,
    /// Seconds spent in training steps (validation excluded).
    pub train_secs: f64,
}

/// Mean loss per trained token over `examples`, in order, `bs` at a time.
pub fn eval_loss(model: &Transformer, examples: &[Example], bs: usize, pad: u32) -> candle_core::Result<f64> {
    let (mut sum, mut count) = (0f64, 0f64);
    for chunk in examples.chunks(bs.max(1)) {
        let refs: Vec<&Example> = chunk.iter().collect();
        let b = batch(&refs, pad);
        let ids = batch_ids(&b, model.device())?;
        sum += model.eval_loss(&ids, &b.target, &b.weight)?.to_scalar::<f32>()? as f64;
        count += b.weight.iter().map(|&w| w as f64).sum::<f64>();
    }
    Ok(if count > 0.0 { sum / count } else { f64::NAN })
}

/// Train `vars` (the trainable part of `model`) on `train`, stopping between
/// steps when `cancel` trips.
#[allow(clippy::too_many_arguments)]
pub fn train(
    model: &Transformer,
    vars: &[(String, Var)],
    train: &[Example],
    valid: &[Example],
    cfg: &LoopConfig,
    log: &mut dyn Write,
    progress: &dyn Progress,
    cancel: &dvx_stage_api::Cancel,
) -> Result<History, StageFailure> {
    let dev: &Device = model.device();
    let var_list: Vec<Var> = vars.iter().map(|(_, v)| v.clone()).collect();
    let mut opt = AdamW::new(vars, cfg.weight_decay).map_err(ce("optimizer"))?;
    let mut sampler = Sampler::new(train.len(), cfg.seed);
    let mut dropout = Rng::for_name(cfg.seed, "dropout");
    let mut hist = History::default();
    let eval = |h: &mut History, step: usize, log: &mut dyn Write| -> Result<(), StageFailure> {
        let l = eval_loss(model, valid, cfg.batch_size, cfg.pad).map_err(ce("validation"))?;
        writeln!(log, "step {step}/{}: valid loss {l:.4}", cfg.steps)?;
        h.valid.push((step, l));
        Ok(())
    };
    eval(&mut hist, 0, log)?;
    progress.set_total(cfg.steps as u64, "step");
    let mut window = (Instant::now(), 0usize);
    for step in 0..cfg.steps {
        // Between steps: a cancelled run stops here, its model never written.
        cancel.check()?;
        let t0 = Instant::now();
        let mut acc = GradAccum::new(var_list.len());
        let mut loss_sum = 0f64;
        for _ in 0..cfg.grad_accum {
            let idx = sampler.take(cfg.batch_size);
            let refs: Vec<&Example> = idx.iter().map(|&i| &train[i]).collect();
            let b = batch(&refs, cfg.pad);
            hist.tokens += b.tokens;
            hist.examples_seen += b.rows;
            window.1 += b.tokens;
            let n: f32 = b.weight.iter().sum();
            let ids = batch_ids(&b, dev).map_err(ce("batch"))?;
            let nll = model.loss(&ids, &b.target, &b.weight, Some(&mut dropout)).map_err(ce("forward"))?;
            let loss = (nll / n as f64).map_err(ce("loss"))?;
            loss_sum += loss.to_scalar::<f32>().map_err(ce("loss"))? as f64;
            let scaled: Tensor = (loss / cfg.grad_accum as f64).map_err(ce("loss"))?;
            let grads = scaled.backward().map_err(ce("backward"))?;
            acc.add(&var_list, &grads, &model.take_block_grads()).map_err(ce("gradients"))?;
        }
        let mut grads = acc.take();
        clip(&mut grads, cfg.max_grad_norm).map_err(ce("clipping"))?;
        let lr = lr_at(step, cfg.steps, cfg.warmup, cfg.lr, cfg.schedule, cfg.min_lr_ratio);
        opt.step(&grads, lr).map_err(ce("optimizer step"))?;
        hist.train_secs += t0.elapsed().as_secs_f64();
        let loss = loss_sum / cfg.grad_accum as f64;
        if !loss.is_finite() {
            return Err(StageFailure::new(format!("step {}: loss is {loss}; lower `lr`", step + 1)));
        }
        hist.train.push((step + 1, loss, lr));
        let rate = hist.tokens as f64 / hist.train_secs.max(1e-9);
        progress.message(&format!("loss {loss:.4}, {rate:.0} tokens/s"));
        progress.inc(1);
        let done = step + 1;
        if cfg.log_every > 0 && (done % cfg.log_every == 0 || done == cfg.steps) {
            let secs = window.0.elapsed().as_secs_f64().max(1e-9);
            writeln!(log, "step {done}/{}: loss {loss:.4} lr {lr:.3e} {:.0} tok/s", cfg.steps, window.1 as f64 / secs)?;
            window = (Instant::now(), 0);
        }
        if done == cfg.steps || (cfg.eval_every > 0 && done % cfg.eval_every == 0) {
            eval(&mut hist, done, log)?;
        }
    }
    Ok(hist)
}

/// Input ids `[rows, len]` of one batch.
fn batch_ids(b: &Batch, dev: &Device) -> candle_core::Result<Tensor> {
    Tensor::from_slice(&b.input, (b.rows, b.len), dev)
}
