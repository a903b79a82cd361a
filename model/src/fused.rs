//! Fused CPU kernels, with backward passes, for the ops that dominate a
//! small model's step when built from candle's elementwise primitives:
//! RMSNorm, rotary positions, the causal softmax and the weighted
//! cross-entropy. Each replaces a chain of 5–15 allocating tensor ops (and
//! their autograd backward chains) with one pass over the data.
//!
//! Every kernel works row by row, each output element computed by one
//! thread in a fixed order, and the few reductions across rows run
//! sequentially, so results do not depend on the thread count.
//! They take f32 tensors on the CPU; [`usable`] says when callers must use
//! the plain tensor-op path instead (other devices or dtypes).

use std::sync::Arc;

use candle_core::{CpuStorage, CustomOp1, CustomOp2, DType, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

/// Whether the fused kernels can run on `t`.
pub fn usable(t: &Tensor) -> bool {
    t.device().is_cpu() && t.dtype() == DType::F32
}

pub(crate) fn slice<'a>(s: &'a CpuStorage, l: &Layout, what: &str) -> Result<&'a [f32]> {
    let CpuStorage::F32(v) = s else { candle_core::bail!("{what}: expects f32") };
    match l.contiguous_offsets() {
        Some((a, b)) => Ok(&v[a..b]),
        None => candle_core::bail!("{what}: expects a contiguous tensor"),
    }
}

fn host(t: &Tensor) -> Result<Vec<f32>> {
    t.flatten_all()?.to_vec1::<f32>()
}

fn last_dim(l: &Layout) -> usize {
    l.dims().last().copied().unwrap_or(1)
}

// ---------------------------------------------------------------- RMSNorm

struct RmsNorm {
    eps: f32,
}

fn inv_rms(row: &[f32], eps: f32) -> f32 {
    let ss: f32 = row.iter().map(|a| a * a).sum();
    1.0 / (ss / row.len() as f32 + eps).sqrt()
}

impl CustomOp2 for RmsNorm {
    fn name(&self) -> &'static str {
        "dvx-rms-norm"
    }

    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> Result<(CpuStorage, Shape)> {
        let x = slice(s1, l1, "rms_norm")?;
        let w = slice(s2, l2, "rms_norm")?;
        let c = last_dim(l1);
        if w.len() != c {
            candle_core::bail!("rms_norm: weight of {} for rows of {c}", w.len());
        }
        let mut out = vec![0f32; x.len()];
        out.par_chunks_mut(c).zip(x.par_chunks(c)).for_each(|(o, x)| {
            let r = inv_rms(x, self.eps);
            for ((o, x), w) in o.iter_mut().zip(x).zip(w) {
                *o = x * r * w;
            }
        });
        Ok((CpuStorage::F32(out), l1.shape().clone()))
    }

    fn bwd(&self, x: &Tensor, w: &Tensor, _res: &Tensor, g: &Tensor) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let (xs, ws, gs) = (host(x)?, host(w)?, host(g)?);
        let c = ws.len();
        let mut dx = vec![0f32; xs.len()];
        dx.par_chunks_mut(c).zip(xs.par_chunks(c)).zip(gs.par_chunks(c)).for_each(|((dx, x), g)| {
            let r = inv_rms(x, self.eps);
            // d/dx of x·r·w: r·(g·w − x̂ · mean(g·w·x̂)), x̂ = x·r.
            let dot: f32 = x.iter().zip(g).zip(&ws).map(|((x, g), w)| g * w * x * r).sum::<f32>() / c as f32;
            for (((d, x), g), w) in dx.iter_mut().zip(x).zip(g).zip(&ws) {
                *d = r * (g * w - x * r * dot);
            }
        });
        // The weight's gradient sums over rows: sequentially, for determinism.
        let mut dw = vec![0f32; c];
        for (x, g) in xs.chunks(c).zip(gs.chunks(c)) {
            let r = inv_rms(x, self.eps);
            for ((d, x), g) in dw.iter_mut().zip(x).zip(g) {
                *d += g * x * r;
            }
        }
        Ok((Some(Tensor::from_vec(dx, x.shape(), x.device())?), Some(Tensor::from_vec(dw, w.shape(), w.device())?)))
    }
}

/// `x / rms(x) · w` over the last dimension.
pub fn rms_norm(x: &Tensor, w: &Tensor, eps: f64) -> Result<Tensor> {
    x.contiguous()?.apply_op2(&w.contiguous()?, RmsNorm { eps: eps as f32 })
}

