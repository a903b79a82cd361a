//! One module per subcommand; each returns the exit code.

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use dvx_engine::{load_pipeline, ExecutorKind, Pipeline, Registry, Workspace};
use miette::{IntoDiagnostic, Result};

use crate::cli::{CacheCommand, Cli, Command, ExecutorArg};

mod cache;
mod dag;
mod diff;
mod exec_stage;
mod gc;
mod run;
mod status;
mod versions;

/// Loaded pipeline, registry and workspace.
pub struct Loaded {
    pub pipeline: Arc<Pipeline>,
    pub registry: Registry,
    pub ws: Workspace,
}

fn load(path: &Path, cache: Option<&Path>) -> Result<Loaded> {
    let t0 = std::time::Instant::now();
    let registry = dvx_stages::builtin_registry();
    let pipeline = load_pipeline(path, &registry)?;
    tracing::debug!(elapsed = ?t0.elapsed(), stages = pipeline.stages.len(), "pipeline loaded");
    let ws = Workspace::for_pipeline(&pipeline, cache)?;
    Ok(Loaded { pipeline: Arc::new(pipeline), registry, ws })
}

pub fn dispatch(cli: Cli) -> Result<ExitCode> {
    let cache = cli.cache.as_deref();
    match cli.command {
        Command::Run { pipeline, stages, force, force_all, dry_run, jobs, json, executor } => {
            let executor = executor.map(|e| match e {
                ExecutorArg::Local => ExecutorKind::Local,
                ExecutorArg::Slurm => ExecutorKind::Slurm,
            });
            run::run(load(&pipeline, cache)?, stages, force, force_all, dry_run, jobs, json, executor)
        }
        Command::ExecStage { spec } => Ok(exec_stage::exec_stage(&spec)),
        Command::Status { pipeline, json } => status::status(load(&pipeline, cache)?, json),
        Command::Dag { pipeline, format } => dag::dag(load(&pipeline, cache)?, format),
        Command::Log { pipeline } => versions::log(load(&pipeline, cache)?),
        Command::Show { hash, pipeline } => versions::show(load(&pipeline, cache)?, &hash),
        Command::Diff { a, b, stage, category_field, json, pipeline } => {
            diff::diff(load(&pipeline, cache)?, &a, &b, stage, category_field, json)
        }
        Command::Checkout { hash, to, pipeline } => versions::checkout(load(&pipeline, cache)?, &hash, to.as_deref()),
        Command::Reproduce { hash, pipeline } => versions::reproduce(load(&pipeline, cache)?, &hash),
        Command::Gc { keep_last, keep, keep_since, dry_run, pipeline } => {
            gc::gc(load(&pipeline, cache)?, keep_last, keep, keep_since, dry_run)
        }
        Command::Cache { command } => match command {
            CacheCommand::Dir { pipeline } => cache::dir(load(&pipeline, cache)?),
            CacheCommand::Verify { repair, pipeline } => cache::verify(load(&pipeline, cache)?, repair),
            CacheCommand::Stats { pipeline } => cache::stats(load(&pipeline, cache)?),
        },
    }
}

/// Print JSON to stdout.
pub fn print_json(v: &serde_json::Value) -> Result<()> {
    println!("{}", serde_json::to_string_pretty(v).into_diagnostic()?);
    Ok(())
}
