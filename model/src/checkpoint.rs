//! Gradient checkpointing: a block runs as one custom op whose forward
//! keeps nothing but its input, and whose backward runs the block again on
//! a detached copy of that input under candle's autograd, then backprops
//! the incoming gradient through it. The input's gradient goes back into
//! the outer graph; the gradients of the block's own trainable tensors
//! (LoRA adapters, or all weights when fine-tuning fully) go to a
//! [`GradSink`] the training loop reads after the backward pass.
//!
//! The recomputation replays the dropout stream from the state it had
//! before the block, so it sees the same masks as the forward pass.
//! Backward visits blocks in a fixed order, so the sums are deterministic.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use candle_core::{CpuStorage, CustomOp1, Device, Layout, Result, Shape, Tensor, TensorId, Var};

use crate::fused::slice;
use crate::model::{block_forward, Block, Dims, Tables};
use crate::rng::Rng;

/// Gradients of tensors inside checkpointed blocks, summed per tensor.
#[derive(Default)]
pub struct GradSink(Mutex<HashMap<TensorId, Tensor>>);

impl GradSink {
    fn add(&self, id: TensorId, g: &Tensor) -> Result<()> {
        let mut m = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let sum = match m.remove(&id) {
            Some(s) => (s + g)?,
            None => g.clone(),
        };
        m.insert(id, sum);
        Ok(())
    }

