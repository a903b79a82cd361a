//! f32 matrix products written straight into caller-owned buffers, and the
//! scratch buffers the blocked frozen ops reuse.
//!
//! The products go through the `gemm` crate with the parallelism candle's
//! CPU matmul gives it, so they run the same kernels as `Tensor::matmul`
//! and give the same bits. What they save is what a tensor per block costs:
//! a fresh output buffer (new pages the kernel must zero: a tenth of a LoRA
//! step on a 1B base), a concatenation of the blocks, and copies out.

use std::cell::RefCell;
use std::ops::{Deref, DerefMut};

use candle_core::Result;
use gemm::{gemm, Parallelism};

/// What candle's matmul passes: one thread per `CANDLE_NUM_THREADS`.
fn parallelism() -> Parallelism {
    match candle_core::utils::get_num_threads() {
        0 | 1 => Parallelism::None,
        t => Parallelism::Rayon(t),
    }
}

fn check(what: &str, have: usize, need: usize) -> Result<()> {
    if have < need {
        candle_core::bail!("{what}: {have} values where {need} are needed");
    }
    Ok(())
}

/// A matrix as gemm reads it: where it starts and its (row, column)
/// strides in values.
struct View {
    ptr: *const f32,
    rs: usize,
    cs: usize,
}

/// `dst` (`m × n`, rows `dst_rs` apart, columns next to each other) gets
/// `lhs · rhs` over `k`.
///
/// # Safety
/// Every index the shapes and strides reach must be inside the memory
/// behind `dst`, `lhs` and `rhs`, and `dst` must not overlap the others.
unsafe fn product(m: usize, n: usize, k: usize, dst: *mut f32, dst_rs: usize, lhs: View, rhs: View) {
    // SAFETY: passed on to the caller.
    unsafe {
        gemm(
            m,
            n,
            k,
            dst,
            1,
            dst_rs as isize,
            false,
            lhs.ptr,
            lhs.cs as isize,
            lhs.rs as isize,
            rhs.ptr,
            rhs.cs as isize,
            rhs.rs as isize,
            0.0,
            1.0,
            false,
            false,
            false,
            parallelism(),
        )
    }
}

/// Rows `0..n` of `dst` (row `i` at `i * dst_stride`) get `x w^T`, for `x`
/// `[n, k]` and `w` `[len, k]`, both row-major and contiguous.
pub fn mul_t(dst: &mut [f32], dst_stride: usize, x: &[f32], w: &[f32], n: usize, k: usize, len: usize) -> Result<()> {
    if n == 0 || len == 0 {
        return Ok(());
    }
    check("product", dst.len(), (n - 1) * dst_stride + len)?;
    check("input", x.len(), n * k)?;
    check("weight", w.len(), len * k)?;
    let x = View { ptr: x.as_ptr(), rs: k, cs: 1 };
    // w^T: element (c, j) is w[j * k + c].
    let wt = View { ptr: w.as_ptr(), rs: 1, cs: k };
    // SAFETY: the checks above keep every index the strides reach inside
    // the slices; `dst` is borrowed mutably, so nothing else reads it.
    unsafe { product(n, len, k, dst.as_mut_ptr(), dst_stride, x, wt) };
    Ok(())
}

/// `dst` `[n, k]` (contiguous) gets `g w`, for `g` `[n, len]` with its rows
/// `g_stride` apart and `w` `[len, k]` row-major and contiguous.
pub fn mul(dst: &mut [f32], g: &[f32], g_stride: usize, w: &[f32], n: usize, len: usize, k: usize) -> Result<()> {
    if n == 0 || k == 0 {
        return Ok(());
    }
    check("product", dst.len(), n * k)?;
    check("gradient", g.len(), if len == 0 { 0 } else { (n - 1) * g_stride + len })?;
    check("weight", w.len(), len * k)?;
    let g = View { ptr: g.as_ptr(), rs: g_stride, cs: 1 };
    let w = View { ptr: w.as_ptr(), rs: k, cs: 1 };
    // SAFETY: as in `mul_t`.
    unsafe { product(n, k, len, dst.as_mut_ptr(), k, g, w) };
    Ok(())
}

thread_local! {
    /// Buffers given back by [`Scratch`], kept for the thread's next block.
    static POOL: RefCell<Vec<Vec<f32>>> = const { RefCell::new(Vec::new()) };
}

/// Buffers a thread keeps: a widened weight block, a logits block and a
/// partial product are in use at once.
const POOL_KEEP: usize = 4;

