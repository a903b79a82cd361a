//! The stat cache: (path, size, mtime, ctime, inode, device) → hash, so a
//! no-op run over thousands of unchanged files reads none of them.
//!
//! ctime is in the identity as in git's index: `touch -d`, `cp -p`, `tar x`
//! or rsync can put an edited file's size and mtime back, but any write or
//! metadata change moves ctime, which no user call can set.
//!
//! A file modified within the same timestamp tick as it was hashed could look
//! unchanged; entries whose mtime is that close to the moment of hashing are
//! "racy" and re-hashed next time (as git does with its index). The window is
//! 100 ms on filesystems with sub-second timestamps (the kernel's clock tick
//! is a few ms) and 2 s where timestamps are whole seconds.

use std::collections::{BTreeMap, HashMap};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::atomic;
use crate::error::{IoContext, Result};
use crate::hash::{hash_file, Hash};

#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    size: u64,
    mtime_ns: i128,
    ctime_ns: i128,
    ino: u64,
    dev: u64,
    hash: Hash,
}

impl Entry {
    fn new(meta: &std::fs::Metadata, hash: Hash) -> Entry {
        Entry {
            size: meta.len(),
            mtime_ns: mtime_ns(meta),
            ctime_ns: ctime_ns(meta),
            ino: meta.ino(),
            dev: meta.dev(),
            hash,
        }
    }

    fn matches(&self, meta: &std::fs::Metadata) -> bool {
        self.size == meta.len()
            && self.mtime_ns == mtime_ns(meta)
            && self.ctime_ns == ctime_ns(meta)
            && self.ino == meta.ino()
            && self.dev == meta.dev()
    }
}

/// The identity of a file as bytes (size, mtime, ctime, inode, device), for
/// digests of many files at once.
pub(crate) fn identity_bytes(meta: &std::fs::Metadata) -> [u8; 72] {
    let mut b = [0u8; 72];
    b[..8].copy_from_slice(&meta.len().to_le_bytes());
    b[8..24].copy_from_slice(&mtime_ns(meta).to_le_bytes());
    b[24..40].copy_from_slice(&ctime_ns(meta).to_le_bytes());
    b[40..48].copy_from_slice(&meta.ino().to_le_bytes());
    b[48..56].copy_from_slice(&meta.dev().to_le_bytes());
    b
}

/// A persistent map from file identity to content hash.
#[derive(Debug, Default)]
pub struct StatCache {
    file: Option<PathBuf>,
    entries: HashMap<String, Entry>,
    /// Folder path → (identity digest of its files, manifest hash).
    folders: HashMap<String, (Hash, Hash)>,
    dirty: bool,
    /// How many files were actually read and hashed (for tests and benches).
    pub files_hashed: usize,
}

fn mtime_ns(meta: &std::fs::Metadata) -> i128 {
    meta.mtime() as i128 * 1_000_000_000 + meta.mtime_nsec() as i128
}

fn ctime_ns(meta: &std::fs::Metadata) -> i128 {
    meta.ctime() as i128 * 1_000_000_000 + meta.ctime_nsec() as i128
}

fn now_ns() -> i128 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos() as i128).unwrap_or(0)
}

const COARSE_RACY_NS: i128 = 2_000_000_000;
const FINE_RACY_NS: i128 = 100_000_000;

impl StatCache {
    /// Load from `file` (missing or unreadable → empty).
    pub fn load(file: &Path) -> StatCache {
        let (entries, folders) = std::fs::read_to_string(file).ok().map(|t| parse(&t)).unwrap_or_default();
        StatCache { file: Some(file.to_path_buf()), entries, folders, dirty: false, files_hashed: 0 }
    }

    /// An in-memory stat cache that is never saved.
    pub fn in_memory() -> StatCache {
        StatCache::default()
    }

    /// Hash of the file at `path` whose metadata the caller already has.
    pub fn hash_with_meta(&mut self, path: &Path, meta: &std::fs::Metadata) -> Result<Hash> {
        if let Some(h) = self.lookup(path, meta) {
            return Ok(h);
        }
        let hash = hash_file(path)?;
        self.record(path, meta, &hash);
        Ok(hash)
    }

    /// The cached hash of `path`, if its identity (size, mtime, ctime, inode, device) is unchanged.
    pub fn lookup(&self, path: &Path, meta: &std::fs::Metadata) -> Option<Hash> {
        let e = self.entries.get(path.to_str()?)?;
        e.matches(meta).then(|| e.hash.clone())
    }

    /// Whether a file changed so recently that its identity cannot be trusted.
    pub fn is_racy(meta: &std::fs::Metadata) -> bool {
        let racy_ns = if meta.mtime_nsec() == 0 { COARSE_RACY_NS } else { FINE_RACY_NS };
        now_ns() - mtime_ns(meta).max(ctime_ns(meta)) <= racy_ns
    }

    /// The manifest hash of a folder whose files' identities digest to `identity`.
    pub fn lookup_folder(&self, path: &Path, identity: &Hash) -> Option<Hash> {
        let (id, h) = self.folders.get(path.to_str()?)?;
        (id == identity).then(|| h.clone())
    }

