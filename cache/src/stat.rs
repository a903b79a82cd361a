//! The stat cache: (path, size, mtime, inode) → hash, so a no-op run over
//! thousands of unchanged files reads none of them.
//!
//! A file modified within the same timestamp tick as it was hashed could look
//! unchanged; entries whose mtime is that close to the moment of hashing are
//! "racy" and re-hashed next time (as git does with its index). The window is
//! 100 ms on filesystems with sub-second timestamps (the kernel's clock tick
//! is a few ms) and 2 s where timestamps are whole seconds.

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::atomic;
use crate::error::{IoContext, Result};
use crate::hash::{hash_file, Hash};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Entry {
    size: u64,
    mtime_ns: i128,
    ino: u64,
    hash: Hash,
}

/// A persistent map from file identity to content hash.
#[derive(Debug, Default)]
pub struct StatCache {
    file: Option<PathBuf>,
    entries: BTreeMap<String, Entry>,
    dirty: bool,
    /// How many files were actually read and hashed (for tests and benches).
    pub files_hashed: usize,
}

fn mtime_ns(meta: &std::fs::Metadata) -> i128 {
    meta.mtime() as i128 * 1_000_000_000 + meta.mtime_nsec() as i128
}

fn now_ns() -> i128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as i128)
        .unwrap_or(0)
}

const COARSE_RACY_NS: i128 = 2_000_000_000;
const FINE_RACY_NS: i128 = 100_000_000;

impl StatCache {
    /// Load from `file` (missing or unreadable → empty).
    pub fn load(file: &Path) -> StatCache {
        let entries = std::fs::read(file)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
        StatCache { file: Some(file.to_path_buf()), entries, dirty: false, files_hashed: 0 }
    }

    /// An in-memory stat cache that is never saved.
    pub fn in_memory() -> StatCache {
        StatCache::default()
    }

    /// Hash of the file at `path`.
    pub fn hash(&mut self, path: &Path) -> Result<Hash> {
        let meta = std::fs::metadata(path).at(path)?;
        self.hash_with_meta(path, &meta)
    }

    /// Hash of the file at `path` whose metadata the caller already has.
    pub fn hash_with_meta(&mut self, path: &Path, meta: &std::fs::Metadata) -> Result<Hash> {
        let key = path.to_string_lossy();
        let (size, mtime, ino) = (meta.len(), mtime_ns(meta), meta.ino());
        if let Some(e) = self.entries.get(key.as_ref()) {
            if e.size == size && e.mtime_ns == mtime && e.ino == ino {
                return Ok(e.hash.clone());
            }
        }
        let hash = hash_file(path)?;
        self.files_hashed += 1;
        let racy_ns = if meta.mtime_nsec() == 0 { COARSE_RACY_NS } else { FINE_RACY_NS };
        if now_ns() - mtime > racy_ns {
            self.entries.insert(key.into_owned(), Entry { size, mtime_ns: mtime, ino, hash: hash.clone() });
            self.dirty = true;
        } else if self.entries.remove(key.as_ref()).is_some() {
            self.dirty = true;
        }
        Ok(hash)
    }

    /// Write back if anything changed (atomically, beside the file).
    pub fn save(&mut self) -> Result<()> {
        let Some(file) = &self.file else { return Ok(()) };
        if !self.dirty {
            return Ok(());
        }
        let dir = file.parent().expect("stat cache file has a parent");
        std::fs::create_dir_all(dir).at(dir)?;
        let bytes = serde_json::to_vec(&self.entries).expect("entries serialise");
        // A cache of hashes: losing it on power failure only costs re-hashing,
        // so no fsync; the rename still keeps it whole.
        let tmp = atomic::temp_path(dir);
        std::fs::write(&tmp, &bytes).at(&tmp)?;
        std::fs::rename(&tmp, file).at(file)?;
        self.dirty = false;
        Ok(())
    }
}
