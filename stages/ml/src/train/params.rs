//! The `train` stage's params.

use dvx_stage_api::{ParamDoc, ParamError, ParamsDoc};
use serde::{Deserialize, Serialize};

use dvx_model::lora::LoraParams;
use dvx_model::model::ArchConfig;
use super::optim::Schedule;
use dvx_model::tokenizer::EosSpec;
use dvx_model::TemplateParam;

/// Where tensors live.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DeviceParam {
    /// The CPU (deterministic).
    #[default]
    Cpu,
    /// GPU 0; needs dvx built with `--features cuda`.
    Cuda,
}

impl DeviceParam {
    /// The candle device.
    pub fn open(self) -> Result<candle_core::Device, String> {
        match self {
            DeviceParam::Cpu => Ok(candle_core::Device::Cpu),
            DeviceParam::Cuda => {
                candle_core::Device::new_cuda(0).map_err(|e| format!("cannot open CUDA device 0: {e}"))
            }
        }
    }

    /// Error when this build cannot use the device.
    pub fn check(self) -> Result<(), ParamError> {
        if self == DeviceParam::Cuda && !cfg!(feature = "cuda") {
            return Err(ParamError::field(
                "device",
                "this dvx was built without CUDA; build one with `cargo install --path . --features cuda` \
                 (or `cargo build --release --features cuda`) on a machine with the CUDA toolkit (nvcc)",
            ));
        }
        Ok(())
    }
}

/// Positional encoding of a model trained from scratch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Positions {
    /// Rotary (as Llama).
    Rotary,
    /// A learned absolute position embedding.
    Learned,
}

/// `model:` — the architecture of a model trained from scratch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ModelParams {
    /// Transformer blocks.
    pub layers: usize,
    /// Residual width.
    pub width: usize,
    /// Attention heads.
    pub heads: usize,
    /// Key/value heads (grouped-query attention); default: `heads`.
    pub kv_heads: Option<usize>,
    /// Longest sequence in tokens.
    pub context: usize,
    /// MLP width; default `4 * width`.
    pub mlp: Option<usize>,
    /// `rotary` or `learned`.
    pub positions: Positions,
    /// Share the token embedding with the output head.
    pub tied: bool,
    /// Rotary base.
    pub rope_theta: f64,
}

impl Default for ModelParams {
    fn default() -> Self {
        ModelParams {
            layers: 2,
            width: 128,
            heads: 4,
            kv_heads: None,
            context: 256,
            mlp: None,
            positions: Positions::Rotary,
            tied: true,
            rope_theta: 10000.0,
        }
    }
}

impl ModelParams {
    /// The architecture for a vocabulary of `vocab` ids.
    pub fn arch(&self, vocab: usize) -> ArchConfig {
        let learned = self.positions == Positions::Learned;
        ArchConfig {
            architectures: vec![if learned { "DvxForCausalLM" } else { "LlamaForCausalLM" }.into()],
            model_type: if learned { "dvx" } else { "llama" }.into(),
            vocab_size: vocab,
            hidden_size: self.width,
            intermediate_size: self.mlp.unwrap_or(4 * self.width),
            num_hidden_layers: self.layers,
            num_attention_heads: self.heads,
            num_key_value_heads: self.kv_heads,
            head_dim: None,
            max_position_embeddings: self.context,
            rms_norm_eps: 1e-5,
            rope_theta: self.rope_theta,
            tie_word_embeddings: self.tied,
            attention_bias: false,
            rope_scaling: None,
            learned_positions: learned,
            hf: Default::default(),
        }
    }
}

