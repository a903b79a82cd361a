//! A decoder-only transformer in the Llama layout: pre-norm RMSNorm,
//! rotary (or learned) positions, grouped-query attention, a gated MLP,
//! optionally tied embeddings, biases (Qwen2, Llama's `attention_bias` and
//! `mlp_bias`), q/k norms (Qwen3) and sliding-window layers (Mistral,
//! Qwen2/3); [`super::arch`] resolves the config. Weight names and
//! `config.json` fields follow Hugging Face's, so the same code trains a
//! small model from scratch and loads a Llama-family base.
//!
//! [`Transformer::forward_cached`] runs only new tokens against a
//! [`KvCache`] of earlier keys and values, for generation.
//!
//! Every op here has a backward pass in candle (candle-nn's fused rms-norm
//! and rope kernels do not), so the model trains through plain tensor ops.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use candle_core::{DType, Device, Result, Tensor, D};
use serde::{Deserialize, Serialize};

use crate::arch::{Activation, HfFields};
use crate::checkpoint::{self, GradSink};
use crate::frozen;
use crate::fused;
use crate::lora::Lora;
use crate::quantized::QWeight;
use crate::rng::Rng;

/// Architecture, with Hugging Face `config.json` field names.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ArchConfig {
    /// `["LlamaForCausalLM"]` for ours; kept as read for a base.
    #[serde(default)]
    pub architectures: Vec<String>,
    /// `llama`, `qwen2`, `mistral` (same layout) or `dvx` (learned positions).
    #[serde(default = "default_model_type")]
    pub model_type: String,
    /// Number of token ids.
    pub vocab_size: usize,
    /// Width of the residual stream.
    pub hidden_size: usize,
    /// Width of the MLP.
    pub intermediate_size: usize,
    /// Number of blocks.
    pub num_hidden_layers: usize,
    /// Query heads.
    pub num_attention_heads: usize,
    /// Key/value heads (grouped-query attention); `None` = as many as query heads.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub num_key_value_heads: Option<usize>,
    /// Per-head width when it is not `hidden_size / heads`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub head_dim: Option<usize>,
    /// Longest sequence (the context).
    pub max_position_embeddings: usize,
    /// RMSNorm epsilon.
    #[serde(default = "default_eps")]
    pub rms_norm_eps: f64,
    /// Rotary base.
    #[serde(default = "default_theta")]
    pub rope_theta: f64,
    /// The output head reuses the token embedding.
    #[serde(default)]
    pub tie_word_embeddings: bool,
    /// Biases on q/k/v (Qwen2 always has them).
    #[serde(default)]
    pub attention_bias: bool,
    /// Rotary scaling, old style (see [`ArchConfig::rope`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rope_scaling: Option<serde_json::Value>,
    /// Learned absolute positions instead of rotary (dvx models only).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub learned_positions: bool,
    /// The other Hugging Face fields that shape the computation.
    #[serde(flatten)]
    pub hf: HfFields,
}

fn default_model_type() -> String {
    "llama".into()
}
fn default_eps() -> f64 {
    1e-5
}
fn default_theta() -> f64 {
    10000.0
}

impl ArchConfig {
    /// Per-head width.
    pub fn head_dim(&self) -> usize {
        self.head_dim.unwrap_or(self.hidden_size / self.num_attention_heads)
    }
    /// Key/value heads.
    pub fn kv_heads(&self) -> usize {
        self.num_key_value_heads.unwrap_or(self.num_attention_heads)
    }
    /// Why this architecture cannot be built, if it cannot.
    pub fn validate(&self) -> std::result::Result<(), String> {
        let h = self.num_attention_heads;
        if h == 0 || self.kv_heads() == 0 || !h.is_multiple_of(self.kv_heads()) {
            return Err(format!("{h} attention heads are not a multiple of {} key/value heads", self.kv_heads()));
        }
        if self.head_dim.is_none() && !self.hidden_size.is_multiple_of(h) {
            return Err(format!("width {} is not a multiple of {h} heads", self.hidden_size));
        }
        if !self.head_dim().is_multiple_of(2) && !self.learned_positions {
            return Err(format!("head width {} must be even for rotary positions", self.head_dim()));
        }
        if !matches!(self.model_type.as_str(), "llama" | "qwen2" | "qwen3" | "mistral" | "dvx") {
            return Err(format!("model_type `{}` is not supported (llama, qwen2, qwen3, mistral)", self.model_type));
        }
        self.validate_hf()
    }

