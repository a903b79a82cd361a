//! A full model folder transformers loads as it is: weights in the base's
//! dtype (bf16 stays bf16; `torch_dtype` says so in `config.json`),
//! `tokenizer.json`, `tokenizer_config.json` (bos/eos/pad and the chat
//! template) and `generation_config.json` (the ids generation starts and
//! stops with). Used for merged LoRA models and by `export-model`.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use candle_core::{DType, Tensor};
use serde_json::{json, Value};

use crate::folder::{self, FolderConfig};
use crate::template::Template;
use crate::tokenizer::{Tok, Tokenizer};

/// The dtype of the first tensor in a safetensors file, read from its header.
pub fn safetensors_dtype(file: &Path) -> Result<DType, String> {
    let err = |e: String| format!("{}: {e}", file.display());
    let mut f = std::fs::File::open(file).map_err(|e| err(format!("cannot read: {e}")))?;
    let mut len = [0u8; 8];
    f.read_exact(&mut len).map_err(|e| err(format!("not a safetensors file: {e}")))?;
    let len = u64::from_le_bytes(len);
    if len > 100 << 20 {
        return Err(err(format!("safetensors header of {len} bytes")));
    }
    let mut header = vec![0u8; len as usize];
    f.read_exact(&mut header).map_err(|e| err(format!("truncated safetensors header: {e}")))?;
    let header: BTreeMap<String, Value> =
        serde_json::from_slice(&header).map_err(|e| err(format!("bad safetensors header: {e}")))?;
    let dtype = header
        .iter()
        .filter(|(k, _)| *k != "__metadata__")
        .find_map(|(_, v)| v.get("dtype").and_then(Value::as_str))
        .ok_or_else(|| err("no tensors".into()))?;
    match dtype {
        "F32" => Ok(DType::F32),
        "F16" => Ok(DType::F16),
        "BF16" => Ok(DType::BF16),
        other => Err(err(format!("weights of dtype {other}; dvx reads F32, F16 and BF16"))),
    }
}

/// transformers' name for a dtype (`torch_dtype`).
pub fn torch_dtype(d: DType) -> &'static str {
    match d {
        DType::BF16 => "bfloat16",
        DType::F16 => "float16",
        _ => "float32",
    }
}

/// The Jinja chat template transformers' `apply_chat_template` renders for a
/// dvx role template: each turn wrapped in its role's affixes, the eos token
/// after each assistant turn (dvx trains on it), bos first when there is one.
pub fn chat_template(t: &Template) -> String {
    let lit = |s: &str| serde_json::to_string(s).expect("a string serialises");
    format!(
        "{{{{ bos_token if bos_token else '' }}}}{{% for m in messages %}}\
{{% if m['role'] == 'system' %}}{{{{ {} + m['content'] + {} }}}}\
{{% elif m['role'] == 'assistant' %}}{{{{ {} + m['content'] + {} + eos_token }}}}\
{{% else %}}{{{{ {} + m['content'] + {} }}}}{{% endif %}}{{% endfor %}}\
{{% if add_generation_prompt %}}{{{{ {} }}}}{{% endif %}}",
        lit(&t.system),
        lit(&t.system_end),
        lit(&t.assistant),
        lit(&t.assistant_end),
        lit(&t.user),
        lit(&t.user_end),
        lit(&t.assistant),
    )
}

/// Where the tokenizer side files come from.
pub struct TokenizerFiles<'a> {
    /// The tokenizer.
    pub tok: &'a Tok,
    /// Its `tokenizer.json`, copied beside the weights.
    pub tokenizer_json: Option<&'a Path>,
    /// A base folder whose `tokenizer_config.json`, `special_tokens_map.json`
    /// and `generation_config.json` are copied as they are (the model's own
    /// chat template); without one they are written from `template`.
    pub base: Option<&'a Path>,
    /// The chat template trained with, when it is not the base's.
    pub template: &'a Template,
}

