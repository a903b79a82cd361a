//! End-to-end tests of the `train` stage on a tiny synthetic tool-choice task.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use candle_core::{Device, Tensor};
use dvx_stage_api::{Metrics, Stage, StageContext, StageFailure, Typed};
use serde_json::{json, Value};

use dvx_model::folder;
use dvx_model::model::{init_weights, ArchConfig, Transformer};
use super::Train;

/// Records of seed 004's three answer patterns: grep, read, direct. The
/// answer depends on the instruction's first word only, so a tiny model
/// learns it in a few dozen steps.
pub(crate) fn tool_records(n: usize, offset: usize) -> Vec<Value> {
    const NAMES: [&str; 8] = ["ab", "cd", "ef", "gh", "ij", "kl", "mn", "op"];
    (0..n)
        .map(|i| {
            let name = NAMES[(i / 3 + offset) % NAMES.len()];
            match i % 3 {
                0 => json!({"instruction": format!("find {name}"), "output": "grep -rn x", "pattern": "grep"}),
                1 => json!({"instruction": format!("open {name}"), "output": "read a.py", "pattern": "read"}),
                _ => json!({"instruction": format!("why {name}"), "output": "it is so", "pattern": "direct"}),
            }
        })
        .collect()
}

pub(crate) fn write_jsonl(path: &Path, records: &[Value]) {
    let text: String = records.iter().map(|r| format!("{r}\n")).collect();
    std::fs::write(path, text).unwrap();
}

/// Train and valid files of the tool task in `dir`.
pub(crate) fn tool_task(dir: &Path) -> (PathBuf, PathBuf) {
    let (t, v) = (dir.join("train.jsonl"), dir.join("valid.jsonl"));
    write_jsonl(&t, &tool_records(48, 0));
    write_jsonl(&v, &tool_records(9, 5));
    (t, v)
}

/// Params of a tiny model trained from scratch.
pub(crate) fn tiny_params(steps: usize) -> Value {
    json!({
        "model": {"layers": 1, "width": 32, "heads": 2, "context": 32, "mlp": 64},
        "template": "{user}>{assistant}",
        "steps": steps, "batch_size": 8, "lr": 0.02, "warmup_steps": 5,
        "eval_every": 20, "log_every": 10, "seed": 7
    })
}

/// Run a stage the way the engine does.
pub(crate) fn run_stage(
    stage: &dyn Stage,
    params: &Value,
    deps: &[PathBuf],
    outs: &[PathBuf],
    threads: usize,
) -> (Result<Metrics, StageFailure>, String) {
    let shape = dvx_stage_api::StageShape { params, deps: deps.len(), outs: outs.len(), cmd: None };
    if let Err(e) = stage.check(&shape) {
        return (Err(StageFailure::new(format!("{}: {}", e.field.unwrap_or_default(), e.message))), String::new());
    }
    let mut log = Vec::new();
    let cwd = std::env::temp_dir();
    let mut ctx = StageContext::new("t", &cwd, deps, outs, params, &mut log).with_threads(threads);
    let r = stage.execute(&mut ctx);
    (r, String::from_utf8(log).unwrap())
}

/// A base model trained once for all tests that need one.
pub(crate) struct Shared {
    _dir: tempfile::TempDir,
    pub base: PathBuf,
    pub metrics_json: PathBuf,
    pub svg: PathBuf,
    pub train: PathBuf,
    pub valid: PathBuf,
    pub metrics: Metrics,
    pub log: String,
}

/// Steps of the shared base run.
const BASE_STEPS: usize = 40;

pub(crate) fn shared_base() -> &'static Shared {
    static BASE: OnceLock<Shared> = OnceLock::new();
    BASE.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let (train, valid) = tool_task(dir.path());
        let (base, metrics_json, svg) =
            (dir.path().join("base"), dir.path().join("m.json"), dir.path().join("loss.svg"));
        let outs = [base.clone(), metrics_json.clone(), svg.clone()];
        let (r, log) =
            run_stage(&Typed::new(Train), &tiny_params(BASE_STEPS), &[train.clone(), valid.clone()], &outs, 2);
        let metrics = r.unwrap_or_else(|e| panic!("{e}\n{log}"));
        Shared { _dir: dir, base, metrics_json, svg, train, valid, metrics, log }
    })
}

