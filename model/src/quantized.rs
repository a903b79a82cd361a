//! Matrices kept as a GGUF file stores them (q8_0 blocks, f16, f32) and
//! used through candle's quantized kernels: products with `QMatMul`, token
//! lookups with the quantized embedding. The transformer around them is the
//! same one; only the weights' matmul differs (see [`crate::model::Linear`]).

use std::sync::Arc;

use candle_core::quantized::{GgmlDType, QMatMul, QTensor};
use candle_core::{Module, Result, Tensor};

/// A `[out, in]` matrix in a GGUF storage type.
#[derive(Clone)]
pub struct QWeight {
    q: Arc<QTensor>,
    /// f16/f32 tensors become plain tensors here (candle's choice); quantized types stay blocks.
    mm: QMatMul,
}

impl QWeight {
    /// Wrap a quantized tensor (rank 2).
    pub fn new(q: QTensor) -> Result<QWeight> {
        q.shape().dims2()?;
        let q = Arc::new(q);
        Ok(QWeight { mm: QMatMul::from_arc(q.clone())?, q })
    }

    /// `x w^T` for `x` `[n, in]` f32.
    pub fn matmul_t(&self, x: &Tensor) -> Result<Tensor> {
        self.mm.forward(&x.contiguous()?)
    }

    /// Rows `ids` (u32, any shape) as f32, `[ids.len(), in]`.
    pub fn rows(&self, ids: &Tensor) -> Result<Tensor> {
        self.mm.embedding(&ids.flatten_all()?)
    }

    /// Bytes the blocks take.
    pub fn bytes(&self) -> usize {
        self.q.storage_size_in_bytes()
    }

    /// Elements of the matrix.
    pub fn elem_count(&self) -> usize {
        self.q.shape().elem_count()
    }

    /// Its storage type.
    pub fn dtype(&self) -> GgmlDType {
        self.q.dtype()
    }
}
