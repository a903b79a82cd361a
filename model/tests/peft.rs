//! PEFT, merged-model and GGUF outputs against fixtures PEFT and
//! transformers wrote (tests/fixtures/peft, made by make_fixtures.py there).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use dvx_model::folder::{self, FolderConfig};
use dvx_model::gguf::{self, GgufType};
use dvx_model::hf_files::{self, TokenizerFiles};
use dvx_model::{lora, peft, TemplateParam, Tok, Transformer};
use serde_json::Value;

/// Where a test leaves what check_dvx_adapter.py loads: `DVX_PEFT_CHECK_DIR`
/// when set, else `tmp`.
fn out_dir(tmp: &Path) -> PathBuf {
    std::env::var_os("DVX_PEFT_CHECK_DIR").map_or_else(|| tmp.to_path_buf(), PathBuf::from)
}

fn fixture(p: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/peft").join(p)
}

struct Reference {
    ids: Vec<Vec<u32>>,
    logits: Vec<f32>,
    loss: f64,
    base_loss: f64,
}

fn reference() -> Reference {
    let v: Value = serde_json::from_slice(&std::fs::read(fixture("reference.json")).unwrap()).unwrap();
    let ids = v["ids"].as_array().unwrap().iter().map(|r| serde_json::from_value(r.clone()).unwrap()).collect();
    let logits = v["logits"].as_array().unwrap().iter().flat_map(|r| r.as_array().unwrap().clone());
    Reference {
        ids,
        logits: logits.map(|x| x.as_f64().unwrap() as f32).collect(),
        loss: v["loss"].as_f64().unwrap(),
        base_loss: v["base_loss"].as_f64().unwrap(),
    }
}

fn logits(m: &Transformer, ids: &[Vec<u32>]) -> Vec<f32> {
    let flat: Vec<u32> = ids.concat();
    let t = Tensor::from_vec(flat, (ids.len(), ids[0].len()), &Device::Cpu).unwrap();
    m.forward(&t, None).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap()
}

/// Mean next-token loss, as transformers computes it with `labels=ids`.
fn loss(logits: &[f32], ids: &[Vec<u32>], vocab: usize) -> f64 {
    let (mut sum, mut n) = (0.0, 0);
    for (b, row) in ids.iter().enumerate() {
        for t in 0..row.len() - 1 {
            let l = &logits[(b * row.len() + t) * vocab..][..vocab];
            let max = l.iter().fold(f32::MIN, |m, &x| m.max(x)) as f64;
            let lse = max + l.iter().map(|&x| (x as f64 - max).exp()).sum::<f64>().ln();
            sum += lse - l[row[t + 1] as usize] as f64;
            n += 1;
        }
    }
    sum / n as f64
}

fn max_abs(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).fold(0f32, |m, (x, y)| m.max((x - y).abs()))
}

/// Largest difference relative to the largest logit.
fn rel(a: &[f32], b: &[f32]) -> f32 {
    max_abs(a, b) / a.iter().fold(0f32, |m, x| m.max(x.abs()))
}

#[test]
fn reads_an_adapter_peft_wrote_with_the_same_loss() {
    let r = reference();
    let loaded = dvx_model::load_model(&fixture("adapter"), Some(&fixture("base")), &Device::Cpu).unwrap();
    let vocab = loaded.cfg.arch.vocab_size;
    let got = logits(&loaded.model, &r.ids);
    assert!(max_abs(&got, &r.logits) < 1e-4, "logits differ by {}", max_abs(&got, &r.logits));

    let base = dvx_model::load_model(&fixture("base"), None, &Device::Cpu).unwrap();
    assert!((loss(&logits(&base.model, &r.ids), &r.ids, vocab) - r.base_loss).abs() < 1e-4);
    let l = loss(&got, &r.ids, vocab);
    assert!((l - r.loss).abs() < 1e-4, "dvx {l} vs PEFT {}", r.loss);
    assert!((l - r.base_loss).abs() > 0.1, "the adapter must matter");
    let ad = peft::read(&fixture("adapter"), 2, &Device::Cpu).unwrap();
    assert_eq!(
        (ad.lora.rank, ad.lora.alpha, ad.lora.targets.clone()),
        (4, 8.0, vec!["q".into(), "v".into(), "down".into()])
    );
    assert!(ad.meta.is_none());
    // Without a base: the same message as dvx's own adapters.
    let e = dvx_model::load_model(&fixture("adapter"), None, &Device::Cpu).err().unwrap();
    assert!(e.ends_with("holds a LoRA adapter: name its base model"), "{e}");
}