    /// Every weight's name and shape, in name order.
    pub fn weight_shapes(&self) -> Vec<(String, Vec<usize>)> {
        let (c, v, i) = (self.hidden_size, self.vocab_size, self.intermediate_size);
        let (q, kv) = (self.num_attention_heads * self.head_dim(), self.kv_heads() * self.head_dim());
        let mut out = vec![("model.embed_tokens.weight".to_string(), vec![v, c])];
        if self.learned_positions {
            out.push(("model.embed_positions.weight".into(), vec![self.max_position_embeddings, c]));
        }
        for l in 0..self.num_hidden_layers {
            let p = format!("model.layers.{l}");
            out.push((format!("{p}.input_layernorm.weight"), vec![c]));
            let mut linear = |name: &str, out_dim: usize, in_dim: usize, bias: bool| {
                out.push((format!("{name}.weight"), vec![out_dim, in_dim]));
                if bias {
                    out.push((format!("{name}.bias"), vec![out_dim]));
                }
            };
            let (qkv_bias, mlp_bias) = (self.qkv_bias(), self.mlp_bias());
            linear(&module_path(l, "q"), q, c, qkv_bias);
            linear(&module_path(l, "k"), kv, c, qkv_bias);
            linear(&module_path(l, "v"), kv, c, qkv_bias);
            linear(&module_path(l, "o"), c, q, self.o_bias());
            linear(&module_path(l, "gate"), i, c, mlp_bias);
            linear(&module_path(l, "up"), i, c, mlp_bias);
            linear(&module_path(l, "down"), c, i, mlp_bias);
            out.push((format!("{p}.post_attention_layernorm.weight"), vec![c]));
            if self.qk_norm() {
                out.push((format!("{p}.self_attn.q_norm.weight"), vec![self.head_dim()]));
                out.push((format!("{p}.self_attn.k_norm.weight"), vec![self.head_dim()]));
            }
        }
        out.push(("model.norm.weight".into(), vec![c]));
        if !self.tie_word_embeddings {
            out.push(("lm_head.weight".into(), vec![v, c]));
        }
        out.sort();
        out
    }
}

/// Fresh weights: N(0, 0.02), residual outputs scaled down by depth, norms
/// at one, biases at zero. Each tensor draws from its own named stream.
pub fn init_weights(cfg: &ArchConfig, seed: u64, dev: &Device) -> Result<BTreeMap<String, Tensor>> {
    let resid_std = 0.02 / (2.0 * cfg.num_hidden_layers as f64).sqrt();
    let mut out = BTreeMap::new();
    for (name, shape) in cfg.weight_shapes() {
        let n: usize = shape.iter().product();
        let data: Vec<f32> = if name.ends_with("norm.weight") {
            vec![1.0; n]
        } else if name.ends_with(".bias") {
            vec![0.0; n]
        } else {
            let std = if name.contains("o_proj") || name.contains("down_proj") { resid_std } else { 0.02 };
            let mut rng = Rng::for_name(seed, &name);
            (0..n).map(|_| (rng.normal() * std) as f32).collect()
        };
        out.insert(name, Tensor::from_vec(data, shape, dev)?);
    }
    Ok(out)
}

/// A linear map `x W^T + b`, optionally with a LoRA adapter beside it.
pub struct Linear {
    /// `[out, in]`: trainable when it is a candle `Var` (f32), else frozen
    /// in its stored dtype (see [`frozen`]).
    pub w: Tensor,
    /// `[out]`.
    pub b: Option<Tensor>,
    /// Trainable low-rank update.
    pub lora: Option<Lora>,
    /// The weight as a GGUF stores it (q8_0 …): then `w` is empty and the
    /// product runs on the blocks.
    pub quantized: Option<QWeight>,
}

impl Linear {
    /// `x`: `[n, in]` → `[n, out]`. `rng` is set while training (LoRA dropout).
    pub fn forward(&self, x: &Tensor, rng: Option<&mut Rng>) -> Result<Tensor> {
        let mut y = match &self.quantized {
            Some(q) => q.matmul_t(x)?,
            None if self.w.is_variable() => x.matmul(&self.w.t()?)?,
            None => frozen::matmul_t(x, &self.w)?,
        };
        if let Some(b) = &self.b {
            y = y.broadcast_add(b)?;
        }
        if let Some(l) = &self.lora {
            y = (y + l.forward(x, rng)?)?;
        }
        Ok(y)
    }
}

pub(crate) struct Block {
    ln1: Tensor,
    /// Qwen3's per-head norms of queries and keys.
    qk_norm: Option<(Tensor, Tensor)>,
    /// Sliding-window span, if this layer slides.
    window: Option<usize>,
    q: Linear,
    k: Linear,
    v: Linear,
    o: Linear,
    ln2: Tensor,
    gate: Linear,
    up: Linear,
    down: Linear,
}

