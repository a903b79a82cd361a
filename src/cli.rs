//! Command-line definitions. Doc comments are the help text.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

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

/// The pipeline a command reads, named positionally or with `--pipeline`;
/// neither: the `dvx.yaml` of the project found upward from the current folder.
#[derive(Debug, Args)]
pub struct PipelineArg {
    /// Pipeline file [default: the dvx.yaml found upward from here].
    #[arg(value_name = "PIPELINE")]
    pub file: Option<PathBuf>,
    /// Pipeline file (the same as the positional PIPELINE).
    #[arg(long = "pipeline", value_name = "FILE", conflicts_with = "file")]
    pub flag: Option<PathBuf>,
}

impl PipelineArg {
    /// The pipeline named, if any.
    pub fn named(self) -> Option<PathBuf> {
        self.file.or(self.flag)
    }
}

/// How the version commands compare metrics.
#[derive(Debug, Args)]
pub struct CompareArgs {
    /// Relative tolerance within which a metric that moved is no regression:
    /// `0.02` for every metric, `NAME=0.005` for one (`loss` matches
    /// `eval.loss` too; `STAGE:NAME` for one stage's). Default 0.01 (1%).
    #[arg(long, value_name = "[NAME=]TOL")]
    pub tolerance: Vec<String>,
    /// Metrics for which higher is better (beyond the naming convention:
    /// accuracy, rate, score… higher; loss, error, perplexity… lower).
    #[arg(long, value_name = "NAME", value_delimiter = ',')]
    pub higher: Vec<String>,
    /// Metrics for which lower is better.
    #[arg(long, value_name = "NAME", value_delimiter = ',')]
    pub lower: Vec<String>,
    /// Show only what changed (stages, params, records, metrics).
    #[arg(long)]
    pub changed: bool,
}

/// Output format of the version tables.
#[derive(Debug, Args)]
pub struct FormatArgs {
    /// Print JSON.
    #[arg(long, conflicts_with = "md")]
    pub json: bool,
    /// Print Markdown tables.
    #[arg(long)]
    pub md: bool,
}

#[derive(Debug, Subcommand)]
pub enum MetricsCommand {
    /// The metrics of every stage of a version (default: the workspace's).
    Show {
        /// Version (a unique prefix is enough) [default: the workspace's version, else the newest].
        rev: Option<String>,
        #[command(flatten)]
        format: FormatArgs,
        #[command(flatten)]
        pipeline: PipelineArg,
    },
    /// How metrics moved from version A to version B.
    Diff {
        /// Version A [default: the version before B].
        a: Option<String>,
        /// Version B [default: the workspace's version, else the newest].
        b: Option<String>,
        #[command(flatten)]
        compare: CompareArgs,
        #[command(flatten)]
        format: FormatArgs,
        #[command(flatten)]
        pipeline: PipelineArg,
    },
}

