//! `kind: export-model` — write a trained model every way the ecosystem
//! loads it: one GGUF file (llama.cpp, Ollama) in f16, q8_0 or f32, a LoRA
//! adapter as llama.cpp's adapter GGUF, a PEFT adapter folder, or a merged
//! model folder transformers loads (in the base's dtype by default).
//!
//! deps: `[model folder]` (a full model: a `train` output or a Hugging Face
//! folder), or `[adapter folder, base folder]` (PEFT's layout or dvx's
//! older one; `gguf` and `merged` fold the adapter into the base).
//!
//! outs: `[model.gguf]` for `gguf` / `gguf-lora`, `[folder]` for `peft` /
//! `merged`.
//!
//! GGUF is written for the llama architecture (Llama 2/3, TinyLlama,
//! Mistral without a sliding window); other architectures are refused by
//! name. See `dvx_model::gguf` for the layout.

mod params;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use dvx_model::folder::{self, DvxMeta, FolderConfig};
use dvx_model::gguf::{self, GgufType};
use dvx_model::hf_files::{self, TokenizerFiles};
use dvx_model::{lora, peft, TemplateParam, Tok};
use dvx_stage_api::{Count, Metrics, ParamError, Shape, StageContext, StageFailure, TypedStage};
use serde_json::json;

pub(crate) use params::{ExportModelParams, Format};

/// The `export-model` stage kind.
pub struct ExportModel;

impl TypedStage for ExportModel {
    const KIND: &'static str = "export-model";
    const VERSION: u32 = 1;
    const DEPS: Count = Count::Between(1, 2);
    const OUTS: Count = Count::Exactly(1);
    const DEPS_ARE: &'static str = "a model folder, or an adapter folder then its base folder";
    const OUTS_ARE: &'static str = "a .gguf file (gguf, gguf-lora) or a folder (peft, merged)";
    type Params = ExportModelParams;
    type Prepared = ExportModelParams;

    fn prepare(&self, p: ExportModelParams, shape: Shape) -> Result<ExportModelParams, ParamError> {
        p.validate()?;
        if matches!(p.format, Format::GgufLora | Format::Peft) && shape.deps != 2 {
            return Err(ParamError::field("format", "an adapter export takes two deps: the adapter, then its base"));
        }
        Ok(p)
    }

    fn execute(&self, p: &ExportModelParams, ctx: &mut StageContext<'_>) -> Result<Metrics, StageFailure> {
        execute(p, ctx.deps, &ctx.outs[0], ctx.log)
    }
}

/// What the deps hold.
struct Source {
    /// The full model's folder, or the base's.
    model_dir: PathBuf,
    cfg: FolderConfig,
    /// The adapter, when the first dep is one.
    adapter: Option<(PathBuf, peft::PeftAdapter)>,
}

fn read_source(deps: &[PathBuf], dev: &Device) -> Result<Source, String> {
    let first = &deps[0];
    if !first.is_dir() {
        return Err(format!("{}: not a model folder", first.display()));
    }
    if peft::is_adapter(first) {
        let base = deps.get(1).ok_or_else(|| {
            format!("{} holds a LoRA adapter: add its base folder as the second dep", first.display())
        })?;
        let cfg = folder::read_config(base)?;
        let ad = peft::read_any(first, cfg.arch.num_hidden_layers, dev)?;
        return Ok(Source { model_dir: base.clone(), cfg, adapter: Some((first.clone(), ad)) });
    }
    if let Some(extra) = deps.get(1) {
        return Err(format!(
            "{}: a full model takes no second dep ({} is not an adapter)",
            extra.display(),
            first.display()
        ));
    }
    Ok(Source { model_dir: first.clone(), cfg: folder::read_config(first)?, adapter: None })
}

/// The folder whose tokenizer the export carries: the adapter's when dvx
/// wrote one beside it, else the model's.
fn tokenizer(src: &Source) -> Result<(Tok, Option<PathBuf>, Option<DvxMeta>), String> {
    let (dir, cfg) = match &src.adapter {
        Some((d, ad)) if ad.meta.is_some() && d.join("tokenizer.json").is_file() => {
            (d.clone(), FolderConfig { dvx: ad.meta.clone(), ..src.cfg.clone() })
        }
        _ => (src.model_dir.clone(), src.cfg.clone()),
    };
    let tok = folder::folder_tokenizer(&dir, &cfg, None)?.ok_or_else(|| format!("{}: no tokenizer", dir.display()))?;
    let file = Some(dir.join("tokenizer.json")).filter(|f| f.is_file());
    Ok((tok, file, cfg.dvx))
}