#[test]
fn refuses_a_broken_or_unsupported_adapter() {
    let dir = tempfile::tempdir().unwrap();
    let copy = |name: &str| {
        let d = dir.path().join(name);
        std::fs::create_dir_all(&d).unwrap();
        for f in [peft::CONFIG, peft::WEIGHTS] {
            std::fs::copy(fixture("adapter").join(f), d.join(f)).unwrap();
        }
        d
    };
    let edit = |d: &Path, f: &dyn Fn(&mut Value)| {
        let p = d.join(peft::CONFIG);
        let mut v: Value = serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap();
        f(&mut v);
        std::fs::write(&p, v.to_string()).unwrap();
    };
    let load = |d: &Path| dvx_model::load_model(d, Some(&fixture("base")), &Device::Cpu).err().unwrap();
    let d = copy("rslora");
    edit(&d, &|v| v["use_rslora"] = Value::Bool(true));
    assert!(load(&d).ends_with("adapter_config.json: `use_rslora: true` is not supported"), "{}", load(&d));
    let d = copy("norank");
    edit(&d, &|v| drop(v.as_object_mut().unwrap().remove("r")));
    assert!(load(&d).ends_with("adapter_config.json: `r` is missing or not a number"), "{}", load(&d));
    // A base of another width.
    let e = dvx_model::load_model(&fixture("adapter"), Some(&tiny_base(dir.path())), &Device::Cpu).err().unwrap();
    assert!(e.contains("adapter_model.safetensors: `base_model.model.model.layers.0"), "{e}");
}

/// A dvx folder of another shape than the fixture's base.
fn tiny_base(dir: &Path) -> PathBuf {
    let cfg: dvx_model::model::ArchConfig = serde_json::from_value(serde_json::json!({
        "vocab_size": 300, "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
        "num_attention_heads": 4, "max_position_embeddings": 64
    }))
    .unwrap();
    let w = dvx_model::model::init_weights(&cfg, 1, &Device::Cpu).unwrap();
    let d = dir.join("tiny");
    let fc = FolderConfig { arch: cfg, bos_token_id: None, eos_token_id: None, dvx: None };
    folder::write(&d, &fc, &w, "model.safetensors", None).unwrap();
    d
}

/// dvx writes the adapter it read (scaled, so it is not PEFT's bytes) in
/// PEFT's layout and reads it back to the same numbers. With
/// `DVX_PEFT_CHECK_DIR` set it also leaves the adapter and dvx's loss there
/// for check_dvx_adapter.py to load with PEFT.
#[test]
fn writes_an_adapter_peft_layout_and_reads_it_back() {
    let r = reference();
    let dev = Device::Cpu;
    let mut ad = peft::read(&fixture("adapter"), 2, &dev).unwrap();
    for (k, t) in ad.weights.iter_mut() {
        if k.ends_with("lora_a.weight") {
            *t = (&*t * -0.5).unwrap();
        }
    }
    let p = lora::LoraParams { alpha: 16.0, ..ad.lora.clone() };
    let keep = std::env::var_os("DVX_PEFT_CHECK_DIR").map(PathBuf::from);
    let tmp = tempfile::tempdir().unwrap();
    let out = keep.clone().unwrap_or_else(|| tmp.path().to_path_buf()).join("dvx_adapter");
    peft::write(&out, &p, "base", &ad.weights, None, None).unwrap();
    let cfg: Value = serde_json::from_slice(&std::fs::read(out.join(peft::CONFIG)).unwrap()).unwrap();
    assert_eq!(cfg["peft_type"], "LORA");
    assert_eq!(cfg["task_type"], "CAUSAL_LM");
    assert_eq!(cfg["r"], 4);
    assert_eq!(cfg["lora_alpha"], 16.0);
    assert_eq!(cfg["target_modules"], serde_json::json!(["down_proj", "q_proj", "v_proj"]));
    let st = candle_core::safetensors::load(out.join(peft::WEIGHTS), &dev).unwrap();
    assert!(st.contains_key("base_model.model.model.layers.1.mlp.down_proj.lora_B.weight"));
    assert_eq!(st.len(), 12);
    let back = peft::read(&out, 2, &dev).unwrap();
    assert_eq!(back.lora, p);
    for (k, t) in &ad.weights {
        assert_eq!(
            t.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
            back.weights[k].flatten_all().unwrap().to_vec1::<f32>().unwrap()
        );
    }
    let m = dvx_model::load_model(&out, Some(&fixture("base")), &dev).unwrap();
    let l = loss(&logits(&m.model, &r.ids), &r.ids, m.cfg.arch.vocab_size);
    assert!((l - r.loss).abs() > 1e-3, "a different adapter gives a different loss");
    if let Some(dir) = keep {
        let doc = serde_json::json!({"ids": r.ids, "loss": l});
        std::fs::write(dir.join("dvx_adapter_loss.json"), doc.to_string()).unwrap();
    }
}

