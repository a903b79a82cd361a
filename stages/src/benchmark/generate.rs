//! Greedy decoding. No KV cache: each new token re-runs the prefix, which is
//! fine for the small models and short answers this stage benchmarks.

use candle_core::{Result, Tensor, D};

use crate::train::{Tok, Transformer};

/// Generated ids (eos excluded) for a prompt of `ids`.
pub fn greedy(model: &Transformer, tok: &Tok, prompt: &[u32], max_new: usize) -> Result<Vec<u32>> {
    let ctx = model.cfg.max_position_embeddings;
    // Keep the end of an over-long prompt: that is where the question is.
    let mut ids: Vec<u32> = prompt[prompt.len().saturating_sub(ctx.saturating_sub(1))..].to_vec();
    let mut out = Vec::new();
    while out.len() < max_new && ids.len() < ctx {
        let input = Tensor::from_slice(&ids, (1, ids.len()), model.device())?;
        let logits = model.forward(&input, None)?;
        let last = logits.narrow(0, ids.len() - 1, 1)?;
        let next = last.argmax(D::Minus1)?.flatten_all()?.to_vec1::<u32>()?[0];
        if next == tok.info.eos_token_id {
            break;
        }
        ids.push(next);
        out.push(next);
    }
    Ok(out)
}