/// The full weights (f32): the model's, or the base's with the adapter merged in.
fn full_weights(src: &Source, dev: &Device) -> Result<BTreeMap<String, Tensor>, String> {
    let files = folder::weight_files(&src.model_dir, false)?;
    let w = folder::load_tensors(&files, &src.cfg.arch.weight_shapes(), dev)?;
    match &src.adapter {
        None => Ok(w),
        Some((_, ad)) => lora::merge(&src.cfg.arch, &ad.lora, &w, &ad.weights).map_err(|e| format!("merge: {e}")),
    }
}

fn execute(
    p: &ExportModelParams,
    deps: &[PathBuf],
    out: &Path,
    log: &mut dyn std::io::Write,
) -> Result<Metrics, StageFailure> {
    let fail = StageFailure::new;
    let dev = Device::Cpu;
    let src = read_source(deps, &dev).map_err(fail)?;
    let folder_name = |d: &Path| d.file_name().map_or(String::new(), |n| n.to_string_lossy().into_owned());
    let name = p.name.clone().unwrap_or_else(|| folder_name(&src.adapter.as_ref().map_or(&src.model_dir, |a| &a.0)));
    let gguf_type = || GgufType::parse(p.dtype()).expect("validated");
    match p.format {
        Format::Gguf => {
            let (tok, tok_file, _) = tokenizer(&src).map_err(fail)?;
            let w = full_weights(&src, &dev).map_err(fail)?;
            gguf::write_model(out, &src.cfg.arch, &w, &tok, tok_file.as_deref(), gguf_type(), &name).map_err(fail)?;
        }
        Format::GgufLora => {
            let (_, ad) =
                src.adapter.as_ref().ok_or_else(|| fail(format!("{}: not a LoRA adapter", deps[0].display())))?;
            gguf::write_lora(out, &src.cfg.arch, &ad.lora, &ad.weights, gguf_type(), &name).map_err(fail)?;
        }
        Format::Peft => {
            let (_, ad) =
                src.adapter.as_ref().ok_or_else(|| fail(format!("{}: not a LoRA adapter", deps[0].display())))?;
            let (_, tok_file, meta) = tokenizer(&src).map_err(fail)?;
            let meta = ad.meta.clone().or(meta.map(|m| DvxMeta { adapter: None, ..m }));
            peft::write(out, &ad.lora, &folder_name(&src.model_dir), &ad.weights, meta.as_ref(), tok_file.as_deref())
                .map_err(fail)?;
        }
        Format::Merged => {
            let (tok, tok_file, meta) = tokenizer(&src).map_err(fail)?;
            let w = full_weights(&src, &dev).map_err(fail)?;
            let files = folder::weight_files(&src.model_dir, false).map_err(fail)?;
            let dtype = match p.dtype() {
                "f32" => DType::F32,
                "f16" => DType::F16,
                "bf16" => DType::BF16,
                _ => hf_files::folder_dtype(&files).map_err(fail)?,
            };
            let template = match &meta {
                Some(m) => m.template.clone(),
                None => TemplateParam::default().resolve().map_err(fail)?,
            };
            let meta = meta.map(|m| DvxMeta { adapter: None, ..m });
            let cfg = FolderConfig { dvx: meta, ..src.cfg.clone() };
            // The model's own tokenizer_config (chat template) when it has one.
            let tf = TokenizerFiles {
                tok: &tok,
                tokenizer_json: tok_file.as_deref(),
                base: Some(&src.model_dir),
                template: &template.chat,
            };
            hf_files::write_model(out, &cfg, &w, dtype, &tf).map_err(fail)?;
        }
    }
    let bytes = size(out);
    writeln!(log, "export-model: {:?} ({}) → {} ({bytes} bytes)", p.format, p.dtype(), out.display())?;
    tracing::info!(format = ?p.format, bytes, "exported");
    let mut m = Metrics::new();
    m.insert("bytes".into(), json!(bytes));
    m.insert("adapter".into(), json!(src.adapter.is_some()));
    Ok(m)
}

/// Bytes of a file, or of the files in a folder.
fn size(p: &Path) -> u64 {
    if p.is_file() {
        return std::fs::metadata(p).map_or(0, |m| m.len());
    }
    std::fs::read_dir(p).map_or(0, |d| d.filter_map(|e| e.ok()?.metadata().ok()).map(|m| m.len()).sum())
}