/// When a training pass recomputes blocks in backward rather than keeping
/// their activations (gradient checkpointing).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Checkpointing {
    /// Keep all activations.
    Off,
    /// Keep only each block's input.
    On,
    /// Checkpoint only a pass whose activations would take more memory than
    /// the frozen weights ([`Transformer::activation_bytes`]): at most about
    /// twice the weights, without the recompute when the pass is small.
    Auto,
}

/// The decoder-only transformer that `train` fits and `benchmark` runs.
pub struct Transformer {
    /// Its architecture, as written to `config.json`.
    pub cfg: ArchConfig,
    embed: Tensor,
    /// The embedding (and, tied, the head) as a GGUF stores it; `embed` is then empty.
    embed_q: Option<QWeight>,
    /// The untied head as a GGUF stores it; `head` is then empty.
    head_q: Option<QWeight>,
    pos_embed: Option<Tensor>,
    /// Shared with checkpointed ops, which recompute a block in backward.
    blocks: Vec<Arc<Block>>,
    norm: Tensor,
    head: Tensor,
    act: Activation,
    device: Device,
    /// Per (sequence length, fused kernels): rotary tables and mask.
    tables: Mutex<HashMap<(usize, bool), Arc<Tables>>>,
    /// When to recompute each block's activations in backward instead of keeping them.
    checkpoint: Checkpointing,
    /// Gradients of trainable tensors inside checkpointed blocks.
    sink: Arc<GradSink>,
}

/// What running a block needs besides its weights.
#[derive(Clone, Copy)]
pub(crate) struct Dims {
    nh: usize,
    nkv: usize,
    hd: usize,
    eps: f64,
    act: Activation,
}

/// What attention needs per sequence length.
pub(crate) enum Tables {
    /// For the fused CPU kernels (the mask is implicit).
    Fused { rope: Option<fused::RopeTables> },
    /// For plain tensor ops: additive masks, the causal one and, per
    /// sliding-window span, the windowed one.
    Plain { rope: Option<(Tensor, Tensor)>, mask: Tensor, windowed: HashMap<usize, Tensor> },
}

/// Keys and values of the tokens seen so far, per layer, for generation.
pub struct KvCache {
    /// `[1, kv_heads, seen, head_dim]` each, after rotary positions.
    layers: Vec<Option<(Tensor, Tensor)>>,
    seen: usize,
}

impl KvCache {
    /// Tokens cached so far.
    pub fn len(&self) -> usize {
        self.seen
    }
}

/// The Linear layers LoRA may target, by short name.
pub const LORA_TARGETS: [&str; 7] = ["q", "k", "v", "o", "gate", "up", "down"];

/// Full weight-name prefix of a target module in layer `l`.
pub fn module_path(l: usize, target: &str) -> String {
    match target {
        "gate" | "up" | "down" => format!("model.layers.{l}.mlp.{target}_proj"),
        _ => format!("model.layers.{l}.self_attn.{target}_proj"),
    }
}

impl Transformer {
    /// Build from named weights (see [`ArchConfig::weight_shapes`]).
    pub fn new(cfg: &ArchConfig, w: &BTreeMap<String, Tensor>, dev: &Device) -> Result<Self> {
        Self::with_quantized(cfg, w, &BTreeMap::new(), dev)
    }

