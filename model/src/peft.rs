//! LoRA adapters in Hugging Face PEFT's layout, the one `PeftModel.from_pretrained`
//! loads: `adapter_config.json` (`peft_type: LORA`, `r`, `lora_alpha`,
//! `target_modules` by module name …) and `adapter_model.safetensors` with
//! tensors named `base_model.model.<module>.lora_A.weight` `[r, in]` and
//! `….lora_B.weight` `[out, r]`. dvx's provenance (the base's weights hash,
//! the LoRA params, tokenizer and template) goes to a side file, `dvx.json`,
//! which PEFT ignores; a PEFT adapter written elsewhere has none and loads
//! onto whatever base it is given.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use serde_json::{json, Value};

use crate::folder::{self, DvxMeta, FolderConfig, Loaded};
use crate::lora::{self, LoraParams};
use crate::model::{count_params, Transformer, LORA_TARGETS};

/// PEFT's config file.
pub const CONFIG: &str = "adapter_config.json";
/// PEFT's weights file.
pub const WEIGHTS: &str = "adapter_model.safetensors";
/// dvx's provenance beside them.
pub const DVX: &str = "dvx.json";

/// Whether `dir` holds a PEFT adapter.
pub fn is_peft(dir: &Path) -> bool {
    dir.join(CONFIG).is_file()
}

/// Module name PEFT targets (`q_proj`) of a dvx target (`q`).
pub fn module_name(target: &str) -> String {
    format!("{target}_proj")
}

/// PEFT's name for a dvx adapter weight:
/// `model.layers.0.self_attn.q_proj.lora_a.weight` →
/// `base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight`.
pub fn peft_name(dvx_name: &str) -> String {
    let n = dvx_name.replace(".lora_a.", ".lora_A.").replace(".lora_b.", ".lora_B.");
    format!("base_model.model.{n}")
}

/// dvx's name for a PEFT adapter weight, and its target (`q`), or `None`
/// when the name is not a LoRA A/B of a linear dvx can adapt.
fn dvx_name(peft: &str) -> Option<(String, String)> {
    let rest = peft.strip_prefix("base_model.model.")?;
    let (module, ab) = if let Some(m) = rest.strip_suffix(".lora_A.weight") {
        (m, "lora_a")
    } else {
        (rest.strip_suffix(".lora_B.weight")?, "lora_b")
    };
    // model.layers.{l}.{self_attn|mlp}.{t}_proj
    let parts: Vec<&str> = module.split('.').collect();
    let [m, layers, l, block, proj] = parts.as_slice() else { return None };
    if *m != "model" || *layers != "layers" || l.parse::<usize>().is_err() {
        return None;
    }
    let target = proj.strip_suffix("_proj")?;
    let want_block = if matches!(target, "gate" | "up" | "down") { "mlp" } else { "self_attn" };
    if *block != want_block || !LORA_TARGETS.contains(&target) {
        return None;
    }
    Some((format!("{module}.{ab}.weight"), target.to_string()))
}

/// `adapter_config.json` for `p`, as PEFT writes it for a causal LM.
pub fn adapter_config(p: &LoraParams, base_name: &str) -> Value {
    let mut targets: Vec<String> = p.targets.iter().map(|t| module_name(t)).collect();
    targets.sort();
    json!({
        "alpha_pattern": {},
        "auto_mapping": null,
        "base_model_name_or_path": base_name,
        "bias": "none",
        "fan_in_fan_out": false,
        "inference_mode": true,
        "init_lora_weights": true,
        "layers_pattern": null,
        "layers_to_transform": null,
        "lora_alpha": p.alpha,
        "lora_dropout": p.dropout,
        "modules_to_save": null,
        "peft_type": "LORA",
        "r": p.rank,
        "rank_pattern": {},
        "revision": null,
        "target_modules": targets,
        "task_type": "CAUSAL_LM",
        "use_dora": false,
        "use_rslora": false,
    })
}

