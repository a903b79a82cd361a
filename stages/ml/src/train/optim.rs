//! AdamW with decoupled weight decay (matrices only, not norms or biases),
//! gradient accumulation, global-norm clipping, and the learning-rate schedule.

use candle_core::backprop::GradStore;
use std::collections::HashMap;

use candle_core::{Result, Tensor, TensorId, Var};
use serde::{Deserialize, Serialize};

/// Shape of the learning rate after warmup.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Schedule {
    /// Half a cosine from `lr` down to `lr · min_lr_ratio`.
    Cosine,
    /// A straight line from `lr` down to `lr · min_lr_ratio`.
    Linear,
    /// `lr` throughout.
    Constant,
}

/// Learning rate for optimizer step `step` (0-based) of `total`: linear
/// warmup over `warmup` steps, then the schedule.
pub fn lr_at(step: usize, total: usize, warmup: usize, lr: f64, schedule: Schedule, min_ratio: f64) -> f64 {
    if step < warmup {
        return lr * (step + 1) as f64 / warmup as f64;
    }
    let span = total.saturating_sub(warmup).max(1);
    let progress = ((step - warmup) as f64 / span as f64).min(1.0);
    let floor = lr * min_ratio;
    match schedule {
        Schedule::Constant => lr,
        Schedule::Linear => lr + (floor - lr) * progress,
        Schedule::Cosine => floor + (lr - floor) * 0.5 * (1.0 + (std::f64::consts::PI * progress).cos()),
    }
}

/// Sums gradients over micro-batches, one slot per trainable variable.
pub struct GradAccum {
    sums: Vec<Option<Tensor>>,
}

impl GradAccum {
    /// Empty slots for `n` variables.
    pub fn new(n: usize) -> Self {
        GradAccum { sums: vec![None; n] }
    }

    /// Add one backward pass's gradients: from its store, or for tensors
    /// inside checkpointed blocks, from `blocks` (by tensor id).
    pub fn add(&mut self, vars: &[Var], grads: &GradStore, blocks: &HashMap<TensorId, Tensor>) -> Result<()> {
        for (slot, var) in self.sums.iter_mut().zip(vars) {
            if let Some(g) = grads.get(var).or_else(|| blocks.get(&var.id())) {
                *slot = Some(match slot.take() {
                    Some(s) => (s + g)?,
                    None => g.clone(),
                });
            }
        }
        Ok(())
    }

    /// Take the sums, leaving empty slots.
    pub fn take(&mut self) -> Vec<Option<Tensor>> {
        self.sums.iter_mut().map(Option::take).collect()
    }
}

/// Scale `grads` so their global L2 norm is at most `max_norm` (0 = off);
/// returns the norm before clipping.
pub fn clip(grads: &mut [Option<Tensor>], max_norm: f64) -> Result<f64> {
    let mut sq = 0f64;
    for g in grads.iter().flatten() {
        sq += g.sqr()?.sum_all()?.to_scalar::<f32>()? as f64;
    }
    let norm = sq.sqrt();
    if max_norm > 0.0 && norm > max_norm {
        let s = max_norm / (norm + 1e-6);
        for g in grads.iter_mut().flatten() {
            *g = (&*g * s)?;
        }
    }
    Ok(norm)
}

/// AdamW over a fixed list of variables.
pub struct AdamW {
    vars: Vec<Var>,
    decay: Vec<bool>,
    m: Vec<Tensor>,
    v: Vec<Tensor>,
    t: i32,
    beta1: f64,
    beta2: f64,
    eps: f64,
    weight_decay: f64,
}

impl AdamW {
    /// `vars` with their names (weight decay applies to 2-D weights only).
    pub fn new(vars: &[(String, Var)], weight_decay: f64) -> Result<Self> {
        let mut s = AdamW {
            vars: Vec::new(),
            decay: Vec::new(),
            m: Vec::new(),
            v: Vec::new(),
            t: 0,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay,
        };
        for (_, var) in vars {
            s.decay.push(var.rank() >= 2);
            s.m.push(var.zeros_like()?);
            s.v.push(var.zeros_like()?);
            s.vars.push(var.clone());
        }
        Ok(s)
    }

    /// One update with learning rate `lr`; variables without a gradient are left alone.
    pub fn step(&mut self, grads: &[Option<Tensor>], lr: f64) -> Result<()> {
        self.t += 1;
        let (b1, b2) = (self.beta1, self.beta2);
        let c1 = 1.0 / (1.0 - b1.powi(self.t));
        let c2 = 1.0 / (1.0 - b2.powi(self.t));
        for (i, g) in grads.iter().enumerate() {
            let Some(g) = g else { continue };
            let m = ((&self.m[i] * b1)? + (g * (1.0 - b1))?)?;
            let v = ((&self.v[i] * b2)? + (g.sqr()? * (1.0 - b2))?)?;
            let update = ((&m * c1)? / ((&v * c2)?.sqrt()? + self.eps)?)?;
            let theta = self.vars[i].as_tensor();
            let theta = if self.decay[i] { (theta * (1.0 - lr * self.weight_decay))? } else { theta.clone() };
            let next = (theta - (update * lr)?)?;
            self.vars[i].set(&next)?;
            self.m[i] = m;
            self.v[i] = v;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn schedules() {
        let f = |s, step| lr_at(step, 10, 2, 1.0, s, 0.0);
        assert_eq!(f(Schedule::Cosine, 0), 0.5);
        assert_eq!(f(Schedule::Cosine, 1), 1.0);
        assert_eq!(f(Schedule::Cosine, 2), 1.0);
        assert!((f(Schedule::Cosine, 6) - 0.5).abs() < 1e-12);
        assert!((f(Schedule::Linear, 6) - 0.5).abs() < 1e-12);
        assert_eq!(f(Schedule::Constant, 9), 1.0);
        assert!(lr_at(9, 10, 0, 1.0, Schedule::Linear, 0.1) > 0.1);
    }

    #[test]
    fn adamw_minimises_a_quadratic() {
        let x = Var::from_slice(&[3f32, -2.0], 2, &Device::Cpu).unwrap();
        let mut opt = AdamW::new(&[("x".into(), x.clone())], 0.0).unwrap();
        for _ in 0..200 {
            let loss = x.as_tensor().sqr().unwrap().sum_all().unwrap();
            let grads = loss.backward().unwrap();
            let mut acc = GradAccum::new(1);
            acc.add(std::slice::from_ref(&x), &grads, &HashMap::new()).unwrap();
            let mut g = acc.take();
            clip(&mut g, 1.0).unwrap();
            opt.step(&g, 0.05).unwrap();
        }
        let v = x.as_tensor().to_vec1::<f32>().unwrap();
        assert!(v.iter().all(|a| a.abs() < 0.1), "{v:?}");
    }
}
