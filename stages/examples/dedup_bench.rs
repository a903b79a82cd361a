//! Runs the `dedup` stage on one JSONL file, outside any pipeline, and
//! prints a JSON line with its timing and metrics (the stage log goes to
//! stderr). Used by `bench/dedup/run.sh`.
//!
//! ```text
//! cargo run --release -p dvx-stages --example dedup_bench -- INPUT [--threads N] [--out DIR] [--params JSON]
//! ```

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use dvx_stage_api::{StageContext, StageShape};

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("dedup_bench: {e}");
            ExitCode::from(2)
        }
    }
}

fn run() -> Result<(), String> {
    let mut args = std::env::args().skip(1);
    let mut input = None;
    let mut threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut out = PathBuf::from("dedup-bench-out");
    let mut params = serde_json::json!({});
    while let Some(arg) = args.next() {
        let mut value = |name: &str| args.next().ok_or(format!("{name} needs a value"));
        match arg.as_str() {
            "--threads" => threads = value("--threads")?.parse().map_err(|e| format!("--threads: {e}"))?,
            "--out" => out = PathBuf::from(value("--out")?),
            "--params" => params = serde_json::from_str(&value("--params")?).map_err(|e| format!("--params: {e}"))?,
            _ if input.is_none() && !arg.starts_with("--") => input = Some(PathBuf::from(arg)),
            _ => return Err(format!("unexpected argument `{arg}`")),
        }
    }
    let input =
        std::fs::canonicalize(input.ok_or("usage: dedup_bench INPUT [--threads N] [--out DIR] [--params JSON]")?)
            .map_err(|e| e.to_string())?;
    std::fs::create_dir_all(&out).map_err(|e| e.to_string())?;
    let out = std::fs::canonicalize(out).map_err(|e| e.to_string())?;
    let outs: Vec<PathBuf> = ["kept.jsonl", "clusters.jsonl", "lineage.jsonl"].iter().map(|n| out.join(n)).collect();
    let deps = vec![input.clone()];

    let registry = dvx_stages::builtin_registry();
    let stage = registry.get("dedup").ok_or("no `dedup` kind registered")?;
    let shape = StageShape { params: &params, deps: deps.len(), outs: outs.len(), cmd: None };
    stage.check(&shape).map_err(|e| format!("{:?}: {}", e.field, e.message))?;
    let cwd = input.parent().unwrap_or(&input).to_path_buf();
    let mut log = Vec::new();
    let mut ctx = StageContext::new("dedup_bench", &cwd, &deps, &outs, &params, &mut log).with_threads(threads);
    let started = Instant::now();
    let metrics = stage.execute(&mut ctx).map_err(|e| e.message)?;
    let seconds = started.elapsed().as_secs_f64();
    eprint!("{}", String::from_utf8_lossy(&log));
    let docs = metrics.get("input").and_then(|v| v.as_u64()).unwrap_or(0);
    let report = serde_json::json!({
        "threads": threads,
        "docs": docs,
        "seconds": seconds,
        "docs_per_s": docs as f64 / seconds,
        "metrics": metrics,
    });
    println!("{report}");
    Ok(())
}
