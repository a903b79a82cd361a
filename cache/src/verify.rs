//! `dvx cache verify`: re-hash every object, check every run entry and
//! version record, and report (or, with `--repair`, remove) what cannot be
//! used: corrupt objects go to `quarantine/`, records that are damaged or
//! name missing or corrupt objects are deleted, stray files too (bad
//! workspace records included).

use std::collections::BTreeSet;
use std::path::PathBuf;

use crate::error::{IoContext, Result};
use crate::hash::{hash_object, Hash, StageKey};
use crate::objects::{OutputKind, OutputRef};
use crate::runs::read_dir_sorted;
use crate::store::Cache;
use crate::versions::Refs;

/// What verify found.
#[derive(Debug, Default)]
pub struct VerifyReport {
    /// How many objects were read and their bytes checked against their names.
    pub objects: usize,
    /// Run entries checked.
    pub runs: usize,
    /// Version records checked.
    pub versions: usize,
    /// Objects (or chunks) whose bytes do not match their name: (name, actual hash).
    pub corrupt: Vec<(String, String)>,
    /// Objects stored as chunks that cannot be reassembled intact: (name,
    /// why: a chunk missing or corrupt, or the whole hashing wrong).
    pub damaged: Vec<(Hash, String)>,
    /// Leftover temp files (from killed writers); harmless, gc removes them.
    pub temp_leftovers: usize,
    /// Run-cache entries that name an object missing from the store or corrupt.
    pub dangling_runs: Vec<StageKey>,
    /// Versions that cannot be restored: (hash, why).
    pub broken_versions: Vec<(Hash, String)>,
    /// Files that are not valid records where records live: (file, why).
    pub bad_records: Vec<(PathBuf, String)>,
    /// Memo entries checked.
    pub memo: usize,
    /// Memo entries that are damaged: (file, why). Quarantined by repair;
    /// a read treats them as misses anyway.
    pub bad_memo: Vec<(PathBuf, String)>,
}

impl VerifyReport {
    /// True when nothing is wrong (temp leftovers aside).
    pub fn is_clean(&self) -> bool {
        self.corrupt.is_empty()
            && self.damaged.is_empty()
            && self.dangling_runs.is_empty()
            && self.broken_versions.is_empty()
            && self.bad_records.is_empty()
            && self.bad_memo.is_empty()
    }
}

impl Cache {
    /// Check everything; with `repair`, quarantine corrupt objects and remove
    /// the records that cannot be used, so what they describe is rebuilt.
    pub fn verify(&self, repair: bool) -> Result<VerifyReport> {
        let mut report = VerifyReport::default();
        let mut corrupt = BTreeSet::new();
        for (name, obj) in self.object_files()? {
            let Some(hash) = Hash::parse(&name) else {
                report.bad_records.push((obj, "not an object (its name is not a blake3 hash)".into()));
                continue;
            };
            report.objects += 1;
            // A symlink or special file where an object belongs is corrupt.
            let actual = match hash_object(&obj) {
                Ok(h) => h.to_string(),
                Err(crate::CacheError::Io { source, .. }) if source.kind() != std::io::ErrorKind::NotFound => {
                    "(not a regular file)".to_string()
                }
                Err(e) => return Err(e),
            };
            if actual != hash.as_str() {
                if repair {
                    let q = self.dir(crate::bucket::Bucket::Quarantine);
                    self.ensure_dir(&q)?;
                    std::fs::rename(&obj, q.join(&name)).at(&obj)?;
                }
                report.corrupt.push((name, actual));
                corrupt.insert(hash);
            }
        }
        self.verify_chunked(repair, &mut report, &mut corrupt)?;
        report.temp_leftovers = read_dir_sorted(&self.tmp_dir())?.len();
        // Whether every object of an output is present and intact (without
        // reading a corrupt manifest, which would move it).
        let usable = |out: &OutputRef| -> std::result::Result<(), String> {
            let check = |h: &Hash| match () {
                _ if corrupt.contains(h) => Err(format!("object {} is corrupt", h.short())),
                _ if !self.has_object(h) => Err(format!("object {} is missing", h.short())),
                _ => Ok(()),
            };
            check(&out.hash)?;
            if out.kind == OutputKind::Dir {
                let entries = self.read_tree(&out.hash).map_err(|e| e.to_string())?;
                entries.iter().try_for_each(|e| check(&e.hash))?;
            }
            Ok(())
        };
        let mut remove = Vec::new();
        for (key, path) in self.run_files()? {
            let Some(key) = key else {
                report.bad_records.push((path.clone(), "not a run entry (its name is not a stage key)".into()));
                remove.push(path);
                continue;
            };
            report.runs += 1;
            match self.get_run(&key) {
                Ok(Some(entry)) => {
                    let log = entry.log.iter().map(|h| OutputRef {
                        path: "log".into(),
                        kind: OutputKind::File,
                        hash: h.clone(),
                    });
                    if entry.outputs.iter().cloned().chain(log).any(|o| usable(&o).is_err()) {
                        report.dangling_runs.push(key);
                        remove.push(path);
                    }
                }
                Ok(None) => {}
                Err(e) => {
                    report.bad_records.push((path.clone(), e.to_string()));
                    remove.push(path);
                }
            }
        }
        for path in read_dir_sorted(&self.versions_dir())? {
            let Some(hash) = path.file_name().and_then(|n| n.to_str()?.strip_suffix(".json")).and_then(Hash::parse)
            else {
                report.bad_records.push((path.clone(), "not a version record (its name is not a version hash)".into()));
                remove.push(path);
                continue;
            };
            report.versions += 1;
            match self.get_version(&hash) {
                Ok(rec) => {
                    let refs = Refs::of(&rec.body).unwrap_or_default();
                    let why = refs.outputs().find_map(|o| usable(o).err().map(|e| format!("`{}`: {e}", o.path)));
                    if let Some(why) = why {
                        report.broken_versions.push((hash, why));
                        remove.push(path);
                    }
                }
                Err(e) => {
                    report.bad_records.push((path.clone(), e.to_string()));
                    remove.push(path);
                }
            }
        }
        // Workspace records only protect versions from gc; a bad one is dropped.
        for (path, rec) in self.workspace_files()? {
            if let Err(why) = rec {
                report.bad_records.push((path.clone(), why));
                remove.push(path);
            }
        }
        (report.memo, report.bad_memo) = self.verify_memo(repair)?;
        if repair {
            for path in remove {
                let _ = crate::objects::remove_path(&path);
            }
        }
        Ok(report)
    }

    /// All object names in the store.
    pub(crate) fn object_names(&self) -> Result<Vec<(Hash, std::path::PathBuf)>> {
        Ok(self.object_files()?.into_iter().filter_map(|(name, p)| Some((Hash::parse(&name)?, p))).collect())
    }

    /// Every file under `objects-v1/`, with the name it claims (shard + file).
    fn object_files(&self) -> Result<Vec<(String, std::path::PathBuf)>> {
        self.sharded_files(crate::bucket::Bucket::Objects)
    }
}

impl Cache {
    /// Number of objects (whole or chunked) and the bytes they take on disk
    /// (chunks shared between objects counted once).
    pub fn object_stats(&self) -> Result<(usize, u64)> {
        let names = self.object_names()?;
        let bytes: u64 = names.iter().map(|(_, p)| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0)).sum();
        let (chunked, chunked_bytes) = self.chunked_stats()?;
        Ok((names.len() + chunked, bytes + chunked_bytes))
    }
}