fn bytes(p: &Path) -> Vec<u8> {
    std::fs::read(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

#[test]
fn loss_falls_and_runs_are_identical() {
    let s = shared_base();
    let (m1, log) = (&s.metrics, &s.log);
    let init = m1["initial_valid_loss"].as_f64().unwrap();
    let fin = m1["final_valid_loss"].as_f64().unwrap();
    // ln(259) ≈ 5.56 at the start; the answers follow from the first word.
    assert!(init > 5.0 && fin < init / 4.0, "valid loss {init} -> {fin}\n{log}");
    assert!(m1["final_train_loss"].as_f64().unwrap() < 1.5, "{log}");
    assert_eq!(m1["steps"], json!(BASE_STEPS));
    assert_eq!(m1["params"], m1["trainable_params"]);
    assert!(m1["timing"]["tokens_per_s"].as_f64().unwrap() > 0.0);
    assert!(log.contains("step 10/40: loss"), "{log}");
    // Same seed on one thread instead of two: the same bytes (the chart's
    // title names the model folder: the same name here).
    let dir = tempfile::tempdir().unwrap();
    let outs = [dir.path().join("base"), dir.path().join("b.json"), dir.path().join("b.svg")];
    let (r, log2) =
        run_stage(&Typed::new(Train), &tiny_params(BASE_STEPS), &[s.train.clone(), s.valid.clone()], &outs, 1);
    r.unwrap_or_else(|e| panic!("{e}\n{log2}"));
    for f in ["model.safetensors", "config.json"] {
        assert_eq!(bytes(&s.base.join(f)), bytes(&outs[0].join(f)), "{f}");
    }
    assert_eq!(bytes(&s.metrics_json), bytes(&outs[1]));
    assert_eq!(bytes(&s.svg), bytes(&outs[2]));
    let metrics: Value = serde_json::from_slice(&bytes(&outs[1])).unwrap();
    assert_eq!(metrics["train_loss"].as_array().unwrap().len(), BASE_STEPS);
    assert_eq!(metrics["valid_loss"].as_array().unwrap().len(), 3);
    assert_eq!(metrics["data"]["train"]["examples"], json!(48));
    assert!(metrics.get("timing").is_none());
    let cfg: Value = serde_json::from_slice(&bytes(&outs[0].join("config.json"))).unwrap();
    assert_eq!(cfg["model_type"], json!("llama"));
    assert_eq!(cfg["dvx"]["tokenizer"]["kind"], json!("bytes"));
    assert_eq!(cfg["dvx"]["template"]["alpaca"]["assistant"], json!(">"));
}

#[test]
fn saved_model_gives_identical_logits() {
    let dev = Device::Cpu;
    let base = &shared_base().base;
    let cfg = folder::read_config(base).unwrap();
    let files = folder::weight_files(base, false).unwrap();
    let w = folder::load_tensors(&files, &cfg.arch.weight_shapes(), &dev).unwrap();
    let dir = tempfile::tempdir().unwrap();
    folder::write(&dir.path().join("copy"), &cfg, &w, "model.safetensors", None).unwrap();
    assert_eq!(bytes(&files[0]), bytes(&dir.path().join("copy/model.safetensors")));
    let ids = Tensor::from_slice(&[256u32, 102, 105, 110, 100], (1, 5), &dev).unwrap();
    let a = Transformer::new(&cfg.arch, &w, &dev).unwrap().forward(&ids, None).unwrap();
    let b = folder::load(&dir.path().join("copy"), None, &dev).unwrap().model.forward(&ids, None).unwrap();
    let v = |t: Tensor| t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    assert_eq!(v(a), v(b));
}

#[test]
fn lora_trains_only_adapters() {
    let Shared { base, train: t, valid: v, .. } = shared_base();
    let dir = tempfile::tempdir().unwrap();
    let mut params = tiny_params(6);
    let p = params.as_object_mut().unwrap();
    p.remove("model");
    p.remove("template"); // the base's template is the default
    p.insert("lora".into(), json!({"rank": 4, "alpha": 8, "targets": ["q", "v", "down"]}));
    let base_before = bytes(&base.join("model.safetensors"));
    let outs = [dir.path().join("ad"), dir.path().join("ad.json")];
    let deps = [t.clone(), v.clone(), base.clone()];
    let (r, log) = run_stage(&Typed::new(Train), &params, &deps, &outs, 2);
    let m = r.unwrap_or_else(|e| panic!("{e}\n{log}"));
    assert_eq!(base_before, bytes(&base.join("model.safetensors")));
    // 1 layer × (q: 4·32+32·4, v: 4·32+32·4, down: 4·64+32·4).
    assert_eq!(m["trainable_params"], json!(256 + 256 + 384));
    // PEFT's layout: adapter_config.json with module names, PEFT tensor names.
    let ac: Value = serde_json::from_slice(&bytes(&outs[0].join("adapter_config.json"))).unwrap();
    assert_eq!(ac["peft_type"], json!("LORA"));
    assert_eq!((ac["r"].clone(), ac["lora_alpha"].clone()), (json!(4), json!(8.0)));
    assert_eq!(ac["target_modules"], json!(["down_proj", "q_proj", "v_proj"]));
    assert_eq!(ac["base_model_name_or_path"], json!(base.file_name().unwrap().to_str().unwrap()));
    let dvx: Value = serde_json::from_slice(&bytes(&outs[0].join("dvx.json"))).unwrap();
    assert_eq!(dvx["adapter"]["lora"]["rank"], json!(4));
    assert!(!outs[0].join("model.safetensors").exists() && !outs[0].join("config.json").exists());
    let ad = candle_core::safetensors::load(outs[0].join("adapter_model.safetensors"), &Device::Cpu).unwrap();
    let mut names: Vec<&String> = ad.keys().collect();
    names.sort();
    assert_eq!(names.len(), 6);
    assert_eq!(names[0], "base_model.model.model.layers.0.mlp.down_proj.lora_A.weight");
    // B started at zero and moved.
    let b = ad["base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight"].abs().unwrap().sum_all().unwrap();
    assert!(b.to_scalar::<f32>().unwrap() > 0.0);

    // Merged: untargeted weights bit-identical to the base, targeted ones changed.
    let params_merge = {
        let mut p = params.clone();
        p["lora"]["merge"] = json!(true);
        p
    };
    let outs = [dir.path().join("merged"), dir.path().join("merged.json")];
    let (r, log) = run_stage(&Typed::new(Train), &params_merge, &deps, &outs, 1);
    r.unwrap_or_else(|e| panic!("{e}\n{log}"));
    let merged = candle_core::safetensors::load(outs[0].join("model.safetensors"), &Device::Cpu).unwrap();
    let orig = candle_core::safetensors::load(base.join("model.safetensors"), &Device::Cpu).unwrap();
    let same = |k: &str| merged[k].to_vec2::<f32>().unwrap() == orig[k].to_vec2::<f32>().unwrap();
    assert!(same("model.layers.0.self_attn.k_proj.weight"));
    assert!(same("model.layers.0.mlp.up_proj.weight"));
    assert!(same("model.embed_tokens.weight"));
    assert!(!same("model.layers.0.self_attn.q_proj.weight"));
    assert!(!same("model.layers.0.mlp.down_proj.weight"));
}

#[test]
fn adapter_reloads_onto_its_base_only() {
    let Shared { base, train: t, valid: v, .. } = shared_base();
    let dir = tempfile::tempdir().unwrap();
    let params = json!({"lora": {"rank": 2}, "steps": 3, "batch_size": 4, "lr": 0.01, "log_every": 0});
    let outs = [dir.path().join("ad"), dir.path().join("ad.json")];
    let (r, log) = run_stage(&Typed::new(Train), &params, &[t.clone(), v.clone(), base.clone()], &outs, 1);
    let r = Ok::<_, ()>(r.unwrap_or_else(|e| panic!("{e}\n{log}")));
    let dev = Device::Cpu;
    let err = folder::load(&outs[0], None, &dev).err().unwrap();
    assert!(err.ends_with("holds a LoRA adapter: name its base model"), "{err}");
    let loaded = folder::load(&outs[0], Some(base), &dev).unwrap();
    assert_eq!(loaded.weight_bytes, std::fs::metadata(outs[0].join("adapter_model.safetensors")).unwrap().len());
    assert_eq!(loaded.cfg.dvx.as_ref().unwrap().adapter.as_ref().unwrap().lora.rank, 2);
    // Another base of the same shape is refused.
    let other = dir.path().join("other");
    let cfg = folder::read_config(base).unwrap();
    let w = init_weights(&cfg.arch, 99, &dev).unwrap();
    folder::write(&other, &cfg, &w, "model.safetensors", None).unwrap();
    let err = folder::load(&outs[0], Some(&other), &dev).err().unwrap();
    assert!(err.contains("trained on other base weights"), "{err}");

    // Training continues from the adapter: it starts where the first run ended.
    let first = r.unwrap();
    let outs2 = [dir.path().join("ad2"), dir.path().join("ad2.json")];
    let deps = [t.clone(), v.clone(), outs[0].clone(), base.clone()];
    let (r2, log) = run_stage(&Typed::new(Train), &params, &deps, &outs2, 1);
    let second = r2.unwrap_or_else(|e| panic!("{e}\n{log}"));
    assert_eq!(second["initial_valid_loss"], first["final_valid_loss"]);
    let e = run_stage(&Typed::new(Train), &json!({"lora": {"rank": 3}, "steps": 1}), &deps, &outs2, 1).0.unwrap_err();
    assert!(e.message.starts_with("lora: rank 2, alpha 32 and targets [q, v] must be the adapter's"), "{}", e.message);
    let e = run_stage(&Typed::new(Train), &json!({"steps": 1}), &deps[..3], &outs2, 1).0.unwrap_err();
    assert!(e.message.ends_with("a LoRA adapter trains on its base: add the base folder to deps"), "{}", e.message);
}

/// A Hugging Face style Qwen2 folder: HF config fields only, bf16 weights,
/// q/k/v biases, a `tokenizer.json`.
fn write_hf_folder(dir: &Path) -> ArchConfig {
    std::fs::create_dir_all(dir).unwrap();
    let config = json!({
        "architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2", "torch_dtype": "bfloat16",
        "vocab_size": 8, "hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 1,
        "num_attention_heads": 4, "num_key_value_heads": 2, "max_position_embeddings": 32,
        "rms_norm_eps": 1e-6, "rope_theta": 1000000.0, "tie_word_embeddings": false,
        "eos_token_id": 1, "use_sliding_window": false
    });
    std::fs::write(dir.join("config.json"), config.to_string()).unwrap();
    let arch: ArchConfig = serde_json::from_value(config).unwrap();
    let dev = Device::Cpu;
    let w = init_weights(&arch, 5, &dev).unwrap();
    let bf: std::collections::HashMap<String, Tensor> =
        w.into_iter().map(|(k, t)| (k, t.to_dtype(candle_core::DType::BF16).unwrap())).collect();
    candle_core::safetensors::save(&bf, dir.join("model.safetensors")).unwrap();
    dvx_model::testkit::write_word_tokenizer(&dir.join("tokenizer.json"));
    arch
}

#[test]
fn lora_on_a_hugging_face_qwen2_folder() {
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().join("hf");
    let arch = write_hf_folder(&base);
    assert!(arch.weight_shapes().iter().any(|(n, _)| n == "model.layers.0.self_attn.k_proj.bias"));
    let recs: Vec<Value> = (0..6).map(|_| json!({"instruction": "hello", "output": "world"})).collect();
    let (t, v) = (dir.path().join("t.jsonl"), dir.path().join("v.jsonl"));
    write_jsonl(&t, &recs);
    write_jsonl(&v, &recs[..2]);
    let params = json!({"lora": {"rank": 2, "targets": ["q", "k", "v", "o"]}, "template": "{user} : {assistant}",
        "steps": 30, "batch_size": 2, "lr": 0.05, "log_every": 0});
    let outs = [dir.path().join("ad"), dir.path().join("m.json")];
    let deps = [t, v, base.clone()];
    let (r, log) = run_stage(&Typed::new(Train), &params, &deps, &outs, 1);
    let m = r.unwrap_or_else(|e| panic!("{e}\n{log}"));
    assert!(m["final_valid_loss"].as_f64().unwrap() < m["initial_valid_loss"].as_f64().unwrap());
    let dvx: Value = serde_json::from_slice(&bytes(&outs[0].join("dvx.json"))).unwrap();
    assert_eq!(
        dvx["tokenizer"],
        json!({"kind": "tokenizer.json", "bos_token_id": null, "eos_token_id": 1, "pad_token_id": 1})
    );
    assert!(outs[0].join("tokenizer.json").is_file());
    let loaded = folder::load(&outs[0], Some(&base), &Device::Cpu).unwrap();
    assert_eq!(loaded.cfg.arch.model_type, "qwen2");

    // Merged: bf16 like the base, with the files transformers reads.
    let mut params = params;
    params["lora"]["merge"] = json!(true);
    let outs = [dir.path().join("merged"), dir.path().join("m2.json")];
    let (r, log) = run_stage(&Typed::new(Train), &params, &deps, &outs, 1);
    r.unwrap_or_else(|e| panic!("{e}\n{log}"));
    let dtype = dvx_model::hf_files::safetensors_dtype(&outs[0].join("model.safetensors")).unwrap();
    assert_eq!(dtype, candle_core::DType::BF16);
    let cfg: Value = serde_json::from_slice(&bytes(&outs[0].join("config.json"))).unwrap();
    assert_eq!((cfg["model_type"].clone(), cfg["torch_dtype"].clone()), (json!("qwen2"), json!("bfloat16")));
    let tc: Value = serde_json::from_slice(&bytes(&outs[0].join("tokenizer_config.json"))).unwrap();
    assert_eq!(tc["eos_token"], json!("</s>"));
    assert!(tc["chat_template"].as_str().unwrap().contains(r#"{{ " : " }}"#), "{tc}");
    assert!(outs[0].join("generation_config.json").is_file());
    folder::load(&outs[0], None, &Device::Cpu).unwrap();
}

#[test]
fn bad_inputs_fail_clearly() {
    let Shared { base, train: t, valid: v, .. } = shared_base();
    let dir = tempfile::tempdir().unwrap();
    let outs = [dir.path().join("o"), dir.path().join("o.json")];
    let fail =
        |params: Value, deps: &[PathBuf]| run_stage(&Typed::new(Train), &params, deps, &outs, 1).0.unwrap_err().message;
    let e = fail(json!({"lora": {}}), &[t.clone(), v.clone()]);
    assert_eq!(e, "`lora` needs a base model: add its folder to deps");
    let e = fail(json!({"model": {"layers": 1}}), &[t.clone(), v.clone(), base.clone()]);
    assert!(e.starts_with("`model` is for training from scratch"), "{e}");
    let e = fail(json!({"max_length": 999}), &[t.clone(), v.clone(), base.clone()]);
    assert_eq!(e, "max_length: 999 is longer than the model's context (32)");
    let e = fail(json!({"lr": -1}), &[t.clone(), v.clone()]);
    assert_eq!(e, "lr: must be a positive number");
    let e = run_stage(&Typed::new(Train), &json!({}), std::slice::from_ref(t), &outs, 1).0.unwrap_err().message;
    assert!(e.contains("takes 2 to 4 deps (train.jsonl, valid.jsonl"), "{e}");
    let empty = dir.path().join("empty.jsonl");
    write_jsonl(&empty, &[json!({"id": 1})]);
    let e = fail(json!({}), &[empty.clone(), v.clone()]);
    assert!(e.ends_with("empty.jsonl: no example to train on (1 records, 1 with no assistant turn or `text`)"), "{e}");
    let bad = dir.path().join("bad.jsonl");
    std::fs::write(&bad, "{\"text\": \"ok\"}\n[1]\n").unwrap();
    let e = fail(json!({}), &[bad, v.clone()]);
    assert!(e.ends_with("bad.jsonl:2: not a JSON object"), "{e}");
}

#[test]
fn zero_steps_only_evaluates_the_base() {
    let Shared { base, train: t, valid: v, metrics, .. } = shared_base();
    let dir = tempfile::tempdir().unwrap();
    let params = json!({"lora": {"rank": 2}, "steps": 0, "log_every": 0});
    let outs = [dir.path().join("ad"), dir.path().join("ad.json")];
    let (r, log) = run_stage(&Typed::new(Train), &params, &[t.clone(), v.clone(), base.clone()], &outs, 1);
    let m = r.unwrap_or_else(|e| panic!("{e}\n{log}"));
    assert_eq!(m["steps"], json!(0));
    assert_eq!(m["train_tokens"], json!(0));
    // The base's own valid loss: the one its training run ended with.
    assert_eq!(m["initial_valid_loss"], m["final_valid_loss"]);
    let base_final = metrics["final_valid_loss"].as_f64().unwrap();
    assert!((m["final_valid_loss"].as_f64().unwrap() - base_final).abs() < 1e-5, "{m:?} vs {base_final}");
    assert!(m["final_train_loss"].is_null(), "{m:?}");
    assert!(log.contains("step 0/0: valid loss"), "{log}");
}
