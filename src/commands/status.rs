//! `dvx status`: what would run, and why.

use std::process::ExitCode;
use std::sync::Arc;

use dvx_engine::{Action, RunOptions, ShardResult, ShardStatus, Silent, StageResult};
use miette::Result;

use super::{print_json, Loaded};

pub fn status(l: Loaded, json: bool) -> Result<ExitCode> {
    let jobs = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let opts = RunOptions { dry_run: true, jobs, ..Default::default() };
    let checked_out = dvx_engine::ops::checked_out(&l.ws.state_dir);
    let report = dvx_engine::run(l.pipeline.clone(), l.registry, l.ws, opts, Arc::new(Silent))?;
    if let (Some(v), false) = (&checked_out, json) {
        // After `dvx checkout V`, each stage below is compared with V.
        let stale = report.stages.iter().any(|s| s.action != Action::UpToDate);
        println!(
            "workspace holds version {} (checked out){}",
            v.short(),
            if stale { "; the pipeline as written differs:" } else { ", as the pipeline is written" }
        );
    }
    if let (true, Some(checked_out)) = (json, &checked_out) {
        let v: Vec<serde_json::Value> = report
            .stages
            .iter()
            .map(|s| serde_json::json!({ "name": s.name, "action": s.action, "key": s.key, "reasons": s.reasons }))
            .collect();
        return print_json(&serde_json::json!({ "checked_out": checked_out, "stages": v })).map(|()| ExitCode::SUCCESS);
    }
    print_plan(&report.stages, json)?;
    Ok(ExitCode::SUCCESS)
}

pub fn print_plan(stages: &[StageResult], json: bool) -> Result<()> {
    if json {
        let v: Vec<serde_json::Value> = stages
            .iter()
            .map(|s| {
                let mut v = serde_json::json!({
                    "name": s.name,
                    "action": s.action,
                    "key": s.key,
                    "reasons": s.reasons,
                });
                if !s.shards.is_empty() {
                    v["shards"] = serde_json::json!(s.shards);
                }
                v
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
        print_shards(&s.shards);
    }
    if stale == 0 {
        println!("everything is up to date");
    }
    Ok(())
}

/// A sharded stage that would run: one line per shard (done, stale, or
/// failed in the last run), so a user sees what a re-run executes.
fn print_shards(shards: &[ShardResult]) {
    if shards.is_empty() {
        return;
    }
    let to_run = shards.iter().filter(|s| s.status != ShardStatus::Done).count();
    println!("  {} shards, {to_run} to run:", shards.len());
    for s in shards {
        let state = match s.status {
            ShardStatus::Done => "done",
            ShardStatus::FailedLastRun => "failed (last run)",
            _ => "stale",
        };
        println!("  shard {}: {state} ({} records)", s.index, s.records);
    }
}
