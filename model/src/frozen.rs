//! Frozen weights: a base model's matrices kept in their stored dtype (a
//! bf16 base stays bf16, half the memory of f32) and used without ever
//! computing a gradient for them.
//!
//! candle's matmul backward computes the gradient of both operands, so a
//! LoRA step through plain `x.matmul(w.t())` also builds a full-size
//! gradient of every frozen matrix (doubling the step's work and memory).
//! [`matmul_t`] is a custom op whose backward yields only the input's
//! gradient. A half-precision weight is widened to f32 a block of rows at a
//! time inside the op, so there is never a full-precision copy of it.
//! [`head_nll`] does the same for the output head fused with the
//! cross-entropy, over blocks of the vocabulary, so the full-vocabulary
//! logits of all positions never exist at once.
//!
//! Block sizes depend on the shapes only, so results do not depend on the
//! thread count; with an f32 weight small enough for one block the ops
//! compute exactly what the plain tensor ops did.

use std::collections::BTreeMap;
use std::io::{Read, Seek, SeekFrom};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use candle_core::{CpuStorage, CustomOp1, DType, Device, Layout, Result, Shape, Storage, Tensor};

use crate::fused::slice;
use crate::sgemm::{self, Scratch};

/// Elements of f32 scratch per block (16 MiB).
const BLOCK_ELEMS: usize = 1 << 22;

/// Rows of a `[rows, cols]` weight per block, when `n` input rows also
/// make a `[n, block]` product.
fn block_rows(rows: usize, cols: usize, n: usize) -> usize {
    (BLOCK_ELEMS / cols.max(1)).min(BLOCK_ELEMS / n.max(1)).clamp(1, rows.max(1))
}

/// Whether `w` is used as a whole (f32, one block): then the ops run the
/// same single matmul the plain tensor ops would.
fn whole(w: &Tensor, n: usize) -> Result<bool> {
    let (rows, cols) = w.dims2()?;
    Ok(w.dtype() == DType::F32 && block_rows(rows, cols, n) == rows)
}

/// Rows `start..start + len` of the frozen weight `w` as f32, handed to
/// `f`: f32 storage is read in place, half precision is widened into a
/// buffer the thread reuses (no fresh pages per block), in one loop the
/// compiler vectorises (candle's conversion calls a function per value, a
/// tenth of a LoRA step's time; the values are the same).
fn with_rows<R>(w: &Tensor, start: usize, len: usize, f: impl FnOnce(&[f32]) -> Result<R>) -> Result<R> {
    let cols = w.dim(1)?;
    let (storage, layout) = w.storage_and_layout();
    let range = layout.contiguous_offsets().map(|(a, _)| a + start * cols..a + (start + len) * cols);
    let widen = |n: usize, fill: &mut dyn FnMut(&mut Vec<f32>)| {
        let mut s = Scratch::empty(n);
        fill(&mut s);
        s
    };
    match (&*storage, range) {
        (Storage::Cpu(CpuStorage::F32(v)), Some(r)) if r.end <= v.len() => f(&v[r]),
        (Storage::Cpu(CpuStorage::BF16(v)), Some(r)) if r.end <= v.len() => {
            let s = widen(r.len(), &mut |s| s.extend(v[r.clone()].iter().map(|x| bf16_to_f32(x.to_bits()))));
            f(&s)
        }
        (Storage::Cpu(CpuStorage::F16(v)), Some(r)) if r.end <= v.len() => {
            let s = widen(r.len(), &mut |s| s.extend(v[r.clone()].iter().map(|x| x.to_f32())));
            f(&s)
        }
        _ => {
            drop(storage);
            f(&host(&w.narrow(0, start, len)?.to_dtype(DType::F32)?)?)
        }
    }
}

/// A bf16 is the top half of the f32 with the same value.
fn bf16_to_f32(bits: u16) -> f32 {
    f32::from_bits(u32::from(bits) << 16)
}

/// `t` (an f32 CPU tensor) as one contiguous slice, handed to `f`.
fn with_f32<R>(t: &Tensor, f: impl FnOnce(&[f32]) -> Result<R>) -> Result<R> {
    let t = t.contiguous()?;
    let (storage, layout) = t.storage_and_layout();
    match &*storage {
        Storage::Cpu(s) => f(slice(s, layout, "frozen op")?),
        _ => candle_core::bail!("frozen op: expects a CPU tensor"),
    }
}