    /// Build from named weights of which the matrices in `quantized` (the
    /// embedding, the head, the projections) stay as a GGUF stores them:
    /// the same network, its products on the quantized blocks.
    pub fn with_quantized(
        cfg: &ArchConfig,
        w: &BTreeMap<String, Tensor>,
        quantized: &BTreeMap<String, QWeight>,
        dev: &Device,
    ) -> Result<Self> {
        // Matrices stay in their dtype; norms and biases (small) become f32,
        // the dtype of the activations.
        let get = |name: &str| -> Result<Tensor> {
            w.get(name).cloned().ok_or_else(|| candle_core::Error::Msg(format!("weight `{name}` is missing")))
        };
        let get32 = |name: &str| get(name).and_then(to_f32);
        let empty = || Tensor::zeros(0, DType::F32, dev);
        let lin = |p: &str, bias: bool| -> Result<Linear> {
            let b = if bias { Some(get32(&format!("{p}.bias"))?) } else { None };
            let name = format!("{p}.weight");
            match quantized.get(&name) {
                Some(q) => Ok(Linear { w: empty()?, b, lora: None, quantized: Some(q.clone()) }),
                None => Ok(Linear { w: get(&name)?, b, lora: None, quantized: None }),
            }
        };
        let bad_config = |e: String| candle_core::Error::Msg(e);
        let mut blocks = Vec::new();
        let (qb, mb) = (cfg.qkv_bias(), cfg.mlp_bias());
        for l in 0..cfg.num_hidden_layers {
            let p = format!("model.layers.{l}");
            let qk_norm = if cfg.qk_norm() {
                Some((get32(&format!("{p}.self_attn.q_norm.weight"))?, get32(&format!("{p}.self_attn.k_norm.weight"))?))
            } else {
                None
            };
            blocks.push(Arc::new(Block {
                ln1: get32(&format!("{p}.input_layernorm.weight"))?,
                qk_norm,
                window: cfg.layer_window(l).map_err(bad_config)?,
                q: lin(&module_path(l, "q"), qb)?,
                k: lin(&module_path(l, "k"), qb)?,
                v: lin(&module_path(l, "v"), qb)?,
                o: lin(&module_path(l, "o"), cfg.o_bias())?,
                ln2: get32(&format!("{p}.post_attention_layernorm.weight"))?,
                gate: lin(&module_path(l, "gate"), mb)?,
                up: lin(&module_path(l, "up"), mb)?,
                down: lin(&module_path(l, "down"), mb)?,
            }));
        }
        let act = cfg.activation().map_err(bad_config)?;
        let embed_q = quantized.get("model.embed_tokens.weight").cloned();
        let embed = if embed_q.is_some() { empty()? } else { get("model.embed_tokens.weight")? };
        let head_q = if cfg.tie_word_embeddings { embed_q.clone() } else { quantized.get("lm_head.weight").cloned() };
        let head = match (cfg.tie_word_embeddings, &head_q) {
            (_, Some(_)) => empty()?,
            (true, None) => embed.clone(),
            (false, None) => get("lm_head.weight")?,
        };
        Ok(Transformer {
            cfg: cfg.clone(),
            pos_embed: if cfg.learned_positions { Some(get32("model.embed_positions.weight")?) } else { None },
            embed,
            embed_q,
            head_q,
            blocks,
            norm: get32("model.norm.weight")?,
            head,
            act,
            device: dev.clone(),
            tables: Mutex::new(HashMap::new()),
            checkpoint: Checkpointing::Off,
            sink: Arc::new(GradSink::default()),
        })
    }

    /// Gradient checkpointing: keep only each block's input from the
    /// forward pass and recompute the block in backward (less memory, one
    /// more forward's work). Gradients of tensors inside the blocks then
    /// come from [`Transformer::take_block_grads`], not the backward's store.
    pub fn set_checkpointing(&mut self, mode: Checkpointing) {
        self.checkpoint = mode;
    }

    /// How blocks are checkpointed.
    pub fn checkpointing(&self) -> Checkpointing {
        self.checkpoint
    }

    /// Whether a training pass over `rows` sequences of `len` tokens
    /// checkpoints its blocks.
    pub fn checkpoints(&self, rows: usize, len: usize) -> bool {
        match self.checkpoint {
            Checkpointing::Off => false,
            Checkpointing::On => true,
            Checkpointing::Auto => self.activation_bytes(rows, len) > self.frozen_bytes(),
        }
    }

    /// About how many bytes the blocks' activations of a training pass over
    /// `rows × len` tokens take when all are kept for the backward pass
    /// (f32: norms, projections and their head-split copies, rotary, the
    /// repeated keys and values, scores, MLP, LoRA dropout masks).
    pub fn activation_bytes(&self, rows: usize, len: usize) -> usize {
        let c = &self.cfg;
        let (w, q, kv, i) =
            (c.hidden_size, c.num_attention_heads * c.head_dim(), c.kv_heads() * c.head_dim(), c.intermediate_size);
        let per_block = |b: &Block| {
            let lora: usize = [(&b.q, w), (&b.k, w), (&b.v, w), (&b.o, q), (&b.gate, w), (&b.up, w), (&b.down, i)]
                .iter()
                .filter(|(l, _)| l.lora.is_some())
                .map(|(_, inp)| 2 * inp)
                .sum();
            rows * len * (6 * w + 6 * q + 4 * kv + 4 * i + lora) + rows * c.num_attention_heads * len * len * 2
        };
        4 * self.blocks.iter().map(|b| per_block(b.as_ref())).sum::<usize>()
    }

    /// Bytes of the frozen (not trainable) matrices.
    fn frozen_bytes(&self) -> usize {
        let bytes = |t: &Tensor| if t.is_variable() { 0 } else { t.elem_count() * t.dtype().size_in_bytes() };
        let qbytes = |q: &Option<QWeight>| q.as_ref().map_or(0, QWeight::bytes);
        let mut sum = bytes(&self.embed) + qbytes(&self.embed_q);
        if !self.cfg.tie_word_embeddings {
            sum += bytes(&self.head) + qbytes(&self.head_q);
        }
        for b in &self.blocks {
            let linears = [&b.q, &b.k, &b.v, &b.o, &b.gate, &b.up, &b.down];
            sum += linears.iter().map(|l| bytes(&l.w) + qbytes(&l.quantized)).sum::<usize>();
        }
        sum
    }

