//! The one small trait every stage kind implements.
//!
//! A stage gets resolved input paths, its params and the paths it must write;
//! it returns metrics. It never sees the cache: hashing, storing and restoring
//! are the engine's job, so a stage cannot corrupt the store.

use std::io::Write;
use std::path::{Path, PathBuf};

/// Metrics a stage returns: counts, pass rates, losses. Stored in the run-cache
/// and the version record, printed by `dvx show`, compared by `dvx diff`.
pub type Metrics = serde_json::Map<String, serde_json::Value>;

/// What a stage is handed when it executes.
pub struct StageContext<'a> {
    /// The stage's name in the pipeline.
    pub name: &'a str,
    /// The folder the stage runs in (its pipeline's `wdir`).
    pub cwd: &'a Path,
    /// Absolute paths of the declared deps, in declared order.
    pub deps: &'a [PathBuf],
    /// Absolute paths of the declared outs, in declared order. Their parent
    /// folders exist and any previous output has been removed (or moved
    /// to [`StageContext::previous_outs`]).
    pub outs: &'a [PathBuf],
    /// The stage's params: always a JSON object (empty when none were given).
    pub params: &'a serde_json::Value,
    /// The shell command of `cmd` stages, already interpolated.
    pub cmd: Option<&'a str>,
    /// Extra environment declared on the stage (part of the key).
    pub env: &'a [(String, String)],
    /// Where the stage writes its log (kept as the stage's log).
    pub log: &'a mut dyn Write,
    /// How many threads the stage may use.
    pub threads: usize,
    /// Where a long stage reports how far it is (never print bars yourself).
    pub progress: &'a dyn crate::Progress,
    /// Answers kept across runs (see [`crate::Memo`]).
    pub memo: &'a dyn crate::Memo,
    /// Tripped when the run asks its stages to stop (see [`crate::Cancel`]).
    pub cancel: crate::Cancel,
    /// The run's shared HTTP client, when the caller supplied one.
    pub http: Option<&'a dyn crate::Http>,
    /// Per out, where the caller moved what the out held before this run
    /// (this stage's last output, mostly), when it kept it; empty when it
    /// kept none. A writer may take the file over and rewrite only from
    /// where the new bytes differ (`RecordWriter::create_over`): an append
    /// then costs a read of the unchanged part, not a write of it. The
    /// caller removes what is left there after the run.
    pub previous_outs: &'a [Option<PathBuf>],
    /// Per out, where a writer that took a previous out over says how many
    /// of its first bytes it kept as they were ([`KeptPrefix`]); empty when
    /// the caller does not want to know.
    pub kept_prefixes: &'a [KeptPrefix],
}

/// How many of an out's first bytes a writer kept from the previous out
/// (compared byte for byte, so they are that file's bytes): the caller's
/// store then hashes only the rest. Unset until a writer says.
#[derive(Debug, Clone)]
pub struct KeptPrefix(std::sync::Arc<std::sync::atomic::AtomicU64>);

impl Default for KeptPrefix {
    fn default() -> Self {
        KeptPrefix(std::sync::Arc::new(std::sync::atomic::AtomicU64::new(u64::MAX)))
    }
}

impl KeptPrefix {
    /// Say that the first `bytes` bytes are the previous out's.
    pub fn set(&self, bytes: u64) {
        self.0.store(bytes, std::sync::atomic::Ordering::Release);
    }

    /// Take back what was said: the out is being written afresh.
    pub fn clear(&self) {
        self.0.store(u64::MAX, std::sync::atomic::Ordering::Release);
    }

    /// What a writer said, if anything.
    pub fn get(&self) -> Option<u64> {
        Some(self.0.load(std::sync::atomic::Ordering::Acquire)).filter(|&b| b != u64::MAX)
    }
}

impl<'a> StageContext<'a> {
    /// A context with what every execution names; the rest takes its
    /// default until set with the `with_` methods below: no `cmd`, no
    /// `env`, one thread, silent progress, no memo, a token nobody
    /// trips, no HTTP client.
    pub fn new(
        name: &'a str,
        cwd: &'a Path,
        deps: &'a [PathBuf],
        outs: &'a [PathBuf],
        params: &'a serde_json::Value,
        log: &'a mut dyn Write,
    ) -> Self {
        StageContext {
            name,
            cwd,
            deps,
            outs,
            params,
            cmd: None,
            env: &[],
            log,
            threads: 1,
            progress: &crate::NoProgress,
            memo: &crate::NoMemo,
            cancel: crate::Cancel::default(),
            http: None,
            previous_outs: &[],
            kept_prefixes: &[],
        }
    }