/// Base + the fixture adapter, merged, as a transformers folder in bf16.
fn merged(dir: &Path) -> (PathBuf, BTreeMap<String, Tensor>) {
    let dev = Device::Cpu;
    let base = fixture("base");
    let bcfg = folder::read_config(&base).unwrap();
    let files = folder::weight_files(&base, false).unwrap();
    let w = folder::load_tensors(&files, &bcfg.arch.weight_shapes(), &dev).unwrap();
    let ad = peft::read(&fixture("adapter"), 2, &dev).unwrap();
    let m = lora::merge(&bcfg.arch, &ad.lora, &w, &ad.weights).unwrap();
    let tok =
        Tok::from_file(&base.join("tokenizer.json"), Some(dvx_model::tokenizer::EosSpec::Id(2)), Some(0)).unwrap();
    let tset = TemplateParam::Text("chatml".into()).resolve().unwrap();
    let out = out_dir(dir).join("merged");
    let dtype = hf_files::folder_dtype(&files).unwrap();
    assert_eq!(dtype, DType::BF16);
    let tf = TokenizerFiles {
        tok: &tok,
        tokenizer_json: Some(&base.join("tokenizer.json")),
        base: None,
        template: &tset.chat,
    };
    hf_files::write_model(&out, &bcfg, &m, dtype, &tf).unwrap();
    (out, m)
}

#[test]
fn merged_model_keeps_the_base_dtype_and_its_tokenizer_files() {
    let r = reference();
    let dir = tempfile::tempdir().unwrap();
    let (out, _) = merged(dir.path());
    assert_eq!(hf_files::safetensors_dtype(&out.join("model.safetensors")).unwrap(), DType::BF16);
    let cfg: Value = serde_json::from_slice(&std::fs::read(out.join("config.json")).unwrap()).unwrap();
    assert_eq!(cfg["torch_dtype"], "bfloat16");
    assert_eq!(cfg["eos_token_id"], 2);
    let tc: Value = serde_json::from_slice(&std::fs::read(out.join("tokenizer_config.json")).unwrap()).unwrap();
    assert_eq!(tc["eos_token"], "<|eot_id|>");
    assert_eq!(tc["bos_token"], "<|begin_of_text|>");
    assert!(tc["chat_template"].as_str().unwrap().contains("<|im_start|>assistant\\n"));
    let g: Value = serde_json::from_slice(&std::fs::read(out.join("generation_config.json")).unwrap()).unwrap();
    assert_eq!((g["bos_token_id"].as_u64(), g["eos_token_id"].as_u64()), (Some(0), Some(2)));
    assert!(out.join("tokenizer.json").is_file());
    // bf16 rounding of the merged weights moves the loss only a little.
    let m = dvx_model::load_model(&out, None, &Device::Cpu).unwrap();
    let l = loss(&logits(&m.model, &r.ids), &r.ids, m.cfg.arch.vocab_size);
    assert!((l - r.loss).abs() < 2e-2, "merged {l} vs adapter {}", r.loss);
}

