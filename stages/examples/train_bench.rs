//! Training throughput of the `train` stage on a fixed synthetic workload,
//! for comparison with `bench/train/torch_bench.py` (same architecture,
//! batch and sequence length).
//!
//! ```text
//! cargo run --release -p dvx-stages --example train_bench -- \
//!     --layers 2 --width 128 --heads 4 --seq 128 --batch 8 --steps 20 --threads 2
//! ```
//! Prints one line: `dvx-candle <threads> <tokens/s> <final train loss> <weights hash>`.
//!
//! candle sizes its CPU thread pool once per process from `CANDLE_NUM_THREADS`
//! (else `RAYON_NUM_THREADS`, else the physical cores), so `run.sh` sets both
//! to `--threads`.

use std::path::PathBuf;

use dvx_stage_api::StageContext;
use serde_json::json;

fn arg(args: &[String], name: &str, default: usize) -> usize {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .map(|v| v.parse().unwrap_or_else(|_| panic!("{name} takes a number")))
        .unwrap_or(default)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (layers, width, heads) = (arg(&args, "--layers", 2), arg(&args, "--width", 128), arg(&args, "--heads", 4));
    let (seq, batch, steps, threads) =
        (arg(&args, "--seq", 128), arg(&args, "--batch", 8), arg(&args, "--steps", 20), arg(&args, "--threads", 2));

    // Records of exactly `seq` tokens with the byte tokenizer: bos + text + eos.
    let dir = tempfile::tempdir().expect("temp dir");
    let mut text = String::new();
    let mut x: u64 = 1;
    for _ in 0..batch * 4 {
        let line: String = (0..seq - 2)
            .map(|_| {
                x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                (b'a' + ((x >> 33) % 26) as u8) as char
            })
            .collect();
        text.push_str(&json!({ "text": line }).to_string());
        text.push('\n');
    }
    let (train, valid) = (dir.path().join("train.jsonl"), dir.path().join("valid.jsonl"));
    std::fs::write(&train, &text).expect("write");
    std::fs::write(&valid, text.lines().next().expect("a line").to_string() + "\n").expect("write");

    let params = json!({
        "model": {"layers": layers, "width": width, "heads": heads, "context": seq},
        "steps": steps, "batch_size": batch, "lr": 1e-3, "eval_every": 0, "log_every": 0, "seed": 1
    });
    let deps = [train, valid];
    let outs: [PathBuf; 2] = [dir.path().join("model"), dir.path().join("metrics.json")];
    let registry = dvx_stages::builtin_registry();
    let stage = registry.get("train").expect("train is registered");
    let mut log = Vec::new();
    let cwd = dir.path().to_path_buf();
    let mut ctx = StageContext::new("bench", &cwd, &deps, &outs, &params, &mut log).with_threads(threads);
    let m = stage.execute(&mut ctx).unwrap_or_else(|e| panic!("{e}\n{}", String::from_utf8_lossy(&log)));
    let weights = std::fs::read(outs[0].join("model.safetensors")).expect("weights written");
    println!(
        "dvx-candle {threads} {} {:.4} {}",
        m["timing"]["tokens_per_s"],
        m["final_train_loss"].as_f64().unwrap_or(f64::NAN),
        &blake3::hash(&weights).to_hex()[..16]
    );
}