    /// Where writers of the outs report what they kept (see `kept_prefixes`).
    pub fn with_kept_prefixes(mut self, kept: &'a [KeptPrefix]) -> Self {
        self.kept_prefixes = kept;
        self
    }

    /// Where a writer of out `i` reports what it kept, if the caller asks.
    pub fn kept_prefix(&self, i: usize) -> Option<KeptPrefix> {
        self.kept_prefixes.get(i).cloned()
    }

    /// Where the caller moved out `i`'s earlier content (see `previous_outs`).
    pub fn with_previous_outs(mut self, previous: &'a [Option<PathBuf>]) -> Self {
        self.previous_outs = previous;
        self
    }

    /// Out `i`'s earlier content, moved aside for this run, if kept.
    pub fn previous_out(&self, i: usize) -> Option<&'a Path> {
        self.previous_outs.get(i).and_then(Option::as_deref)
    }

    /// The interpolated shell command (`cmd` stages).
    pub fn with_cmd(mut self, cmd: Option<&'a str>) -> Self {
        self.cmd = cmd;
        self
    }

    /// The stage's declared environment.
    pub fn with_env(mut self, env: &'a [(String, String)]) -> Self {
        self.env = env;
        self
    }

    /// The stage's thread budget.
    pub fn with_threads(mut self, threads: usize) -> Self {
        self.threads = threads;
        self
    }

    /// Where progress goes.
    pub fn with_progress(mut self, progress: &'a dyn crate::Progress) -> Self {
        self.progress = progress;
        self
    }

    /// The memo answers are kept in.
    pub fn with_memo(mut self, memo: &'a dyn crate::Memo) -> Self {
        self.memo = memo;
        self
    }

    /// The run's cancellation token.
    pub fn with_cancel(mut self, cancel: crate::Cancel) -> Self {
        self.cancel = cancel;
        self
    }

    /// The shared HTTP client.
    pub fn with_http(mut self, http: Option<&'a dyn crate::Http>) -> Self {
        self.http = http;
        self
    }

    /// The shared HTTP client, or a failure saying the stage needs one
    /// (a caller that runs stages over the network must supply it).
    pub fn need_http(&self) -> Result<&'a dyn crate::Http, StageFailure> {
        self.http.ok_or_else(|| {
            StageFailure::permanent(format!(
                "stage `{}` needs an HTTP client and whoever runs it supplied none (a library caller must pass one, \
                 e.g. dvx-stages-net's `Client`)",
                self.name
            ))
        })
    }
}

/// What sort of failure a stage had: whether running it again could help,
/// and whose side the problem is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureKind {
    /// Running again unchanged will fail the same way (the default).
    Permanent,
    /// May pass if run again: an interrupted call, a timeout, a network hiccup.
    Transient,
    /// The stage's inputs or params are malformed: fix the data, not the stage.
    BadInput,
    /// The run asked the stage to stop (see [`crate::Cancel`]); not a fault of the stage.
    Cancelled,
}

impl FailureKind {
    /// How the kind reads in a failure line, or `None` for
    /// [`FailureKind::Permanent`], which goes without saying.
    pub fn label(self) -> Option<&'static str> {
        match self {
            FailureKind::Permanent => None,
            FailureKind::Transient => Some("transient"),
            FailureKind::BadInput => Some("bad input"),
            FailureKind::Cancelled => Some("cancelled"),
        }
    }
}

/// Why a stage failed: its kind, a message shown in the run summary, and the
/// chain of causes below it (outermost first), each shown as a
/// `caused by: …` line. `Display` gives the message and those lines.
#[derive(Debug, thiserror::Error)]
#[error("{}", self.detail())]
pub struct StageFailure {
    /// Permanent, transient or bad input.
    pub kind: FailureKind,
    /// What went wrong, in one or a few lines.
    pub message: String,
    /// What caused it, outermost first.
    pub causes: Vec<String>,
}

impl StageFailure {
    /// A failure of `kind` with a message and no causes.
    pub fn of_kind(kind: FailureKind, message: impl Into<String>) -> Self {
        StageFailure { kind, message: message.into(), causes: Vec::new() }
    }

    /// A permanent failure: the same as [`StageFailure::permanent`].
    pub fn new(message: impl Into<String>) -> Self {
        StageFailure::permanent(message)
    }