// ---------------------------------------------------------------- rotary

/// Rotary tables in the rotate-half layout, `[len, head_dim]` each.
#[derive(Clone)]
pub struct RopeTables {
    cos: Arc<Vec<f32>>,
    sin: Arc<Vec<f32>>,
    len: usize,
    hd: usize,
}

impl RopeTables {
    /// Tables for `len` positions from row-major cos and sin of `[len, hd]`.
    pub fn new(cos: Vec<f32>, sin: Vec<f32>, len: usize, hd: usize) -> Self {
        RopeTables { cos: Arc::new(cos), sin: Arc::new(sin), len, hd }
    }
}

struct Rope {
    t: RopeTables,
    /// Backward: rotate by −θ.
    inverse: bool,
}

impl Rope {
    fn run(&self, x: &[f32]) -> Vec<f32> {
        let (hd, len) = (self.t.hd, self.t.len);
        let half = hd / 2;
        let sign = if self.inverse { -1.0 } else { 1.0 };
        let mut out = vec![0f32; x.len()];
        out.par_chunks_mut(hd * len).zip(x.par_chunks(hd * len)).for_each(|(o, x)| {
            for p in 0..len {
                let (o, x) = (&mut o[p * hd..(p + 1) * hd], &x[p * hd..(p + 1) * hd]);
                let (cos, sin) = (&self.t.cos[p * hd..(p + 1) * hd], &self.t.sin[p * hd..(p + 1) * hd]);
                for j in 0..half {
                    let (a, b) = (x[j], x[j + half]);
                    // The layout repeats the angles: cos[j] == cos[j + half].
                    let (c, s) = (cos[j], sign * sin[j]);
                    o[j] = a * c - b * s;
                    o[j + half] = b * c + a * s;
                }
            }
        });
        out
    }
}

impl CustomOp1 for Rope {
    fn name(&self) -> &'static str {
        "dvx-rope"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let x = slice(s, l, "rope")?;
        let d = l.dims();
        if d.len() < 2 || d[d.len() - 1] != self.t.hd || d[d.len() - 2] != self.t.len {
            candle_core::bail!("rope: shape {d:?} does not end in [{}, {}]", self.t.len, self.t.hd);
        }
        Ok((CpuStorage::F32(self.run(x)), l.shape().clone()))
    }

    fn bwd(&self, _x: &Tensor, _res: &Tensor, g: &Tensor) -> Result<Option<Tensor>> {
        // A rotation's transpose is the opposite rotation.
        let back = Rope { t: self.t.clone(), inverse: !self.inverse };
        Ok(Some(g.contiguous()?.apply_op1(back)?))
    }
}

/// Rotary positions on `x` `[.., len, head_dim]`.
pub fn rope(x: &Tensor, t: &RopeTables) -> Result<Tensor> {
    x.contiguous()?.apply_op1(Rope { t: t.clone(), inverse: false })
}

// ---------------------------------------------------------------- causal softmax

struct CausalSoftmax {
    scale: f32,
    /// Sliding window: a query sees at most this many keys (itself included).
    window: Option<usize>,
}

impl CausalSoftmax {
    /// The keys query row `r` sees, for rows of `len` keys.
    fn visible(&self, r: usize, len: usize) -> std::ops::Range<usize> {
        let q = r % len;
        let lo = self.window.map_or(0, |w| (q + 1).saturating_sub(w));
        lo..q + 1
    }
}

