//! Decoding for the benchmark, through the model crate's KV-cache generation.

use dvx_model::generate::{generate, Finish, SamplingParams};
use dvx_model::{Tok, Transformer};

/// One answer: its ids and whether it was cut (hit `max_new_tokens` or the context).
pub struct Answer {
    /// Generated ids, eos excluded.
    pub ids: Vec<u32>,
    /// Cut before the model said eos.
    pub truncated: bool,
}

/// Sample an answer with the benchmark's sampling params (greedy at temperature 0).
pub fn answer(
    model: &Transformer,
    tok: &Tok,
    prompt: &[u32],
    p: &super::params::BenchParams,
) -> Result<Answer, String> {
    let s = SamplingParams {
        max_new_tokens: p.max_new_tokens,
        temperature: p.temperature,
        top_p: p.top_p,
        seed: p.seed,
        // Any of the model's eos ids ends the answer (Llama 3: <|eot_id|> and <|end_of_text|>).
        stop_ids: tok.info.stop_ids(),
        ..SamplingParams::default()
    };
    let g = generate(model, None, prompt, &s, |_| true)?;
    Ok(Answer { ids: g.ids, truncated: matches!(g.finish, Finish::Length | Finish::Context) })
}

/// Greedy ids (eos excluded) for a prompt of `ids`; stops at any of the model's eos ids.
#[cfg(test)]
pub fn greedy(model: &Transformer, tok: &Tok, prompt: &[u32], max_new: usize) -> Result<Vec<u32>, String> {
    let p = SamplingParams {
        max_new_tokens: max_new,
        temperature: 0.0,
        stop_ids: tok.info.stop_ids(),
        ..SamplingParams::default()
    };
    Ok(generate(model, None, prompt, &p, |_| true)?.ids)
}

#[cfg(test)]
mod tests {
    use candle_core::{Tensor, D};

    use super::*;

    /// The decoding the benchmark used before the KV cache: re-run the
    /// whole prefix for every token.
    fn greedy_no_cache(model: &Transformer, eos: u32, prompt: &[u32], max_new: usize) -> Vec<u32> {
        let ctx = model.cfg.max_position_embeddings;
        let mut ids: Vec<u32> = prompt[prompt.len().saturating_sub(ctx.saturating_sub(1))..].to_vec();
        let mut out = Vec::new();
        while out.len() < max_new && ids.len() < ctx {
            let input = Tensor::from_slice(&ids, (1, ids.len()), model.device()).unwrap();
            let logits = model.forward(&input, None).unwrap();
            let last = logits.narrow(0, ids.len() - 1, 1).unwrap();
            let next = last.argmax(D::Minus1).unwrap().flatten_all().unwrap().to_vec1::<u32>().unwrap()[0];
            if next == eos {
                break;
            }
            ids.push(next);
            out.push(next);
        }
        out
    }

    #[test]
    fn cached_greedy_equals_uncached_greedy() {
        let tok = Tok::bytes();
        let model = dvx_model::testkit::random_model(tok.vocab_size(), 7);
        let eos = tok.info.eos_token_id;
        let mut compared = 0;
        for (prompt, max_new) in [(&b"hello"[..], 20), (b"a", 40), (b"the quick brown fox jumps", 100)] {
            let ids: Vec<u32> = prompt.iter().map(|&b| b as u32).collect();
            let want = greedy_no_cache(&model, eos, &ids, max_new);
            let got = greedy(&model, &tok, &ids, max_new).unwrap();
            assert_eq!(got, want, "prompt {:?}", String::from_utf8_lossy(prompt));
            compared += got.len();
        }
        // The last case runs into the context: both stop at the same place.
        assert!(compared > 40, "{compared}");
    }

    /// Tokens/s with and without the cache on a 4-layer, 256-wide model
    /// (`cargo test --release -p dvx-stages kv_cache_speed -- --ignored --nocapture`).
    #[test]
    #[ignore]
    fn kv_cache_speed() {
        let model = dvx_model::testkit::sized_model(259, 256, 4, 512);
        let tok = Tok::bytes();
        let prompt: Vec<u32> = (0..200).map(|i| 32 + i % 90).collect();
        let t = std::time::Instant::now();
        let a = greedy_no_cache(&model, u32::MAX, &prompt, 128);
        let old = t.elapsed().as_secs_f64();
        let t = std::time::Instant::now();
        let b = generate(
            &model,
            Some(&tok),
            &prompt,
            &SamplingParams { max_new_tokens: 128, ..Default::default() },
            |_| true,
        )
        .unwrap()
        .ids;
        let new = t.elapsed().as_secs_f64();
        println!(
            "no cache {:.1} tok/s, KV cache {:.1} tok/s ({:.1}x); same tokens: {}",
            128.0 / old,
            128.0 / new,
            old / new,
            a == b
        );
    }
}
