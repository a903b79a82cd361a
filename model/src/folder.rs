//! Model folders: `config.json` (Hugging Face fields plus a `dvx` section),
//! `model.safetensors` (or shards `model-*.safetensors`) or
//! `adapter.safetensors`, and `tokenizer.json` when the model has one.
//! Adapters are written in PEFT's layout ([`crate::peft`]); folders holding
//! `adapter.safetensors` and a `dvx.adapter` section (dvx before PEFT) still load.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use serde::{Deserialize, Serialize};

use crate::arch::refuse_unimplemented;
use crate::lora::{self, LoraParams};
use crate::model::{count_params, to_f32, ArchConfig, Transformer};
use crate::template::TemplateSet;
use crate::tokenizer::{EosSpec, Tok, TokenizerInfo};

/// Bumped when the folder layout changes.
pub const FORMAT: u32 = 1;

/// What dvx adds to `config.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DvxMeta {
    /// Folder layout version.
    pub format: u32,
    /// The tokenizer and its specials.
    pub tokenizer: TokenizerInfo,
    /// How records become text.
    pub template: TemplateSet,
    /// Set when the folder holds a LoRA adapter rather than full weights.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub adapter: Option<AdapterInfo>,
}

/// An adapter's settings and the base it was trained on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdapterInfo {
    /// Rank, alpha, targets.
    pub lora: LoraParams,
    /// blake3 of the base's weight files: an adapter only fits its own base.
    pub base_weights: String,
}

/// `config.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FolderConfig {
    /// The architecture, flattened into `config.json` as Hugging Face writes it.
    #[serde(flatten)]
    pub arch: ArchConfig,
    /// Hugging Face's specials, read from a base (ours keep them in `dvx`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bos_token_id: Option<serde_json::Value>,
    /// As above.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eos_token_id: Option<serde_json::Value>,
    /// Absent in folders not written by dvx.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dvx: Option<DvxMeta>,
}

/// Read `config.json` of a model folder.
pub fn read_config(dir: &Path) -> Result<FolderConfig, String> {
    let p = dir.join("config.json");
    let text = std::fs::read_to_string(&p).map_err(|e| format!("cannot read {}: {e}", p.display()))?;
    let raw: serde_json::Value = serde_json::from_str(&text).map_err(|e| format!("{}: {e}", p.display()))?;
    refuse_unimplemented(&raw).map_err(|e| format!("{}: {e}", p.display()))?;
    let cfg: FolderConfig = serde_json::from_value(raw).map_err(|e| format!("{}: {e}", p.display()))?;
    cfg.arch.validate().map_err(|e| format!("{}: {e}", p.display()))?;
    Ok(cfg)
}

/// The weight files of a folder, in load order: the adapter, or the model
/// (one file or shards).
pub fn weight_files(dir: &Path, adapter: bool) -> Result<Vec<PathBuf>, String> {
    if adapter {
        let p = dir.join("adapter.safetensors");
        return if p.is_file() { Ok(vec![p]) } else { Err(format!("{} is missing", p.display())) };
    }
    let single = dir.join("model.safetensors");
    if single.is_file() {
        return Ok(vec![single]);
    }
    let mut shards: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| format!("cannot list {}: {e}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            let n = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
            n.starts_with("model-") && n.ends_with(".safetensors")
        })
        .collect();
    shards.sort();
    if shards.is_empty() {
        return Err(format!("{}: no model.safetensors", dir.display()));
    }
    Ok(shards)
}

/// blake3 over the files' bytes, in order.
pub fn fingerprint(files: &[PathBuf]) -> Result<String, String> {
    let mut h = blake3::Hasher::new();
    for f in files {
        let file = std::fs::File::open(f).map_err(|e| format!("cannot read {}: {e}", f.display()))?;
        h.update_reader(file).map_err(|e| format!("cannot read {}: {e}", f.display()))?;
    }
    Ok(h.finalize().to_hex().to_string())
}

/// Total size of `files` in bytes.
pub fn size_on_disk(files: &[PathBuf]) -> u64 {
    files.iter().filter_map(|f| std::fs::metadata(f).ok()).map(|m| m.len()).sum()
}

/// Load the named tensors (checking shapes), as f32.
pub fn load_tensors(
    files: &[PathBuf],
    shapes: &[(String, Vec<usize>)],
    dev: &Device,
) -> Result<BTreeMap<String, Tensor>, String> {
    // SAFETY: the files are not modified while mapped: they are stage inputs
    // or outputs the engine does not touch during the run.
    let vb = unsafe { candle_nn::VarBuilder::from_mmaped_safetensors(files, DType::F32, dev) }
        .map_err(|e| format!("cannot read {}: {e}", files[0].display()))?;
    let mut out = BTreeMap::new();
    for (name, shape) in shapes {
        let t = vb
            .get(shape.as_slice(), name)
            .and_then(to_f32)
            .map_err(|e| format!("{}: weight `{name}`: {e}", files[0].display()))?;
        out.insert(name.clone(), t);
    }
    Ok(out)
}

