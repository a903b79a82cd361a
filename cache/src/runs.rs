//! The run-cache: stage key → the outputs (and metrics, log) it produced.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::error::{CacheError, Result};
use crate::hash::{Hash, StageKey};
use crate::objects::OutputRef;
use crate::store::Cache;

/// What executing one stage key produced.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunEntry {
    /// The stage key.
    pub key: StageKey,
    /// The stage's kind, so `dvx cache` listings can say what made the entry.
    pub kind: String,
    /// Stage name when it ran (informational: the same key may have many names).
    pub stage: String,
    /// Outputs, in declared order.
    pub outputs: Vec<OutputRef>,
    /// Metrics the stage returned.
    #[serde(default)]
    pub metrics: serde_json::Map<String, serde_json::Value>,
    /// The stage's log (stdout/stderr), as an object.
    #[serde(default)]
    pub log: Option<Hash>,
    /// The memo keys the run read or wrote, as an object (`Cache::put_memo_keys`),
    /// so gc keeps the memo entries kept versions used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memo: Option<Hash>,
    /// Seconds it took.
    #[serde(default)]
    pub seconds: f64,
}

impl Cache {
    pub(crate) fn run_path(&self, key: &StageKey) -> PathBuf {
        self.runs_dir().join(&key.as_str()[..2]).join(format!("{key}.json"))
    }

    /// The entry for `key`, if any. An entry that is not what its name says
    /// (unreadable, another key, an output path that is not a clean relative
    /// path) is a [`CacheError::BadRecord`]: the caller re-executes.
    pub fn get_run(&self, key: &StageKey) -> Result<Option<RunEntry>> {
        let path = self.run_path(key);
        match std::fs::read(&path) {
            Ok(bytes) => parse_run(&bytes, key).map(Some).map_err(|message| CacheError::BadRecord { path, message }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(CacheError::Io { path, source: e }),
        }
    }

    /// Record what `key` produced. Call only after every output object is
    /// stored; pins the entry for this handle's lease.
    pub fn put_run(&self, entry: &RunEntry) -> Result<()> {
        let key = &entry.key;
        let bytes = serde_json::to_vec_pretty(entry).expect("run entry serialises");
        let _gc = self.gc_shared()?;
        self.write_record(&self.run_path(key), &bytes)?;
        self.pin('r', [key.as_str()])
    }

    /// Forget `key` (its outputs turned out missing or corrupt).
    pub fn remove_run(&self, key: &StageKey) -> Result<()> {
        let path = self.run_path(key);
        match std::fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(CacheError::Io { path, source: e }),
        }
    }

    /// Every well-named run-cache key (`runs-v1/ab/ab….json`).
    pub fn run_keys(&self) -> Result<Vec<StageKey>> {
        Ok(self.run_files()?.into_iter().filter_map(|(k, _)| k).collect())
    }

    /// Every file under `runs-v1/`, with its key when the name is one.
    pub(crate) fn run_files(&self) -> Result<Vec<(Option<StageKey>, PathBuf)>> {
        let mut out = Vec::new();
        for shard in read_dir_sorted(&self.runs_dir())? {
            let shard_name = shard.file_name().and_then(|n| n.to_str()).unwrap_or("").to_string();
            if !shard.is_dir() {
                out.push((None, shard));
                continue;
            }
            for f in read_dir_sorted(&shard)? {
                let key = f
                    .file_name()
                    .and_then(|n| n.to_str())
                    .and_then(|n| n.strip_suffix(".json"))
                    .and_then(StageKey::parse)
                    .filter(|k| k.as_str()[..2] == shard_name);
                out.push((key, f));
            }
        }
        Ok(out)
    }
}

/// Parse a run entry and check it against its name and the trust rules.
fn parse_run(bytes: &[u8], key: &StageKey) -> std::result::Result<RunEntry, String> {
    let entry: RunEntry = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
    if &entry.key != key {
        return Err(format!("the entry is for key {}, not for the key it is filed under", entry.key));
    }
    for o in &entry.outputs {
        crate::paths::check_rel_path(&o.path).map_err(|m| format!("output path: {m}"))?;
    }
    Ok(entry)
}

pub(crate) fn read_dir_sorted(dir: &std::path::Path) -> Result<Vec<PathBuf>> {
    let rd = match std::fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(CacheError::Io { path: dir.to_path_buf(), source: e }),
    };
    let mut v: Vec<PathBuf> = rd.flatten().map(|e| e.path()).collect();
    v.sort();
    Ok(v)
}