/// `x w^T` for `x` `[n, in]` f32 and `w` `[out, in]` (any float dtype).
fn project(x: &Tensor, w: &Tensor) -> Result<Tensor> {
    let n = x.dim(0)?;
    if whole(w, n)? {
        return x.matmul(&w.t()?);
    }
    let y = with_f32(x, |x| project_blocks(x, n, w))?;
    Tensor::from_vec(y, (n, w.dim(0)?), x.device())
}

/// `x w^T` for `x` `[n, in]` a block of `w`'s rows at a time, each block's
/// product written in place into the `[n, out]` result.
fn project_blocks(x: &[f32], n: usize, w: &Tensor) -> Result<Vec<f32>> {
    let (rows, cols) = w.dims2()?;
    let step = block_rows(rows, cols, n);
    let mut y = vec![0f32; n * rows];
    for start in (0..rows).step_by(step) {
        let len = step.min(rows - start);
        with_rows(w, start, len, |wb| sgemm::mul_t(&mut y[start..], rows, x, wb, n, cols, len))?;
    }
    Ok(y)
}

/// `g w` for `g` `[n, out]` and `w` `[out, in]`: the input's gradient.
fn back_project(g: &Tensor, w: &Tensor) -> Result<Tensor> {
    let n = g.dim(0)?;
    if whole(w, n)? {
        return g.matmul(w);
    }
    let (rows, cols) = w.dims2()?;
    let step = block_rows(rows, cols, n);
    let mut sum = BlockSum::new(n * cols, rows > step);
    with_f32(g, |g| {
        for start in (0..rows).step_by(step) {
            let len = step.min(rows - start);
            with_rows(w, start, len, |wb| sgemm::mul(sum.next(start == 0), &g[start..], rows, wb, n, len, cols))?;
            sum.add(start == 0);
        }
        Ok(())
    })?;
    Tensor::from_vec(sum.total, (n, cols), g.device())
}

/// The sum of one product per block of a weight's rows, added up in block
/// order as the tensor ops did (`((p0 + p1) + p2)…`, so the same bits):
/// the first block is written into the total, later ones into a reused
/// buffer and added.
struct BlockSum {
    total: Vec<f32>,
    part: Scratch,
}

impl BlockSum {
    fn new(len: usize, blocks: bool) -> BlockSum {
        BlockSum { total: vec![0f32; len], part: Scratch::new(if blocks { len } else { 0 }) }
    }

    /// Where the next block's product goes.
    fn next(&mut self, first: bool) -> &mut [f32] {
        if first {
            &mut self.total
        } else {
            &mut self.part
        }
    }

    /// Adds the block just written (unless it was the first).
    fn add(&mut self, first: bool) {
        if !first {
            for (s, p) in self.total.iter_mut().zip(self.part.iter()) {
                *s += *p;
            }
        }
    }
}

struct FrozenMatmul {
    w: Tensor,
}

impl CustomOp1 for FrozenMatmul {
    fn name(&self) -> &'static str {
        "dvx-frozen-matmul"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let x = slice(s, l, "frozen matmul")?;
        let (out, inp) = self.w.dims2()?;
        let d = l.dims();
        if d.last() != Some(&inp) {
            candle_core::bail!("frozen matmul: input {d:?} for a weight of {out}x{inp}");
        }
        let n = x.len() / inp.max(1);
        let y = if whole(&self.w, n)? {
            host(&Tensor::from_slice(x, (n, inp), &Device::Cpu)?.matmul(&self.w.t()?)?)?
        } else {
            project_blocks(x, n, &self.w)?
        };
        let mut dims = d.to_vec();
        if let Some(last) = dims.last_mut() {
            *last = out;
        }
        Ok((CpuStorage::F32(y), Shape::from(dims)))
    }

    fn bwd(&self, x: &Tensor, _res: &Tensor, g: &Tensor) -> Result<Option<Tensor>> {
        let out = self.w.dim(0)?;
        let g = g.reshape((g.elem_count() / out.max(1), out))?;
        Ok(Some(back_project(&g, &self.w)?.reshape(x.shape())?))
    }
}

/// `x w^T` for `x` `[n, in]` (f32) and a frozen `w` `[out, in]`: no
/// gradient is computed for `w`, and a half-precision `w` is widened a
/// block at a time.
pub fn matmul_t(x: &Tensor, w: &Tensor) -> Result<Tensor> {
    if !x.device().is_cpu() {
        return x.matmul(&w.to_dtype(x.dtype())?.t()?);
    }
    if !x.track_op() {
        return project(x, w);
    }
    x.contiguous()?.apply_op1(FrozenMatmul { w: w.clone() })
}

