//! `dvx gc`: remove objects and run-cache entries that no kept version needs.
//!
//! Safe while other runs write: gc takes `locks-v1/gc.lock` exclusively and
//! keeps everything a live run's lease names (what it restored, stored or
//! wrote) and anything modified after gc started; temp files are only
//! removed once they are older than an hour. The version each registered
//! workspace holds (`workspaces.rs`) is always kept, whatever the caller asks.

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

/// A version gc removed (or would remove).
#[derive(Debug, Clone)]
pub struct RemovedVersion {
    /// Its hash.
    pub hash: Hash,
    /// When it was made (0 when its record cannot be read).
    pub created: u64,
    /// Its pipeline file (empty when its record cannot be read).
    pub pipeline_file: String,
    /// Bytes of its objects that no kept version needs (an object two
    /// removed versions share counts for both).
    pub bytes: u64,
}

/// What gc removed (or would remove).
#[derive(Debug, Default)]
pub struct GcReport {
    /// The versions removed (or that would be, in a dry run), newest first.
    pub versions: Vec<RemovedVersion>,
    /// The registered workspaces, whose versions were kept.
    pub workspaces: Vec<crate::WorkspaceRecord>,
    /// How many versions were kept.
    pub kept: usize,
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
        let mut report = GcReport { workspaces: self.workspaces()?, ..GcReport::default() };
        let held: BTreeSet<&Hash> = report.workspaces.iter().map(|w| &w.version).collect();
        let mut live_objects = leased.objects;
        let mut live_runs = leased.runs;
        let mut removed = Vec::new();
        for h in self.version_hashes()? {
            let keep = opts.keep.contains(&h)
                || held.contains(&h)
                || leased.versions.contains(&h)
                || recent(&self.versions_dir().join(format!("{h}.json")));
            if !keep {
                removed.push(h);
                continue;
            }
            report.kept += 1;
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
        // Logs and memo key lists of the run entries that stay.
        for key in &live_runs {
            if let Ok(Some(run)) = self.get_run(key) {
                live_objects.extend(run.log);
                live_objects.extend(run.memo);
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
        let mut sizes = std::collections::HashMap::new();
        for (h, path) in self.object_names()? {
            if live_objects.contains(&h) || recent(&path) {
                continue;
            }
            let size = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
            report.objects += 1;
            report.bytes += size;
            sizes.insert(h, size);
        }
        // What each removed version frees, read before anything goes.
        for h in removed {
            report.versions.push(self.removed_version(h, &sizes));
        }
        report.versions.sort_by(|a, b| b.created.cmp(&a.created).then_with(|| a.hash.cmp(&b.hash)));
        if !opts.dry_run {
            for h in sizes.keys() {
                let _ = std::fs::remove_file(self.object_path(h));
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
            for v in &report.versions {
                self.remove_version(&v.hash)?;
            }
        }
        Ok(report)
    }

    /// A version about to be removed, with the bytes of its objects that go
    /// (`sizes`: every object gc removes). A record that cannot be read frees nothing it can name.
    fn removed_version(&self, hash: Hash, sizes: &std::collections::HashMap<Hash, u64>) -> RemovedVersion {
        let mut v = RemovedVersion { hash, created: 0, pipeline_file: String::new(), bytes: 0 };
        let Ok(rec) = self.get_version(&v.hash) else { return v };
        v.created = rec.meta.created;
        v.pipeline_file = rec.meta.pipeline_file;
        let refs = Refs::of(&rec.body).unwrap_or_default();
        let mut objects = BTreeSet::new();
        for o in refs.outputs() {
            objects.insert(o.hash.clone());
            if let Ok(objs) = self.objects_of(o) {
                objects.extend(objs);
            }
        }
        v.bytes = objects.iter().filter_map(|h| sizes.get(h)).sum();
        v
    }
}