#[derive(Debug, Subcommand)]
pub enum ParamsCommand {
    /// Params that differ between version A and version B.
    Diff {
        /// Version A [default: the version before B].
        a: Option<String>,
        /// Version B [default: the workspace's version, else the newest].
        b: Option<String>,
        /// Show every param, not only those that differ.
        #[arg(long)]
        all: bool,
        #[command(flatten)]
        format: FormatArgs,
        #[command(flatten)]
        pipeline: PipelineArg,
    },
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a pipeline: execute stale stages, restore cached ones, print the version.
    Run {
        /// Pipeline file [default: the dvx.yaml found upward]; with
        /// `--pipeline`, or when no such path exists and it is no .yaml/.yml name, the first STAGE.
        #[arg(value_name = "PIPELINE")]
        file: Option<PathBuf>,
        /// Only these stages (and what they need).
        stages: Vec<String>,
        /// Pipeline file (the same as the positional PIPELINE).
        #[arg(long = "pipeline", value_name = "FILE")]
        pipeline: Option<PathBuf>,
        /// Execute these stages even if cached.
        #[arg(long, num_args = 1.., value_name = "STAGE")]
        force: Vec<String>,
        /// Execute every stage.
        #[arg(long)]
        force_all: bool,
        /// Show what would run, and why, without running.
        #[arg(long)]
        dry_run: bool,
        /// Thread budget: the stages in flight use at most N compute threads together
        /// (a stage's `threads:`, else a share of what is free); default: the number of cores.
        #[arg(short, long, value_name = "N")]
        jobs: Option<usize>,
        /// Print one JSON object instead of the table.
        #[arg(long)]
        json: bool,
        /// Where stages run, unless a stage sets its own `executor:` (overrides the pipeline and dvx.toml).
        #[arg(long, value_enum, value_name = "EXECUTOR")]
        executor: Option<ExecutorArg>,
        /// Split a record-wise stage into N shards for this run (repeatable); overrides its `shards:`.
        /// Like `--executor`, it changes where work runs, not the version.
        #[arg(long = "shards", value_name = "STAGE=N", value_parser = parse_shards)]
        shards: Vec<(String, usize)>,
        /// When a stage fails, let the other stages run on (default: stop early, asking the
        /// stages in flight to stop and starting no new one).
        #[arg(long, short = 'k')]
        keep_going: bool,
    },
    /// Execute one stage from a job spec and store it in the cache (what a Slurm job runs).
    #[command(hide = true)]
    ExecStage {
        /// The job spec (`jobs-v1/<key>.json` in the cache).
        spec: PathBuf,
    },
    /// Show every stage that would run, and why.
    Status {
        #[command(flatten)]
        pipeline: PipelineArg,
        /// JSON output.
        #[arg(long)]
        json: bool,
    },
    /// Print the stage graph.
    Dag {
        #[command(flatten)]
        pipeline: PipelineArg,
        /// Output format.
        #[arg(long, value_enum, default_value = "text")]
        format: DagFormat,
    },
    /// List versions, newest first.
    Log {
        /// One row per version with the params that differ between them (and `--metrics`), like `dvc exp show`.
        #[arg(long)]
        table: bool,
        /// Metric columns of the table, comma-separated (`accuracy`, `eval.loss`, `train:loss`).
        #[arg(long, value_name = "NAMES", value_delimiter = ',')]
        metrics: Vec<String>,
        /// At most this many versions.
        #[arg(short = 'n', long, value_name = "N")]
        limit: Option<usize>,
        /// The table as JSON.
        #[arg(long, conflicts_with_all = ["md", "csv"])]
        json: bool,
        /// The table as Markdown.
        #[arg(long, conflicts_with = "csv")]
        md: bool,
        /// The table as CSV.
        #[arg(long)]
        csv: bool,
        #[command(flatten)]
        pipeline: PipelineArg,
    },
    /// Metrics of a version, or how they moved between two (DVC's `metrics show|diff`).
    Metrics {
        #[command(subcommand)]
        command: MetricsCommand,
    },
    /// Params that differ between two versions (DVC's `params diff`).
    Params {
        #[command(subcommand)]
        command: ParamsCommand,
    },
    /// Show a version: stages, keys, params, outputs, metrics.
    Show {
        /// Version hash (a unique prefix is enough).
        hash: String,
        #[command(flatten)]
        pipeline: PipelineArg,
    },
    /// Compare two versions: stages, params, JSONL records per category, metrics.
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
        #[command(flatten)]
        compare: CompareArgs,
        #[command(flatten)]
        pipeline: PipelineArg,
    },
    /// Print a stage's log from the cache
    ///
    /// What a `cmd` stage wrote to stdout and stderr, or a built-in's report,
    /// as the version recorded it.
    Logs {
        /// The stage.
        stage: String,
        /// Version hash (a unique prefix is enough) [default: the version the workspace holds, else the newest].
        hash: Option<String>,
        #[command(flatten)]
        pipeline: PipelineArg,
    },
    /// Restore every output of a version.
    Checkout {
        /// Version hash (a unique prefix is enough).
        hash: String,
        /// Restore under this folder instead of the workspace (sources included).
        #[arg(long)]
        to: Option<PathBuf>,
        #[command(flatten)]
        pipeline: PipelineArg,
    },
    /// Re-execute every stage of a version in a scratch folder and compare.
    Reproduce {
        /// Version hash (a unique prefix is enough).
        hash: String,
        /// Make every memoised request again (an LLM stage calls its
        /// endpoints) instead of answering from the memo.
        #[arg(long)]
        fresh: bool,
        #[command(flatten)]
        pipeline: PipelineArg,
    },
    /// Remove what no kept version needs
    ///
    /// A scope is required (`--keep-last`, `--keep`, `--keep-since`,
    /// `--all-workspaces`); the version each workspace using the cache holds
    /// is always kept. Asks before deleting; without a terminal, `--force`.
    Gc {
        /// Keep the N newest versions.
        #[arg(long)]
        keep_last: Option<usize>,
        /// Keep this version (repeatable; a unique prefix is enough).
        #[arg(long, num_args = 1.., value_name = "HASH")]
        keep: Vec<String>,
        /// Keep versions made since this date (YYYY-MM-DD or RFC 3339).
        #[arg(long, value_name = "DATE")]
        keep_since: Option<String>,
        /// Keep only what the workspaces using this cache hold.
        #[arg(long)]
        all_workspaces: bool,
        /// Also remove memo entries (kept LLM responses) not used for this
        /// long (`30d`, `12h`); without it memo entries are all kept.
        #[arg(long, value_name = "AGE")]
        memo_older_than: Option<String>,
        /// Only list what would go, with sizes.
        #[arg(long)]
        dry_run: bool,
        /// Delete without asking (needed when not on a terminal).
        #[arg(short, long)]
        force: bool,
        #[command(flatten)]
        pipeline: PipelineArg,
    },
    /// Serve a trained model over an OpenAI-compatible HTTP API
    /// (/v1/models, /v1/chat/completions, /v1/completions).
    Serve {
        /// The model folder (a `train` stage's output).
        model: PathBuf,
        /// The base model folder, when MODEL holds a LoRA adapter.
        #[arg(long)]
        base: Option<PathBuf>,
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1")]
        host: String,
        /// Port to listen on (0: any free port; the address is printed).
        #[arg(long, default_value_t = 8000)]
        port: u16,
        /// Environment variable holding the API key clients must send as a bearer token.
        #[arg(long, value_name = "VAR")]
        api_key_env: Option<String>,
        /// Model name /v1/models lists (default: the folder's name).
        #[arg(long)]
        name: Option<String>,
        /// max_tokens when a request gives none.
        #[arg(long, default_value_t = 256)]
        max_tokens: usize,
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
        #[command(flatten)]
        pipeline: PipelineArg,
    },
    /// Re-hash every object; report (or quarantine) mismatches.
    Verify {
        /// Quarantine corrupt objects and drop run entries that need them.
        #[arg(long)]
        repair: bool,
        #[command(flatten)]
        pipeline: PipelineArg,
    },
    /// Objects, bytes, versions and the last run's hit rate.
    Stats {
        #[command(flatten)]
        pipeline: PipelineArg,
    },
}

/// `STAGE=N` of `--shards`.
fn parse_shards(s: &str) -> Result<(String, usize), String> {
    let (stage, n) = s.split_once('=').ok_or_else(|| format!("`{s}`: expected STAGE=N, e.g. `filter=8`"))?;
    let n: usize = n.trim().parse().map_err(|_| format!("`{s}`: N must be a whole number of shards"))?;
    Ok((stage.trim().to_string(), n))
}