    /// The sums so far, leaving the sink empty.
    pub fn take(&self) -> HashMap<TensorId, Tensor> {
        std::mem::take(&mut *self.0.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

/// Which block, with what it needs to run.
pub(crate) struct At {
    pub dims: Dims,
    pub block: Arc<Block>,
    pub tables: Arc<Tables>,
    pub rows: usize,
    pub len: usize,
}

struct Checkpointed {
    at: At,
    /// The dropout stream before the block.
    rng: Option<Rng>,
    /// The stream after the forward pass, for the caller to continue from.
    after: Arc<Mutex<Option<Rng>>>,
    sink: Arc<GradSink>,
}

impl Checkpointed {
    fn run(&self, x: &Tensor, rng: Option<&mut Rng>) -> Result<Tensor> {
        let a = &self.at;
        block_forward(&a.dims, &a.block, x, a.rows, a.len, &a.tables, None, rng)
    }
}

impl CustomOp1 for Checkpointed {
    fn name(&self) -> &'static str {
        "dvx-checkpointed-block"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let x = Tensor::from_slice(slice(s, l, "checkpointed block")?, l.shape(), &Device::Cpu)?;
        let mut rng = self.rng.clone();
        let y = self.run(&x, rng.as_mut())?;
        *self.after.lock().unwrap_or_else(|e| e.into_inner()) = rng;
        Ok((CpuStorage::F32(y.flatten_all()?.to_vec1::<f32>()?), y.shape().clone()))
    }

    fn bwd(&self, x: &Tensor, _res: &Tensor, g: &Tensor) -> Result<Option<Tensor>> {
        let input = Var::from_tensor(&x.detach())?;
        let y = self.run(input.as_tensor(), self.rng.clone().as_mut())?;
        let grads = (y * g)?.sum_all()?.backward()?;
        for t in self.at.block.vars() {
            if let Some(g) = grads.get(t) {
                self.sink.add(t.id(), g)?;
            }
        }
        Ok(grads.get(input.as_tensor()).cloned())
    }
}

/// Run block `at` on `x` `[rows*len, width]` checkpointed, advancing `rng`
/// as the plain forward would.
pub(crate) fn block(x: &Tensor, at: At, rng: Option<&mut Rng>, sink: &Arc<GradSink>) -> Result<Tensor> {
    if !x.device().is_cpu() {
        // The custom op has a CPU kernel only: elsewhere, keep the activations.
        return block_forward(&at.dims, &at.block, x, at.rows, at.len, &at.tables, None, rng);
    }
    // The op must be recorded even when nothing before it is trainable
    // (the frozen embedding), or the block's own gradients are never asked for.
    let x = if x.track_op() { x.contiguous()? } else { Var::from_tensor(&x.contiguous()?)?.as_tensor().clone() };
    let after = Arc::new(Mutex::new(None));
    let op = Checkpointed { at, rng: rng.as_deref().cloned(), after: after.clone(), sink: sink.clone() };
    let y = x.apply_op1(op)?;
    if let (Some(r), Some(next)) = (rng, after.lock().unwrap_or_else(|e| e.into_inner()).take()) {
        *r = next;
    }
    Ok(y)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use candle_core::{DType, Device, Tensor, Var};

    use crate::lora::{attach, init_adapters, LoraParams};
    use crate::model::{init_weights, Checkpointing, Transformer};
    use crate::rng::Rng;
    use crate::testkit::tiny;

    /// Loss and adapter gradients of one LoRA step (with dropout) for a base
    /// in `dtype`, with or without checkpointing.
    fn step(base: &BTreeMap<String, Tensor>, dtype: DType, checkpoint: bool) -> (f32, Vec<Vec<f32>>) {
        let dev = Device::Cpu;
        let mut cfg = tiny(37);
        cfg.num_hidden_layers = 2;
        let p = LoraParams { rank: 4, targets: vec!["q".into(), "v".into(), "down".into()], ..Default::default() };
        // A non-zero B, so A's gradient is not zero either.
        let vars: Vec<(String, Var)> = init_adapters(&cfg, &p, 2, &dev)
            .unwrap()
            .into_iter()
            .map(|(k, t)| {
                let t = if k.contains("lora_b") { (t.ones_like().unwrap() * 0.05).unwrap() } else { t };
                (k, Var::from_tensor(&t).unwrap())
            })
            .collect();
        let base: BTreeMap<String, Tensor> =
            base.iter().map(|(k, t)| (k.clone(), t.to_dtype(dtype).unwrap())).collect();
        let mut m = Transformer::new(&cfg, &base, &dev).unwrap();
        let adapters = vars.iter().map(|(k, v)| (k.clone(), v.as_tensor().clone())).collect();
        attach(&mut m, &p, &adapters).unwrap();
        m.set_checkpointing(if checkpoint { Checkpointing::On } else { Checkpointing::Off });
        let ids = Tensor::from_slice(&[1u32, 5, 9, 3, 7, 2, 30, 4], (2, 4), &dev).unwrap();
        let (target, weight) = ([5u32, 9, 3, 8, 2, 30, 4, 1], [1f32, 1.0, 0.0, 1.0, 1.0, 1.0, 1.0, 0.5]);
        let loss = m.loss(&ids, &target, &weight, Some(&mut Rng::new(3))).unwrap();
        let grads = loss.backward().unwrap();
        let blocks = m.take_block_grads();
        let g = vars
            .iter()
            .map(|(_, v)| {
                let g = grads.get(v).or_else(|| blocks.get(&v.id())).expect("every adapter has a gradient");
                g.flatten_all().unwrap().to_vec1::<f32>().unwrap()
            })
            .collect();
        (loss.to_scalar::<f32>().unwrap(), g)
    }

    fn close(a: &[Vec<f32>], b: &[Vec<f32>], tol: f32) {
        for (a, b) in a.iter().zip(b) {
            for (x, y) in a.iter().zip(b) {
                assert!((x - y).abs() <= tol * (1e-3 + y.abs()), "{x} vs {y}");
            }
        }
    }

    /// Checkpointing recomputes the same forward (dropout replayed) and the
    /// same gradients; a bf16 base computes what the f32 path computes with
    /// the same (bf16-rounded) weights.
    #[test]
    fn checkpointed_bf16_step_matches_the_f32_step() {
        let mut cfg = tiny(37);
        cfg.num_hidden_layers = 2;
        let base: BTreeMap<String, Tensor> = init_weights(&cfg, 1, &Device::Cpu)
            .unwrap()
            .into_iter()
            .map(|(k, t)| (k, (t * 20.0).unwrap().to_dtype(DType::BF16).unwrap().to_dtype(DType::F32).unwrap()))
            .collect();
        let (l0, g0) = step(&base, DType::F32, false);
        let (l1, g1) = step(&base, DType::F32, true);
        assert_eq!(l0, l1);
        close(&g1, &g0, 1e-4);
        let (l2, g2) = step(&base, DType::BF16, true);
        assert!((l2 - l0).abs() <= 1e-5 * l0.abs(), "{l2} vs {l0}");
        close(&g2, &g0, 1e-4);
        // The adapters do move the loss: a real test, not a constant.
        assert!(g0.iter().flatten().any(|g| g.abs() > 1e-6));
    }

    /// `Auto` checkpoints a pass only when its activations would take more
    /// than the frozen weights: not a short one, but a long one.
    #[test]
    fn auto_checkpoints_only_big_passes() {
        let mut cfg = tiny(37);
        cfg.num_hidden_layers = 2;
        let base: BTreeMap<String, Tensor> = init_weights(&cfg, 1, &Device::Cpu)
            .unwrap()
            .into_iter()
            .map(|(k, t)| (k, t.to_dtype(DType::BF16).unwrap()))
            .collect();
        let mut m = Transformer::new(&cfg, &base, &Device::Cpu).unwrap();
        assert!(!m.checkpoints(64, 32));
        m.set_checkpointing(Checkpointing::Auto);
        assert!(m.activation_bytes(1, 2) < m.activation_bytes(2, 2));
        assert!(!m.checkpoints(1, 2));
        assert!(m.checkpoints(64, 32));
        m.set_checkpointing(Checkpointing::On);
        assert!(m.checkpoints(1, 2));
    }
}