    /// A failure that running again unchanged will not fix.
    pub fn permanent(message: impl Into<String>) -> Self {
        StageFailure::of_kind(FailureKind::Permanent, message)
    }

    /// A failure that may pass if the stage runs again.
    pub fn transient(message: impl Into<String>) -> Self {
        StageFailure::of_kind(FailureKind::Transient, message)
    }

    /// The stage stopped because the run asked it to.
    pub fn cancelled(message: impl Into<String>) -> Self {
        StageFailure::of_kind(FailureKind::Cancelled, message)
    }

    /// Malformed inputs or params.
    pub fn bad_input(message: impl Into<String>) -> Self {
        StageFailure::of_kind(FailureKind::BadInput, message)
    }

    /// Add `err` and its `source()` chain to the causes. A source whose text
    /// the cause before it already contains is left out, as many errors
    /// print their source in their own message.
    pub fn caused_by(mut self, err: impl std::error::Error) -> Self {
        let mut last = err.to_string();
        self.causes.push(last.clone());
        let mut source = err.source();
        while let Some(s) = source {
            let text = s.to_string();
            if !last.contains(&text) {
                self.causes.push(text.clone());
                last = text;
            }
            source = s.source();
        }
        self
    }

    /// Add a cause given as text.
    pub fn caused_by_text(mut self, cause: impl Into<String>) -> Self {
        self.causes.push(cause.into());
        self
    }

    /// The message, then one `caused by: …` line per cause.
    pub fn detail(&self) -> String {
        let mut s = self.message.clone();
        for c in &self.causes {
            s.push_str("\ncaused by: ");
            s.push_str(c);
        }
        s
    }
}

/// A param problem found while running, as bad input: `params.FIELD: message`.
impl From<ParamError> for StageFailure {
    fn from(e: ParamError) -> Self {
        match e.field {
            Some(f) => StageFailure::bad_input(format!("params.{f}: {}", e.message)),
            None => StageFailure::bad_input(format!("params: {}", e.message)),
        }
    }
}

/// An I/O error is [`FailureKind::Transient`] when its kind says the call may
/// pass if tried again (`Interrupted`, `TimedOut`, `WouldBlock`,
/// `ConnectionReset`, `ConnectionAborted`), else [`FailureKind::Permanent`].
impl From<std::io::Error> for StageFailure {
    fn from(e: std::io::Error) -> Self {
        use std::io::ErrorKind as K;
        let kind = match e.kind() {
            K::Interrupted | K::TimedOut | K::WouldBlock | K::ConnectionReset | K::ConnectionAborted => {
                FailureKind::Transient
            }
            _ => FailureKind::Permanent,
        };
        StageFailure::of_kind(kind, e.to_string())
    }
}

/// A problem with a stage's params found before anything runs. `field` is the
/// dotted path under `params` (e.g. `rules.0.regex`) so the error can point at
/// the YAML line; `None` means the stage as a whole.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParamError {
    /// Dotted path below `params`, when the problem is one field.
    pub field: Option<String>,
    /// What is wrong.
    pub message: String,
}

impl ParamError {
    /// An error about one field of `params`.
    pub fn field(field: impl Into<String>, message: impl Into<String>) -> Self {
        ParamError { field: Some(field.into()), message: message.into() }
    }
    /// An error about the stage as a whole.
    pub fn whole(message: impl Into<String>) -> Self {
        ParamError { field: None, message: message.into() }
    }
}

/// What `check` sees: the declared shape of a stage, before anything runs.
pub struct StageShape<'a> {
    /// The params object.
    pub params: &'a serde_json::Value,
    /// Number of declared deps.
    pub deps: usize,
    /// Number of declared outs.
    pub outs: usize,
    /// The raw `cmd`, if any.
    pub cmd: Option<&'a str>,
}

