//! What the server asks of a model: prompt ids from messages or text, then
//! tokens one by one. The server handles stop strings, limits and the wire
//! format; a `Generator` only decodes.

use serde::Deserialize;

/// Sampling params of a request: temperature 0 (the default) is greedy;
/// otherwise nucleus sampling with `top_p`, reproducible with `seed`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Sampling {
    /// Softmax temperature (0: greedy).
    pub temperature: Option<f64>,
    /// Nucleus sampling mass.
    pub top_p: Option<f64>,
    /// Seed of the sampler.
    pub seed: Option<u64>,
}

impl Sampling {
    /// A request's sampling params are usable: temperature >= 0, top_p in (0, 1].
    pub fn check(&self) -> Result<(), String> {
        if let Some(t) = self.temperature {
            if !t.is_finite() || t < 0.0 {
                return Err(format!("temperature must be a number >= 0, not {t}"));
            }
        }
        if let Some(p) = self.top_p {
            if !(p > 0.0 && p <= 1.0) {
                return Err(format!("top_p must be in (0, 1], not {p}"));
            }
        }
        Ok(())
    }
}

/// A model that generates token by token.
pub trait Generator: Send + Sync + 'static {
    /// Prompt ids for `(role, content)` messages, with the model's chat template.
    fn chat_prompt(&self, messages: &[(String, String)]) -> Result<Vec<u32>, String>;
    /// Prompt ids for OpenAI-style `messages` (with `tool_calls` and `tool`
    /// results) and the request's `tools`, as the model's template takes
    /// them; a model that cannot take tools says so rather than drop them.
    fn chat_prompt_with_tools(
        &self,
        _messages: &[serde_json::Value],
        _tools: Option<&serde_json::Value>,
    ) -> Result<Vec<u32>, String> {
        Err("this model cannot take tools or tool calls".into())
    }
    /// Prompt ids for raw text.
    fn text_prompt(&self, text: &str) -> Result<Vec<u32>, String>;
    /// Generate after `prompt`, calling `on_token` with each new id; stops
    /// at end of sequence, when the context is full, or when `on_token`
    /// returns false.
    fn generate(
        &self,
        prompt: &[u32],
        sampling: &Sampling,
        on_token: &mut dyn FnMut(u32) -> bool,
    ) -> Result<(), String>;
    /// The text of `ids`.
    fn decode(&self, ids: &[u32]) -> Result<String, String>;
}

/// [`Generator`] over a dvx-trained model: KV-cache decoding, greedy or
/// sampled as the request asks.
pub struct Model(pub dvx_model::serving::ServedModel);

impl Model {
    /// Load the dvx-trained model in `dir`; an adapter needs its `base` folder.
    pub fn load(dir: &std::path::Path, base: Option<&std::path::Path>) -> Result<Model, String> {
        dvx_model::serving::ServedModel::load(dir, base).map(Model)
    }
}

impl Generator for Model {
    fn chat_prompt(&self, messages: &[(String, String)]) -> Result<Vec<u32>, String> {
        self.0.chat_prompt(messages)
    }
    fn chat_prompt_with_tools(
        &self,
        messages: &[serde_json::Value],
        tools: Option<&serde_json::Value>,
    ) -> Result<Vec<u32>, String> {
        self.0.chat_prompt_with_tools(messages, tools)
    }
    fn text_prompt(&self, text: &str) -> Result<Vec<u32>, String> {
        self.0.text_prompt(text)
    }
    fn generate(&self, prompt: &[u32], s: &Sampling, on_token: &mut dyn FnMut(u32) -> bool) -> Result<(), String> {
        s.check()?;
        let (temperature, top_p) = (s.temperature.unwrap_or(0.0), s.top_p.unwrap_or(1.0));
        self.0.generate(prompt, temperature, top_p, s.seed.unwrap_or(0), on_token)
    }
    fn decode(&self, ids: &[u32]) -> Result<String, String> {
        self.0.decode(ids)
    }
}