    /// The gradients checkpointed blocks produced since the last call,
    /// summed per trainable tensor (by id).
    pub fn take_block_grads(&self) -> HashMap<candle_core::TensorId, Tensor> {
        self.sink.take()
    }

    fn dims(&self) -> Dims {
        let c = &self.cfg;
        Dims { nh: c.num_attention_heads, nkv: c.kv_heads(), hd: c.head_dim(), eps: c.rms_norm_eps, act: self.act }
    }

    /// The Linear layer named by `target` in layer `l`.
    pub fn linear_mut(&mut self, l: usize, target: &str) -> Option<&mut Linear> {
        // Only while no checkpointed op holds the block (between steps).
        let b = Arc::get_mut(self.blocks.get_mut(l)?)?;
        Some(match target {
            "q" => &mut b.q,
            "k" => &mut b.k,
            "v" => &mut b.v,
            "o" => &mut b.o,
            "gate" => &mut b.gate,
            "up" => &mut b.up,
            "down" => &mut b.down,
            _ => return None,
        })
    }

    /// The device the weights live on.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// Logits `[rows*len, vocab]` for input ids `[rows, len]` (u32).
    pub fn forward(&self, ids: &Tensor, rng: Option<&mut Rng>) -> Result<Tensor> {
        let x = self.hidden(ids, rng)?;
        self.project_head(&x)
    }

    /// Sum over positions of `weight · −log p(target)` for input ids
    /// `[rows, len]`, targets and weights `[rows*len]`, as a scalar. The
    /// same value as [`weighted_nll`] over [`Transformer::forward`]'s
    /// logits, but a frozen head on the CPU makes the logits a block of the
    /// vocabulary at a time (see [`frozen::head_nll`]).
    pub fn loss(&self, ids: &Tensor, target: &[u32], weight: &[f32], rng: Option<&mut Rng>) -> Result<Tensor> {
        self.head_loss(&self.hidden(ids, rng)?, target, weight)
    }

    /// [`Transformer::loss`] for evaluation (no dropout): no backward pass
    /// will follow, so the head makes no input gradient for one.
    pub fn eval_loss(&self, ids: &Tensor, target: &[u32], weight: &[f32]) -> Result<Tensor> {
        let x = self.hidden(ids, None)?.detach();
        self.head_loss(&x, target, weight)
    }

    fn head_loss(&self, x: &Tensor, target: &[u32], weight: &[f32]) -> Result<Tensor> {
        if self.device.is_cpu() && !self.head.is_variable() && self.head_q.is_none() {
            return frozen::head_nll(x, &self.head, target, weight);
        }
        let logits = self.project_head(x)?;
        let dev = logits.device();
        weighted_nll(&logits, &Tensor::from_slice(target, target.len(), dev)?, &Tensor::from_slice(weight, weight.len(), dev)?)
    }

    /// Final hidden states `[rows*len, width]` (after the last norm).
    fn hidden(&self, ids: &Tensor, rng: Option<&mut Rng>) -> Result<Tensor> {
        let (_, len) = ids.dims2()?;
        self.check_len(len)?;
        // Activations are f32 whatever the weights' dtype.
        let tables = self.tables(len, self.device.is_cpu())?;
        self.run(ids, &tables, None, rng)
    }

    fn project_head(&self, x: &Tensor) -> Result<Tensor> {
        if let Some(q) = &self.head_q {
            q.matmul_t(x)
        } else if self.head.is_variable() {
            x.matmul(&self.head.t()?)
        } else {
            frozen::matmul_t(x, &self.head)
        }
    }

    /// A cache to generate with: empty, one slot per layer.
    pub fn new_cache(&self) -> KvCache {
        KvCache { layers: vec![None; self.blocks.len()], seen: 0 }
    }

    /// Logits `[ids.len(), vocab]` for `ids` following the tokens already
    /// in `cache`, which then holds them too. Only the new tokens are run;
    /// the result equals the last rows of [`Transformer::forward`] over the
    /// whole sequence (up to float rounding).
    pub fn forward_cached(&self, ids: &[u32], cache: &mut KvCache) -> Result<Tensor> {
        let (start, n) = (cache.seen, ids.len());
        if n == 0 {
            candle_core::bail!("forward_cached: no new tokens");
        }
        self.check_len(start + n)?;
        let rope = if self.pos_embed.is_none() {
            // transformers' dynamic scaling picks frequencies from the
            // longest position of each step; cached keys keep theirs.
            let (cos, sin) = self.rope_values(start, start + n, start + n);
            let hd = self.cfg.head_dim();
            Some((Tensor::from_vec(cos, (n, hd), &self.device)?, Tensor::from_vec(sin, (n, hd), &self.device)?))
        } else {
            None
        };
        let mut windowed = HashMap::new();
        for w in self.blocks.iter().filter_map(|b| b.window) {
            windowed.insert(w, mask(start, n, Some(w), &self.device)?);
        }
        let tables = Arc::new(Tables::Plain { rope, mask: mask(start, n, None, &self.device)?, windowed });
        let input = Tensor::from_slice(ids, (1, n), &self.device)?;
        let logits = self.project_head(&self.run(&input, &tables, Some(cache), None)?)?;
        cache.seen += n;
        Ok(logits)
    }

