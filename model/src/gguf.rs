//! GGUF files for llama.cpp and Ollama: a full model (`general.architecture
//! = llama`, llama.cpp's tensor names and `llama.*` keys, the tokenizer under
//! `tokenizer.ggml.*`) in f32, f16 or q8_0, and a LoRA adapter in
//! llama.cpp's adapter layout (`general.type = adapter`, `adapter.type =
//! lora`, `adapter.lora.alpha`, tensors `blk.N.attn_q.weight.lora_a` …).
//! candle's `gguf_file` does the container and the quantisation.
//!
//! llama.cpp runs the llama architecture with interleaved rotary pairs
//! where Hugging Face rotates halves, so its converter permutes the rows of
//! `q_proj` and `k_proj` (and of their LoRA `B`); so does this writer, and
//! the reader undoes it. [`read_model`] reads a file back into Hugging Face
//! names for dvx's transformer, which is how the export is checked.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use candle_core::quantized::gguf_file::{self, Value};
use candle_core::quantized::{GgmlDType, QStorage, QTensor};
use candle_core::{Device, Tensor};
use serde_json::json;

use crate::arch::RopeScaling;
use crate::lora::LoraParams;
use crate::model::{module_path, ArchConfig};
use crate::quantized::QWeight;
use crate::tokenizer::{Tok, Tokenizer};

/// Storage type of the exported matrices (vectors stay f32, as llama.cpp's
/// converter keeps them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GgufType {
    /// 32-bit floats.
    F32,
    /// 16-bit floats.
    F16,
    /// 8-bit blocks of 32 with an f16 scale (about 0.4% relative error).
    Q8_0,
}

impl GgufType {
    /// By name: `f32`, `f16`, `q8_0`.
    pub fn parse(s: &str) -> Option<GgufType> {
        match s {
            "f32" => Some(GgufType::F32),
            "f16" => Some(GgufType::F16),
            "q8_0" => Some(GgufType::Q8_0),
            _ => None,
        }
    }

    fn ggml(self) -> GgmlDType {
        match self {
            GgufType::F32 => GgmlDType::F32,
            GgufType::F16 => GgmlDType::F16,
            GgufType::Q8_0 => GgmlDType::Q8_0,
        }
    }

    /// `general.file_type` (llama.cpp's `llama_ftype`).
    fn file_type(self) -> u32 {
        match self {
            GgufType::F32 => 0,
            GgufType::F16 => 1,
            GgufType::Q8_0 => 7,
        }
    }
}

/// Why `cfg` cannot be written as a llama GGUF, if it cannot.
pub fn check_supported(cfg: &ArchConfig) -> Result<(), String> {
    let no = |what: &str| Err(format!("GGUF export: {what} is not supported (llama-architecture models only)"));
    if !matches!(cfg.model_type.as_str(), "llama" | "mistral") {
        return no(&format!("model_type `{}`", cfg.model_type));
    }
    if cfg.learned_positions {
        return no("learned positions");
    }
    if cfg.qkv_bias() || cfg.o_bias() || cfg.mlp_bias() {
        return no("biases");
    }
    if cfg.qk_norm() {
        return no("q/k norms");
    }
    if cfg.activation()? != crate::arch::Activation::Silu {
        return no(&format!("hidden_act `{}`", cfg.hf.hidden_act.as_deref().unwrap_or("silu")));
    }
    for l in 0..cfg.num_hidden_layers {
        if cfg.layer_window(l)?.is_some() {
            return no("a sliding attention window");
        }
    }
    if let RopeScaling::Dynamic { .. } = cfg.rope()?.scaling {
        return no("dynamic rope scaling");
    }
    Ok(())
}

/// llama.cpp's name for a Hugging Face weight name (without `.weight`/`.bias`).
fn gguf_module(hf: &str) -> Option<String> {
    match hf {
        "model.embed_tokens" => return Some("token_embd".into()),
        "model.norm" => return Some("output_norm".into()),
        "lm_head" => return Some("output".into()),
        _ => {}
    }
    let rest = hf.strip_prefix("model.layers.")?;
    let (l, m) = rest.split_once('.')?;
    let m = match m {
        "input_layernorm" => "attn_norm",
        "post_attention_layernorm" => "ffn_norm",
        "self_attn.q_proj" => "attn_q",
        "self_attn.k_proj" => "attn_k",
        "self_attn.v_proj" => "attn_v",
        "self_attn.o_proj" => "attn_output",
        "mlp.gate_proj" => "ffn_gate",
        "mlp.up_proj" => "ffn_up",
        "mlp.down_proj" => "ffn_down",
        _ => return None,
    };
    Some(format!("blk.{l}.{m}"))
}

/// Rows of each head reordered from halves (Hugging Face) to interleaved
/// pairs (llama.cpp): row `2i` ← `i`, row `2i+1` ← `half + i`.
fn permute(w: &Tensor, heads: usize) -> candle_core::Result<Tensor> {
    let d = w.dims().to_vec();
    let rest: usize = d[1..].iter().product();
    w.reshape((heads, 2, d[0] / heads / 2, rest))?.transpose(1, 2)?.contiguous()?.reshape(d)
}