/// Write a PEFT adapter folder: `adapters` under dvx names (see
/// [`lora::adapter_shapes`]), `meta` (with its `adapter` set) as `dvx.json`
/// when given,
/// and the tokenizer beside them when given.
pub fn write(
    dir: &Path,
    p: &LoraParams,
    base_name: &str,
    adapters: &BTreeMap<String, Tensor>,
    meta: Option<&DvxMeta>,
    tokenizer_json: Option<&Path>,
) -> Result<(), String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let map: HashMap<String, Tensor> = adapters.iter().map(|(k, v)| (peft_name(k), v.clone())).collect();
    let w = dir.join(WEIGHTS);
    candle_core::safetensors::save(&map, &w).map_err(|e| format!("cannot write {}: {e}", w.display()))?;
    write_json(&dir.join(CONFIG), &adapter_config(p, base_name))?;
    if let Some(meta) = meta {
        write_json(&dir.join(DVX), &serde_json::to_value(meta).map_err(|e| e.to_string())?)?;
    }
    if let Some(src) = tokenizer_json {
        let dst = dir.join("tokenizer.json");
        std::fs::copy(src, &dst).map_err(|e| format!("cannot copy {}: {e}", src.display()))?;
    }
    Ok(())
}

fn write_json(path: &Path, v: &Value) -> Result<(), String> {
    let mut bytes = serde_json::to_vec_pretty(v).map_err(|e| e.to_string())?;
    bytes.push(b'\n');
    std::fs::write(path, bytes).map_err(|e| format!("cannot write {}: {e}", path.display()))
}

/// A PEFT adapter as read: its LoRA settings, its weights under dvx names,
/// and dvx's provenance when dvx wrote it.
pub struct PeftAdapter {
    /// Rank, alpha, dropout and the targets found in the weights.
    pub lora: LoraParams,
    /// `model.layers.{l}.….lora_a.weight` → tensor (f32).
    pub weights: BTreeMap<String, Tensor>,
    /// `dvx.json`, when present.
    pub meta: Option<DvxMeta>,
    /// The weights file.
    pub file: PathBuf,
}

/// Settings of `adapter_config.json` that would change the computation and
/// that dvx does not implement: refused by name rather than ignored.
fn refuse_unsupported(cfg: &Value, path: &Path) -> Result<(), String> {
    let bad = |field: &str, v: &Value| Err(format!("{}: `{field}: {v}` is not supported", path.display()));
    let peft_type = cfg.get("peft_type").and_then(Value::as_str).unwrap_or("");
    if peft_type != "LORA" {
        return Err(format!("{}: `peft_type` is `{peft_type}`; only LORA adapters are supported", path.display()));
    }
    for (field, ok) in [
        ("use_dora", &[Value::Null, json!(false)][..]),
        ("use_rslora", &[Value::Null, json!(false)]),
        ("fan_in_fan_out", &[Value::Null, json!(false)]),
        ("bias", &[Value::Null, json!("none")]),
        ("modules_to_save", &[Value::Null, json!([])]),
        ("rank_pattern", &[Value::Null, json!({})]),
        ("alpha_pattern", &[Value::Null, json!({})]),
        ("layer_replication", &[Value::Null]),
        ("lora_bias", &[Value::Null, json!(false)]),
        ("use_qalora", &[Value::Null, json!(false)]),
        ("use_bdlora", &[Value::Null, json!(false)]),
        ("trainable_token_indices", &[Value::Null]),
        ("target_parameters", &[Value::Null, json!([])]),
        ("alora_invocation_tokens", &[Value::Null]),
    ] {
        if let Some(v) = cfg.get(field) {
            if !ok.contains(v) {
                return bad(field, v);
            }
        }
    }
    Ok(())
}