    fn check_len(&self, len: usize) -> Result<()> {
        let ctx = self.cfg.context_len();
        if len > ctx {
            candle_core::bail!("sequence of {len} tokens is longer than the context ({ctx})");
        }
        Ok(())
    }

    /// The network over `ids` `[rows, len]` up to the final norm; with a
    /// cache, `rows` is 1 and the ids follow the cached tokens.
    fn run(
        &self,
        ids: &Tensor,
        tables: &Arc<Tables>,
        mut cache: Option<&mut KvCache>,
        mut rng: Option<&mut Rng>,
    ) -> Result<Tensor> {
        let (rows, len) = ids.dims2()?;
        let start = cache.as_ref().map_or(0, |c| c.seen);
        let mut x = match &self.embed_q {
            Some(q) => q.rows(ids)?,
            None => to_f32(self.embed.index_select(&ids.flatten_all()?, 0)?)?,
        };
        if let Some(pe) = &self.pos_embed {
            let c = self.cfg.hidden_size;
            x = x.reshape((rows, len, c))?.broadcast_add(&pe.narrow(0, start, len)?)?.reshape((rows * len, c))?;
        }
        let d = self.dims();
        // Only a pass that may be differentiated is worth checkpointing.
        let checkpoint = cache.is_none() && self.checkpoints(rows, len);
        for (l, b) in self.blocks.iter().enumerate() {
            x = match cache.as_deref_mut() {
                None if checkpoint => {
                    let at = checkpoint::At { dims: d, block: b.clone(), tables: tables.clone(), rows, len };
                    checkpoint::block(&x, at, rng.as_deref_mut(), &self.sink)?
                }
                cache => {
                    let kv = cache.map(|c| &mut c.layers[l]);
                    block_forward(&d, b, &x, rows, len, tables, kv, rng.as_deref_mut())?
                }
            };
        }
        norm(tables, d.eps, &x, &self.norm)
    }


    /// Rotary tables and mask for sequences of `len`, built once per length.
    fn tables(&self, len: usize, fused: bool) -> Result<Arc<Tables>> {
        let mut cache = self.tables.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(t) = cache.get(&(len, fused)) {
            return Ok(t.clone());
        }
        let hd = self.cfg.head_dim();
        let rope = if self.pos_embed.is_none() { Some(self.rope_values(0, len, len)) } else { None };
        let t = Arc::new(if fused {
            Tables::Fused { rope: rope.map(|(cos, sin)| fused::RopeTables::new(cos, sin, len, hd)) }
        } else {
            let rope = match rope {
                Some((cos, sin)) => Some((
                    Tensor::from_vec(cos, (len, hd), &self.device)?,
                    Tensor::from_vec(sin, (len, hd), &self.device)?,
                )),
                None => None,
            };
            let mut windowed = HashMap::new();
            for w in self.blocks.iter().filter_map(|b| b.window) {
                windowed.insert(w, mask(0, len, Some(w), &self.device)?);
            }
            Tables::Plain { rope, mask: mask(0, len, None, &self.device)?, windowed }
        });
        cache.insert((len, fused), t.clone());
        Ok(t)
    }

    /// cos and sin of positions `from..to`, `[to - from, head_dim]`
    /// row-major, in the rotate-half layout Llama uses, with the
    /// frequencies of a pass over `seq_len` tokens (dynamic scaling).
    fn rope_values(&self, from: usize, to: usize, seq_len: usize) -> (Vec<f32>, Vec<f32>) {
        let hd = self.cfg.head_dim();
        let inv_freq = self.cfg.inv_freq(seq_len);
        let mut cos = Vec::with_capacity((to - from) * hd);
        let mut sin = Vec::with_capacity((to - from) * hd);
        for p in from..to {
            // The product in f32, as transformers computes it.
            let row: Vec<f64> = inv_freq.iter().map(|f| (p as f32 * f) as f64).collect();
            for _ in 0..2 {
                cos.extend(row.iter().map(|a| a.cos() as f32));
                sin.extend(row.iter().map(|a| a.sin() as f32));
            }
        }
        (cos, sin)
    }
}

