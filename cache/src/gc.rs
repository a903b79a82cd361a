//! `dvx gc`: remove objects and run-cache entries that no kept version needs.
//!
//! Safe while other runs write: gc takes `locks-v1/gc.lock` exclusively and
//! keeps everything a live run's lease names (what it restored, stored or
//! wrote) and anything modified after gc started; temp files are only
//! removed once they are older than an hour.

use std::collections::BTreeSet;
use std::time::{Duration, SystemTime};

use crate::error::Result;
use crate::hash::Hash;
use crate::runs::read_dir_sorted;
use crate::store::Cache;
use crate::versions::Refs;

/// Which versions to keep.
#[derive(Debug, Default)]
pub struct GcOptions {
    /// Versions to keep; every other version record is removed.
    pub keep: BTreeSet<Hash>,
    /// Report what would be removed, remove nothing.
    pub dry_run: bool,
}

/// What gc removed (or would remove).
#[derive(Debug, Default)]
pub struct GcReport {
    /// The versions removed (or that would be, in a dry run).
    pub versions: Vec<Hash>,
    /// Run-cache entries removed.
    pub runs: usize,
    /// How many objects were removed.
    pub objects: usize,
    /// Chunks of large objects removed (no kept object uses them).
    pub chunks: usize,
    /// The bytes those objects and chunks held.
    pub bytes: u64,
    /// Temp files removed.
    pub temps: usize,
}

impl Cache {
    /// Run gc. Holds `gc.lock` exclusively throughout, so no run pins,
    /// stores or writes a version meanwhile; everything live leases name is
    /// kept (see `lease.rs`), as is anything written after gc started.
    pub fn gc(&self, opts: &GcOptions) -> Result<GcReport> {
        let _gc = self.gc_exclusive()?;
        let started = SystemTime::now() - Duration::from_secs(2);
        let recent =
            |p: &std::path::Path| std::fs::metadata(p).and_then(|m| m.modified()).map(|t| t >= started).unwrap_or(true);
        let leased = self.live_leases(opts.dry_run)?;
        let mut report = GcReport::default();
        let mut live_objects = leased.objects;
        let mut live_runs = leased.runs;
        for h in self.version_hashes()? {
            let keep = opts.keep.contains(&h)
                || leased.versions.contains(&h)
                || recent(&self.versions_dir().join(format!("{h}.json")));
            if !keep {
                report.versions.push(h);
                continue;
            }
            let rec = match self.get_version(&h) {
                Ok(rec) => rec,
                Err(e) => {
                    // Kept, and `verify --repair` deals with it; its objects are not protected.
                    tracing::warn!("gc: skipping version {}: {e}", h.short());
                    continue;
                }
            };
            let refs = Refs::of(&rec.body).unwrap_or_default();
            for s in &refs.stages {
                if let Some(key) = &s.key {
                    live_runs.insert(key.clone());
                }
            }
            for o in refs.outputs() {
                live_objects.insert(o.hash.clone());
                if let Ok(objs) = self.objects_of(o) {
                    live_objects.extend(objs);
                }
            }
        }
        // Logs of the run entries that stay.
        for key in &live_runs {
            if let Ok(Some(run)) = self.get_run(key) {
                live_objects.extend(run.log);
            }
        }
        for (key, path) in self.run_files()? {
            // Files not named like an entry are verify's to report.
            let Some(key) = key else { continue };
            if live_runs.contains(&key) || recent(&path) {
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
        self.sweep_chunked(&live_objects, &recent, opts.dry_run, &mut report)?;
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
