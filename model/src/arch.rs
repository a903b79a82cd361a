//! What a Hugging Face `config.json` says about the computation, resolved
//! into what [`super::model::Transformer`] runs: rotary frequencies (plain,
//! linear, dynamic NTK, Llama 3), per-layer sliding windows, biases, the MLP
//! activation and Qwen3's q/k norms. Both config styles are read: the one
//! transformers ≥ 5 writes (`rope_parameters`) and the older one
//! (`rope_theta` + `rope_scaling`). Whatever would change the computation
//! and is not implemented is refused with the field's name.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::model::ArchConfig;

/// Hugging Face fields beyond the core shape, kept as read so a fine-tuned
/// model's `config.json` says the same as its base's.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct HfFields {
    /// transformers ≥ 5: `{rope_type, rope_theta, factor, ...}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rope_parameters: Option<Value>,
    /// MLP activation (`silu` when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hidden_act: Option<String>,
    /// Biases on the MLP's three maps (Llama).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub mlp_bias: bool,
    /// Attention span of sliding-window layers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sliding_window: Option<usize>,
    /// Qwen2/3: whether `sliding_window` applies at all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub use_sliding_window: Option<bool>,
    /// Qwen2/3 (old style): layers from this index on slide.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_window_layers: Option<usize>,
    /// Qwen2/3 (new style): `full_attention` or `sliding_attention` per layer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub layer_types: Option<Vec<String>>,
    /// Dropout on attention weights while training (only 0 is implemented).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attention_dropout: Option<f64>,
}

/// How rotary frequencies are scaled.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum RopeScaling {
    /// Plain RoPE.
    None,
    /// Positions divided by `factor`.
    Linear { factor: f64 },
    /// NTK: the base grows with the sequence once it passes the context.
    Dynamic { factor: f64 },
    /// Llama 3.1: low frequencies divided by `factor`, a smooth band between.
    Llama3 { factor: f64, low_freq_factor: f64, high_freq_factor: f64, original_max_position_embeddings: f64 },
}

/// Resolved rotary settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rope {
    /// Base.
    pub theta: f64,
    /// Scaling variant.
    pub scaling: RopeScaling,
}

/// MLP activations Hugging Face names in `hidden_act`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Activation {
    /// `silu`, `swish`.
    Silu,
    /// `gelu` (erf).
    GeluErf,
    /// `gelu_new`, `gelu_pytorch_tanh`, `gelu_fast` (tanh approximation).
    GeluTanh,
    /// `relu`.
    Relu,
}

/// Fields of `config.json` that change the computation in architectures
/// transformers has and dvx does not implement; present and not null, they
/// are refused. (Fields of the supported families are resolved above.)
pub const UNIMPLEMENTED_FIELDS: [&str; 9] = [
    "partial_rotary_factor",
    "attn_logit_softcapping",
    "final_logit_softcapping",
    "query_pre_attn_scalar",
    "logits_scaling",
    "embedding_multiplier",
    "residual_multiplier",
    "attention_multiplier",
    "rope_interleaved",
];

/// Refuse `config.json` fields from [`UNIMPLEMENTED_FIELDS`].
pub fn refuse_unimplemented(raw: &Value) -> Result<(), String> {
    for f in UNIMPLEMENTED_FIELDS {
        match raw.get(f) {
            None | Some(Value::Null) => {}
            Some(v) if f == "partial_rotary_factor" && v.as_f64() == Some(1.0) => {}
            Some(v) => return Err(format!("`{f}: {v}` is not supported")),
        }
    }
    Ok(())
}

fn num(map: &serde_json::Map<String, Value>, field: &str, key: &str) -> Result<f64, String> {
    map.get(key).and_then(Value::as_f64).ok_or_else(|| format!("`{field}.{key}` is missing or not a number"))
}

impl ArchConfig {
    /// Rotary base and scaling, from `rope_parameters` (transformers ≥ 5)
    /// or `rope_theta` + `rope_scaling`.
    pub fn rope(&self) -> Result<Rope, String> {
        let (field, params) = match (&self.hf.rope_parameters, &self.rope_scaling) {
            (Some(p), _) if !p.is_null() => ("rope_parameters", p),
            (_, Some(s)) if !s.is_null() => ("rope_scaling", s),
            _ => return Ok(Rope { theta: self.rope_theta, scaling: RopeScaling::None }),
        };
        let map = params.as_object().ok_or_else(|| format!("`{field}` must be an object, not {params}"))?;
        let theta = match map.get("rope_theta") {
            Some(t) => t.as_f64().ok_or_else(|| format!("`{field}.rope_theta` is not a number"))?,
            None => self.rope_theta,
        };
        if let Some(p) = map.get("partial_rotary_factor").filter(|p| p.as_f64() != Some(1.0)) {
            return Err(format!("`{field}.partial_rotary_factor: {p}` is not supported"));
        }
        let kind = map.get("rope_type").or_else(|| map.get("type")).and_then(Value::as_str).unwrap_or("default");
        let scaling = match kind {
            "default" => RopeScaling::None,
            "linear" => RopeScaling::Linear { factor: num(map, field, "factor")? },
            "dynamic" => RopeScaling::Dynamic { factor: num(map, field, "factor")? },
            "llama3" => RopeScaling::Llama3 {
                factor: num(map, field, "factor")?,
                low_freq_factor: num(map, field, "low_freq_factor")?,
                high_freq_factor: num(map, field, "high_freq_factor")?,
                original_max_position_embeddings: num(map, field, "original_max_position_embeddings")?,
            },
            other => {
                return Err(format!("`{field}.rope_type: {other}` is not supported (default, linear, dynamic, llama3)"))
            }
        };
        Ok(Rope { theta, scaling })
    }