/// The inverse of [`permute`].
fn unpermute(w: &Tensor, heads: usize) -> candle_core::Result<Tensor> {
    let d = w.dims().to_vec();
    let rest: usize = d[1..].iter().product();
    w.reshape((heads, d[0] / heads / 2, 2, rest))?.transpose(1, 2)?.contiguous()?.reshape(d)
}

/// Heads whose rows are permuted for a q or k weight (`None` for others).
fn permute_heads(cfg: &ArchConfig, hf: &str) -> Option<usize> {
    if hf.ends_with("self_attn.q_proj") {
        Some(cfg.num_attention_heads)
    } else if hf.ends_with("self_attn.k_proj") {
        Some(cfg.kv_heads())
    } else {
        None
    }
}

fn quantize(t: &Tensor, ty: GgufType, name: &str) -> Result<QTensor, String> {
    // Vectors stay f32; a row length q8_0's blocks do not divide falls back to f16.
    let ty = match ty {
        _ if t.rank() < 2 => GgufType::F32,
        GgufType::Q8_0 if t.dims()[t.rank() - 1] % 32 != 0 => GgufType::F16,
        ty => ty,
    };
    let t = t.to_dtype(candle_core::DType::F32).and_then(|t| t.contiguous()).map_err(|e| format!("`{name}`: {e}"))?;
    QTensor::quantize(&t, ty.ggml()).map_err(|e| format!("`{name}`: cannot store as {ty:?}: {e}"))
}

/// `llama.*` and `general.*` keys for `cfg`.
fn arch_metadata(cfg: &ArchConfig, name: &str) -> Result<Vec<(String, Value)>, String> {
    let u = |n: usize| Value::U32(n as u32);
    let rope = cfg.rope()?;
    let mut m = vec![
        ("general.architecture".into(), Value::String("llama".into())),
        ("general.name".into(), Value::String(name.into())),
        ("llama.vocab_size".into(), u(cfg.vocab_size)),
        ("llama.context_length".into(), u(cfg.max_position_embeddings)),
        ("llama.embedding_length".into(), u(cfg.hidden_size)),
        ("llama.block_count".into(), u(cfg.num_hidden_layers)),
        ("llama.feed_forward_length".into(), u(cfg.intermediate_size)),
        ("llama.attention.head_count".into(), u(cfg.num_attention_heads)),
        ("llama.attention.head_count_kv".into(), u(cfg.kv_heads())),
        ("llama.attention.key_length".into(), u(cfg.head_dim())),
        ("llama.attention.value_length".into(), u(cfg.head_dim())),
        ("llama.rope.dimension_count".into(), u(cfg.head_dim())),
        ("llama.rope.freq_base".into(), Value::F32(rope.theta as f32)),
        ("llama.attention.layer_norm_rms_epsilon".into(), Value::F32(cfg.rms_norm_eps as f32)),
    ];
    if let RopeScaling::Linear { factor } = rope.scaling {
        m.push(("llama.rope.scaling.type".into(), Value::String("linear".into())));
        m.push(("llama.rope.scaling.factor".into(), Value::F32(factor as f32)));
    }
    Ok(m)
}

/// Llama 3.1's rotary scaling as llama.cpp takes it: a `rope_freqs` vector
/// each frequency is divided by.
fn llama3_rope_factors(cfg: &ArchConfig) -> Result<Option<Vec<f32>>, String> {
    let rope = cfg.rope()?;
    let RopeScaling::Llama3 { factor, low_freq_factor, high_freq_factor, original_max_position_embeddings: old } =
        rope.scaling
    else {
        return Ok(None);
    };
    let dim = cfg.head_dim();
    let (low_wavelen, high_wavelen) = (old / low_freq_factor, old / high_freq_factor);
    let factors = (0..dim / 2)
        .map(|i| {
            let freq = 1.0 / rope.theta.powf((2 * i) as f64 / dim as f64);
            let wavelen = 2.0 * std::f64::consts::PI / freq;
            let f = if wavelen < high_wavelen {
                1.0
            } else if wavelen > low_wavelen {
                factor
            } else {
                let smooth = (old / wavelen - low_freq_factor) / (high_freq_factor - low_freq_factor);
                1.0 / ((1.0 - smooth) / factor + smooth)
            };
            f as f32
        })
        .collect();
    Ok(Some(factors))
}

/// The character byte-level BPE (GPT-2's) writes byte `b` as: printable
/// Latin-1 bytes stand for themselves, the others take the characters from
/// U+0100 on, in byte order.
fn gpt2_byte_char(b: u8) -> char {
    let printable = |c: u8| matches!(c, b'!'..=b'~' | 0xA1..=0xAC | 0xAE..=0xFF);
    if printable(b) {
        return char::from(b);
    }
    let shifted = (0..b).filter(|&c| !printable(c)).count() as u32;
    char::from_u32(0x100 + shifted).expect("below U+0200")
}

