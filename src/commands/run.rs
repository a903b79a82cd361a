//! `dvx run`.

use std::process::ExitCode;

use dvx_engine::{ExecutorKind, RunOptions, Status};
use miette::Result;

use super::{print_json, Loaded};

#[allow(clippy::too_many_arguments)]
pub fn run(
    l: Loaded,
    stages: Vec<String>,
    force: Vec<String>,
    force_all: bool,
    dry_run: bool,
    jobs: Option<usize>,
    json: bool,
    executor: Option<ExecutorKind>,
) -> Result<ExitCode> {
    let jobs = jobs.unwrap_or_else(|| std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1));
    let opts = RunOptions { targets: stages, force, force_all, dry_run, jobs, progress: !json, executor };
    let cache = l.ws.cache.clone();
    let report = dvx_engine::run(l.pipeline.clone(), l.registry, l.ws, opts)?;
    if dry_run {
        super::status::print_plan(&report.stages, json)?;
        return Ok(ExitCode::SUCCESS);
    }
    if json {
        print_json(&serde_json::to_value(&report).expect("report serialises"))?;
    } else {
        println!("{:<28} {:<8} {:>9}  key", "stage", "status", "seconds");
        for s in &report.stages {
            let status = match s.status {
                Status::Ran => "ran",
                Status::Cached => "cached",
                Status::Cutoff => "cut off",
                Status::Failed => "FAILED",
                Status::Skipped => "skipped",
            };
            let key = s.key.as_ref().map_or("-", |k| k.short());
            println!("{:<28} {:<8} {:>9.2}  {}", s.name, status, s.seconds, key);
        }
        // Built-in kinds write a short report (pass-rate tables, distributions) to their log.
        for s in report.stages.iter().filter(|s| s.status == Status::Ran && s.kind != "cmd") {
            if let Some(text) = s.log.as_ref().and_then(|h| cache.read_object(h).ok()) {
                let text = String::from_utf8_lossy(&text);
                if !text.trim().is_empty() {
                    println!("\n── {} ({}) ──\n{}", s.name, s.kind, text.trim_end());
                }
            }
        }
        for s in report.stages.iter().filter(|s| s.status == Status::Failed) {
            eprintln!("\nstage `{}` failed: {}", s.name, s.error.as_deref().unwrap_or("unknown error"));
            if let Some(tail) = &s.log_tail {
                eprintln!("--- last lines of its log ---\n{tail}");
            }
        }
        match &report.version {
            Some(v) => println!("version: {v}"),
            None => eprintln!("no version written: a stage failed (stages that succeeded stay cached)"),
        }
    }
    Ok(if report.failed() { ExitCode::from(1) } else { ExitCode::SUCCESS })
}
