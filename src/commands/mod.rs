//! One module per subcommand; each returns the exit code.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use dvx_engine::{load_pipeline, ExecutorKind, Pipeline, Registry, Workspace};
use miette::{miette, IntoDiagnostic, Result};

use crate::cli::{CacheCommand, Cli, Command, ExecutorArg, MetricsCommand, ParamsCommand, PipelineArg};

mod cache;
mod dag;
mod diff;
mod exec_stage;
mod gc;
mod metric_direction;
mod metrics;
mod records_diff;
mod run;
mod serve;
mod status;
mod table;
mod versions;

/// Loaded pipeline, registry and workspace.
pub struct Loaded {
    pub pipeline: Arc<Pipeline>,
    pub registry: Registry,
    pub ws: Workspace,
}

/// What the commands that only need the cache get: the cache (in `ws`) and,
/// when a project was found, its workspace folder.
pub struct Store {
    pub registry: Registry,
    pub ws: Workspace,
    /// The workspace folder (the pipeline's `wdir`, or the folder of a
    /// `dvx.toml` alone); `None` with the cache alone, no project found.
    pub wdir: Option<PathBuf>,
}

/// The project found walking up from the current folder: the first folder
/// holding a `dvx.toml` or a `dvx.yaml`, and that `dvx.yaml` if there is one
/// (as a path relative to the current folder, `../dvx.yaml` from a subfolder).
struct Found {
    dir: PathBuf,
    pipeline: Option<PathBuf>,
}

fn discover() -> Result<Option<Found>> {
    let cwd = std::env::current_dir().into_diagnostic()?;
    let mut up = PathBuf::new();
    for dir in cwd.ancestors() {
        // Anything but a folder counts: a dvx.yaml that is a FIFO is refused when read, not skipped.
        let there = |name: &str| dir.join(name).symlink_metadata().is_ok_and(|m| !m.is_dir());
        if there("dvx.yaml") || there("dvx.toml") {
            let pipeline = there("dvx.yaml").then(|| up.join("dvx.yaml"));
            return Ok(Some(Found { dir: dir.to_path_buf(), pipeline }));
        }
        up.push("..");
    }
    Ok(None)
}

/// How to name a pipeline, for errors that need one.
fn how_to_name(cmd: &str) -> String {
    format!("name one: `dvx {cmd} PIPELINE` or `dvx {cmd} --pipeline FILE`, or run dvx in (or below) a folder holding a dvx.yaml")
}

/// The pipeline to read: the one named, else the project's `dvx.yaml`.
fn pipeline_path(named: Option<PathBuf>, cmd: &str) -> Result<PathBuf> {
    if let Some(p) = named {
        return Ok(p);
    }
    match discover()? {
        Some(Found { pipeline: Some(p), .. }) => Ok(p),
        Some(Found { dir, pipeline: None }) => Err(miette!(
            help = how_to_name(cmd),
            "no pipeline: {} has no dvx.yaml beside it",
            dir.join("dvx.toml").display()
        )),
        None => Err(miette!(
            help = how_to_name(cmd),
            "no pipeline: no dvx.yaml or dvx.toml in this folder or any folder above it"
        )),
    }
}

fn load_file(path: &Path, cache: Option<&Path>) -> Result<Loaded> {
    let t0 = std::time::Instant::now();
    let registry = dvx_stages::builtin_registry();
    let pipeline = load_pipeline(path, &registry)?;
    tracing::debug!(elapsed = ?t0.elapsed(), stages = pipeline.stages.len(), "pipeline loaded");
    let ws = Workspace::for_pipeline(&pipeline, cache)?;
    Ok(Loaded { pipeline: Arc::new(pipeline), registry, ws })
}

/// For the commands that need a pipeline.
fn load(named: Option<PathBuf>, cache: Option<&Path>, cmd: &str) -> Result<Loaded> {
    load_file(&pipeline_path(named, cmd)?, cache)
}

/// [`load`] for the commands that plan every stage (`run`, `status`): the
/// workspace's stat cache and state are read on another thread meanwhile.
fn load_planning(named: Option<PathBuf>, cache: Option<&Path>, cmd: &str) -> Result<Loaded> {
    let path = pipeline_path(named, cmd)?;
    dvx_engine::prefetch_workspace_state(&path);
    load_file(&path, cache)
}

