//! `dvx cache verify`: re-hash every object and report (or quarantine) those
//! whose bytes do not match their name.

use crate::error::{IoContext, Result};
use crate::hash::{hash_file, Hash};
use crate::runs::read_dir_sorted;
use crate::store::Cache;

/// What verify found.
#[derive(Debug, Default)]
pub struct VerifyReport {
    /// Objects checked.
    pub objects: usize,
    /// Objects whose bytes do not match their name: (name, actual hash).
    pub corrupt: Vec<(String, String)>,
    /// Leftover temp files (from killed writers); harmless, gc removes them.
    pub temp_leftovers: usize,
    /// Run-cache entries that name an object not in the store.
    pub dangling_runs: Vec<String>,
}

impl VerifyReport {
    /// True when nothing is wrong (temp leftovers aside).
    pub fn is_clean(&self) -> bool {
        self.corrupt.is_empty() && self.dangling_runs.is_empty()
    }
}

impl Cache {
    /// Check every object; with `repair`, move corrupt ones to `quarantine/`
    /// and drop the run-cache entries that need them, so they are rebuilt.
    pub fn verify(&self, repair: bool) -> Result<VerifyReport> {
        let mut report = VerifyReport::default();
        for shard in read_dir_sorted(&self.objects_dir())? {
            for obj in read_dir_sorted(&shard)? {
                let name = format!(
                    "{}{}",
                    shard.file_name().unwrap_or_default().to_string_lossy(),
                    obj.file_name().unwrap_or_default().to_string_lossy()
                );
                report.objects += 1;
                let actual = hash_file(&obj)?;
                if actual.as_str() != name {
                    if repair {
                        let q = self.root().join("quarantine");
                        self.ensure_dir(&q)?;
                        std::fs::rename(&obj, q.join(&name)).at(&obj)?;
                    }
                    report.corrupt.push((name, actual.to_string()));
                }
            }
        }
        report.temp_leftovers = read_dir_sorted(&self.tmp_dir())?.len();
        for key in self.run_keys()? {
            let Some(entry) = self.get_run(&key)? else { continue };
            let mut ok = true;
            for out in &entry.outputs {
                let objs = match self.objects_of(out) {
                    Ok(o) => o,
                    Err(_) => {
                        ok = false;
                        break;
                    }
                };
                if objs.iter().any(|h| !self.has_object(h)) {
                    ok = false;
                }
            }
            if !ok {
                if repair {
                    self.remove_run(&key)?;
                }
                report.dangling_runs.push(key);
            }
        }
        Ok(report)
    }

    /// All object names in the store.
    pub(crate) fn object_names(&self) -> Result<Vec<(Hash, std::path::PathBuf)>> {
        let mut v = Vec::new();
        for shard in read_dir_sorted(&self.objects_dir())? {
            for obj in read_dir_sorted(&shard)? {
                let name = format!(
                    "{}{}",
                    shard.file_name().unwrap_or_default().to_string_lossy(),
                    obj.file_name().unwrap_or_default().to_string_lossy()
                );
                if let Some(h) = Hash::parse(&name) {
                    v.push((h, obj));
                }
            }
        }
        Ok(v)
    }
}

impl Cache {
    /// Number of objects and their total size.
    pub fn object_stats(&self) -> Result<(usize, u64)> {
        let names = self.object_names()?;
        let bytes = names.iter().map(|(_, p)| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0)).sum();
        Ok((names.len(), bytes))
    }
}