/// `tokenizer.ggml.*` for a tokenizer: a BPE `tokenizer.json` as llama.cpp's
/// `gpt2` vocabulary (tokens, types, merges), specials by id; dvx's byte
/// tokenizer as a `gpt2` vocabulary of the 256 bytes without merges, then
/// its three specials; other tokenizers as `none` (no vocabulary: llama.cpp
/// then needs token ids from the caller).
fn tokenizer_metadata(tok: &Tok, tokenizer_json: Option<&Path>, vocab: usize) -> Result<Vec<(String, Value)>, String> {
    let info = &tok.info;
    let mut m = vec![];
    let raw: Option<serde_json::Value> = match tokenizer_json {
        Some(p) => Some(
            serde_json::from_slice(&std::fs::read(p).map_err(|e| format!("cannot read {}: {e}", p.display()))?)
                .map_err(|e| format!("{}: {e}", p.display()))?,
        ),
        None => None,
    };
    let bpe = raw.as_ref().filter(|r| r["model"]["type"] == json!("BPE"));
    match (&tok.tokenizer, bpe) {
        (Tokenizer::Hf(tk), Some(raw)) => {
            let added = tk.get_added_tokens_decoder();
            let mut tokens = Vec::with_capacity(vocab);
            let mut types = Vec::with_capacity(vocab);
            for id in 0..vocab as u32 {
                match (tk.id_to_token(id), added.get(&id)) {
                    (Some(t), Some(a)) => {
                        tokens.push(Value::String(t));
                        types.push(Value::I32(if a.special { 3 } else { 4 }));
                    }
                    (Some(t), None) => {
                        tokens.push(Value::String(t));
                        types.push(Value::I32(1));
                    }
                    // Embedding rows past the tokenizer's ids.
                    (None, _) => {
                        tokens.push(Value::String(format!("[PAD{id}]")));
                        types.push(Value::I32(5));
                    }
                }
            }
            let merges: Vec<Value> = raw["model"]["merges"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|m| match m {
                            serde_json::Value::String(s) => Some(s.clone()),
                            serde_json::Value::Array(p) => {
                                Some(format!("{} {}", p.first()?.as_str()?, p.get(1)?.as_str()?))
                            }
                            _ => None,
                        })
                        .map(Value::String)
                        .collect()
                })
                .unwrap_or_default();
            m.push(("tokenizer.ggml.model".into(), Value::String("gpt2".into())));
            m.push(("tokenizer.ggml.pre".into(), Value::String("default".into())));
            m.push(("tokenizer.ggml.tokens".into(), Value::Array(tokens)));
            m.push(("tokenizer.ggml.token_type".into(), Value::Array(types)));
            m.push(("tokenizer.ggml.merges".into(), Value::Array(merges)));
        }
        (Tokenizer::Bytes, _) => {
            // Byte-level BPE without merges splits text into its bytes: the
            // byte tokenizer's ids, so llama.cpp can tokenize and print text.
            let mut tokens: Vec<Value> = (0..=255u8).map(|b| Value::String(gpt2_byte_char(b).to_string())).collect();
            let mut types = vec![Value::I32(1); tokens.len()];
            for special in ["<s>", "</s>", "<pad>"] {
                tokens.push(Value::String(special.into()));
                types.push(Value::I32(3));
            }
            // Embedding rows past the tokenizer's ids.
            for id in tokens.len()..vocab {
                tokens.push(Value::String(format!("[PAD{id}]")));
                types.push(Value::I32(5));
            }
            m.push(("tokenizer.ggml.model".into(), Value::String("gpt2".into())));
            m.push(("tokenizer.ggml.pre".into(), Value::String("default".into())));
            m.push(("tokenizer.ggml.tokens".into(), Value::Array(tokens)));
            m.push(("tokenizer.ggml.token_type".into(), Value::Array(types)));
            m.push(("tokenizer.ggml.merges".into(), Value::Array(vec![])));
        }
        _ => m.push(("tokenizer.ggml.model".into(), Value::String("none".into()))),
    }
    if let Some(b) = info.bos_token_id {
        m.push(("tokenizer.ggml.bos_token_id".into(), Value::U32(b)));
    }
    m.push(("tokenizer.ggml.add_bos_token".into(), Value::Bool(info.bos_token_id.is_some())));
    m.push(("tokenizer.ggml.eos_token_id".into(), Value::U32(info.eos_token_id)));
    m.push(("tokenizer.ggml.padding_token_id".into(), Value::U32(info.pad_token_id)));
    Ok(m)
}

fn write_file(path: &Path, meta: &[(String, Value)], tensors: &[(String, QTensor)]) -> Result<(), String> {
    let meta: Vec<(&str, &Value)> = meta.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let tensors: Vec<(&str, &QTensor)> = tensors.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let f = std::fs::File::create(path).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    let mut w = std::io::BufWriter::new(f);
    gguf_file::write(&mut w, &meta, &tensors).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    std::io::Write::flush(&mut w).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    drop(w);
    for (key, value) in &meta {
        if STRING_ARRAYS.contains(key) && matches!(value, Value::Array(a) if a.is_empty()) {
            type_empty_array_as_strings(path, key)?;
        }
    }
    Ok(())
}

/// Keys llama.cpp reads as arrays of strings, even when empty.
const STRING_ARRAYS: [&str; 1] = ["tokenizer.ggml.merges"];

