//! `dvx gc`: remove objects and run-cache entries that no kept version needs.
//!
//! Safe while other runs write: anything modified after gc started (objects
//! written or re-used by a concurrent run touch their mtime) is kept, and
//! temp files are only removed once they are older than an hour.

use std::collections::BTreeSet;
use std::time::{Duration, SystemTime};

use serde::Deserialize;

use crate::error::Result;
use crate::hash::Hash;
use crate::objects::OutputRef;
use crate::runs::read_dir_sorted;
use crate::store::Cache;

/// Which versions to keep.
#[derive(Debug, Default)]
pub struct GcOptions {
    /// Versions to keep; every other version record is removed.
    pub keep: BTreeSet<Hash>,
    /// Only report.
    pub dry_run: bool,
}

/// What gc removed (or would remove).
#[derive(Debug, Default)]
pub struct GcReport {
    /// Versions removed.
    pub versions: Vec<Hash>,
    /// Run-cache entries removed.
    pub runs: usize,
    /// Objects removed.
    pub objects: usize,
    /// Bytes freed.
    pub bytes: u64,
    /// Temp files removed.
    pub temps: usize,
}

/// The parts of a version body gc needs: the shape the engine writes.
#[derive(Deserialize)]
struct Refs {
    #[serde(default)]
    stages: Vec<StageRefs>,
    #[serde(default)]
    sources: Vec<OutputRef>,
}

#[derive(Deserialize)]
struct StageRefs {
    key: String,
    #[serde(default)]
    outputs: Vec<OutputRef>,
}

impl Cache {
    /// Run gc.
    pub fn gc(&self, opts: &GcOptions) -> Result<GcReport> {
        let started = SystemTime::now() - Duration::from_secs(2);
        let mut report = GcReport::default();
        let mut live_objects = BTreeSet::new();
        let mut live_runs = BTreeSet::new();
        for h in self.version_hashes()? {
            if !opts.keep.contains(&h) {
                report.versions.push(h);
                continue;
            }
            let rec = self.get_version(&h)?;
            let refs: Refs = serde_json::from_value(rec.body).unwrap_or(Refs { stages: vec![], sources: vec![] });
            let mut outs = refs.sources;
            for s in refs.stages {
                if let Some(run) = self.get_run(&s.key)? {
                    if let Some(log) = run.log {
                        live_objects.insert(log);
                    }
                }
                live_runs.insert(s.key);
                outs.extend(s.outputs);
            }
            for o in &outs {
                live_objects.insert(o.hash.clone());
                if let Ok(objs) = self.objects_of(o) {
                    live_objects.extend(objs);
                }
            }
        }
        let recent =
            |p: &std::path::Path| std::fs::metadata(p).and_then(|m| m.modified()).map(|t| t >= started).unwrap_or(true);
        for key in self.run_keys()? {
            if live_runs.contains(&key) {
                continue;
            }
            let path = self.runs_dir().join(&key[..2]).join(format!("{key}.json"));
            if recent(&path) {
                continue;
            }
            report.runs += 1;
            if !opts.dry_run {
                let _ = std::fs::remove_file(&path);
            }
        }
        for (h, path) in self.object_names()? {
            if live_objects.contains(&h) || recent(&path) {
                continue;
            }
            report.objects += 1;
            report.bytes += std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
            if !opts.dry_run {
                let _ = std::fs::remove_file(&path);
            }
        }
        let hour_ago = SystemTime::now() - Duration::from_secs(3600);
        for tmp in read_dir_sorted(&self.tmp_dir())? {
            let old = std::fs::metadata(&tmp).and_then(|m| m.modified()).map(|t| t < hour_ago).unwrap_or(false);
            if old {
                report.temps += 1;
                if !opts.dry_run {
                    let _ = std::fs::remove_file(&tmp);
                }
            }
        }
        if !opts.dry_run {
            for h in &report.versions {
                self.remove_version(h)?;
            }
        }
        Ok(report)
    }
}