/// Rows of `x` `[n, c]` (f32 tensor) as a host vector.
fn host(x: &Tensor) -> Result<Vec<f32>> {
    x.flatten_all()?.to_vec1::<f32>()
}

struct HeadNll {
    head: Tensor,
    target: Arc<Vec<u32>>,
    weight: Arc<Vec<f32>>,
    /// Whether the forward also makes the input's gradient (when a
    /// backward pass will ask for it).
    with_grad: bool,
    /// d(loss)/d(input) for an upstream gradient of 1, `[n, c]`, made by the
    /// forward and taken by the backward.
    grad: Mutex<Option<Vec<f32>>>,
}

/// What one pass over the head's blocks gives.
struct HeadPass {
    /// The weighted negative log-likelihood summed over rows.
    total: f64,
    /// d(total)/d(input), when asked for.
    grad: Option<Vec<f32>>,
}

impl HeadNll {
    /// One pass over the vocabulary blocks, each widened once: per row the
    /// running max logit, the sum of exp(logit − max) and the target's
    /// logit, and, when `with_grad`, the running sum of exp(logit − max)
    /// times the head's rows (rescaled when a row's max grows, as online
    /// softmax does), so the gradient softmax · head − head[target] is
    /// ready when the pass ends and the logits are never kept or remade.
    fn pass(&self, x: &[f32], with_grad: bool) -> Result<HeadPass> {
        let (rows, cols) = self.head.dims2()?;
        let n = self.target.len();
        let step = block_rows(rows, cols, n);
        let mut max = vec![f32::NEG_INFINITY; n];
        let mut sum = vec![0f32; n];
        let mut picked = vec![0f32; n];
        let mut acc = with_grad.then(|| BlockSum::new(n * cols, rows > step));
        let mut logits = Scratch::new(n * step.min(rows));
        for start in (0..rows).step_by(step) {
            let len = step.min(rows - start);
            logits.resize(n * len, 0.0);
            with_rows(&self.head, start, len, |w| {
                sgemm::mul_t(&mut logits, len, x, w, n, cols, len)?;
                for (i, l) in logits.chunks_mut(len).enumerate() {
                    if self.weight[i] == 0.0 {
                        l.fill(0.0);
                        continue;
                    }
                    let t = self.target[i] as usize;
                    if (start..start + len).contains(&t) {
                        picked[i] = l[t - start];
                    }
                    let m = l.iter().fold(max[i], |m, &a| m.max(a));
                    // Rescale what was summed under the old max (a no-op for the first block).
                    let scale = if sum[i] == 0.0 { 0.0 } else { (max[i] - m).exp() };
                    let mut s = 0f32;
                    for a in l.iter_mut() {
                        *a = (*a - m).exp();
                        s += *a;
                    }
                    sum[i] = sum[i] * scale + s;
                    max[i] = m;
                    if let Some(acc) = acc.as_mut().filter(|_| scale != 1.0) {
                        acc.total[i * cols..(i + 1) * cols].iter_mut().for_each(|g| *g *= scale);
                    }
                }
                if let Some(acc) = acc.as_mut() {
                    sgemm::mul(acc.next(start == 0), &logits, len, w, n, len, cols)?;
                    acc.add(start == 0);
                }
                Ok(())
            })?;
        }
        let mut total = 0f64;
        for i in (0..n).filter(|&i| self.weight[i] != 0.0) {
            total += (self.weight[i] * (max[i] + sum[i].ln() - picked[i])) as f64;
        }
        let Some(BlockSum { total: mut acc, .. }) = acc else {
            return Ok(HeadPass { total, grad: None });
        };
        // Row i: weight · (Σ_j softmax_j head[j] − head[target]).
        for i in 0..n {
            let row = &mut acc[i * cols..(i + 1) * cols];
            let wi = self.weight[i];
            if wi == 0.0 {
                row.fill(0.0);
                continue;
            }
            let t = self.target[i] as usize;
            let inv = 1.0 / sum[i];
            with_rows(&self.head, t, 1, |ht| {
                for (g, h) in row.iter_mut().zip(ht) {
                    *g = wi * (*g * inv - h);
                }
                Ok(())
            })?;
        }
        Ok(HeadPass { total, grad: Some(acc) })
    }
}