    /// Remember a folder's manifest hash for the identities of its files.
    pub fn record_folder(&mut self, path: &Path, identity: Hash, manifest: &Hash) {
        let Some(key) = path.to_str().filter(|k| !k.contains(['\n', '\t'])) else { return };
        self.folders.insert(key.to_string(), (identity, manifest.clone()));
        self.dirty = true;
    }

    /// Remember that `path` (as described by `meta`) hashed to `hash`; racy
    /// entries are dropped instead (see the module doc).
    pub fn record(&mut self, path: &Path, meta: &std::fs::Metadata, hash: &Hash) {
        self.files_hashed += 1;
        let Some(key) = path.to_str().filter(|k| !k.contains(['\n', '\t'])) else { return };
        if !Self::is_racy(meta) {
            self.entries.insert(key.to_string(), Entry::new(meta, hash.clone()));
            self.dirty = true;
        } else if self.entries.remove(key).is_some() {
            self.dirty = true;
        }
    }

    /// Write back if anything changed (atomically, beside the file).
    pub fn save(&mut self) -> Result<()> {
        let Some(file) = &self.file else { return Ok(()) };
        if !self.dirty {
            return Ok(());
        }
        let dir = file.parent().expect("stat cache file has a parent");
        std::fs::create_dir_all(dir).at(dir)?;
        let bytes = format(&self.entries, &self.folders);
        // A cache of hashes: losing it on power failure only costs re-hashing,
        // so no fsync; the rename still keeps it whole.
        let tmp = atomic::temp_path(dir);
        std::fs::write(&tmp, &bytes).at(&tmp)?;
        std::fs::rename(&tmp, file).at(file)?;
        self.dirty = false;
        Ok(())
    }
}

const HEADER: &str = "dvx-stat-v3\n";

/// One line per file: `size \t mtime_ns \t ctime_ns \t inode \t dev \t hash \t path`. A plain
/// text format parses several times faster than JSON, which matters when a
/// no-op run loads tens of thousands of entries.
fn format(entries: &HashMap<String, Entry>, folders: &HashMap<String, (Hash, Hash)>) -> Vec<u8> {
    use std::fmt::Write;
    let mut s = String::with_capacity(HEADER.len() + entries.len() * 120);
    s.push_str(HEADER);
    // Sorted, so the file is stable for the same contents.
    let sorted: BTreeMap<&String, &Entry> = entries.iter().collect();
    for (path, e) in sorted {
        let _ = writeln!(s, "{}\t{}\t{}\t{}\t{}\t{}\t{}", e.size, e.mtime_ns, e.ctime_ns, e.ino, e.dev, e.hash, path);
    }
    let sorted: BTreeMap<&String, &(Hash, Hash)> = folders.iter().collect();
    for (path, (id, h)) in sorted {
        let _ = writeln!(s, "D\t{id}\t{h}\t{path}");
    }
    s.into_bytes()
}

type Folders = HashMap<String, (Hash, Hash)>;

fn parse(text: &str) -> (HashMap<String, Entry>, Folders) {
    let Some(body) = text.strip_prefix(HEADER) else { return Default::default() };
    let mut out = HashMap::with_capacity(body.len() / 100);
    let mut folders = HashMap::new();
    for line in body.lines() {
        if let Some(rest) = line.strip_prefix("D\t") {
            let mut f = rest.splitn(3, '\t');
            if let (Some(id), Some(h), Some(path)) = (f.next(), f.next(), f.next()) {
                if let (Some(id), Some(h)) = (Hash::parse(id), Hash::parse(h)) {
                    folders.insert(path.to_string(), (id, h));
                }
            }
            continue;
        }
        let mut f = line.splitn(7, '\t');
        let mut next = || f.next();
        let (Some(size), Some(mtime), Some(ctime), Some(ino), Some(dev), Some(hash), Some(path)) =
            (next(), next(), next(), next(), next(), next(), next())
        else {
            continue;
        };
        let (Ok(size), Ok(mtime_ns), Ok(ctime_ns), Ok(ino), Ok(dev), Some(hash)) =
            (size.parse(), mtime.parse(), ctime.parse(), ino.parse(), dev.parse(), Hash::parse(hash))
        else {
            continue;
        };
        out.insert(path.to_string(), Entry { size, mtime_ns, ctime_ns, ino, dev, hash });
    }
    (out, folders)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn format_round_trips() {
        let mut m = HashMap::new();
        m.insert(
            "/a b/c.txt".to_string(),
            Entry { size: 3, mtime_ns: -5, ctime_ns: 9, ino: 7, dev: 2, hash: Hash::of_bytes(b"x") },
        );
        let mut f = HashMap::new();
        f.insert("/a b".to_string(), (Hash::of_bytes(b"id"), Hash::of_bytes(b"m")));
        assert_eq!(parse(std::str::from_utf8(&format(&m, &f)).unwrap()), (m, f));
        assert!(parse("garbage").0.is_empty());
    }
}