/// Write a folder: weights under `file`, `config.json`, and the tokenizer.
pub fn write(
    dir: &Path,
    cfg: &FolderConfig,
    weights: &BTreeMap<String, Tensor>,
    file: &str,
    tokenizer_json: Option<&Path>,
) -> Result<(), String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let map: HashMap<&str, Tensor> = weights.iter().map(|(k, v)| (k.as_str(), v.clone())).collect();
    let p = dir.join(file);
    candle_core::safetensors::save(&map, &p).map_err(|e| format!("cannot write {}: {e}", p.display()))?;
    let mut json = serde_json::to_vec_pretty(cfg).map_err(|e| e.to_string())?;
    json.push(b'\n');
    let c = dir.join("config.json");
    std::fs::write(&c, json).map_err(|e| format!("cannot write {}: {e}", c.display()))?;
    if let Some(src) = tokenizer_json {
        let dst = dir.join("tokenizer.json");
        std::fs::copy(src, &dst).map_err(|e| format!("cannot copy {}: {e}", src.display()))?;
    }
    Ok(())
}

/// First id of a Hugging Face `bos_token_id`/`eos_token_id` (an int or a list).
fn first_id(v: &Option<serde_json::Value>) -> Option<u32> {
    match v.as_ref()? {
        serde_json::Value::Number(n) => n.as_u64().map(|n| n as u32),
        serde_json::Value::Array(a) => a.first()?.as_u64().map(|n| n as u32),
        _ => None,
    }
}

/// The tokenizer of a folder: from its `dvx` section, else its
/// `tokenizer.json` with the specials of its `tokenizer_config.json`,
/// `generation_config.json` and `config.json`, else `None`.
pub fn folder_tokenizer(dir: &Path, cfg: &FolderConfig, eos: Option<EosSpec>) -> Result<Option<Tok>, String> {
    if let Some(meta) = &cfg.dvx {
        return Tok::from_info(&meta.tokenizer, dir).map(Some);
    }
    let p = dir.join("tokenizer.json");
    if !p.is_file() {
        return Ok(None);
    }
    let cfg_eos = crate::chat_template::token_ids(cfg.eos_token_id.as_ref());
    Tok::from_model_folder(dir, eos, first_id(&cfg.bos_token_id), &cfg_eos).map(Some)
}

/// The chat template a Hugging Face folder brings (`tokenizer_config.json`
/// or `chat_template.jinja`); `None` for dvx-trained folders (their template
/// is in the `dvx` section) and folders without one.
pub fn folder_chat_template(dir: &Path, cfg: &FolderConfig) -> Result<Option<crate::ChatTemplate>, String> {
    if cfg.dvx.is_some() {
        return Ok(None);
    }
    Ok(crate::ModelChat::read(dir)?.template)
}

/// A model ready to run: full weights, or a base with an adapter attached.
pub struct Loaded {
    /// The network.
    pub model: Transformer,
    /// Its config (the adapter's, for adapters).
    pub cfg: FolderConfig,
    /// Its tokenizer, when known.
    pub tok: Option<Tok>,
    /// Bytes of the folder's own weight files (the adapter only, for adapters).
    pub weight_bytes: u64,
    /// Parameters, base and adapter together.
    pub params: usize,
}

/// Load the model in `dir`; an adapter needs its `base` folder.
pub fn load(dir: &Path, base: Option<&Path>, dev: &Device) -> Result<Loaded, String> {
    if crate::peft::is_peft(dir) {
        return crate::peft::load(dir, base, dev);
    }
    let cfg = read_config(dir)?;
    let adapter = cfg.dvx.as_ref().and_then(|m| m.adapter.clone());
    let own_files = weight_files(dir, adapter.is_some())?;
    let (model, params) = match &adapter {
        None => {
            let w = load_tensors(&own_files, &cfg.arch.weight_shapes(), dev)?;
            let m = Transformer::new(&cfg.arch, &w, dev).map_err(|e| format!("{}: {e}", dir.display()))?;
            (m, count_params(w.values()))
        }
        Some(info) => {
            let base = base.ok_or_else(|| format!("{} holds a LoRA adapter: name its base model", dir.display()))?;
            let base_cfg = read_config(base)?;
            if base_cfg.arch.weight_shapes() != cfg.arch.weight_shapes() {
                return Err(format!("{}: the adapter does not fit base {}", dir.display(), base.display()));
            }
            let base_files = weight_files(base, false)?;
            if fingerprint(&base_files)? != info.base_weights {
                return Err(format!(
                    "{}: the adapter was trained on other base weights than {}",
                    dir.display(),
                    base.display()
                ));
            }
            let w = load_tensors(&base_files, &cfg.arch.weight_shapes(), dev)?;
            let a = load_tensors(&own_files, &lora::adapter_shapes(&cfg.arch, &info.lora), dev)?;
            let mut m = Transformer::new(&cfg.arch, &w, dev).map_err(|e| format!("{}: {e}", base.display()))?;
            lora::attach(&mut m, &info.lora, &a).map_err(|e| format!("{}: {e}", dir.display()))?;
            (m, count_params(w.values()) + count_params(a.values()))
        }
    };
    let tok = folder_tokenizer(dir, &cfg, None)?;
    Ok(Loaded { model, cfg, tok, weight_bytes: size_on_disk(&own_files), params })
}