impl CustomOp1 for HeadNll {
    fn name(&self) -> &'static str {
        "dvx-head-nll"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let x = slice(s, l, "head_nll")?;
        let c = self.head.dim(1)?;
        let n = self.target.len();
        if x.len() != n * c {
            candle_core::bail!("head_nll: {n} targets for {} rows of {c}", x.len() / c.max(1));
        }
        let pass = self.pass(x, self.with_grad)?;
        *self.grad.lock().unwrap_or_else(|e| e.into_inner()) = pass.grad;
        Ok((CpuStorage::F32(vec![pass.total as f32]), Shape::from(())))
    }

    fn bwd(&self, x: &Tensor, _res: &Tensor, g: &Tensor) -> Result<Option<Tensor>> {
        let g = g.to_scalar::<f32>()?;
        let made = self.grad.lock().unwrap_or_else(|e| e.into_inner()).take();
        let mut grad = match made {
            Some(d) => d,
            None => with_f32(x, |x| self.pass(x, true))?.grad.unwrap_or_default(),
        };
        if g != 1.0 {
            grad.iter_mut().for_each(|d| *d *= g);
        }
        Ok(Some(Tensor::from_vec(grad, x.shape(), x.device())?))
    }
}

/// Sum over rows of `weight[i] · −log softmax(x[i] head^T)[target[i]]`, a
/// scalar, for hidden states `x` `[n, c]` and a frozen `head` `[vocab, c]`:
/// the logits are made a block of the vocabulary at a time and dropped.
pub fn head_nll(x: &Tensor, head: &Tensor, target: &[u32], weight: &[f32]) -> Result<Tensor> {
    let v = head.dim(0)?;
    if let Some(t) = target.iter().find(|&&t| t as usize >= v) {
        candle_core::bail!("target id {t} is outside the vocabulary of {v}");
    }
    if weight.len() != target.len() {
        candle_core::bail!("head_nll: {} weights for {} targets", weight.len(), target.len());
    }
    x.contiguous()?.apply_op1(HeadNll {
        head: head.clone(),
        target: Arc::new(target.to_vec()),
        weight: Arc::new(weight.to_vec()),
        // The gradient is worth making only when a backward pass will read it.
        with_grad: x.track_op(),
        grad: Mutex::new(None),
    })
}

/// Load the named tensors (checking shapes) in their stored dtype: f32,
/// bf16 and f16 stay as they are, other dtypes become f32. The files are
/// read tensor by tensor rather than mapped, so the peak memory is the
/// weights once, not the mapping plus the copy.
pub fn load_stored(
    files: &[PathBuf],
    shapes: &[(String, Vec<usize>)],
    dev: &Device,
) -> std::result::Result<BTreeMap<String, Tensor>, String> {
    // Where each tensor is: file index, dtype, shape, absolute byte range.
    let mut index: BTreeMap<String, (usize, DType, Vec<usize>, u64, u64)> = BTreeMap::new();
    for (fi, f) in files.iter().enumerate() {
        let err = |e: String| format!("cannot read {}: {e}", f.display());
        let file = std::fs::File::open(f).map_err(|e| err(e.to_string()))?;
        // SAFETY: only the header is read through the mapping, and the file
        // is a stage input the engine does not modify during the run.
        let map = unsafe { memmap2::Mmap::map(&file) }.map_err(|e| err(e.to_string()))?;
        let (header, meta) = safetensors::SafeTensors::read_metadata(&map).map_err(|e| err(e.to_string()))?;
        for (name, info) in meta.tensors() {
            let dtype = DType::try_from(info.dtype).map_err(|e| err(format!("tensor `{name}`: {e}")))?;
            let base = 8 + header as u64;
            let (a, b) = info.data_offsets;
            index.insert(name, (fi, dtype, info.shape.clone(), base + a as u64, base + b as u64));
        }
    }
    let mut out = BTreeMap::new();
    let mut open: Option<(usize, std::fs::File)> = None;
    for (name, shape) in shapes {
        let Some((fi, dtype, stored, from, to)) = index.get(name) else {
            return Err(format!("{}: weight `{name}` is missing", files[0].display()));
        };
        let path = &files[*fi];
        if stored != shape {
            return Err(format!("{}: weight `{name}` has shape {stored:?}, expected {shape:?}", path.display()));
        }
        let err = |e: String| format!("cannot read {}: weight `{name}`: {e}", path.display());
        if open.as_ref().is_none_or(|(i, _)| i != fi) {
            open = Some((*fi, std::fs::File::open(path).map_err(|e| err(e.to_string()))?));
        }
        let Some((_, file)) = open.as_mut() else { unreachable!("opened above") };
        file.seek(SeekFrom::Start(*from)).map_err(|e| err(e.to_string()))?;
        let t = read_tensor(file, (to - from) as usize, *dtype, shape, dev).map_err(err)?;
        out.insert(name.clone(), t);
    }
    Ok(out)
}