/// For the commands that only need the cache: the pipeline named, else the
/// project found upward (its `dvx.yaml`, or its `dvx.toml` alone), else the
/// cache alone from `--cache` or `DVX_CACHE_DIR`.
fn load_store(named: Option<PathBuf>, cache: Option<&Path>, cmd: &str) -> Result<Store> {
    let from = |l: Loaded| Store { wdir: Some(l.pipeline.wdir.clone()), registry: l.registry, ws: l.ws };
    if let Some(p) = named {
        return load_file(&p, cache).map(from);
    }
    let found = discover()?;
    if let Some(Found { pipeline: Some(p), .. }) = &found {
        return load_file(p, cache).map(from);
    }
    let dir = found.map(|f| f.dir);
    let given = cache.is_some() || std::env::var_os("DVX_CACHE_DIR").is_some_and(|v| !v.is_empty());
    if dir.is_none() && !given {
        return Err(miette!(
            help = format!(
                "give a cache (`dvx --cache DIR {cmd}` or DVX_CACHE_DIR=DIR) or a pipeline (`dvx {cmd} PIPELINE` or `--pipeline FILE`), or run dvx in (or below) a folder holding a dvx.yaml or dvx.toml"
            ),
            "no cache: no dvx.yaml or dvx.toml in this folder or any folder above it"
        ));
    }
    let ws = Workspace::for_dir(dir.as_deref(), cache)?;
    Ok(Store { registry: dvx_stages::builtin_registry(), ws, wdir: dir })
}

/// `dvx run`'s positionals: the first is the pipeline unless `--pipeline`
/// names it or nothing by that name exists and it is no `.yaml`/`.yml` name (then a stage).
fn run_target(file: Option<PathBuf>, mut stages: Vec<String>, flag: Option<PathBuf>) -> (Option<PathBuf>, Vec<String>) {
    let Some(first) = file else { return (flag, stages) };
    let is_pipeline = flag.is_none()
        && (first.symlink_metadata().is_ok_and(|m| !m.is_dir())
            || matches!(first.extension().and_then(|e| e.to_str()), Some("yaml" | "yml")));
    if is_pipeline {
        (Some(first), stages)
    } else {
        stages.insert(0, first.to_string_lossy().into_owned());
        (flag, stages)
    }
}

/// Whether a positional looks like a pipeline file rather than a name.
fn looks_like_pipeline(s: &str) -> bool {
    let p = Path::new(s);
    p.symlink_metadata().is_ok_and(|m| !m.is_dir())
        || matches!(p.extension().and_then(|e| e.to_str()), Some("yaml" | "yml"))
}