/// RMSNorm with the fused kernel when the tables are for it.
fn norm(tables: &Tables, eps: f64, x: &Tensor, w: &Tensor) -> Result<Tensor> {
    if matches!(tables, Tables::Fused { .. }) {
        fused::rms_norm(x, w, eps)
    } else {
        rms_norm(x, w, eps)
    }
}

fn activate(act: Activation, x: &Tensor) -> Result<Tensor> {
    match act {
        Activation::Silu => x.silu(),
        Activation::GeluErf => x.gelu_erf(),
        Activation::GeluTanh => x.gelu(),
        Activation::Relu => x.relu(),
    }
}

impl Block {
    /// The trainable (`Var`) tensors of this block.
    pub(crate) fn vars(&self) -> Vec<&Tensor> {
        let mut out = vec![&self.ln1, &self.ln2];
        if let Some((q, k)) = &self.qk_norm {
            out.extend([q, k]);
        }
        for lin in [&self.q, &self.k, &self.v, &self.o, &self.gate, &self.up, &self.down] {
            out.push(&lin.w);
            out.extend(&lin.b);
            if let Some(l) = &lin.lora {
                out.extend([&l.a, &l.b]);
            }
        }
        out.retain(|t| t.is_variable());
        out
    }
}

/// One block over `x` `[rows*len, width]`: attention and MLP, each with its residual.
#[allow(clippy::too_many_arguments)]
pub(crate) fn block_forward(
    d: &Dims,
    b: &Block,
    x: &Tensor,
    rows: usize,
    len: usize,
    tables: &Tables,
    kv: Option<&mut Option<(Tensor, Tensor)>>,
    mut rng: Option<&mut Rng>,
) -> Result<Tensor> {
    let h = norm(tables, d.eps, x, &b.ln1)?;
    let a = attention(d, b, &h, rows, len, tables, kv, rng.as_deref_mut())?;
    let x = (x + a)?;
    let h = norm(tables, d.eps, &x, &b.ln2)?;
    let g = activate(d.act, &b.gate.forward(&h, rng.as_deref_mut())?)?;
    let u = b.up.forward(&h, rng.as_deref_mut())?;
    x + b.down.forward(&(g * u)?, rng)?
}

#[allow(clippy::too_many_arguments)]
fn attention(
        d: &Dims,
        b: &Block,
        h: &Tensor,
        rows: usize,
        len: usize,
        tables: &Tables,
        kv: Option<&mut Option<(Tensor, Tensor)>>,
        mut rng: Option<&mut Rng>,
    ) -> Result<Tensor> {
        let (nh, nkv, hd) = (d.nh, d.nkv, d.hd);
        let fused = matches!(tables, Tables::Fused { .. });
        let eps = d.eps;
        // [rows*len, n*hd] → [rows, n, len, hd], after Qwen3's per-head norm.
        let split = |t: Tensor, n: usize, w: Option<&Tensor>| -> Result<Tensor> {
            let t = match w {
                Some(w) => {
                    let t = t.reshape((rows * len * n, hd))?;
                    if fused {
                        fused::rms_norm(&t, w, eps)?
                    } else {
                        rms_norm(&t, w, eps)?
                    }
                }
                None => t,
            };
            t.reshape((rows, len, n, hd))?.transpose(1, 2)?.contiguous()
        };
        let (qn, kn) = match &b.qk_norm {
            Some((q, k)) => (Some(q), Some(k)),
            None => (None, None),
        };
        let mut q = split(b.q.forward(h, rng.as_deref_mut())?, nh, qn)?;
        let mut k = split(b.k.forward(h, rng.as_deref_mut())?, nkv, kn)?;
        let mut v = split(b.v.forward(h, rng.as_deref_mut())?, nkv, None)?;
        match tables {
            Tables::Fused { rope: Some(t) } => {
                q = fused::rope(&q, t)?;
                k = fused::rope(&k, t)?;
            }
            Tables::Plain { rope: Some((cos, sin)), .. } => {
                q = apply_rope(&q, cos, sin)?;
                k = apply_rope(&k, cos, sin)?;
            }
            _ => {}
        }
        if let Some(slot) = kv {
            if let Some((pk, pv)) = slot.as_ref() {
                k = Tensor::cat(&[pk, &k], 2)?;
                v = Tensor::cat(&[pv, &v], 2)?;
            }
            *slot = Some((k.clone(), v.clone()));
        }
        let keys = k.dim(2)?;
        if nkv != nh {
            let rep =
                |t: Tensor| t.unsqueeze(2)?.expand((rows, nkv, nh / nkv, keys, hd))?.reshape((rows, nh, keys, hd));
            k = rep(k)?;
            v = rep(v)?;
        }
        let scale = 1.0 / (hd as f64).sqrt();
        let att = match tables {
            Tables::Fused { .. } => fused::causal_softmax(&q.matmul(&k.t()?)?, scale, b.window)?,
            Tables::Plain { mask, windowed, .. } => {
                let mask = match b.window {
                    Some(w) => windowed.get(&w).unwrap_or(mask),
                    None => mask,
                };
                let scores = (q.matmul(&k.t()?)? * scale)?.broadcast_add(mask)?;
                candle_nn::ops::softmax(&scores, D::Minus1)?
            }
        };
        let y = att.matmul(&v)?.transpose(1, 2)?.reshape((rows * len, nh * hd))?;
        b.o.forward(&y, rng)
}