/// Write a full model folder in `dtype`: weights, `config.json` (with
/// `torch_dtype` and the specials), and the tokenizer files.
pub fn write_model(
    dir: &Path,
    cfg: &FolderConfig,
    weights: &BTreeMap<String, Tensor>,
    dtype: DType,
    tf: &TokenizerFiles<'_>,
) -> Result<(), String> {
    let cast: BTreeMap<String, Tensor> = weights
        .iter()
        .map(|(k, t)| Ok((k.clone(), t.to_dtype(dtype).map_err(|e| format!("weight `{k}`: {e}"))?)))
        .collect::<Result<_, String>>()?;
    let info = &tf.tok.info;
    let cfg = FolderConfig {
        bos_token_id: info.bos_token_id.map(Value::from),
        eos_token_id: Some(Value::from(info.eos_token_id)),
        ..cfg.clone()
    };
    folder::write(dir, &cfg, &cast, "model.safetensors", tf.tokenizer_json)?;
    // `torch_dtype` is not an ArchConfig field: add it to the JSON written.
    let cpath = dir.join("config.json");
    let mut v: Value = serde_json::from_slice(&std::fs::read(&cpath).map_err(|e| e.to_string())?)
        .map_err(|e| format!("{}: {e}", cpath.display()))?;
    v["torch_dtype"] = json!(torch_dtype(dtype));
    v["pad_token_id"] = json!(info.pad_token_id);
    write_json(&cpath, &v)?;
    write_tokenizer_files(dir, tf)
}

/// `tokenizer_config.json`, `generation_config.json` (and the base's
/// `special_tokens_map.json`): copied from the base when it has them and the
/// template is its own, else written from the tokenizer and template.
pub fn write_tokenizer_files(dir: &Path, tf: &TokenizerFiles<'_>) -> Result<(), String> {
    let info = &tf.tok.info;
    let copied = |name: &str| -> Result<bool, String> {
        let Some(src) = tf.base.map(|b| b.join(name)).filter(|p| p.is_file()) else { return Ok(false) };
        std::fs::copy(&src, dir.join(name)).map_err(|e| format!("cannot copy {}: {e}", src.display()))?;
        Ok(true)
    };
    copied("special_tokens_map.json")?;
    if !copied("generation_config.json")? {
        let mut g = json!({"eos_token_id": info.eos_token_id, "pad_token_id": info.pad_token_id});
        if let Some(b) = info.bos_token_id {
            g["bos_token_id"] = json!(b);
        }
        write_json(&dir.join("generation_config.json"), &g)?;
    }
    let Tokenizer::Hf(tk) = &tf.tok.tokenizer else {
        // dvx's byte tokenizer has no Hugging Face counterpart.
        return Ok(());
    };
    if copied("tokenizer_config.json")? {
        return Ok(());
    }
    let text = |id: u32| tk.id_to_token(id).map(Value::from).unwrap_or(Value::Null);
    let t = json!({
        "tokenizer_class": "PreTrainedTokenizerFast",
        "bos_token": info.bos_token_id.map_or(Value::Null, text),
        "eos_token": text(info.eos_token_id),
        "pad_token": text(info.pad_token_id),
        "add_bos_token": info.bos_token_id.is_some(),
        "clean_up_tokenization_spaces": false,
        "chat_template": chat_template(tf.template),
    });
    write_json(&dir.join("tokenizer_config.json"), &t)
}

fn write_json(path: &Path, v: &Value) -> Result<(), String> {
    let mut bytes = serde_json::to_vec_pretty(v).map_err(|e| e.to_string())?;
    bytes.push(b'\n');
    std::fs::write(path, bytes).map_err(|e| format!("cannot write {}: {e}", path.display()))
}

/// The dtype of a base folder's weights.
pub fn folder_dtype(files: &[PathBuf]) -> Result<DType, String> {
    safetensors_dtype(files.first().ok_or("no weight files")?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chat_template_quotes_affixes() {
        let t = Template {
            user: "<|user|>\n".into(),
            user_end: "\n".into(),
            assistant: "<|assistant|>\n".into(),
            assistant_end: "\n".into(),
            ..Default::default()
        };
        let j = chat_template(&t);
        assert!(j.contains(r#"{{ "<|user|>\n" + m['content'] + "\n" }}"#), "{j}");
        assert!(j.ends_with(r#"{% if add_generation_prompt %}{{ "<|assistant|>\n" }}{% endif %}"#), "{j}");
    }
}