pub fn dispatch(cli: Cli) -> Result<ExitCode> {
    let cache = cli.cache.as_deref();
    match cli.command {
        Command::Run { file, stages, pipeline, force, force_all, dry_run, jobs, json, executor, shards, keep_going } => {
            let executor = executor.map(|e| match e {
                ExecutorArg::Local => ExecutorKind::Local,
                ExecutorArg::Slurm => ExecutorKind::Slurm,
            });
            let (pipeline, stages) = run_target(file, stages, pipeline);
            let opts = dvx_engine::RunOptions {
                targets: stages,
                force,
                force_all,
                dry_run,
                jobs: jobs.unwrap_or_else(|| std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)),
                executor,
                shards,
                keep_going,
                ..Default::default()
            };
            run::run(load_planning(pipeline, cache, "run")?, opts, json)
        }
        Command::ExecStage { spec } => Ok(exec_stage::exec_stage(&spec)),
        Command::Status { pipeline, json } => status::status(load_planning(pipeline.named(), cache, "status")?, json),
        Command::Dag { pipeline, format } => dag::dag(load(pipeline.named(), cache, "dag")?, format),
        Command::Log { table, metrics, limit, json, md, csv, pipeline } => {
            let l = load_store(pipeline.named(), cache, "log")?;
            if table || json || md || csv || !metrics.is_empty() {
                let format = if md {
                    table::Format::Md
                } else if csv {
                    table::Format::Csv
                } else {
                    table::Format::Plain
                };
                versions::log_table(l, &metrics, limit, json, format)
            } else {
                versions::log(l, limit)
            }
        }
        Command::Metrics { command } => match command {
            MetricsCommand::Show { mut rev, format, pipeline } => {
                let pipeline = shift_pipeline(pipeline, &mut [&mut rev]);
                metrics::show(load_store(pipeline, cache, "metrics show")?, rev.as_deref(), &format)
            }
            MetricsCommand::Diff { mut a, mut b, compare, format, pipeline } => {
                let pipeline = shift_pipeline(pipeline, &mut [&mut b, &mut a]);
                metrics::diff(
                    load_store(pipeline, cache, "metrics diff")?,
                    a.as_deref(),
                    b.as_deref(),
                    &compare,
                    &format,
                )
            }
        },
        Command::Params { command } => match command {
            ParamsCommand::Diff { mut a, mut b, all, format, pipeline } => {
                let pipeline = shift_pipeline(pipeline, &mut [&mut b, &mut a]);
                metrics::params_diff(
                    load_store(pipeline, cache, "params diff")?,
                    a.as_deref(),
                    b.as_deref(),
                    all,
                    &format,
                )
            }
        },
        Command::Show { hash, pipeline } => versions::show(load_store(pipeline.named(), cache, "show HASH")?, &hash),
        Command::Diff { a, b, mut stage, category_field, json, compare, pipeline } => {
            let mut pipeline = pipeline.named();
            // `dvx diff A B PIPELINE`: a pipeline file where the stage goes.
            if pipeline.is_none() && stage.as_deref().is_some_and(looks_like_pipeline) {
                pipeline = stage.take().map(PathBuf::from);
            }
            diff::diff(load_store(pipeline, cache, "diff A B")?, &a, &b, stage, category_field, json, &compare)
        }
        Command::Logs { stage, mut hash, pipeline } => {
            let mut pipeline = pipeline.named();
            // `dvx logs STAGE PIPELINE`: a pipeline file where the hash goes.
            if pipeline.is_none() && hash.as_deref().is_some_and(looks_like_pipeline) {
                pipeline = hash.take().map(PathBuf::from);
            }
            versions::logs(load_store(pipeline, cache, "logs STAGE")?, &stage, hash.as_deref())
        }
        Command::Checkout { hash, to, pipeline } => {
            versions::checkout(load_store(pipeline.named(), cache, "checkout HASH")?, &hash, to.as_deref())
        }
        Command::Reproduce { hash, fresh, pipeline } => {
            versions::reproduce(load_store(pipeline.named(), cache, "reproduce HASH")?, &hash, fresh)
        }
        Command::Gc { keep_last, keep, keep_since, all_workspaces, memo_older_than, dry_run, force, pipeline } => {
            let scope = gc::Scope { keep_last, keep, keep_since, all_workspaces };
            gc::gc(load_store(pipeline.named(), cache, "gc")?, scope, memo_older_than, dry_run, force)
        }
        Command::Serve { model, base, host, port, api_key_env, name, max_tokens } => {
            serve::serve(serve::Args { model, base, host, port, api_key_env, name, max_tokens })
        }
        Command::Cache { command } => match command {
            CacheCommand::Dir { pipeline } => cache::dir(load_store(pipeline.named(), cache, "cache dir")?),
            CacheCommand::Verify { repair, pipeline } => {
                cache::verify(load_store(pipeline.named(), cache, "cache verify")?, repair)
            }
            CacheCommand::Stats { pipeline } => cache::stats(load_store(pipeline.named(), cache, "cache stats")?),
        },
    }
}

/// Whether stderr takes live output (a progress bar, colours): a terminal
/// that is not `TERM=dumb`.
pub fn fancy_stderr() -> bool {
    use std::io::IsTerminal;
    std::io::stderr().is_terminal() && std::env::var_os("TERM").is_none_or(|t| t != "dumb")
}

/// Whether stderr may carry ANSI colours: [`fancy_stderr`], and `NO_COLOR` unset or empty.
pub fn colour_stderr() -> bool {
    fancy_stderr() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

/// `dvx metrics diff A B PIPELINE` and the like: the optional version
/// positionals come before the pipeline's, so a pipeline file given with
/// fewer versions lands in the last one filled; move it back.
fn shift_pipeline(pipeline: PipelineArg, revs: &mut [&mut Option<String>]) -> Option<PathBuf> {
    let named = pipeline.named();
    if named.is_some() {
        return named;
    }
    for r in revs.iter_mut() {
        if r.as_deref().is_some_and(looks_like_pipeline) {
            return r.take().map(PathBuf::from);
        }
    }
    None
}

/// Write command output to stdout; a closed pipe (`dvx diff … | head`) is not an error.
pub fn write_out(text: &str) -> Result<ExitCode> {
    use std::io::Write as _;
    match std::io::stdout().lock().write_all(text.as_bytes()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e).into_diagnostic()?,
        _ => {}
    }
    Ok(ExitCode::SUCCESS)
}

/// Print JSON to stdout.
pub fn print_json(v: &serde_json::Value) -> Result<()> {
    println!("{}", serde_json::to_string_pretty(v).into_diagnostic()?);
    Ok(())
}
