//! What `dvx serve` needs, behind a small surface: load a dvx-trained folder
//! (or an adapter and its base), turn chat messages or plain text into prompt
//! ids with the model's own template, generate with the KV cache (greedy or
//! seeded sampling), and turn ids back into text.

use std::path::Path;

use crate::{load_model, Conversation, TemplateParam, TemplateSet, Today, Tok, Transformer};

/// A loaded model ready to generate, on the CPU.
pub struct ServedModel {
    model: Transformer,
    tok: Tok,
    templates: TemplateSet,
}

impl ServedModel {
    /// Load the model in `dir`; an adapter needs its `base` folder.
    pub fn load(dir: &Path, base: Option<&Path>) -> Result<ServedModel, String> {
        let loaded = load_model(dir, base, &candle_core::Device::Cpu)?;
        let tok = loaded.tok.ok_or_else(|| format!("{}: the model has no tokenizer", dir.display()))?;
        let templates = match &loaded.cfg.dvx {
            Some(meta) => meta.template.clone(),
            None => match crate::folder::folder_chat_template(dir, &loaded.cfg)? {
                Some(t) => TemplateSet::from_model(t),
                None => TemplateParam::default().resolve()?,
            },
        };
        Ok(ServedModel { model: loaded.model, tok, templates })
    }

    /// The longest sequence the model takes.
    pub fn context_len(&self) -> usize {
        self.model.cfg.max_position_embeddings
    }

    /// Prompt ids for `(role, content)` messages, ending where the
    /// assistant's answer begins: the chat template the model trained with
    /// (its own Jinja template with `add_generation_prompt`, when it has one).
    pub fn chat_prompt(&self, messages: &[(String, String)]) -> Result<Vec<u32>, String> {
        let mut turns = messages.to_vec();
        turns.push(("assistant".into(), String::new()));
        let prompt = self.templates.prompt(&Conversation::chat(turns), Today::now())?.ok_or("no messages to answer")?;
        let mut ids: Vec<u32> = self.tok.info.bos_token_id.filter(|_| prompt.bos).into_iter().collect();
        ids.extend(self.tok.encode(&prompt.text)?);
        Ok(ids)
    }

    /// Prompt ids for OpenAI-style `messages` (JSON objects, with
    /// `tool_calls` and `tool` results as the API sends them) and the
    /// request's `tools`, given to the model's template as transformers gives
    /// them. A template without tool support refuses tools rather than drop them.
    pub fn chat_prompt_with_tools(
        &self,
        messages: &[serde_json::Value],
        tools: Option<&serde_json::Value>,
    ) -> Result<Vec<u32>, String> {
        let turns: Vec<(String, String)> = messages
            .iter()
            .map(|m| {
                let s = |k: &str| m.get(k).and_then(serde_json::Value::as_str).unwrap_or("").to_string();
                (s("role"), s("content"))
            })
            .chain([("assistant".to_string(), String::new())])
            .collect();
        let mut raw = messages.to_vec();
        raw.push(crate::chat_input::plain_message("assistant", ""));
        let conv = Conversation::chat(turns).with_openai_messages(&raw, tools)?;
        let prompt = self.templates.prompt(&conv, Today::now())?.ok_or("no messages to answer")?;
        let mut ids: Vec<u32> = self.tok.info.bos_token_id.filter(|_| prompt.bos).into_iter().collect();
        ids.extend(self.tok.encode(&prompt.text)?);
        Ok(ids)
    }

    /// Prompt ids for raw text (bos first when the tokenizer has one).
    pub fn text_prompt(&self, text: &str) -> Result<Vec<u32>, String> {
        let mut ids: Vec<u32> = self.tok.info.bos_token_id.into_iter().collect();
        ids.extend(self.tok.encode(text)?);
        Ok(ids)
    }

    /// Generate after `prompt` with the KV cache: greedy at temperature 0
    /// (or unset), else seeded nucleus sampling. Stops at any of the model's eos ids,
    /// when the context is full, or when `on_token` returns false.
    pub fn generate(
        &self,
        prompt: &[u32],
        temperature: f64,
        top_p: f64,
        seed: u64,
        on_token: &mut dyn FnMut(u32) -> bool,
    ) -> Result<(), String> {
        let p = crate::generate::SamplingParams {
            // The server counts max_tokens itself; the context bounds the rest.
            max_new_tokens: self.context_len(),
            temperature,
            top_p,
            seed,
            stop_ids: self.tok.info.stop_ids(),
            stop_strings: vec![],
        };
        crate::generate::generate(&self.model, None, prompt, &p, on_token)?;
        Ok(())
    }

    /// The text of `ids`.
    pub fn decode(&self, ids: &[u32]) -> Result<String, String> {
        self.tok.decode(ids)
    }
}