impl CustomOp1 for CausalSoftmax {
    fn name(&self) -> &'static str {
        "dvx-causal-softmax"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let x = slice(s, l, "causal_softmax")?;
        let d = l.dims();
        let len = last_dim(l);
        if d.len() < 2 || d[d.len() - 2] != len {
            candle_core::bail!("causal_softmax: scores {d:?} are not square");
        }
        let mut out = vec![0f32; x.len()];
        out.par_chunks_mut(len).zip(x.par_chunks(len)).enumerate().for_each(|(r, (o, x))| {
            let vis = self.visible(r, len);
            let (o, x) = (&mut o[vis.clone()], &x[vis]);
            let max = x.iter().fold(f32::NEG_INFINITY, |m, &a| m.max(a)) * self.scale;
            let mut sum = 0f32;
            for (o, x) in o.iter_mut().zip(x) {
                *o = (x * self.scale - max).exp();
                sum += *o;
            }
            let inv = 1.0 / sum;
            o.iter_mut().for_each(|o| *o *= inv);
        });
        Ok((CpuStorage::F32(out), l.shape().clone()))
    }

    fn bwd(&self, _x: &Tensor, y: &Tensor, g: &Tensor) -> Result<Option<Tensor>> {
        let (ys, gs) = (host(y)?, host(g)?);
        let len = y.dim(candle_core::D::Minus1)?;
        let mut dx = vec![0f32; ys.len()];
        dx.par_chunks_mut(len).zip(ys.par_chunks(len)).zip(gs.par_chunks(len)).enumerate().for_each(
            |(r, ((dx, y), g))| {
                let vis = self.visible(r, len);
                let dot: f32 = y[vis.clone()].iter().zip(&g[vis.clone()]).map(|(y, g)| y * g).sum();
                for ((d, y), g) in dx[vis.clone()].iter_mut().zip(&y[vis.clone()]).zip(&g[vis]) {
                    *d = self.scale * y * (g - dot);
                }
            },
        );
        Ok(Some(Tensor::from_vec(dx, y.shape(), y.device())?))
    }
}

/// `softmax(scale · x)` over the last dimension of square `[.., len, len]`
/// scores, with key `j` hidden from query `i` when `j > i` or, with a
/// sliding `window`, when `j + window <= i`.
pub fn causal_softmax(x: &Tensor, scale: f64, window: Option<usize>) -> Result<Tensor> {
    x.contiguous()?.apply_op1(CausalSoftmax { scale: scale as f32, window })
}

// ---------------------------------------------------------------- cross-entropy

struct WeightedNll {
    target: Arc<Vec<u32>>,
    weight: Arc<Vec<f32>>,
}

/// Row's max and log of the sum of exp(x − max).
fn log_norm(x: &[f32]) -> (f32, f32) {
    let max = x.iter().fold(f32::NEG_INFINITY, |m, &a| m.max(a));
    let sum: f32 = x.iter().map(|a| (a - max).exp()).sum();
    (max, sum.ln())
}

impl CustomOp1 for WeightedNll {
    fn name(&self) -> &'static str {
        "dvx-weighted-nll"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let x = slice(s, l, "weighted_nll")?;
        let v = last_dim(l);
        if x.len() != v * self.target.len() {
            candle_core::bail!("weighted_nll: {} targets for {} rows", self.target.len(), x.len() / v.max(1));
        }
        let mut per_row = vec![0f32; self.target.len()];
        per_row.par_iter_mut().zip(x.par_chunks(v)).enumerate().for_each(|(i, (o, x))| {
            let w = self.weight[i];
            if w != 0.0 {
                let (max, ln) = log_norm(x);
                *o = w * (max + ln - x[self.target[i] as usize]);
            }
        });
        let total: f64 = per_row.iter().map(|&a| a as f64).sum();
        Ok((CpuStorage::F32(vec![total as f32]), Shape::from(())))
    }

    fn bwd(&self, x: &Tensor, _res: &Tensor, g: &Tensor) -> Result<Option<Tensor>> {
        let g = g.to_scalar::<f32>()?;
        let xs = host(x)?;
        let v = x.dim(candle_core::D::Minus1)?;
        let mut dx = vec![0f32; xs.len()];
        dx.par_chunks_mut(v).zip(xs.par_chunks(v)).enumerate().for_each(|(i, (d, x))| {
            let w = self.weight[i] * g;
            if w != 0.0 {
                let (max, ln) = log_norm(x);
                for (d, x) in d.iter_mut().zip(x) {
                    *d = w * (x - max - ln).exp();
                }
                d[self.target[i] as usize] -= w;
            }
        });
        Ok(Some(Tensor::from_vec(dx, x.shape(), x.device())?))
    }
}