/// All of `train`'s params.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainParams {
    /// Architecture when training from scratch (not allowed with a base).
    pub model: Option<ModelParams>,
    /// Fine-tune a base with LoRA adapters instead of all weights.
    pub lora: Option<LoraParams>,
    /// Chat template; unset or `auto`: a dvx-trained base's, else the base
    /// model's own `chat_template`, else dvx's `auto` presets.
    pub template: Option<TemplateParam>,
    /// End-of-sequence token of a `tokenizer.json` (text or id).
    pub eos_token: Option<EosSpec>,
    /// Passes over the training set (default 1 when `steps` is unset).
    pub epochs: Option<usize>,
    /// Optimizer steps (instead of `epochs`); 0 evaluates only.
    pub steps: Option<usize>,
    /// Examples per micro-batch.
    #[serde(default = "d_batch")]
    pub batch_size: usize,
    /// Micro-batches per optimizer step.
    #[serde(default = "d_one")]
    pub grad_accum: usize,
    /// Peak learning rate.
    #[serde(default = "d_lr")]
    pub lr: f64,
    /// Linear warmup steps.
    #[serde(default)]
    pub warmup_steps: usize,
    /// `cosine`, `linear` or `constant` after warmup.
    #[serde(default = "d_schedule")]
    pub schedule: Schedule,
    /// Final learning rate as a fraction of `lr` (cosine, linear).
    #[serde(default = "d_min_lr")]
    pub min_lr_ratio: f64,
    /// AdamW decoupled weight decay (2-D weights only).
    #[serde(default = "d_wd")]
    pub weight_decay: f64,
    /// Clip the global gradient norm (0 = off).
    #[serde(default = "d_clip")]
    pub max_grad_norm: f64,
    /// Cut examples to this many tokens (default: the context).
    pub max_length: Option<usize>,
    /// Seeds init, shuffling and dropout.
    #[serde(default)]
    pub seed: u64,
    /// Validation loss every N optimizer steps (0 = only first and last).
    #[serde(default = "d_eval")]
    pub eval_every: usize,
    /// Log a progress line every N steps.
    #[serde(default = "d_log")]
    pub log_every: usize,
    /// `cpu` or `cuda`.
    #[serde(default)]
    pub device: DeviceParam,
}

impl ParamsDoc for TrainParams {
    fn doc() -> Vec<ParamDoc> {
        vec![
            ParamDoc::new(
                "model",
                "{layers, width, heads, kv_heads, context, mlp, positions, tied, rope_theta}",
                "{layers: 2, width: 128, heads: 4, context: 256, positions: rotary, tied: true, rope_theta: 10000}",
                "Architecture when training from scratch (not with a base model).",
            ),
            ParamDoc::new("lora", "map", "-", "Fine-tune the base with LoRA adapters instead of all weights."),
            ParamDoc::new(
                "template",
                "name or map",
                "-",
                "Chat template; unset or `auto`: the base's (its own `chat_template` for a Hugging Face base), else dvx's presets.",
            ),
            ParamDoc::new(
                "eos_token",
                "string or id",
                "-",
                "End-of-sequence token; default: the model's (`tokenizer_config.json`, `generation_config.json`).",
            ),
            ParamDoc::new("epochs", "integer", "1", "Passes over the training set (or `steps`)."),
            ParamDoc::new("steps", "integer", "-", "Optimizer steps (instead of `epochs`); 0 only evaluates the base."),
            ParamDoc::new("batch_size", "integer", "8", "Examples per micro-batch."),
            ParamDoc::new("grad_accum", "integer", "1", "Micro-batches per optimizer step."),
            ParamDoc::new("lr", "number", "0.001", "Peak learning rate."),
            ParamDoc::new("warmup_steps", "integer", "0", "Linear warmup steps."),
            ParamDoc::new("schedule", "cosine | linear | constant", "cosine", "Learning rate after warmup."),
            ParamDoc::new("min_lr_ratio", "fraction", "0.1", "Final learning rate as a fraction of `lr`."),
            ParamDoc::new("weight_decay", "number", "0.01", "AdamW decoupled weight decay (2-D weights only)."),
            ParamDoc::new("max_grad_norm", "number", "1.0", "Clip the global gradient norm (0 = off)."),
            ParamDoc::new("max_length", "integer", "-", "Cut examples to this many tokens; default: the context."),
            ParamDoc::new("seed", "integer", "0", "Seeds init, shuffling and dropout."),
            ParamDoc::new("eval_every", "integer", "50", "Validation loss every N steps (0 = first and last only)."),
            ParamDoc::new("log_every", "integer", "10", "A progress line every N steps."),
            ParamDoc::new(
                "device",
                "cpu | cuda",
                "cpu",
                "Where tensors live; `cuda` needs a build with the `cuda` feature.",
            ),
        ]
    }
}

