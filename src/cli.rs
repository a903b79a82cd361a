//! Command-line definitions. Doc comments are the help text.

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

/// make for dataset versions: YAML pipelines of content-hashed stages.
#[derive(Debug, Parser)]
#[command(name = "dvx", version, about)]
pub struct Cli {
    /// More logging (-v info, -vv debug); RUST_LOG overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Cache directory (overrides DVX_CACHE_DIR, the pipeline and dvx.toml).
    #[arg(long, global = true, value_name = "DIR")]
    pub cache: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

/// Output format of `dvx dag`.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum DagFormat {
    /// Indented text.
    Text,
    /// Graphviz.
    Dot,
    /// Mermaid flowchart.
    Mermaid,
}

/// Where stages run.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ExecutorArg {
    /// In the dvx process.
    Local,
    /// As Slurm jobs (`sbatch`), against a cache and workspace on a shared filesystem.
    Slurm,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a pipeline: execute stale stages, restore cached ones, print the version.
    Run {
        /// Pipeline file.
        #[arg(default_value = "dvx.yaml")]
        pipeline: PathBuf,
        /// Only these stages (and what they need).
        stages: Vec<String>,
        /// Execute these stages even if cached.
        #[arg(long, num_args = 1.., value_name = "STAGE")]
        force: Vec<String>,
        /// Execute every stage.
        #[arg(long)]
        force_all: bool,
        /// Show what would run, and why, without running.
        #[arg(long)]
        dry_run: bool,
        /// Stages in flight at once (default: number of cores).
        #[arg(short, long)]
        jobs: Option<usize>,
        /// Print one JSON object instead of the table.
        #[arg(long)]
        json: bool,
        /// Where stages run, unless a stage sets its own `executor:` (overrides the pipeline and dvx.toml).
        #[arg(long, value_enum, value_name = "EXECUTOR")]
        executor: Option<ExecutorArg>,
    },
    /// Execute one stage from a job spec and store it in the cache (what a Slurm job runs).
    #[command(hide = true)]
    ExecStage {
        /// The job spec (`jobs-v1/<key>.json` in the cache).
        spec: PathBuf,
    },
    /// Show every stage that would run, and why.
    Status {
        /// Pipeline file.
        #[arg(default_value = "dvx.yaml")]
        pipeline: PathBuf,
        /// JSON output.
        #[arg(long)]
        json: bool,
    },
    /// Print the stage graph.
    Dag {
        /// Pipeline file.
        #[arg(default_value = "dvx.yaml")]
        pipeline: PathBuf,
        /// Output format.
        #[arg(long, value_enum, default_value = "text")]
        format: DagFormat,
    },
    /// List versions, newest first.
    Log {
        /// Pipeline file (locates the cache).
        #[arg(long, default_value = "dvx.yaml")]
        pipeline: PathBuf,
    },
    /// Show a version: stages, keys, outputs, metrics.
    Show {
        /// Version hash (a unique prefix is enough).
        hash: String,
        /// Pipeline file (locates the cache).
        #[arg(long, default_value = "dvx.yaml")]
        pipeline: PathBuf,
    },
    /// Compare two versions: stages, JSONL records per category, metrics.
    Diff {
        /// Version A (a unique prefix is enough).
        a: String,
        /// Version B (a unique prefix is enough).
        b: String,
        /// Only this stage's outputs and metrics.
        stage: Option<String>,
        /// Record field holding the category (dotted path); default: the first of
        /// `category`, `meta.category`, `pattern`, `_source` that records have.
        #[arg(long, value_name = "FIELD")]
        category_field: Option<String>,
        /// Print one JSON object instead of tables.
        #[arg(long)]
        json: bool,
        /// Pipeline file (locates the cache).
        #[arg(long, default_value = "dvx.yaml")]
        pipeline: PathBuf,
    },
    /// Restore every output of a version.
    Checkout {
        /// Version hash (a unique prefix is enough).
        hash: String,
        /// Restore under this folder instead of the workspace (sources included).
        #[arg(long)]
        to: Option<PathBuf>,
        /// Pipeline file (locates the cache and workspace).
        #[arg(long, default_value = "dvx.yaml")]
        pipeline: PathBuf,
    },
    /// Re-execute every stage of a version in a scratch folder and compare.
    Reproduce {
        /// Version hash (a unique prefix is enough).
        hash: String,
        /// Pipeline file (locates the cache).
        #[arg(long, default_value = "dvx.yaml")]
        pipeline: PathBuf,
    },
    /// Remove what no kept version needs.
    Gc {
        /// Keep the N newest versions.
        #[arg(long)]
        keep_last: Option<usize>,
        /// Keep these versions.
        #[arg(long, num_args = 1..)]
        keep: Vec<String>,
        /// Keep versions made since this date (YYYY-MM-DD or RFC 3339).
        #[arg(long)]
        keep_since: Option<String>,
        /// Only list what would go.
        #[arg(long)]
        dry_run: bool,
        /// Pipeline file (locates the cache).
        #[arg(long, default_value = "dvx.yaml")]
        pipeline: PathBuf,
    },
    /// Cache maintenance.
    Cache {
        #[command(subcommand)]
        command: CacheCommand,
    },
}

#[derive(Debug, Subcommand)]
pub enum CacheCommand {
    /// Print the cache directory in use and where that choice came from.
    Dir {
        /// Pipeline file.
        #[arg(default_value = "dvx.yaml")]
        pipeline: PathBuf,
    },
    /// Re-hash every object; report (or quarantine) mismatches.
    Verify {
        /// Quarantine corrupt objects and drop run entries that need them.
        #[arg(long)]
        repair: bool,
        /// Pipeline file.
        #[arg(default_value = "dvx.yaml")]
        pipeline: PathBuf,
    },
    /// Objects, bytes, versions and the last run's hit rate.
    Stats {
        /// Pipeline file.
        #[arg(default_value = "dvx.yaml")]
        pipeline: PathBuf,
    },
}
