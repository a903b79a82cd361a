//! Runs one built-in stage kind on given deps and outs, outside any
//! pipeline (no hashing, no cache), and prints a JSON line with its wall
//! time and metrics; the stage's log goes to stderr. Used by
//! `bench/formats/run.sh` to time `filter` reading and writing each format.
//!
//! ```text
//! cargo run --release -p dvx-stages --example stage_bench -- KIND --dep IN [--dep IN2] --out OUT [--out OUT2] [--threads N] [--params JSON]
//! ```

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use dvx_stage_api::{StageContext, StageShape};

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("stage_bench: {e}");
            ExitCode::from(2)
        }
    }
}

fn run() -> Result<(), String> {
    let mut args = std::env::args().skip(1);
    let kind = args.next().ok_or("usage: stage_bench KIND --dep IN --out OUT [--threads N] [--params JSON]")?;
    let (mut deps, mut outs) = (Vec::new(), Vec::new());
    let mut threads = 1;
    let mut params = serde_json::json!({});
    while let Some(arg) = args.next() {
        let mut value = |name: &str| args.next().ok_or(format!("{name} needs a value"));
        match arg.as_str() {
            "--dep" => deps.push(std::path::absolute(value("--dep")?).map_err(|e| e.to_string())?),
            "--out" => outs.push(std::path::absolute(value("--out")?).map_err(|e| e.to_string())?),
            "--threads" => threads = value("--threads")?.parse().map_err(|e| format!("--threads: {e}"))?,
            "--params" => params = serde_json::from_str(&value("--params")?).map_err(|e| format!("--params: {e}"))?,
            _ => return Err(format!("unexpected argument `{arg}`")),
        }
    }
    let registry = dvx_stages::builtin_registry();
    let stage = registry.get(&kind).ok_or(format!("no `{kind}` kind registered"))?;
    let shape = StageShape { params: &params, deps: deps.len(), outs: outs.len(), cmd: None };
    stage.check(&shape).map_err(|e| format!("{:?}: {}", e.field, e.message))?;
    let cwd: PathBuf = std::env::current_dir().map_err(|e| e.to_string())?;
    let mut log = Vec::new();
    let mut ctx = StageContext::new("stage_bench", &cwd, &deps, &outs, &params, &mut log).with_threads(threads);
    let started = Instant::now();
    let metrics = stage.execute(&mut ctx).map_err(|e| e.message)?;
    let seconds = started.elapsed().as_secs_f64();
    eprint!("{}", String::from_utf8_lossy(&log));
    println!("{}", serde_json::json!({"kind": kind, "threads": threads, "seconds": seconds, "metrics": metrics}));
    Ok(())
}
