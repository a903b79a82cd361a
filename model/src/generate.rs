//! Text generation with a KV cache: the prompt runs once, then each step
//! runs only the newest token against the cached keys and values.
//!
//! Sampling: `temperature` 0 is greedy (argmax, lowest id on ties);
//! otherwise logits are divided by the temperature, the smallest set of
//! most likely tokens whose probability reaches `top_p` is kept, and one is
//! drawn with the crate's seeded generator, so the same model, prompt and
//! params give the same tokens on every run and thread count.

use candle_core::Result;

use crate::model::Transformer;
use crate::rng::Rng;
use crate::tokenizer::Tok;

/// How to pick tokens and when to stop.
#[derive(Debug, Clone, PartialEq)]
pub struct SamplingParams {
    /// At most this many new tokens.
    pub max_new_tokens: usize,
    /// 0 = greedy; higher flattens the distribution.
    pub temperature: f64,
    /// Nucleus: keep the most likely tokens up to this total probability (1 = all).
    pub top_p: f64,
    /// Seed of the draws (unused when greedy).
    pub seed: u64,
    /// Token ids that end generation, not included in the output (eos).
    pub stop_ids: Vec<u32>,
    /// Strings that end generation when the decoded output contains one;
    /// the output is cut before it. Needs a tokenizer.
    pub stop_strings: Vec<String>,
}

impl Default for SamplingParams {
    fn default() -> Self {
        SamplingParams {
            max_new_tokens: 64,
            temperature: 0.0,
            top_p: 1.0,
            seed: 0,
            stop_ids: vec![],
            stop_strings: vec![],
        }
    }
}

/// Why generation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Finish {
    /// A stop id (eos) came.
    Stop,
    /// A stop string appeared.
    StopString,
    /// `max_new_tokens` were generated: the answer may be cut.
    Length,
    /// The model's context is full.
    Context,
    /// The caller's `on_token` asked to stop.
    Cancelled,
}

/// What [`generate`] produced.
#[derive(Debug, Clone, PartialEq)]
pub struct Generated {
    /// New token ids, without the stop id; cut before a stop string.
    pub ids: Vec<u32>,
    /// The decoded text, when a tokenizer was given.
    pub text: Option<String>,
    /// Why it ended.
    pub finish: Finish,
    /// Prompt tokens run (after keeping the end of an over-long prompt).
    pub prompt_tokens: usize,
}

/// Continue `prompt` with up to `p.max_new_tokens` tokens. `on_token` sees
/// each new id as it is chosen (stop ids excluded) and returns `false` to
/// stop. A prompt longer than the context keeps its end, where the question
/// is. `tok` decodes for stop strings and [`Generated::text`].
pub fn generate(
    model: &Transformer,
    tok: Option<&Tok>,
    prompt: &[u32],
    p: &SamplingParams,
    mut on_token: impl FnMut(u32) -> bool,
) -> std::result::Result<Generated, String> {
    if !p.stop_strings.is_empty() && tok.is_none() {
        return Err("stop strings need a tokenizer".into());
    }
    if !(p.temperature >= 0.0 && p.temperature.is_finite()) {
        return Err(format!("temperature must be ≥ 0, not {}", p.temperature));
    }
    if !(p.top_p > 0.0 && p.top_p <= 1.0) {
        return Err(format!("top_p must be in (0, 1], not {}", p.top_p));
    }
    if prompt.is_empty() {
        return Err("empty prompt".into());
    }
    let ctx = model.cfg.context_len();
    let prompt = &prompt[prompt.len().saturating_sub(ctx.saturating_sub(1))..];
    let mut rng = Rng::for_name(p.seed, "generate");
    let mut cache = model.new_cache();
    let mut out = Vec::new();
    let mut next_input: Vec<u32> = prompt.to_vec();
    let decode = |ids: &[u32]| tok.map(|t| t.decode(ids)).transpose();
    let finish = loop {
        if out.len() >= p.max_new_tokens {
            break Finish::Length;
        }
        // The last position stays free, as the benchmark's decoding always did.
        if cache.len() + next_input.len() >= ctx {
            break Finish::Context;
        }
        let logits = model.forward_cached(&next_input, &mut cache).map_err(|e| e.to_string())?;
        let last = last_row(&logits).map_err(|e| e.to_string())?;
        let next = pick(&last, p, &mut rng);
        if p.stop_ids.contains(&next) {
            break Finish::Stop;
        }
        out.push(next);
        if !p.stop_strings.is_empty() {
            let text = decode(&out)?.unwrap_or_default();
            if let Some(cut) = p.stop_strings.iter().filter_map(|s| text.find(s.as_str())).min() {
                out = ids_before(tok, &out, &text[..cut])?;
                break Finish::StopString;
            }
        }
        if !on_token(next) {
            break Finish::Cancelled;
        }
        next_input = vec![next];
    };
    let text = decode(&out)?;
    Ok(Generated { ids: out, text, finish, prompt_tokens: prompt.len() })
}

/// The longest prefix of `ids` whose text is a prefix of `keep`.
fn ids_before(tok: Option<&Tok>, ids: &[u32], keep: &str) -> std::result::Result<Vec<u32>, String> {
    let Some(tok) = tok else { return Ok(ids.to_vec()) };
    let mut n = ids.len();
    while n > 0 && !keep.starts_with(tok.decode(&ids[..n])?.as_str()) {
        n -= 1;
    }
    Ok(ids[..n].to_vec())
}

fn last_row(logits: &candle_core::Tensor) -> Result<Vec<f32>> {
    let n = logits.dim(0)?;
    logits.narrow(0, n - 1, 1)?.flatten_all()?.to_vec1::<f32>()
}

/// Greedy or sampled choice from one row of logits.
fn pick(logits: &[f32], p: &SamplingParams, rng: &mut Rng) -> u32 {
    if p.temperature == 0.0 {
        return argmax(logits);
    }
    // Probabilities in f64, most likely first (lower id first on ties).
    let max = logits.iter().fold(f32::NEG_INFINITY, |m, &a| m.max(a)) as f64;
    let mut probs: Vec<(u32, f64)> =
        logits.iter().enumerate().map(|(i, &l)| (i as u32, ((l as f64 - max) / p.temperature).exp())).collect();
    let total: f64 = probs.iter().map(|(_, q)| q).sum();
    probs.iter_mut().for_each(|(_, q)| *q /= total);
    probs.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    let mut kept = 0;
    let mut mass = 0.0;
    for (_, q) in &probs {
        kept += 1;
        mass += q;
        if mass >= p.top_p {
            break;
        }
    }
    let probs = &probs[..kept];
    let mut u = rng.next_f64() * mass;
    for (id, q) in probs {
        if u < *q {
            return *id;
        }
        u -= q;
    }
    probs[kept - 1].0
}

fn argmax(row: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &v) in row.iter().enumerate() {
        if v > row[best] {
            best = i;
        }
    }
    best as u32
}