/// candle writes an empty array with elements of type u32 (its `Value`
/// has no element type); llama.cpp refuses `tokenizer.ggml.merges` unless
/// it is an array of strings. Set that empty array's element type in the
/// written header.
fn type_empty_array_as_strings(path: &Path, key: &str) -> Result<(), String> {
    use std::io::{Read, Seek, SeekFrom, Write};
    const ARRAY: u32 = 9;
    const U32: u32 = 4;
    const STRING: u32 = 8;
    let fail = |e: &dyn std::fmt::Display| format!("cannot write {}: {e}", path.display());
    let mut entry = (key.len() as u64).to_le_bytes().to_vec();
    entry.extend_from_slice(key.as_bytes());
    entry.extend_from_slice(&ARRAY.to_le_bytes());
    let at = entry.len() as u64;
    entry.extend_from_slice(&U32.to_le_bytes());
    entry.extend_from_slice(&0u64.to_le_bytes());
    let mut file = std::fs::OpenOptions::new().read(true).write(true).open(path).map_err(|e| fail(&e))?;
    // The metadata comes first; a vocabulary's arrays are a few MB.
    let mut head = Vec::new();
    (&mut file).take(64 << 20).read_to_end(&mut head).map_err(|e| fail(&e))?;
    let found: Vec<usize> = head.windows(entry.len()).enumerate().filter(|(_, w)| *w == entry).map(|(i, _)| i).collect();
    let [start] = found[..] else {
        return Err(fail(&format!("expected one empty `{key}` in the header, found {}", found.len())));
    };
    file.seek(SeekFrom::Start(start as u64 + at)).map_err(|e| fail(&e))?;
    file.write_all(&STRING.to_le_bytes()).map_err(|e| fail(&e))
}

/// Write a full model (Hugging Face weight names) as a llama GGUF.
pub fn write_model(
    path: &Path,
    cfg: &ArchConfig,
    weights: &BTreeMap<String, Tensor>,
    tok: &Tok,
    tokenizer_json: Option<&Path>,
    ty: GgufType,
    name: &str,
) -> Result<(), String> {
    check_supported(cfg)?;
    let mut meta = arch_metadata(cfg, name)?;
    meta.push(("general.file_type".into(), Value::U32(ty.file_type())));
    meta.extend(tokenizer_metadata(tok, tokenizer_json, cfg.vocab_size)?);
    let mut tensors = Vec::new();
    if let Some(f) = llama3_rope_factors(cfg)? {
        let n = f.len();
        let t = Tensor::from_vec(f, n, &Device::Cpu).map_err(|e| e.to_string())?;
        tensors.push(("rope_freqs.weight".to_string(), quantize(&t, GgufType::F32, "rope_freqs")?));
    }
    for (hf_name, t) in weights {
        let (module, suffix) = hf_name.rsplit_once('.').ok_or_else(|| format!("weight `{hf_name}`"))?;
        let g = gguf_module(module).ok_or_else(|| format!("GGUF export: no llama.cpp name for weight `{hf_name}`"))?;
        let t = match permute_heads(cfg, module) {
            Some(h) => permute(t, h).map_err(|e| format!("`{hf_name}`: {e}"))?,
            None => t.clone(),
        };
        let gname = format!("{g}.{suffix}");
        tensors.push((gname.clone(), quantize(&t, ty, &gname)?));
    }
    write_file(path, &meta, &tensors)
}

/// Write a LoRA adapter (dvx names, see [`crate::lora::adapter_shapes`]) in
/// llama.cpp's adapter layout, for the base `cfg`.
pub fn write_lora(
    path: &Path,
    cfg: &ArchConfig,
    p: &LoraParams,
    adapters: &BTreeMap<String, Tensor>,
    ty: GgufType,
    name: &str,
) -> Result<(), String> {
    check_supported(cfg)?;
    let mut meta = arch_metadata(cfg, name)?;
    meta.push(("general.type".into(), Value::String("adapter".into())));
    meta.push(("adapter.type".into(), Value::String("lora".into())));
    meta.push(("adapter.lora.alpha".into(), Value::F32(p.alpha as f32)));
    meta.push(("general.file_type".into(), Value::U32(ty.file_type())));
    let mut tensors = Vec::new();
    for (dvx_name, t) in adapters {
        let (module, ab) = dvx_name
            .strip_suffix(".lora_a.weight")
            .map(|m| (m, "lora_a"))
            .or_else(|| dvx_name.strip_suffix(".lora_b.weight").map(|m| (m, "lora_b")))
            .ok_or_else(|| format!("adapter weight `{dvx_name}`"))?;
        let g = gguf_module(module).ok_or_else(|| format!("GGUF export: no llama.cpp name for `{dvx_name}`"))?;
        // B's rows are the projection's outputs: permuted like the weight.
        let t = match (ab, permute_heads(cfg, module)) {
            ("lora_b", Some(h)) => permute(t, h).map_err(|e| format!("`{dvx_name}`: {e}"))?,
            _ => t.clone(),
        };
        let gname = format!("{g}.weight.{ab}");
        tensors.push((gname.clone(), quantize(&t, ty, &gname)?));
    }
    write_file(path, &meta, &tensors)
}

