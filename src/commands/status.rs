//! `dvx status`: what would run, and why.

use std::process::ExitCode;
use std::sync::Arc;

use dvx_engine::{Action, RunOptions, Silent, StageResult};
use miette::Result;

use super::{print_json, Loaded};

pub fn status(l: Loaded, json: bool) -> Result<ExitCode> {
    let jobs = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let opts = RunOptions { dry_run: true, jobs, ..Default::default() };
    let report = dvx_engine::run(l.pipeline.clone(), l.registry, l.ws, opts, Arc::new(Silent))?;
    print_plan(&report.stages, json)?;
    Ok(ExitCode::SUCCESS)
}

pub fn print_plan(stages: &[StageResult], json: bool) -> Result<()> {
    if json {
        let v: Vec<serde_json::Value> = stages
            .iter()
            .map(|s| {
                serde_json::json!({
                    "name": s.name,
                    "action": s.action,
                    "key": s.key,
                    "reasons": s.reasons,
                })
            })
            .collect();
        return print_json(&serde_json::json!({ "stages": v }));
    }
    let mut stale = 0;
    for s in stages {
        let verb = match s.action {
            Action::UpToDate => continue,
            Action::Restore => "would restore",
            Action::Run => "would run",
        };
        stale += 1;
        let why: Vec<String> = s.reasons.iter().map(|r| r.to_string()).collect();
        println!("{}: {verb}: {}", s.name, if why.is_empty() { "stale".into() } else { why.join("; ") });
    }
    if stale == 0 {
        println!("everything is up to date");
    }
    Ok(())
}
