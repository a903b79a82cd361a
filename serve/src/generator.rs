//! What the server asks of a model: prompt ids from messages or text, then
//! tokens one by one. The server handles stop strings, limits and the wire
//! format; a `Generator` only decodes.

use serde::Deserialize;

/// Sampling params of a request. `temperature`, `top_p` and `seed` are
/// accepted and passed on; the greedy generator ignores them.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Sampling {
    /// Softmax temperature (0: greedy).
    pub temperature: Option<f64>,
    /// Nucleus sampling mass.
    pub top_p: Option<f64>,
    /// Seed of the sampler.
    pub seed: Option<u64>,
}

/// A model that generates token by token.
pub trait Generator: Send + Sync + 'static {
    /// Prompt ids for `(role, content)` messages, with the model's chat template.
    fn chat_prompt(&self, messages: &[(String, String)]) -> Result<Vec<u32>, String>;
    /// Prompt ids for raw text.
    fn text_prompt(&self, text: &str) -> Result<Vec<u32>, String>;
    /// Generate after `prompt`, calling `on_token` with each new id; stops
    /// at end of sequence, when the context is full, or when `on_token`
    /// returns false.
    fn generate(&self, prompt: &[u32], sampling: &Sampling, on_token: &mut dyn FnMut(u32) -> bool)
        -> Result<(), String>;
    /// The text of `ids`.
    fn decode(&self, ids: &[u32]) -> Result<String, String>;
}

/// [`Generator`] over a dvx-trained model with today's greedy decoding
/// (each token re-runs the prefix; a KV cache and samplers come with the
/// model code's generation module).
pub struct Greedy(pub dvx_stages::serving::ServedModel);

impl Generator for Greedy {
    fn chat_prompt(&self, messages: &[(String, String)]) -> Result<Vec<u32>, String> {
        self.0.chat_prompt(messages)
    }
    fn text_prompt(&self, text: &str) -> Result<Vec<u32>, String> {
        self.0.text_prompt(text)
    }
    fn generate(&self, prompt: &[u32], _: &Sampling, on_token: &mut dyn FnMut(u32) -> bool) -> Result<(), String> {
        let mut ids = prompt.to_vec();
        while ids.len() < self.0.context_len() {
            match self.0.next_token(&ids)? {
                Some(t) => {
                    ids.push(t);
                    if !on_token(t) {
                        break;
                    }
                }
                None => break,
            }
        }
        Ok(())
    }
    fn decode(&self, ids: &[u32]) -> Result<String, String> {
        self.0.decode(ids)
    }
}