fn d_batch() -> usize {
    8
}
fn d_one() -> usize {
    1
}
fn d_lr() -> f64 {
    1e-3
}
fn d_schedule() -> Schedule {
    Schedule::Cosine
}
fn d_min_lr() -> f64 {
    0.1
}
fn d_wd() -> f64 {
    0.01
}
fn d_clip() -> f64 {
    1.0
}
fn d_eval() -> usize {
    50
}
fn d_log() -> usize {
    10
}

impl TrainParams {
    /// Checks beyond types.
    pub fn validate(&self) -> Result<(), ParamError> {
        let positive = |name: &str, v: usize| {
            if v == 0 {
                Err(ParamError::field(name, "must be at least 1"))
            } else {
                Ok(())
            }
        };
        positive("batch_size", self.batch_size)?;
        positive("grad_accum", self.grad_accum)?;
        // `steps: 0` is allowed: evaluate only (the base's valid loss).
        if let Some(e) = self.epochs {
            positive("epochs", e)?;
        }
        if self.steps.is_some() && self.epochs.is_some() {
            return Err(ParamError::field("steps", "give `steps` or `epochs`, not both"));
        }
        if !(self.lr > 0.0 && self.lr.is_finite()) {
            return Err(ParamError::field("lr", "must be a positive number"));
        }
        if !(0.0..=1.0).contains(&self.min_lr_ratio) {
            return Err(ParamError::field("min_lr_ratio", "must be in [0, 1]"));
        }
        if self.weight_decay < 0.0 {
            return Err(ParamError::field("weight_decay", "must not be negative"));
        }
        if let Some(m) = &self.model {
            for (f, v) in [
                ("model.layers", m.layers),
                ("model.width", m.width),
                ("model.heads", m.heads),
                ("model.context", m.context),
            ] {
                positive(f, v)?;
            }
            m.arch(1).validate().map_err(|e| ParamError::field("model", e))?;
            if let Some(l) = self.max_length {
                if l > m.context {
                    return Err(ParamError::field("max_length", format!("is longer than the context ({})", m.context)));
                }
            }
        }
        if let Some(l) = self.max_length {
            if l < 2 {
                return Err(ParamError::field("max_length", "must be at least 2"));
            }
        }
        if let Some(l) = &self.lora {
            l.validate().map_err(|(f, m)| ParamError::field(f, m))?;
        }
        if let Some(t) = &self.template {
            t.resolve().map_err(|e| ParamError::field("template", e))?;
        }
        self.device.check()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dvx_stage_api::parse_params;
    use serde_json::json;

    fn err(v: serde_json::Value) -> ParamError {
        match parse_params::<TrainParams>(&v) {
            Ok(p) => p.validate().unwrap_err(),
            Err(e) => e,
        }
    }

    #[test]
    fn defaults() {
        let p: TrainParams = parse_params(&json!({})).unwrap();
        assert_eq!((p.batch_size, p.grad_accum, p.lr, p.eval_every), (8, 1, 1e-3, 50));
        assert_eq!(p.schedule, Schedule::Cosine);
        assert!(p.validate().is_ok());
    }

    #[test]
    fn errors_name_fields() {
        assert_eq!(err(json!({"lr": "fast"})).field.as_deref(), Some("lr"));
        assert_eq!(err(json!({"bogus": 1})).field.as_deref(), Some("bogus"));
        assert_eq!(err(json!({"steps": 1, "epochs": 2})).field.as_deref(), Some("steps"));
        assert_eq!(err(json!({"model": {"width": 10, "heads": 4}})).field.as_deref(), Some("model"));
        assert_eq!(err(json!({"model": {"widht": 10}})).field.as_deref(), Some("model.widht"));
        assert_eq!(err(json!({"lora": {"targets": ["x"]}})).field.as_deref(), Some("lora.targets.0"));
        assert_eq!(err(json!({"template": "{user} only"})).field.as_deref(), Some("template"));
        assert_eq!(err(json!({"model": {"context": 8}, "max_length": 9})).field.as_deref(), Some("max_length"));
        assert_eq!(err(json!({"schedule": "step"})).field.as_deref(), Some("schedule"));
        if !cfg!(feature = "cuda") {
            assert_eq!(err(json!({"device": "cuda"})).field.as_deref(), Some("device"));
        }
    }
}
