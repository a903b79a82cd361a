//! The run-cache: stage key → the outputs (and metrics, log) it produced.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::error::{CacheError, Result};
use crate::hash::Hash;
use crate::objects::OutputRef;
use crate::store::Cache;

/// What executing one stage key produced.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunEntry {
    /// The stage key.
    pub key: String,
    /// Stage kind.
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
    /// Seconds it took.
    #[serde(default)]
    pub seconds: f64,
}

impl Cache {
    fn run_path(&self, key: &str) -> PathBuf {
        self.runs_dir().join(&key[..2]).join(format!("{key}.json"))
    }

    /// The entry for `key`, if any.
    pub fn get_run(&self, key: &str) -> Result<Option<RunEntry>> {
        let path = self.run_path(key);
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| CacheError::BadRecord { path, message: e.to_string() }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(CacheError::Io { path, source: e }),
        }
    }

    /// Record what `key` produced. Call only after every output object is stored.
    pub fn put_run(&self, entry: &RunEntry) -> Result<()> {
        let bytes = serde_json::to_vec_pretty(entry).expect("run entry serialises");
        self.write_record(&self.run_path(&entry.key), &bytes)
    }

    /// Forget `key` (its outputs turned out corrupt).
    pub fn remove_run(&self, key: &str) -> Result<()> {
        match std::fs::remove_file(self.run_path(key)) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(CacheError::Io { path: self.run_path(key), source: e }),
        }
    }

    /// Every run-cache key.
    pub fn run_keys(&self) -> Result<Vec<String>> {
        let mut keys = Vec::new();
        for shard in read_dir_sorted(&self.runs_dir())? {
            for f in read_dir_sorted(&shard)? {
                if let Some(name) = f.file_name().and_then(|n| n.to_str()) {
                    if let Some(k) = name.strip_suffix(".json") {
                        keys.push(k.to_string());
                    }
                }
            }
        }
        Ok(keys)
    }
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