/// Read the PEFT adapter in `dir` (weights as f32 on `dev`). Every layer
/// must carry every targeted module: dvx adapts all layers alike.
pub fn read(dir: &Path, num_layers: usize, dev: &Device) -> Result<PeftAdapter, String> {
    let cpath = dir.join(CONFIG);
    let text = std::fs::read_to_string(&cpath).map_err(|e| format!("cannot read {}: {e}", cpath.display()))?;
    let cfg: Value = serde_json::from_str(&text).map_err(|e| format!("{}: {e}", cpath.display()))?;
    refuse_unsupported(&cfg, &cpath)?;
    let num = |field: &str| {
        cfg.get(field)
            .and_then(Value::as_f64)
            .ok_or_else(|| format!("{}: `{field}` is missing or not a number", cpath.display()))
    };
    let rank = num("r")?;
    let alpha = num("lora_alpha")?;
    let dropout = cfg.get("lora_dropout").and_then(Value::as_f64).unwrap_or(0.0);
    if rank < 1.0 || rank.fract() != 0.0 {
        return Err(format!("{}: `r: {rank}` must be a positive whole number", cpath.display()));
    }
    let rank = rank as usize;

    let file = dir.join(WEIGHTS);
    if !file.is_file() {
        return Err(format!("{} is missing", file.display()));
    }
    let raw = candle_core::safetensors::load(&file, dev).map_err(|e| format!("cannot read {}: {e}", file.display()))?;
    let mut weights = BTreeMap::new();
    let mut targets = BTreeSet::new();
    for (name, t) in raw {
        let (dvx, target) = dvx_name(&name).ok_or_else(|| {
            format!("{}: tensor `{name}` is not a LoRA A/B weight of a q/k/v/o/gate/up/down projection", file.display())
        })?;
        targets.insert(target);
        weights.insert(dvx, crate::model::to_f32(t).map_err(|e| format!("{}: `{name}`: {e}", file.display()))?);
    }
    // Canonical order, so the same adapter always reads to the same params.
    let targets: Vec<String> = LORA_TARGETS.iter().filter(|t| targets.contains(**t)).map(|t| t.to_string()).collect();
    if targets.is_empty() {
        return Err(format!("{}: no LoRA weights", file.display()));
    }
    for l in 0..num_layers {
        for t in &targets {
            for ab in ["lora_a", "lora_b"] {
                let n = format!("{}.{ab}.weight", crate::model::module_path(l, t));
                let t = weights.get(&n).ok_or_else(|| {
                    format!("{}: `{}` is missing (dvx adapts every layer alike)", file.display(), peft_name(&n))
                })?;
                let r = if ab == "lora_a" { t.dims()[0] } else { t.dims().get(1).copied().unwrap_or(0) };
                if t.rank() != 2 || r != rank {
                    return Err(format!(
                        "{}: `{}` has shape {:?}, not rank {rank}",
                        file.display(),
                        peft_name(&n),
                        t.dims()
                    ));
                }
            }
        }
    }
    if weights.len() != 2 * num_layers * targets.len() {
        return Err(format!(
            "{}: adapter weights for layers the base does not have ({num_layers} layers)",
            file.display()
        ));
    }
    let meta = match dir.join(DVX) {
        p if p.is_file() => {
            let text = std::fs::read_to_string(&p).map_err(|e| format!("cannot read {}: {e}", p.display()))?;
            Some(serde_json::from_str::<DvxMeta>(&text).map_err(|e| format!("{}: {e}", p.display()))?)
        }
        _ => None,
    };
    let lora = LoraParams { rank, alpha, dropout, targets, merge: false };
    Ok(PeftAdapter { lora, weights, meta, file })
}