/// Sum over rows of `weight[i] · −log softmax(logits[i])[target[i]]`, a scalar.
pub fn weighted_nll(logits: &Tensor, target: &[u32], weight: &[f32]) -> Result<Tensor> {
    let v = logits.dim(candle_core::D::Minus1)?;
    if let Some(t) = target.iter().find(|&&t| t as usize >= v) {
        candle_core::bail!("target id {t} is outside the vocabulary of {v}");
    }
    logits.contiguous()?.apply_op1(WeightedNll { target: Arc::new(target.to_vec()), weight: Arc::new(weight.to_vec()) })
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var, D};

    fn rand(shape: &[usize], seed: u64) -> Var {
        let mut rng = crate::rng::Rng::for_name(seed, "fused-test");
        let n: usize = shape.iter().product();
        let v: Vec<f32> = (0..n).map(|_| rng.normal() as f32).collect();
        Var::from_tensor(&Tensor::from_vec(v, shape, &Device::Cpu).unwrap()).unwrap()
    }

    /// Value and gradient (of a fixed random projection of the output) agree
    /// between the fused kernel and the same function in plain tensor ops.
    fn check(inputs: &[&Var], fused: impl Fn() -> Tensor, plain: impl Fn() -> Tensor) {
        let (a, b) = (fused(), plain());
        let probe = rand(a.dims(), 99);
        let close = |x: &Tensor, y: &Tensor| {
            let (x, y) = (host(x).unwrap(), host(y).unwrap());
            for (x, y) in x.iter().zip(&y) {
                assert!((x - y).abs() < 1e-4 * (1.0 + y.abs()), "{x} vs {y}");
            }
        };
        close(&a, &b);
        let ga = (&a * probe.as_tensor()).unwrap().sum_all().unwrap().backward().unwrap();
        let gb = (&b * probe.as_tensor()).unwrap().sum_all().unwrap().backward().unwrap();
        for v in inputs {
            close(ga.get(v).unwrap(), gb.get(v).unwrap());
        }
    }

    #[test]
    fn kernels_match_plain_ops() {
        let (x, w) = (rand(&[6, 8], 1), rand(&[8], 2));
        check(
            &[&x, &w],
            || rms_norm(&x, &w, 1e-5).unwrap(),
            || {
                let ms = x.sqr().unwrap().mean_keepdim(D::Minus1).unwrap();
                x.broadcast_div(&(ms + 1e-5).unwrap().sqrt().unwrap()).unwrap().broadcast_mul(&w).unwrap()
            },
        );

        let (len, hd) = (5, 6);
        let (cos, sin): (Vec<f32>, Vec<f32>) =
            (0..len * hd).map(|i| (i / hd) as f32 * 0.3 * ((i % 3) as f32 + 1.0)).map(|a| (a.cos(), a.sin())).unzip();
        let t = RopeTables::new(cos.clone(), sin.clone(), len, hd);
        let x = rand(&[2, 3, len, hd], 3);
        let (c, s) = (
            Tensor::from_vec(cos, (len, hd), &Device::Cpu).unwrap(),
            Tensor::from_vec(sin, (len, hd), &Device::Cpu).unwrap(),
        );
        check(
            &[&x],
            || rope(&x, &t).unwrap(),
            || {
                let x1 = x.narrow(D::Minus1, 0, hd / 2).unwrap();
                let x2 = x.narrow(D::Minus1, hd / 2, hd / 2).unwrap();
                let rot = Tensor::cat(&[&x2.neg().unwrap(), &x1], D::Minus1).unwrap();
                (x.broadcast_mul(&c).unwrap() + rot.broadcast_mul(&s).unwrap()).unwrap()
            },
        );

        let x = rand(&[2, 3, len, len], 4);
        for window in [None, Some(2)] {
            let hidden = |i: usize| i % len > i / len || window.is_some_and(|w| i % len + w <= i / len);
            let m: Vec<f32> = (0..len * len).map(|i| if hidden(i) { f32::NEG_INFINITY } else { 0.0 }).collect();
            let mask = Tensor::from_vec(m, (len, len), &Device::Cpu).unwrap();
            check(
                &[&x],
                || causal_softmax(&x, 0.7, window).unwrap(),
                || {
                    candle_nn::ops::softmax(&(x.as_tensor() * 0.7).unwrap().broadcast_add(&mask).unwrap(), D::Minus1)
                        .unwrap()
                },
            );
        }

        let x = rand(&[4, 7], 5);
        let (target, weight) = (vec![0u32, 6, 3, 2], vec![1f32, 0.0, 0.5, 1.0]);
        check(
            &[&x],
            || weighted_nll(&x, &target, &weight).unwrap(),
            || {
                let tt = Tensor::new(target.as_slice(), &Device::Cpu).unwrap();
                let ww = Tensor::new(weight.as_slice(), &Device::Cpu).unwrap();
                let lsm = candle_nn::ops::log_softmax(&x, D::Minus1).unwrap();
                let picked = lsm.gather(&tt.unsqueeze(1).unwrap(), 1).unwrap().squeeze(1).unwrap();
                (picked * ww).unwrap().sum_all().unwrap().neg().unwrap()
            },
        );
    }
}