/// A kind of stage (`cmd`, `filter`, `dedup`, ...), as the engine sees it.
/// Kinds are written as [`crate::TypedStage`] and reach the engine through
/// the one adapter, [`crate::Typed`].
///
/// Contract: `execute` must be deterministic for the same inputs, params and
/// seed, unless the kind says otherwise through [`Stage::deterministic`];
/// bump `version` whenever a change to the implementation can change its
/// outputs, so every key of this kind changes and stale results re-run.
pub trait Stage: Send + Sync {
    /// The `kind:` name used in YAML.
    fn kind(&self) -> &'static str;
    /// Implementation version, part of every key of this kind.
    fn version(&self) -> u32;
    /// Validate params (and the number of deps/outs) before anything runs.
    fn check(&self, shape: &StageShape<'_>) -> Result<(), ParamError>;
    /// Check the outs' names (as written) before anything runs: a kind
    /// that writes records refuses an extension no record writer supports.
    /// Default: any names.
    fn check_outs(&self, _outs: &[&str]) -> Result<(), OutError> {
        Ok(())
    }
    /// Extra facts the result depends on beyond params and deps' bytes: a
    /// git rev resolved to its commit id, a remote file's ETag or hash. The
    /// value joins the stage key, so when it changes the stage re-runs.
    /// Called on every plan, so it must be cheap or cached. Default: none.
    fn fingerprint(&self, _ctx: &FingerprintContext<'_>) -> Result<Option<serde_json::Value>, StageFailure> {
        Ok(None)
    }
    /// Files or folders the stage reads that are not deps (the local
    /// repository or bundle of a `clone`, a local file behind a `fetch`), as
    /// absolute paths. Those inside the workspace become sources of the
    /// version, so `checkout --to` and `reproduce` have them. Their effect on
    /// the result must already be in the key (through `fingerprint`).
    /// Default: none.
    fn external_inputs(&self, _ctx: &FingerprintContext<'_>) -> Result<Vec<PathBuf>, StageFailure> {
        Ok(Vec::new())
    }
    /// Do the work: read `deps`, write every path in `outs`, return metrics.
    fn execute(&self, ctx: &mut StageContext<'_>) -> Result<Metrics, StageFailure>;
    /// Whether the same inputs and params give the same bytes. A kind that
    /// calls something that answers differently each time (an LLM) says
    /// `false`, so `dvx reproduce` reports its differing outputs as expected
    /// rather than as a failure to reproduce. Default: true.
    fn deterministic(&self) -> bool {
        true
    }
    /// The kind's params, for the docs. Default: none documented.
    fn params_doc(&self) -> Vec<crate::typed::ParamDoc> {
        Vec::new()
    }
    /// The params as the key sees them: parsed, defaults filled in, in one
    /// canonical form, so that writing a default out (`seed: 0`) or leaving
    /// it to the kind is the same stage. Called only on params `check`
    /// accepted. Default: the params as written.
    fn normalised_params(&self, params: &serde_json::Value) -> Result<serde_json::Value, ParamError> {
        Ok(params.clone())
    }
    /// Whether the kind runs a `cmd`. A `cmd:` on a stage whose kind does
    /// not is a spec error, not a silently ignored line. Default: false.
    fn takes_cmd(&self) -> bool {
        false
    }
}

/// An out a kind cannot write: its index in `outs` and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutError {
    /// 0-based index into the stage's outs.
    pub index: usize,
    /// What is wrong, and what to do.
    pub message: String,
}

/// What [`Stage::fingerprint`] sees.
pub struct FingerprintContext<'a> {
    /// The folder the stage runs in.
    pub cwd: &'a Path,
    /// Absolute paths of the declared deps.
    pub deps: &'a [PathBuf],
    /// The params object.
    pub params: &'a serde_json::Value,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("outer")]
    struct Outer(#[source] std::io::Error);

    #[test]
    fn kinds_and_causes() {
        assert_eq!(StageFailure::new("x").kind, FailureKind::Permanent);
        assert_eq!(StageFailure::transient("x").kind, FailureKind::Transient);
        let f = StageFailure::bad_input("line 3: not JSON")
            .caused_by(Outer(std::io::Error::other("disk on fire")))
            .caused_by_text("last");
        assert_eq!(f.kind.label(), Some("bad input"));
        assert_eq!(f.causes, ["outer", "disk on fire", "last"]);
        assert_eq!(f.to_string(), "line 3: not JSON\ncaused by: outer\ncaused by: disk on fire\ncaused by: last");
        assert_eq!(FailureKind::Permanent.label(), None);
    }

    #[test]
    fn io_errors_map_to_kinds() {
        use std::io::{Error, ErrorKind};
        assert_eq!(StageFailure::from(Error::from(ErrorKind::TimedOut)).kind, FailureKind::Transient);
        assert_eq!(StageFailure::from(Error::from(ErrorKind::Interrupted)).kind, FailureKind::Transient);
        assert_eq!(StageFailure::from(Error::from(ErrorKind::NotFound)).kind, FailureKind::Permanent);
        let p = StageFailure::from(ParamError::field("n", "too big"));
        assert_eq!((p.kind, p.message.as_str()), (FailureKind::BadInput, "params.n: too big"));
    }
}