#[test]
fn gguf_export_reads_back_with_matching_logits() {
    let r = reference();
    let dev = Device::Cpu;
    let dir = tempfile::tempdir().unwrap();
    let (out, w) = merged(dir.path());
    let cfg = folder::read_config(&out).unwrap();
    let tok = folder::folder_tokenizer(&out, &cfg, None).unwrap().unwrap();
    let want = logits(&Transformer::new(&cfg.arch, &w, &dev).unwrap(), &r.ids);
    // f16: ≤ 1e-2 relative; q8_0: ≤ 5e-2 (8-bit blocks; measured in the report).
    for (ty, tol) in [(GgufType::F16, 1e-2), (GgufType::Q8_0, 5e-2)] {
        let p = out_dir(dir.path()).join(format!("merged-{ty:?}.gguf").to_lowercase());
        gguf::write_model(&p, &cfg.arch, &w, &tok, Some(&out.join("tokenizer.json")), ty, "merged").unwrap();
        let (gcfg, gw) = gguf::read_model(&p, &dev).unwrap();
        let got = logits(&Transformer::new(&gcfg, &gw, &dev).unwrap(), &r.ids);
        let e = rel(&want, &got);
        eprintln!("{ty:?}: relative logit error {e:.2e}");
        assert!(e <= tol, "{ty:?}: relative error {e}");
        let g = gguf::read(&p, &dev).unwrap();
        let toks = g.metadata["tokenizer.ggml.tokens"].to_vec().unwrap();
        assert_eq!(toks.len(), 300);
        assert_eq!(toks[2].to_string().unwrap(), "<|eot_id|>");
        assert_eq!(g.metadata["tokenizer.ggml.eos_token_id"].to_u32().unwrap(), 2);
        assert!(!g.metadata["tokenizer.ggml.merges"].to_vec().unwrap().is_empty());
        assert!(g.tensors.contains_key("blk.1.attn_q.weight") && g.tensors.contains_key("output.weight"));
    }
    // The adapter as a llama.cpp LoRA GGUF: alpha and weights read back.
    let ad = peft::read(&fixture("adapter"), 2, &dev).unwrap();
    let p = out_dir(dir.path()).join("adapter.gguf");
    gguf::write_lora(&p, &cfg.arch, &ad.lora, &ad.weights, GgufType::F32, "adapter").unwrap();
    let g = gguf::read(&p, &dev).unwrap();
    assert_eq!(g.metadata["general.type"].to_string().unwrap(), "adapter");
    assert!(
        g.tensors.contains_key("blk.0.attn_q.weight.lora_a") && g.tensors.contains_key("blk.1.ffn_down.weight.lora_b")
    );
    let (alpha, back) = gguf::read_lora(&p, &cfg.arch, &dev).unwrap();
    assert_eq!(alpha, 8.0);
    assert_eq!(back.len(), ad.weights.len());
    for (k, t) in &ad.weights {
        assert_eq!(
            t.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
            back[k].flatten_all().unwrap().to_vec1::<f32>().unwrap(),
            "{k}"
        );
    }
}

/// Folders dvx wrote before PEFT's layout (`adapter.safetensors` and a
/// `dvx.adapter` section in `config.json`) still load, to the same numbers.
#[test]
fn older_dvx_adapter_folders_still_load() {
    let r = reference();
    let dev = Device::Cpu;
    let base = fixture("base");
    let bcfg = folder::read_config(&base).unwrap();
    let ad = peft::read(&fixture("adapter"), 2, &dev).unwrap();
    let tok =
        Tok::from_file(&base.join("tokenizer.json"), Some(dvx_model::tokenizer::EosSpec::Id(2)), Some(0)).unwrap();
    let info = folder::AdapterInfo {
        lora: ad.lora.clone(),
        base_weights: folder::fingerprint(&folder::weight_files(&base, false).unwrap()).unwrap(),
    };
    let meta = folder::DvxMeta {
        format: folder::FORMAT,
        tokenizer: tok.info.clone(),
        template: TemplateParam::default().resolve().unwrap(),
        adapter: Some(info),
    };
    let dir = tempfile::tempdir().unwrap();
    let old = dir.path().join("old");
    let cfg = FolderConfig { dvx: Some(meta), ..bcfg };
    folder::write(&old, &cfg, &ad.weights, "adapter.safetensors", Some(&base.join("tokenizer.json"))).unwrap();
    let m = dvx_model::load_model(&old, Some(&base), &dev).unwrap();
    let l = loss(&logits(&m.model, &r.ids), &r.ids, m.cfg.arch.vocab_size);
    assert!((l - r.loss).abs() < 1e-4, "{l} vs {}", r.loss);
    // And read as an adapter for export.
    let again = peft::read_any(&old, 2, &dev).unwrap();
    assert_eq!(again.lora, ad.lora);
    assert!(peft::is_adapter(&old) && peft::is_adapter(&fixture("adapter")) && !peft::is_adapter(&base));
}