/// An f32 buffer taken from the thread's pool and given back on drop, so
/// the blocks of one op, and of the next, reuse the same pages.
pub struct Scratch(Vec<f32>);

impl Scratch {
    /// `len` zeros.
    pub fn new(len: usize) -> Scratch {
        let mut s = Scratch::empty(len);
        s.0.resize(len, 0.0);
        s
    }

    /// An empty buffer with room for `capacity` values.
    pub fn empty(capacity: usize) -> Scratch {
        // A pool entry is taken out while in use, so a nested op on this
        // thread (rayon may run one inside a parallel product) takes another.
        let mut v = POOL.with(|p| {
            let mut p = p.borrow_mut();
            // The smallest buffer that fits, else the largest (to grow).
            let fits = (0..p.len()).filter(|&i| p[i].capacity() >= capacity).min_by_key(|&i| p[i].capacity());
            let best = fits.or_else(|| (0..p.len()).max_by_key(|&i| p[i].capacity()));
            best.map(|i| p.swap_remove(i)).unwrap_or_default()
        });
        v.clear();
        v.reserve(capacity);
        Scratch(v)
    }
}

impl Deref for Scratch {
    type Target = Vec<f32>;
    fn deref(&self) -> &Vec<f32> {
        &self.0
    }
}

impl DerefMut for Scratch {
    fn deref_mut(&mut self) -> &mut Vec<f32> {
        &mut self.0
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let v = std::mem::take(&mut self.0);
        POOL.with(|p| {
            let mut p = p.borrow_mut();
            if p.len() < POOL_KEEP {
                p.push(v);
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Tensor};

    fn rand(n: usize, seed: u64) -> Vec<f32> {
        let mut rng = crate::rng::Rng::for_name(seed, "sgemm-test");
        (0..n).map(|_| rng.normal() as f32).collect()
    }

    /// Same bits as candle's matmul on the same operands, including into a
    /// wider destination and from a strided gradient.
    #[test]
    fn products_are_candles_matmul() {
        let (n, k, len) = (7, 33, 19);
        let (x, w) = (rand(n * k, 1), rand(len * k, 2));
        let xt = Tensor::from_slice(&x, (n, k), &Device::Cpu).unwrap();
        let wt = Tensor::from_slice(&w, (len, k), &Device::Cpu).unwrap();
        let want = xt.matmul(&wt.t().unwrap()).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let stride = len + 5;
        let mut dst = vec![f32::NAN; n * stride];
        mul_t(&mut dst, stride, &x, &w, n, k, len).unwrap();
        for i in 0..n {
            assert_eq!(&dst[i * stride..i * stride + len], &want[i * len..(i + 1) * len]);
            assert!(dst[i * stride + len..(i + 1) * stride].iter().all(|v| v.is_nan()), "row {i} spilled");
        }

        let g = rand(n * stride, 3);
        let gt = Tensor::from_slice(&g, (n, stride), &Device::Cpu).unwrap().narrow(1, 0, len).unwrap();
        let want = gt.contiguous().unwrap().matmul(&wt).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let mut dst = vec![0f32; n * k];
        mul(&mut dst, &g, stride, &w, n, len, k).unwrap();
        assert_eq!(dst, want);
    }

    #[test]
    fn short_buffers_are_errors() {
        let mut dst = vec![0f32; 5];
        assert!(mul_t(&mut dst, 3, &[0.0; 4], &[0.0; 6], 2, 2, 3).is_err());
        assert!(mul(&mut dst, &[0.0; 9], 3, &[0.0; 6], 3, 3, 2).is_err());
        assert!(mul(&mut dst, &[0.0; 5], 3, &[0.0; 6], 2, 3, 2).is_err());
        assert!(mul(&mut [0.0; 4], &[0.0; 6], 3, &[0.0; 6], 2, 3, 2).is_ok());
    }

    #[test]
    fn scratch_is_reused() {
        let p = {
            let mut a = Scratch::new(1000);
            a[0] = 1.0;
            a.as_ptr()
        };
        let b = Scratch::new(800);
        assert_eq!(b.as_ptr(), p);
        assert_eq!(b.len(), 800);
        let c = Scratch::new(10);
        assert_ne!(c.as_ptr(), p, "a buffer in use is not handed out twice");
        drop((b, c));
        // The smallest buffer that fits is taken, so the large one stays.
        let small = Scratch::empty(10);
        assert!(small.is_empty() && small.capacity() >= 10);
        assert_ne!(small.as_ptr(), p);
        assert_eq!(Scratch::empty(900).as_ptr(), p);
    }
}