/// A tensor of `len` stored bytes read from `file`'s position: f32, bf16
/// and f16 straight into the tensor's own storage (no second copy of a
/// large embedding at load), other dtypes through candle's conversion to f32.
fn read_tensor(
    file: &mut std::fs::File,
    len: usize,
    dtype: DType,
    shape: &[usize],
    dev: &Device,
) -> std::result::Result<Tensor, String> {
    fn read<T: Copy + candle_core::WithDType>(
        file: &mut std::fs::File,
        len: usize,
        zero: T,
        shape: &[usize],
        dev: &Device,
    ) -> std::result::Result<Tensor, String> {
        let size = std::mem::size_of::<T>();
        let count: usize = shape.iter().product();
        if count.checked_mul(size) != Some(len) {
            return Err(format!("{len} bytes stored for {count} values of {size} bytes"));
        }
        let mut v = vec![zero; count];
        // SAFETY: `v` holds exactly `len` bytes of plain numbers, every bit
        // pattern of which is a valid value; safetensors stores them
        // little-endian, this path is taken only on little-endian hosts.
        let bytes = unsafe { std::slice::from_raw_parts_mut(v.as_mut_ptr().cast::<u8>(), len) };
        file.read_exact(bytes).map_err(|e| e.to_string())?;
        Tensor::from_vec(v, shape, dev).map_err(|e| e.to_string())
    }
    let little = cfg!(target_endian = "little");
    match dtype {
        DType::F32 if little => read(file, len, 0f32, shape, dev),
        DType::BF16 if little => read(file, len, half::bf16::ZERO, shape, dev),
        DType::F16 if little => read(file, len, half::f16::ZERO, shape, dev),
        _ => {
            let mut bytes = vec![0u8; len];
            file.read_exact(&mut bytes).map_err(|e| e.to_string())?;
            let t = Tensor::from_raw_buffer(&bytes, dtype, shape, dev).map_err(|e| e.to_string())?;
            match dtype {
                DType::F32 | DType::BF16 | DType::F16 => Ok(t),
                _ => t.to_dtype(DType::F32).map_err(|e| e.to_string()),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Var;

    fn rand(shape: &[usize], seed: u64) -> Tensor {
        let mut rng = crate::rng::Rng::for_name(seed, "frozen-test");
        let n: usize = shape.iter().product();
        let v: Vec<f32> = (0..n).map(|_| rng.normal() as f32).collect();
        Tensor::from_vec(v, shape, &Device::Cpu).unwrap()
    }

    fn close(a: &Tensor, b: &Tensor, tol: f32) {
        let (a, b) = (host(a).unwrap(), host(b).unwrap());
        assert_eq!(a.len(), b.len());
        for (x, y) in a.iter().zip(&b) {
            assert!((x - y).abs() <= tol * (1.0 + y.abs()), "{x} vs {y}");
        }
    }

    /// Blocked bf16 matmul and head loss agree with the plain ops on the
    /// widened weight, values and input gradients, and give no weight gradient.
    #[test]
    fn blocked_ops_match_plain_ops() {
        // Wide enough for several blocks: 4096 rows of 2048 > BLOCK_ELEMS.
        let (n, c, v) = (3, 2048, 4096);
        let w16 = rand(&[v, c], 1).to_dtype(DType::BF16).unwrap();
        let w32 = w16.to_dtype(DType::F32).unwrap();
        assert!(block_rows(v, c, n) < v);
        let x = Var::from_tensor(&rand(&[n, c], 2)).unwrap();

        let probe = rand(&[n, v], 3);
        let a = matmul_t(x.as_tensor(), &w16).unwrap();
        let b = x.as_tensor().matmul(&w32.t().unwrap()).unwrap();
        close(&a, &b, 1e-4);
        let ga = (&a * &probe).unwrap().sum_all().unwrap().backward().unwrap();
        let gb = (&b * &probe).unwrap().sum_all().unwrap().backward().unwrap();
        close(ga.get(&x).unwrap(), gb.get(&x).unwrap(), 1e-4);
        assert!(ga.get(&w16).is_none());

        let (target, weight) = (vec![5u32, 4000, 77], vec![1f32, 0.5, 0.0]);
        let a = head_nll(x.as_tensor(), &w16, &target, &weight).unwrap();
        let logits = x.as_tensor().matmul(&w32.t().unwrap()).unwrap();
        let b = crate::fused::weighted_nll(&logits, &target, &weight).unwrap();
        close(&a, &b, 1e-5);
        let ga = a.backward().unwrap();
        let gb = b.backward().unwrap();
        close(ga.get(&x).unwrap(), gb.get(&x).unwrap(), 1e-4);
        // An upstream gradient other than 1 (a mean over tokens), and rows
        // whose largest logit is in the second block (the running sums rescaled).
        let x2 = Var::from_tensor(&(rand(&[n, c], 9) * 3.0).unwrap()).unwrap();
        let a = (head_nll(x2.as_tensor(), &w16, &target, &weight).unwrap() * 0.25).unwrap();
        let logits = x2.as_tensor().matmul(&w32.t().unwrap()).unwrap();
        let late = (0..n).filter(|&i| {
            let r = host(&logits.get(i).unwrap()).unwrap();
            let top = (0..v).max_by(|&p, &q| r[p].total_cmp(&r[q])).unwrap();
            top >= block_rows(v, c, n)
        });
        assert!(late.count() > 0, "the test wants a row whose max is in a later block");
        let b = (crate::fused::weighted_nll(&logits, &target, &weight).unwrap() * 0.25).unwrap();
        close(&a, &b, 1e-5);
        let (ga, gb) = (a.backward().unwrap(), b.backward().unwrap());
        close(ga.get(&x2).unwrap(), gb.get(&x2).unwrap(), 1e-4);
    }

    /// With an f32 weight of one block the ops are the plain ops, bit for
    /// bit, but for the head's input gradient (made in the forward pass, by
    /// online softmax: the same values up to rounding).
    #[test]
    fn one_block_is_exact() {
        let (w, x) = (rand(&[11, 16], 4), Var::from_tensor(&rand(&[5, 16], 5)).unwrap());
        let a = matmul_t(x.as_tensor(), &w).unwrap();
        let b = x.as_tensor().matmul(&w.t().unwrap()).unwrap();
        assert_eq!(host(&a).unwrap(), host(&b).unwrap());
        let (t, wt) = (vec![1u32, 2, 3, 4, 10], vec![1f32, 1.0, 0.0, 0.25, 1.0]);
        let a = head_nll(x.as_tensor(), &w, &t, &wt).unwrap();
        let b = crate::fused::weighted_nll(&b, &t, &wt).unwrap();
        assert_eq!(a.to_scalar::<f32>().unwrap(), b.to_scalar::<f32>().unwrap());
        let (ga, gb) = (a.backward().unwrap(), b.backward().unwrap());
        close(ga.get(&x).unwrap(), gb.get(&x).unwrap(), 1e-6);
    }

    #[test]
    fn widening_is_candles_conversion() {
        let w = (rand(&[37, 5], 8) * 1e3).unwrap().to_dtype(DType::BF16).unwrap();
        let ours = with_rows(&w, 3, 30, |v| Ok(v.to_vec())).unwrap();
        let theirs = w.narrow(0, 3, 30).unwrap().to_dtype(DType::F32).unwrap();
        assert_eq!(ours, host(&theirs).unwrap());
    }

    #[test]
    fn load_keeps_bf16() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("m.safetensors");
        let a = rand(&[4, 3], 6).to_dtype(DType::BF16).unwrap();
        let b = rand(&[2], 7);
        candle_core::safetensors::save(&std::collections::HashMap::from([("a", a.clone()), ("b", b.clone())]), &p)
            .unwrap();
        let shapes = vec![("a".to_string(), vec![4, 3]), ("b".to_string(), vec![2])];
        let got = load_stored(std::slice::from_ref(&p), &shapes, &Device::Cpu).unwrap();
        assert_eq!(got["a"].dtype(), DType::BF16);
        assert_eq!(
            got["a"].to_dtype(DType::F32).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap(),
            a.to_dtype(DType::F32).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap()
        );
        assert_eq!(got["b"].to_vec1::<f32>().unwrap(), b.to_vec1::<f32>().unwrap());
        let bad = vec![("a".to_string(), vec![3, 4])];
        assert!(load_stored(std::slice::from_ref(&p), &bad, &Device::Cpu).unwrap_err().contains("has shape [4, 3]"));
        let missing = vec![("c".to_string(), vec![1])];
        assert!(load_stored(&[p], &missing, &Device::Cpu).unwrap_err().contains("`c` is missing"));
    }
}
