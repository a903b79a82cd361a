//! LoRA fine-tuning throughput and peak memory of the `train` stage on a
//! Llama-shaped base with random bf16 weights, for comparison with
//! `bench/train/lora_torch.py` (torch + PEFT). The default shape is
//! Llama-3.2-1B's; see `bench/train/lora.sh`.
//!
//! ```text
//! lora_bench --write-base DIR [--layers 16 --width 2048 --mlp 8192 --heads 32 --kv-heads 8 --vocab 128256]
//! lora_bench --base DIR [--seq 128 --batch 2 --steps 4 --threads 1]
//! ```
//! Writing the base is a separate process so its memory does not count.
//! Prints: `dvx-candle <threads> <tokens/s> <peak RSS MiB> <final train loss>`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use dvx_model::model::ArchConfig;
use dvx_stage_api::StageContext;
use serde_json::json;

fn arg(args: &[String], name: &str, default: usize) -> usize {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .map(|v| v.parse().unwrap_or_else(|_| panic!("{name} takes a number")))
        .unwrap_or(default)
}

fn path_arg(args: &[String], name: &str) -> Option<PathBuf> {
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).map(PathBuf::from)
}

/// Words the bench's word-level tokenizer knows.
const WORDS: usize = 1000;

fn write_base(dir: &Path, args: &[String]) {
    let json = json!({
        "architectures": ["LlamaForCausalLM"], "model_type": "llama",
        "vocab_size": arg(args, "--vocab", 128256), "hidden_size": arg(args, "--width", 2048),
        "intermediate_size": arg(args, "--mlp", 8192), "num_hidden_layers": arg(args, "--layers", 16),
        "num_attention_heads": arg(args, "--heads", 32), "num_key_value_heads": arg(args, "--kv-heads", 8),
        "max_position_embeddings": 2048, "rms_norm_eps": 1e-5, "rope_theta": 500000.0,
        "tie_word_embeddings": true, "bos_token_id": WORDS + 1, "eos_token_id": WORDS + 2,
    });
    let cfg: ArchConfig = serde_json::from_value(json.clone()).expect("a valid config");
    std::fs::create_dir_all(dir).expect("create the base folder");
    std::fs::write(dir.join("config.json"), serde_json::to_vec_pretty(&json).expect("json")).expect("write config");
    // Uniform in ±0.03 (std ≈ 0.017), norms at one; a cheap generator,
    // since a 1B base has 1.2e9 values.
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut weights = HashMap::new();
    for (name, shape) in cfg.weight_shapes() {
        let n: usize = shape.iter().product();
        let v: Vec<f32> = if name.ends_with("norm.weight") {
            vec![1.0; n]
        } else {
            (0..n)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    ((x >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 0.06
                })
                .collect()
        };
        let t = Tensor::from_vec(v, shape, &Device::Cpu).and_then(|t| t.to_dtype(DType::BF16)).expect("tensor");
        weights.insert(name, t);
    }
    candle_core::safetensors::save(&weights, dir.join("model.safetensors")).expect("write weights");
    let mut vocab = serde_json::Map::new();
    vocab.insert("<unk>".into(), json!(0));
    for i in 0..WORDS {
        vocab.insert(format!("w{i}"), json!(i + 1));
    }
    vocab.insert("<s>".into(), json!(WORDS + 1));
    vocab.insert("</s>".into(), json!(WORDS + 2));
    let tok = json!({
        "version": "1.0", "truncation": null, "padding": null,
        "added_tokens": [
            {"id": WORDS + 1, "content": "<s>", "single_word": false, "lstrip": false, "rstrip": false, "normalized": false, "special": true},
            {"id": WORDS + 2, "content": "</s>", "single_word": false, "lstrip": false, "rstrip": false, "normalized": false, "special": true}
        ],
        "normalizer": null, "pre_tokenizer": {"type": "Whitespace"}, "post_processor": null, "decoder": null,
        "model": {"type": "WordLevel", "unk_token": "<unk>", "vocab": vocab}
    });
    std::fs::write(dir.join("tokenizer.json"), serde_json::to_vec(&tok).expect("json")).expect("write tokenizer");
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(dir) = path_arg(&args, "--write-base") {
        write_base(&dir, &args);
        return;
    }
    let base = path_arg(&args, "--base").expect("--write-base DIR or --base DIR");
    let (seq, batch, steps, threads) =
        (arg(&args, "--seq", 128), arg(&args, "--batch", 2), arg(&args, "--steps", 4), arg(&args, "--threads", 1));

    // Records longer than `seq`, cut to seq + 1 tokens: `seq` inputs each.
    let dir = tempfile::tempdir().expect("temp dir");
    let mut text = String::new();
    let mut x: u64 = 1;
    for _ in 0..batch * 4 {
        let line: Vec<String> = (0..seq + 8)
            .map(|_| {
                x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                format!("w{}", (x >> 33) as usize % WORDS)
            })
            .collect();
        text.push_str(&json!({ "text": line.join(" ") }).to_string());
        text.push('\n');
    }
    let (train, valid) = (dir.path().join("train.jsonl"), dir.path().join("valid.jsonl"));
    std::fs::write(&train, &text).expect("write");
    std::fs::write(&valid, text.lines().next().expect("a line").to_string() + "\n").expect("write");

    let params = json!({
        "lora": {"rank": 16, "alpha": 32, "dropout": 0.05, "targets": ["q", "v"]},
        "template": "plain", "max_length": seq + 1,
        "steps": steps, "batch_size": batch, "lr": 1e-4, "eval_every": 0, "log_every": 0, "seed": 1
    });
    let deps = [train, valid, base];
    let outs: [PathBuf; 2] = [dir.path().join("model"), dir.path().join("metrics.json")];
    let registry = dvx_stages::builtin_registry();
    let stage = registry.get("train").expect("train is registered");
    let mut log = Vec::new();
    let cwd = dir.path().to_path_buf();
    let mut ctx = StageContext::new("bench", &cwd, &deps, &outs, &params, &mut log).with_threads(threads);
    let m = stage.execute(&mut ctx).unwrap_or_else(|e| panic!("{e}\n{}", String::from_utf8_lossy(&log)));
    eprintln!("{}", String::from_utf8_lossy(&log));
    println!(
        "dvx-candle {threads} {:.1} {} {:.4}",
        m["train_tokens"].as_f64().unwrap_or(0.0) / m["timing"]["train_s"].as_f64().unwrap_or(f64::NAN),
        m["timing"]["peak_rss_mib"],
        m["final_train_loss"].as_f64().unwrap_or(f64::NAN),
    );
}