/// Load a base with the PEFT adapter in `dir` attached. An adapter dvx wrote
/// is checked against the base's weights hash; one written elsewhere is not.
pub fn load(dir: &Path, base: Option<&Path>, dev: &Device) -> Result<Loaded, String> {
    let base = base.ok_or_else(|| format!("{} holds a LoRA adapter: name its base model", dir.display()))?;
    let base_cfg = folder::read_config(base)?;
    let arch = &base_cfg.arch;
    let ad = read(dir, arch.num_hidden_layers, dev)?;
    let base_files = folder::weight_files(base, false)?;
    let info = ad.meta.as_ref().and_then(|m| m.adapter.as_ref());
    if let Some(info) = info {
        if folder::fingerprint(&base_files)? != info.base_weights {
            return Err(format!(
                "{}: the adapter was trained on other base weights than {}",
                dir.display(),
                base.display()
            ));
        }
    }
    // Shapes must fit the base (an adapter for another model size).
    for (name, shape) in lora::adapter_shapes(arch, &ad.lora) {
        if ad.weights[&name].dims() != shape.as_slice() {
            return Err(format!(
                "{}: `{}` has shape {:?} but base {} needs {shape:?}",
                ad.file.display(),
                peft_name(&name),
                ad.weights[&name].dims(),
                base.display()
            ));
        }
    }
    let w = folder::load_tensors(&base_files, &arch.weight_shapes(), dev)?;
    let mut m = Transformer::new(arch, &w, dev).map_err(|e| format!("{}: {e}", base.display()))?;
    lora::attach(&mut m, &ad.lora, &ad.weights).map_err(|e| format!("{}: {e}", dir.display()))?;
    let params = count_params(w.values()) + count_params(ad.weights.values());
    // The adapter's own tokenizer and template when dvx wrote it, else the base's.
    let cfg = FolderConfig { dvx: ad.meta.clone().or(base_cfg.dvx.clone()), ..base_cfg.clone() };
    let tok = match (&ad.meta, dir.join("tokenizer.json").is_file()) {
        (Some(_), true) => folder::folder_tokenizer(dir, &cfg, None)?,
        _ => folder::folder_tokenizer(base, &base_cfg, None)?,
    };
    Ok(Loaded { model: m, cfg, tok, weight_bytes: folder::size_on_disk(std::slice::from_ref(&ad.file)), params })
}

/// An adapter folder in either layout dvx reads: PEFT's, or dvx's older
/// `adapter.safetensors` + `config.json` with a `dvx.adapter` section.
pub fn read_any(dir: &Path, num_layers: usize, dev: &Device) -> Result<PeftAdapter, String> {
    if is_peft(dir) {
        return read(dir, num_layers, dev);
    }
    let cfg = folder::read_config(dir)?;
    let meta = cfg.dvx.clone().filter(|m| m.adapter.is_some());
    let Some(info) = meta.as_ref().and_then(|m| m.adapter.clone()) else {
        return Err(format!("{}: not a LoRA adapter (no {CONFIG}, no `dvx.adapter` in config.json)", dir.display()));
    };
    let files = folder::weight_files(dir, true)?;
    let weights = folder::load_tensors(&files, &lora::adapter_shapes(&cfg.arch, &info.lora), dev)?;
    Ok(PeftAdapter { lora: LoraParams { merge: false, ..info.lora }, weights, meta, file: files[0].clone() })
}

/// Whether `dir` holds an adapter in either layout.
pub fn is_adapter(dir: &Path) -> bool {
    is_peft(dir) || folder::read_config(dir).is_ok_and(|c| c.dvx.is_some_and(|m| m.adapter.is_some()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        let d = "model.layers.3.mlp.down_proj.lora_b.weight";
        let p = peft_name(d);
        assert_eq!(p, "base_model.model.model.layers.3.mlp.down_proj.lora_B.weight");
        assert_eq!(dvx_name(&p), Some((d.to_string(), "down".to_string())));
        assert_eq!(dvx_name("base_model.model.model.layers.0.self_attn.down_proj.lora_A.weight"), None);
        assert_eq!(dvx_name("base_model.model.lm_head.lora_A.weight"), None);
        assert_eq!(dvx_name("base_model.model.model.layers.0.self_attn.q_proj.lora_magnitude_vector"), None);
    }

    #[test]
    fn unsupported_settings_are_named() {
        let p = Path::new("a/adapter_config.json");
        let ok = adapter_config(&LoraParams::default(), "base");
        refuse_unsupported(&ok, p).unwrap();
        let mut dora = ok.clone();
        dora["use_dora"] = json!(true);
        assert_eq!(
            refuse_unsupported(&dora, p).unwrap_err(),
            "a/adapter_config.json: `use_dora: true` is not supported"
        );
        let mut ia3 = ok.clone();
        ia3["peft_type"] = json!("IA3");
        assert!(refuse_unsupported(&ia3, p).unwrap_err().contains("only LORA"));
    }
}