/// A GGUF file as read back: its metadata and tensors (dequantised to f32).
pub struct GgufRead {
    /// Every metadata key.
    pub metadata: HashMap<String, Value>,
    /// llama.cpp name → tensor.
    pub tensors: BTreeMap<String, Tensor>,
}

/// Read every tensor of a GGUF file, dequantised.
pub fn read(path: &Path, dev: &Device) -> Result<GgufRead, String> {
    let err = |e: candle_core::Error| format!("{}: {e}", path.display());
    let mut f = std::fs::File::open(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let content = gguf_file::Content::read(&mut f).map_err(err)?;
    let mut tensors = BTreeMap::new();
    for name in content.tensor_infos.keys() {
        let q = content.tensor(&mut f, name, dev).map_err(err)?;
        tensors.insert(name.clone(), q.dequantize(dev).map_err(err)?);
    }
    Ok(GgufRead { metadata: content.metadata, tensors })
}

fn meta_u(m: &HashMap<String, Value>, k: &str) -> Result<usize, String> {
    m.get(k)
        .ok_or_else(|| format!("GGUF key `{k}` is missing"))?
        .to_u32()
        .map(|v| v as usize)
        .map_err(|e| format!("`{k}`: {e}"))
}
fn meta_f(m: &HashMap<String, Value>, k: &str) -> Result<f32, String> {
    m.get(k).ok_or_else(|| format!("GGUF key `{k}` is missing"))?.to_f32().map_err(|e| format!("`{k}`: {e}"))
}

/// The architecture a llama GGUF's metadata describes (`has_output`: it
/// has an untied `output.weight`), and llama.cpp → Hugging Face weight names.
fn model_layout(
    path: &Path,
    m: &HashMap<String, Value>,
    has_output: bool,
    has_rope_freqs: bool,
) -> Result<(ArchConfig, HashMap<String, String>), String> {
    let arch = m.get("general.architecture").and_then(|v| v.to_string().ok()).cloned().unwrap_or_default();
    if arch != "llama" {
        return Err(format!("{}: general.architecture `{arch}`; dvx reads llama GGUFs", path.display()));
    }
    if has_rope_freqs {
        return Err(format!("{}: Llama 3 rope factors (`rope_freqs`) are not read back", path.display()));
    }
    let mut cfg = json!({
        "architectures": ["LlamaForCausalLM"], "model_type": "llama",
        "vocab_size": meta_u(m, "llama.vocab_size")?,
        "hidden_size": meta_u(m, "llama.embedding_length")?,
        "intermediate_size": meta_u(m, "llama.feed_forward_length")?,
        "num_hidden_layers": meta_u(m, "llama.block_count")?,
        "num_attention_heads": meta_u(m, "llama.attention.head_count")?,
        "num_key_value_heads": meta_u(m, "llama.attention.head_count_kv")?,
        "head_dim": meta_u(m, "llama.attention.key_length")?,
        "max_position_embeddings": meta_u(m, "llama.context_length")?,
        "rms_norm_eps": meta_f(m, "llama.attention.layer_norm_rms_epsilon")? as f64,
        "rope_theta": meta_f(m, "llama.rope.freq_base")? as f64,
        "tie_word_embeddings": !has_output,
    });
    if m.get("llama.rope.scaling.type").and_then(|v| v.to_string().ok()).is_some_and(|t| t == "linear") {
        cfg["rope_scaling"] = json!({"rope_type": "linear", "factor": meta_f(m, "llama.rope.scaling.factor")? as f64});
    }
    let cfg: ArchConfig = serde_json::from_value(cfg).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut by_gguf = HashMap::new();
    for (hf, _) in cfg.weight_shapes() {
        let (module, suffix) = hf.rsplit_once('.').expect("weight names have a suffix");
        by_gguf.insert(format!("{}.{suffix}", gguf_module(module).expect("llama weights have gguf names")), hf.clone());
    }
    Ok((cfg, by_gguf))
}

/// Read a llama GGUF back into an [`ArchConfig`] and Hugging Face weight
/// names (q/k rows un-permuted), for dvx's transformer.
pub fn read_model(path: &Path, dev: &Device) -> Result<(ArchConfig, BTreeMap<String, Tensor>), String> {
    let g = read(path, dev)?;
    let has = |n: &str| g.tensors.contains_key(n);
    let (cfg, by_gguf) = model_layout(path, &g.metadata, has("output.weight"), has("rope_freqs.weight"))?;
    let mut w = BTreeMap::new();
    for (gname, t) in g.tensors {
        let hf = by_gguf.get(&gname).ok_or_else(|| format!("{}: unexpected tensor `{gname}`", path.display()))?;
        let module = hf.rsplit_once('.').map_or(hf.as_str(), |(m, _)| m);
        let t = match permute_heads(&cfg, module) {
            Some(h) => unpermute(&t, h).map_err(|e| format!("`{gname}`: {e}"))?,
            None => t,
        };
        w.insert(hf.clone(), t);
    }
    Ok((cfg, w))
}

/// A llama GGUF as dvx runs it quantized: vectors (norms) dequantised,
/// matrices kept as stored (q8_0 blocks …) under Hugging Face names.
pub struct QuantizedModel {
    /// The architecture.
    pub cfg: ArchConfig,
    /// Vectors, f32.
    pub dense: BTreeMap<String, Tensor>,
    /// Matrices, as stored.
    pub matrices: BTreeMap<String, QWeight>,
    /// The file's metadata.
    pub metadata: HashMap<String, Value>,
}

impl QuantizedModel {
    /// The transformer over these weights ([`Transformer::with_quantized`]).
    pub fn transformer(&self, dev: &Device) -> Result<crate::Transformer, String> {
        crate::Transformer::with_quantized(&self.cfg, &self.dense, &self.matrices, dev).map_err(|e| e.to_string())
    }

    /// Parameters of the model.
    pub fn params(&self) -> usize {
        self.dense.values().map(Tensor::elem_count).sum::<usize>()
            + self.matrices.values().map(QWeight::elem_count).sum::<usize>()
    }
}

/// Read a llama GGUF keeping its matrices as stored. q and k rows are put
/// back in Hugging Face's order a whole row at a time: a row's blocks move
/// together, so nothing is requantised.
pub fn read_quantized(path: &Path, dev: &Device) -> Result<QuantizedModel, String> {
    let err = |e: candle_core::Error| format!("{}: {e}", path.display());
    let mut f = std::fs::File::open(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let content = gguf_file::Content::read(&mut f).map_err(err)?;
    let has = |n: &str| content.tensor_infos.contains_key(n);
    let (cfg, by_gguf) = model_layout(path, &content.metadata, has("output.weight"), has("rope_freqs.weight"))?;
    let (mut dense, mut matrices) = (BTreeMap::new(), BTreeMap::new());
    for gname in content.tensor_infos.keys() {
        let hf = by_gguf.get(gname).ok_or_else(|| format!("{}: unexpected tensor `{gname}`", path.display()))?;
        let q = content.tensor(&mut f, gname, dev).map_err(err)?;
        if q.rank() < 2 {
            dense.insert(hf.clone(), q.dequantize(dev).map_err(err)?);
            continue;
        }
        let module = hf.rsplit_once('.').map_or(hf.as_str(), |(m, _)| m);
        let q = match permute_heads(&cfg, module) {
            Some(h) => unpermute_rows(&q, h, dev).map_err(|e| format!("{}: `{gname}`: {e}", path.display()))?,
            None => q,
        };
        matrices.insert(hf.clone(), QWeight::new(q).map_err(err)?);
    }
    Ok(QuantizedModel { cfg, dense, matrices, metadata: content.metadata })
}

/// [`unpermute`] on a stored matrix: its rows' bytes reordered.
fn unpermute_rows(q: &QTensor, heads: usize, dev: &Device) -> candle_core::Result<QTensor> {
    let (rows, _) = q.shape().dims2()?;
    let order = unpermute(&Tensor::arange(0u32, rows as u32, &Device::Cpu)?.reshape((rows, 1))?, heads)?
        .flatten_all()?
        .to_vec1::<u32>()?;
    let data = q.data()?;
    let row = data.len() / rows;
    let mut out = Vec::with_capacity(data.len());
    for src in order {
        out.extend_from_slice(&data[src as usize * row..(src as usize + 1) * row]);
    }
    QTensor::new(QStorage::from_data(std::borrow::Cow::Owned(out), dev, q.dtype())?, q.shape().clone())
}

/// Read a llama.cpp LoRA GGUF back: alpha and the weights under dvx names.
pub fn read_lora(path: &Path, cfg: &ArchConfig, dev: &Device) -> Result<(f32, BTreeMap<String, Tensor>), String> {
    let g = read(path, dev)?;
    let kind = g.metadata.get("adapter.type").and_then(|v| v.to_string().ok()).cloned().unwrap_or_default();
    if kind != "lora" {
        return Err(format!("{}: not a LoRA adapter GGUF (adapter.type `{kind}`)", path.display()));
    }
    let alpha = meta_f(&g.metadata, "adapter.lora.alpha")?;
    let mut out = BTreeMap::new();
    for l in 0..cfg.num_hidden_layers {
        for t in crate::model::LORA_TARGETS {
            let module = module_path(l, t);
            let g_mod = gguf_module(&module).expect("llama modules have gguf names");
            for ab in ["lora_a", "lora_b"] {
                if let Some(x) = g.tensors.get(&format!("{g_mod}.weight.{ab}")) {
                    let x = match (ab, permute_heads(cfg, &module)) {
                        ("lora_b", Some(h)) => unpermute(x, h).map_err(|e| e.to_string())?,
                        _ => x.clone(),
                    };
                    out.insert(format!("{module}.{ab}.weight"), x);
                }
            }
        }
    }
    Ok((alpha, out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{init_weights, Transformer};
    use crate::testkit::tiny;

    /// GPT-2's byte characters: 256 distinct ones, the known points right.
    #[test]
    fn byte_characters_are_gpt2s() {
        let chars: std::collections::BTreeSet<char> = (0..=255u8).map(gpt2_byte_char).collect();
        assert_eq!(chars.len(), 256);
        for (b, c) in [(b'A', 'A'), (b' ', '\u{120}'), (b'\n', '\u{10A}'), (0, '\u{100}'), (0x7F, '\u{121}'), (0xAD, '\u{143}'), (0xFF, '\u{FF}')] {
            assert_eq!(gpt2_byte_char(b), c, "byte {b:#x}");
        }
    }

    fn logits(cfg: &ArchConfig, w: &BTreeMap<String, Tensor>) -> Vec<f32> {
        let dev = Device::Cpu;
        let ids = Tensor::from_slice(&[1u32, 5, 2, 6, 3, 4], (1, 6), &dev).unwrap();
        let m = Transformer::new(cfg, w, &dev).unwrap();
        m.forward(&ids, None).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap()
    }

    /// Largest difference relative to the largest logit.
    fn rel_err(a: &[f32], b: &[f32]) -> f32 {
        let scale = a.iter().fold(0f32, |m, x| m.max(x.abs()));
        a.iter().zip(b).fold(0f32, |m, (x, y)| m.max((x - y).abs())) / scale
    }

    #[test]
    fn permute_round_trips_and_interleaves() {
        let t = Tensor::arange(0f32, 16., &Device::Cpu).unwrap().reshape((8, 2)).unwrap();
        let p = permute(&t, 2).unwrap();
        // Head 0 rows 0..4: halves [0,1] [2,3] interleave to 0,2,1,3.
        assert_eq!(p.to_vec2::<f32>().unwrap()[..4], [[0., 1.], [4., 5.], [2., 3.], [6., 7.]]);
        assert_eq!(unpermute(&p, 2).unwrap().to_vec2::<f32>().unwrap(), t.to_vec2::<f32>().unwrap());
    }

    #[test]
    fn model_round_trips_with_matching_logits() {
        let dev = Device::Cpu;
        // Rows of 64 and 128: q8_0's blocks of 32 apply to every matrix.
        let cfg = ArchConfig { hidden_size: 64, intermediate_size: 128, tie_word_embeddings: false, ..tiny(64) };
        let w = init_weights(&cfg, 11, &dev).unwrap();
        let want = logits(&cfg, &w);
        let dir = tempfile::tempdir().unwrap();
        for (ty, tol) in [(GgufType::F32, 1e-6), (GgufType::F16, 1e-2), (GgufType::Q8_0, 3e-2)] {
            let p = dir.path().join("m.gguf");
            write_model(&p, &cfg, &w, &Tok::bytes(), None, ty, "tiny").unwrap();
            assert_byte_vocabulary(&p);
            let (back_cfg, back) = read_model(&p, &dev).unwrap();
            assert_eq!(back_cfg.weight_shapes(), cfg.weight_shapes());
            let err = rel_err(&want, &logits(&back_cfg, &back));
            assert!(err <= tol, "{ty:?}: relative error {err}");
        }
    }

    /// The same file run on its stored blocks (candle's QMatMul) rather than
    /// dequantised: logits within the same tolerance of the f32 model, and
    /// the cached generation path agrees with the full forward.
    #[test]
    fn quantized_model_runs_on_its_blocks() {
        let dev = Device::Cpu;
        let dir = tempfile::tempdir().unwrap();
        for tie in [false, true] {
            let cfg = ArchConfig { hidden_size: 64, intermediate_size: 128, tie_word_embeddings: tie, ..tiny(64) };
            let w = init_weights(&cfg, 11, &dev).unwrap();
            let want = logits(&cfg, &w);
            for (ty, tol) in [(GgufType::F16, 1e-2), (GgufType::Q8_0, 3e-2)] {
                let p = dir.path().join("m.gguf");
                write_model(&p, &cfg, &w, &Tok::bytes(), None, ty, "tiny").unwrap();
                let q = read_quantized(&p, &dev).unwrap();
                assert_eq!(q.cfg.weight_shapes(), cfg.weight_shapes());
                assert_eq!(q.params(), crate::model::count_params(w.values()));
                if ty == GgufType::Q8_0 {
                    assert!(q.matrices.values().all(|m| m.dtype() == GgmlDType::Q8_0));
                }
                let m = q.transformer(&dev).unwrap();
                let ids = Tensor::from_slice(&[1u32, 5, 2, 6, 3, 4], (1, 6), &dev).unwrap();
                let got = m.forward(&ids, None).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
                let err = rel_err(&want, &got);
                assert!(err <= tol, "{ty:?} tied={tie}: relative error {err}");
                // Dequantised and quantized runs of one file agree closely.
                let (dcfg, dw) = read_model(&p, &dev).unwrap();
                let deq = logits(&dcfg, &dw);
                eprintln!("{ty:?} tied={tie}: vs f32 {err:.2e}, vs dequantised {:.2e}", rel_err(&deq, &got));
                assert!(rel_err(&deq, &got) <= 2e-2, "{ty:?}: {}", rel_err(&deq, &got));
                let mut cache = m.new_cache();
                let first = m.forward_cached(&[1, 5, 2], &mut cache).unwrap();
                let next = m.forward_cached(&[6, 3, 4], &mut cache).unwrap();
                let cached: Vec<f32> =
                    Tensor::cat(&[first, next], 0).unwrap().flatten_all().unwrap().to_vec1().unwrap();
                assert!(rel_err(&got, &cached) <= 1e-4, "{ty:?}: cached {}", rel_err(&got, &cached));
                // The loss goes through the quantized head too.
                let l = m.loss(&ids, &[5, 2, 6, 3, 4, 1], &[1.0; 6], None).unwrap().to_scalar::<f32>().unwrap();
                assert!(l.is_finite() && l > 0.0, "{l}");
            }
        }
    }

    /// The GGUF files llama.cpp reads back (model/tests/fixtures/gguf,
    /// `compare_llama_cpp.py` there, run by hand): a tiny two-layer llama in
    /// f16 and q8_0 and dvx's logits on fixed ids — of the f32 model and of
    /// each file run on its blocks. `DVX_BLESS=1` writes them; otherwise dvx
    /// must still give the committed logits for the committed files.
    #[test]
    fn llama_cpp_fixture() {
        let dev = Device::Cpu;
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/gguf");
        let ids: Vec<u32> = vec![1, 72, 101, 108, 108, 111, 32, 119, 111, 114, 108, 100, 33, 10, 7, 200];
        let run = |m: &Transformer| -> Vec<Vec<f32>> {
            let t = Tensor::from_slice(&ids, (1, ids.len()), &dev).unwrap();
            m.forward(&t, None).unwrap().to_vec2::<f32>().unwrap()
        };
        let types = [(GgufType::F16, "f16"), (GgufType::Q8_0, "q8_0")];
        if std::env::var_os("DVX_BLESS").is_some() {
            std::fs::create_dir_all(&dir).unwrap();
            let cfg = ArchConfig {
                hidden_size: 64,
                intermediate_size: 128,
                num_hidden_layers: 2,
                max_position_embeddings: 64,
                tie_word_embeddings: false,
                ..tiny(crate::tokenizer::BYTE_VOCAB)
            };
            // Weights ×4 so the logits are far from uniform.
            let w: BTreeMap<String, Tensor> = init_weights(&cfg, 23, &dev)
                .unwrap()
                .into_iter()
                .map(|(k, t)| if k.ends_with("norm.weight") { (k, t) } else { (k, (t * 4.0).unwrap()) })
                .collect();
            let mut doc = json!({"ids": ids, "f32": run(&Transformer::new(&cfg, &w, &dev).unwrap())});
            for (ty, name) in types {
                let p = dir.join(format!("tiny-{name}.gguf"));
                write_model(&p, &cfg, &w, &Tok::bytes(), None, ty, "dvx-tiny").unwrap();
                doc[name] = json!(run(&read_quantized(&p, &dev).unwrap().transformer(&dev).unwrap()));
            }
            std::fs::write(dir.join("dvx_logits.json"), serde_json::to_string(&doc).unwrap() + "\n").unwrap();
        }
        let doc: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join("dvx_logits.json")).unwrap()).unwrap();
        let flat = |v: &serde_json::Value| -> Vec<f32> {
            v.as_array()
                .unwrap()
                .iter()
                .flat_map(|r| r.as_array().unwrap().iter().map(|x| x.as_f64().unwrap() as f32))
                .collect()
        };
        for (_, name) in types {
            let m = read_quantized(&dir.join(format!("tiny-{name}.gguf")), &dev).unwrap().transformer(&dev).unwrap();
            let got: Vec<f32> = run(&m).into_iter().flatten().collect();
            assert!(rel_err(&flat(&doc[name]), &got) < 1e-5, "{name}: dvx's logits changed");
            assert!(rel_err(&flat(&doc["f32"]), &got) < 3e-2, "{name}: far from f32");
        }
        assert_byte_vocabulary(&dir.join("tiny-f16.gguf"));
    }

    /// The byte tokenizer as llama.cpp tokenizes and prints it: 256 byte
    /// characters, three specials, and merges an (empty) array of strings.
    fn assert_byte_vocabulary(path: &Path) {
        let content = gguf_file::Content::read(&mut std::fs::File::open(path).unwrap()).unwrap();
        let meta = |k: &str| content.metadata.get(k).unwrap_or_else(|| panic!("no {k}"));
        assert_eq!(meta("tokenizer.ggml.model").to_string().unwrap(), "gpt2");
        let tokens = meta("tokenizer.ggml.tokens").to_vec().unwrap();
        assert_eq!(tokens.len(), crate::tokenizer::BYTE_VOCAB);
        assert_eq!(tokens[b' ' as usize].to_string().unwrap(), "\u{120}");
        assert_eq!(tokens[256].to_string().unwrap(), "<s>");
        let mut merges = 21u64.to_le_bytes().to_vec();
        merges.extend_from_slice(b"tokenizer.ggml.merges");
        merges.extend_from_slice(&[9, 0, 0, 0, 8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        assert!(std::fs::read(path).unwrap().windows(merges.len()).any(|w| w == merges), "merges: an empty array of strings");
    }
}