    /// The MLP's activation.
    pub fn activation(&self) -> Result<Activation, String> {
        Ok(match self.hf.hidden_act.as_deref().unwrap_or("silu") {
            "silu" | "swish" => Activation::Silu,
            "gelu" => Activation::GeluErf,
            "gelu_new" | "gelu_pytorch_tanh" | "gelu_fast" => Activation::GeluTanh,
            "relu" => Activation::Relu,
            other => return Err(format!("`hidden_act: {other}` is not supported (silu, gelu, gelu_new, relu)")),
        })
    }

    /// Biases on q/k/v: Qwen2 always, Mistral never, else `attention_bias`.
    pub fn qkv_bias(&self) -> bool {
        match self.model_type.as_str() {
            "qwen2" => true,
            "mistral" => false,
            _ => self.attention_bias,
        }
    }

    /// Bias on the attention output: Llama and Qwen3 follow `attention_bias`.
    pub fn o_bias(&self) -> bool {
        matches!(self.model_type.as_str(), "llama" | "qwen3") && self.attention_bias
    }

    /// Biases on the MLP: Llama's `mlp_bias`.
    pub fn mlp_bias(&self) -> bool {
        self.model_type == "llama" && self.hf.mlp_bias
    }

    /// Qwen3's per-head RMSNorm on queries and keys.
    pub fn qk_norm(&self) -> bool {
        self.model_type == "qwen3"
    }

    /// How far back layer `l` attends (`None`: the whole prefix).
    pub fn layer_window(&self, l: usize) -> Result<Option<usize>, String> {
        match self.model_type.as_str() {
            "mistral" => Ok(self.hf.sliding_window),
            "qwen2" | "qwen3" => {
                let slides = match &self.hf.layer_types {
                    Some(types) => match types.get(l).map(String::as_str) {
                        Some("sliding_attention") => true,
                        Some("full_attention") => false,
                        Some(other) => return Err(format!("`layer_types[{l}]: {other}` is not supported")),
                        None => return Err(format!("`layer_types` has no entry for layer {l}")),
                    },
                    None => self.hf.use_sliding_window == Some(true) && l >= self.hf.max_window_layers.unwrap_or(28),
                };
                if !slides {
                    return Ok(None);
                }
                let w = self.hf.sliding_window.ok_or("a sliding layer needs `sliding_window`")?;
                Ok(Some(w))
            }
            _ => Ok(None),
        }
    }

    /// Longest sequence a forward pass takes: dynamic NTK scaling stretches it.
    pub fn context_len(&self) -> usize {
        match self.rope().map(|r| r.scaling) {
            Ok(RopeScaling::Dynamic { factor }) => (self.max_position_embeddings as f64 * factor.max(1.0)) as usize,
            _ => self.max_position_embeddings,
        }
    }

    /// Checks of the fields above (called by `validate`).
    pub(super) fn validate_hf(&self) -> Result<(), String> {
        if !self.learned_positions {
            self.rope()?;
        }
        self.activation()?;
        if let Some(d) = self.hf.attention_dropout.filter(|d| *d != 0.0) {
            return Err(format!("`attention_dropout: {d}` is not supported (only 0)"));
        }
        if self.hf.sliding_window == Some(0) {
            return Err("`sliding_window: 0` leaves nothing to attend to".into());
        }
        if let Some(t) = &self.hf.layer_types {
            if t.len() != self.num_hidden_layers {
                return Err(format!("`layer_types` has {} entries for {} layers", t.len(), self.num_hidden_layers));
            }
        }
        for l in 0..self.num_hidden_layers {
            self.layer_window(l)?;
        }
        Ok(())
    }

    /// Inverse rotary frequencies (`head_dim / 2` of them) for a forward
    /// pass whose last position is `seq_len - 1`, computed in f32 like
    /// transformers does so that positions far out agree too.
    pub fn inv_freq(&self, seq_len: usize) -> Vec<f32> {
        let hd = self.head_dim();
        let rope = self.rope().unwrap_or(Rope { theta: self.rope_theta, scaling: RopeScaling::None });
        let mut base = rope.theta;
        if let RopeScaling::Dynamic { factor } = rope.scaling {
            let max = self.max_position_embeddings as f64;
            let s = (seq_len as f64).max(max);
            base *= (factor * s / max - (factor - 1.0)).powf(hd as f64 / (hd as f64 - 2.0));
        }
        let plain: Vec<f32> = (0..hd / 2).map(|i| 1.0 / (base as f32).powf((2 * i) as f32 / hd as f32)).collect();
        match rope.scaling {
            RopeScaling::None | RopeScaling::Dynamic { .. } => plain,
            RopeScaling::Linear { factor } => plain.iter().map(|f| f / factor as f32).collect(),
            RopeScaling::Llama3 { factor, low_freq_factor, high_freq_factor, original_max_position_embeddings } => {
                let (factor, low, high, old) = (
                    factor as f32,
                    low_freq_factor as f32,
                    high_freq_factor as f32,
                    original_max_position_embeddings as f32,
                );
                let (low_wavelen, high_wavelen) = (old / low, old / high);
                plain
                    .iter()
                    .map(|&f| {
                        let wavelen = 2.0 * std::f32::consts::PI / f;
                        let scaled = if wavelen > low_wavelen { f / factor } else { f };
                        if wavelen < high_wavelen || wavelen > low_wavelen {
                            return scaled;
                        }
                        let smooth = (old / wavelen - low) / (high - low);
                        (1.0 - smooth) * scaled / factor + smooth * scaled
                    })
                    .collect()
            }
        }
    }
}
