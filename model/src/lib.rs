//! dvx's causal language model, shared by the `train` and `benchmark` stages
//! and by `dvx serve`: architectures read from Hugging Face configs
//! ([`arch`]), the transformer and its fused CPU kernels ([`model`],
//! [`fused`]), tokenizers ([`tokenizer`]), chat templates ([`template`], and
//! a model's own Jinja template: [`chat_template`], given messages and
//! tools as transformers gives them: [`chat_input`]), LoRA adapters ([`lora`];
//! PEFT's layout in [`peft`]), model folders ([`folder`], transformers-ready
//! ones in [`hf_files`]), GGUF for llama.cpp ([`gguf`]), generation with a KV
//! cache ([`generate`]) and the small surface `dvx serve` uses ([`serving`]).
//!
//! Nothing here knows about stages, records or the cache: callers hand it
//! turns, token ids and folders.

pub mod arch;
pub mod chat_input;
pub mod chat_template;
pub mod checkpoint;
pub mod folder;
pub mod frozen;
pub mod fused;
pub mod generate;
pub mod gguf;
pub mod hf_files;
pub mod lora;
pub mod model;
pub mod peft;
pub mod quantized;
pub mod rng;
pub mod serving;
pub mod sgemm;
pub mod template;
pub mod tokenizer;

#[cfg(any(test, feature = "testkit"))]
pub mod testkit;

#[cfg(test)]
mod arch_tests;

pub use folder::load as load_model;
pub use model::Transformer;
pub use chat_template::{ChatTemplate, ModelChat, Today};
pub use template::{Conversation, Prompt, Rendered, TemplateParam, TemplateSet};
pub use tokenizer::Tok;