/// Additive mask `[n, start + n]` for queries at `start..start + n`: a key
/// is visible when it is not later than the query and, with a window `w`,
/// fewer than `w` positions earlier.
fn mask(start: usize, n: usize, window: Option<usize>, dev: &Device) -> Result<Tensor> {
    let keys = start + n;
    let m: Vec<f32> = (0..n * keys)
        .map(|i| {
            let (q, k) = (start + i / keys, i % keys);
            let visible = k <= q && window.is_none_or(|w| k + w > q);
            if visible {
                0.0
            } else {
                f32::NEG_INFINITY
            }
        })
        .collect();
    Tensor::from_vec(m, (n, keys), dev)
}

fn rms_norm(x: &Tensor, w: &Tensor, eps: f64) -> Result<Tensor> {
    let ms = x.sqr()?.mean_keepdim(D::Minus1)?;
    x.broadcast_div(&(ms + eps)?.sqrt()?)?.broadcast_mul(w)
}

fn apply_rope(x: &Tensor, cos: &Tensor, sin: &Tensor) -> Result<Tensor> {
    let hd = x.dim(D::Minus1)?;
    let x1 = x.narrow(D::Minus1, 0, hd / 2)?;
    let x2 = x.narrow(D::Minus1, hd / 2, hd / 2)?;
    let rotated = Tensor::cat(&[&x2.neg()?, &x1], D::Minus1)?;
    x.broadcast_mul(cos)? + rotated.broadcast_mul(sin)?
}

/// Sum of the negative log-likelihoods of `target` under `logits`, each
/// weighted by `weight` (both `[n]`), as a scalar tensor.
pub fn weighted_nll(logits: &Tensor, target: &Tensor, weight: &Tensor) -> Result<Tensor> {
    if fused::usable(logits) {
        return fused::weighted_nll(logits, &target.to_vec1::<u32>()?, &weight.to_vec1::<f32>()?);
    }
    let lsm = candle_nn::ops::log_softmax(logits, D::Minus1)?;
    let picked = lsm.gather(&target.unsqueeze(1)?, 1)?.squeeze(1)?;
    (picked * weight)?.sum_all()?.neg()
}

/// Number of values in a set of tensors.
pub fn count_params<'a>(ts: impl IntoIterator<Item = &'a Tensor>) -> usize {
    ts.into_iter().map(Tensor::elem_count).sum()
}

/// Convert loaded weights to f32 (bases often ship bf16).
pub fn to_f32(t: Tensor) -> Result<Tensor> {
    if t.dtype() == DType::F32 {
        Ok(t)
    } else {
        t.to_dtype(DType::F32)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::tiny;


    #[test]
    fn causal_and_shapes() {
        let dev = Device::Cpu;
        let cfg = tiny(11);
        let w = init_weights(&cfg, 1, &dev).unwrap();
        assert!(!w.contains_key("lm_head.weight"));
        let m = Transformer::new(&cfg, &w, &dev).unwrap();
        let a = Tensor::from_slice(&[1u32, 2, 3, 4], (1, 4), &dev).unwrap();
        let b = Tensor::from_slice(&[1u32, 2, 9, 9], (1, 4), &dev).unwrap();
        let la = m.forward(&a, None).unwrap();
        let lb = m.forward(&b, None).unwrap();
        assert_eq!(la.dims(), &[4, 11]);
        // Causal: the first two positions cannot see the changed tokens.
        let first = |t: &Tensor| t.narrow(0, 0, 2).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
        assert_eq!(first(&la), first(&lb));
        let last = |t: &Tensor| t.narrow(0, 3, 1).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
        assert_ne!(last(&la), last(&lb));
    }

    #[test]
    fn config_errors() {
        let mut cfg = tiny(11);
        cfg.num_key_value_heads = Some(3);
        assert!(cfg.validate().unwrap_err().contains("not a multiple of 3"));
        let mut cfg = tiny(11);
        cfg.model_type = "gpt2".into();
        assert!(cfg.validate().unwrap_err().contains("`gpt2` is not supported"));
    }
}
