//! Objects: file bytes and folder manifests, stored once under their blake3.

use std::fs::File;
use std::io::{Read, Write};
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::atomic;
use crate::error::{CacheError, IoContext, Result};
use crate::hash::{open_regular, Hash};
use crate::stat::StatCache;
use crate::store::Cache;

/// Batches of at most this many new files are made durable with an fsync
/// each; larger ones with one syncfs ([`Cache::commit`]).
const SYNC_EACH_UP_TO: usize = 32;

/// New objects waiting in `tmp/` for one sync and their renames, in order
/// (a chunked object's chunks before its list).
#[derive(Default)]
pub(crate) struct Batch {
    pending: Vec<(std::path::PathBuf, std::path::PathBuf)>,
    /// The destinations in `pending`, to stage each once.
    dests: std::collections::HashSet<std::path::PathBuf>,
    /// Objects the batch refers to besides the outputs themselves (folder entries).
    pinned: Vec<Hash>,
}

impl Batch {
    /// Stage the complete temp file `tmp` to become `dest`.
    pub(crate) fn add(&mut self, tmp: std::path::PathBuf, dest: std::path::PathBuf) {
        self.dests.insert(dest.clone());
        self.pending.push((tmp, dest));
    }

    /// Whether `dest` is already staged.
    pub(crate) fn has(&self, dest: &Path) -> bool {
        self.dests.contains(dest)
    }
}

/// Whether an output is a file or a folder.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OutputKind {
    /// A single file; `hash` names its bytes.
    File,
    /// A folder; `hash` names its manifest.
    Dir,
}

/// One output (or source) of a stage: a workspace path and its object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutputRef {
    /// Path relative to the pipeline's working folder, with `/` separators.
    pub path: String,
    /// File or folder.
    pub kind: OutputKind,
    /// The object's hash.
    pub hash: Hash,
}

/// One file (or symlink) inside a folder manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TreeEntry {
    /// Path relative to the folder, `/` separators.
    pub path: String,
    /// Restored with the executable bit set (the only mode bit a tree keeps).
    pub exec: bool,
    /// Object of the file's bytes (of the link's target text for a symlink).
    pub hash: Hash,
    /// For a symlink that stays inside the folder: its target, as written.
    /// Absent for files, so manifests without links keep their bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub link: Option<String>,
}

#[derive(Serialize, Deserialize)]
struct Manifest {
    dvx_tree: u32,
    entries: Vec<TreeEntry>,
}

/// How restored files are placed in the workspace.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LinkMode {
    /// Copy-on-write clone where the filesystem supports it, else hard link, else copy.
    #[default]
    Auto,
    /// Reflink, else copy.
    Reflink,
    /// Hard link (read-only), else copy.
    Hardlink,
    /// Symbolic link to the object.
    Symlink,
    /// Always copy: outputs never share bytes with the cache.
    Copy,
}

impl LinkMode {
    /// Parse the `link:` setting.
    pub fn parse(s: &str) -> Option<LinkMode> {
        Some(match s {
            "auto" => LinkMode::Auto,
            "reflink" => LinkMode::Reflink,
            "hardlink" => LinkMode::Hardlink,
            "symlink" => LinkMode::Symlink,
            "copy" => LinkMode::Copy,
            _ => return None,
        })
    }
}

fn is_exec(meta: &std::fs::Metadata) -> bool {
    use std::os::unix::fs::PermissionsExt;
    meta.permissions().mode() & 0o111 != 0
}

/// The canonical manifest bytes of a folder's entries (sorted by path).
fn manifest_bytes(mut entries: Vec<TreeEntry>) -> Vec<u8> {
    entries.sort_by(|a, b| a.path.cmp(&b.path));
    serde_json::to_vec(&Manifest { dvx_tree: 1, entries }).expect("manifest serialises")
}

/// What to do with a symlink inside a folder that points outside it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EscapingLinks {
    /// Hash (and store) what it points at: the user's own sources may link to data elsewhere.
    Follow,
    /// Refuse, naming it: a stage's output must not carry files from outside the workspace into a shared cache.
    Refuse,
}

/// One thing found under a folder.
pub(crate) enum Walked {
    /// A regular file (or an escaping link followed to one).
    File(std::path::PathBuf, std::fs::Metadata),
    /// A symlink whose target stays inside the folder: kept as a link.
    Link(String),
}

/// Everything under `dir` as (relative path, what), without following links
/// that stay inside (they are kept as links, which also makes loops
/// impossible). One `stat` per file: the entry type comes from the
/// directory listing, so no-op runs over big trees stay cheap. Order is
/// irrelevant: manifests are sorted.
pub(crate) fn walk(dir: &Path, escaping: EscapingLinks) -> Result<Vec<(String, Walked)>> {
    let mut out = Vec::new();
    walk_into(dir, "", &mut out, 0, escaping)?;
    Ok(out)
}

fn walk_into(
    dir: &Path,
    prefix: &str,
    out: &mut Vec<(String, Walked)>,
    depth: usize,
    escaping: EscapingLinks,
) -> Result<()> {
    // Escaping links to folders are followed, and could loop; no real dataset is this deep.
    if depth > 64 {
        return Err(CacheError::Io {
            path: dir.to_path_buf(),
            source: std::io::Error::other("folder nesting too deep (symlink loop?)"),
        });
    }
    walk_listing(std::fs::read_dir(dir).at(dir)?, dir, prefix, out, depth, escaping)
}

/// [`walk_into`] of a folder already opened (`listing`).
fn walk_listing(
    listing: std::fs::ReadDir,
    dir: &Path,
    prefix: &str,
    out: &mut Vec<(String, Walked)>,
    depth: usize,
    escaping: EscapingLinks,
) -> Result<()> {
    for entry in listing {
        let entry = entry.at(dir)?;
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        let rel = if prefix.is_empty() { name } else { format!("{prefix}/{name}") };
        let ft = entry.file_type().at(&path)?;
        if ft.is_dir() {
            walk_into(&path, &rel, out, depth + 1, escaping)?;
        } else if ft.is_file() {
            // Stat by name in the open folder, not by the whole path: the
            // kernel looks up one component instead of every one of the
            // path (a no-op over 100,000 source files makes 100,000 of these).
            // It does not follow a link: a file swapped for one since the
            // listing is stated again by path, as before.
            let meta = match entry.metadata().at(&path)? {
                m if m.is_file() => m,
                _ => std::fs::metadata(&path).at(&path)?,
            };
            out.push((rel, Walked::File(path, meta)));
        } else if ft.is_symlink() {
            let target = std::fs::read_link(&path).at(&path)?;
            let target_text = target.to_str().unwrap_or("");
            if crate::paths::link_stays_inside(&rel, target_text) {
                out.push((rel, Walked::Link(target_text.to_string())));
                continue;
            }
            if escaping == EscapingLinks::Refuse {
                return Err(CacheError::Io {
                    path: path.clone(),
                    source: std::io::Error::other(format!(
                        "symlink to `{}` leaves its folder; an output may only link inside itself",
                        target.display()
                    )),
                });
            }
            let meta = std::fs::metadata(&path).at(&path)?;
            if meta.is_dir() {
                walk_into(&path, &rel, out, depth + 1, escaping)?;
            } else if meta.is_file() {
                out.push((rel, Walked::File(path, meta)));
            }
        }
    }
    Ok(())
}

/// A manifest entry for a walked symlink: its target text is its object.
fn link_entry(rel: &str, target: &str) -> TreeEntry {
    TreeEntry {
        path: rel.to_string(),
        exec: false,
        hash: Hash::of_bytes(target.as_bytes()),
        link: Some(target.to_string()),
    }
}

/// Hash a file or folder in the workspace without storing it. Folder hashes
/// are the hash of their manifest, exactly as [`Cache::put_paths`] stores it.
pub fn hash_path(path: &Path, stat: &mut StatCache) -> Result<(OutputKind, Hash)> {
    let meta = std::fs::metadata(path).at(path)?;
    if !meta.is_dir() {
        return Ok((OutputKind::File, stat.hash_with_meta(path, &meta)?));
    }
    let mut entries = Vec::new();
    for (rel, w) in walk(path, EscapingLinks::Follow)? {
        entries.push(match w {
            Walked::File(abs, meta) => {
                let hash = stat.hash_with_meta(&abs, &meta)?;
                TreeEntry { path: rel, exec: is_exec(&meta), hash, link: None }
            }
            Walked::Link(target) => link_entry(&rel, &target),
        });
    }
    Ok((OutputKind::Dir, Hash::of_bytes(&manifest_bytes(entries))))
}

/// [`hash_path`] for callers that share one stat cache between threads: the
/// folder walk and any file reads happen without holding the lock, so
/// several stages hash their deps in parallel.
pub fn hash_path_locked(path: &Path, stat: &std::sync::Mutex<StatCache>) -> Result<(OutputKind, Hash)> {
    hash_path_reporting(path, stat, &|_| {})
}

/// How far hashing a path has got: bytes read, and bytes to read in all
/// (only what the stat cache could not answer counts).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HashProgress {
    /// Bytes hashed so far.
    pub done: u64,
    /// Bytes to hash in all.
    pub total: u64,
}

/// [`hash_path_locked`], telling `report` how far it is while it reads files
/// the stat cache does not know (a large dep takes seconds to hash; whoever
/// runs the stage wants to see that). Never called when nothing is read.
pub fn hash_path_reporting(
    path: &Path,
    stat: &std::sync::Mutex<StatCache>,
    report: &(dyn Fn(HashProgress) + Sync),
) -> Result<(OutputKind, Hash)> {
    let meta = std::fs::metadata(path).at(path)?;
    hash_stated_path(path, &meta, stat, report)
}

/// [`hash_path_reporting`] of a path the caller has just stated (following
/// links, as `std::fs::metadata` does), so it is not stated twice: a no-op
/// run hands on what its source check and pipeline load read. The
/// metadata must be from the same run, never from a saved cache: it is the
/// identity the stat cache is checked against.
pub fn hash_stated_path(
    path: &Path,
    meta: &std::fs::Metadata,
    stat: &std::sync::Mutex<StatCache>,
    report: &(dyn Fn(HashProgress) + Sync),
) -> Result<(OutputKind, Hash)> {
    if !meta.is_dir() {
        let mut progress = HashProgress { done: 0, total: meta.len() };
        return Ok((OutputKind::File, hash_one_locked(path, meta, stat, &mut progress, report)?));
    }
    let files = walk(path, EscapingLinks::Follow)?;
    // A folder whose files all keep their identity keeps its manifest hash:
    // no per-file lookups, no manifest to rebuild.
    let identity = folder_identity(&files);
    if let Some(h) = stat.lock().expect("stat cache lock").lookup_folder(path, &identity) {
        return Ok((OutputKind::Dir, h));
    }
    let total = {
        let mut stat = stat.lock().expect("stat cache lock");
        files
            .iter()
            .filter_map(|(_, w)| match w {
                Walked::File(abs, meta) if stat.lookup(abs, meta).is_none() => Some(meta.len()),
                _ => None,
            })
            .sum()
    };
    let mut progress = HashProgress { done: 0, total };
    let mut entries = Vec::with_capacity(files.len());
    let mut racy = false;
    for (rel, w) in &files {
        entries.push(match w {
            Walked::File(abs, meta) => {
                racy |= StatCache::is_racy(meta);
                let hash = hash_one_locked(abs, meta, stat, &mut progress, report)?;
                TreeEntry { path: rel.clone(), exec: is_exec(meta), hash, link: None }
            }
            Walked::Link(target) => link_entry(rel, target),
        });
    }
    let hash = Hash::of_bytes(&manifest_bytes(entries));
    if !racy {
        stat.lock().expect("stat cache lock").record_folder(path, identity, &hash);
    }
    Ok((OutputKind::Dir, hash))
}

/// A source folder listed ahead of its hashing (by the source check, which
/// so needs no `stat` of it): the identity of everything in it.
#[derive(Debug, Clone)]
pub struct FolderListing {
    identity: Hash,
}

/// List `path` as a folder without stating it first: `Err` when it cannot
/// be opened as one (a file, nothing, no permission: the caller states it
/// then, as before); `Ok(None)` when it is a folder but walking it failed
/// (hashing it walks it again and reports why).
pub fn list_folder(path: &Path) -> std::io::Result<Option<FolderListing>> {
    let listing = std::fs::read_dir(path)?;
    let mut files = Vec::new();
    if walk_listing(listing, path, "", &mut files, 0, EscapingLinks::Follow).is_err() {
        return Ok(None);
    }
    Ok(Some(FolderListing { identity: folder_identity(&files) }))
}

/// [`hash_stated_path`] of a folder listed by [`list_folder`] in the same
/// run: its manifest hash from the stat cache when every file in it kept
/// its identity, else the folder hashed afresh.
pub fn hash_listed_folder(
    path: &Path,
    listed: &FolderListing,
    stat: &std::sync::Mutex<StatCache>,
    report: &(dyn Fn(HashProgress) + Sync),
) -> Result<(OutputKind, Hash)> {
    if let Some(h) = stat.lock().expect("stat cache lock").lookup_folder(path, &listed.identity) {
        return Ok((OutputKind::Dir, h));
    }
    hash_path_reporting(path, stat, report)
}

fn hash_one_locked(
    abs: &Path,
    meta: &std::fs::Metadata,
    stat: &std::sync::Mutex<StatCache>,
    progress: &mut HashProgress,
    report: &(dyn Fn(HashProgress) + Sync),
) -> Result<Hash> {
    if let Some(h) = stat.lock().expect("stat cache lock").lookup(abs, meta) {
        return Ok(h);
    }
    let mut read = |n| {
        progress.done += n;
        // A file that grew while it was read: never report more done than in all.
        progress.total = progress.total.max(progress.done);
        report(*progress);
    };
    if crate::chunked::stored_chunked(meta.len()) {
        // Hashed by pieces (on two threads), which a store of this file
        // later in the run takes instead of reading it again.
        let (cvs, len) = crate::pieces::hash_file_pieces(0, &mut File::open(abs).at(abs)?, abs, &mut read)?;
        if let Some(root) = crate::pieces::root(&cvs, len) {
            let h = Hash::from_blake3(root);
            let mut stat = stat.lock().expect("stat cache lock");
            stat.record(abs, meta, &h);
            stat.keep_pieces(abs, meta, cvs);
            return Ok(h);
        }
    }
    let h = crate::hash::hash_file_reporting(abs, &mut read)?;
    stat.lock().expect("stat cache lock").record(abs, meta, &h);
    Ok(h)
}

/// A digest of every entry's path and identity (for files: size, mtime,
/// ctime, inode, device, exec bit; for links: the target).
fn folder_identity(files: &[(String, Walked)]) -> Hash {
    let mut sorted: Vec<&(String, Walked)> = files.iter().collect();
    sorted.sort_by(|a, b| a.0.cmp(&b.0));
    let mut h = blake3::Hasher::new();
    for (rel, w) in sorted {
        h.update(&(rel.len() as u64).to_le_bytes());
        h.update(rel.as_bytes());
        match w {
            Walked::File(_, m) => {
                h.update(&[0]);
                h.update(&crate::stat::identity_bytes(m));
                h.update(&[is_exec(m) as u8]);
            }
            Walked::Link(t) => {
                h.update(&[1]);
                h.update(&(t.len() as u64).to_le_bytes());
                h.update(t.as_bytes());
            }
        }
    }
    Hash::from_blake3(h.finalize())
}

impl Cache {
    /// Whether an object is present: stored whole, or as a well-formed
    /// chunk list whose chunks are all there.
    pub fn has_object(&self, hash: &Hash) -> bool {
        self.object_path(hash).exists() || self.has_chunked(hash)
    }

    /// Store bytes; returns their hash.
    pub fn put_bytes(&self, bytes: &[u8]) -> Result<Hash> {
        let _gc = self.gc_shared()?;
        let hash = Hash::of_bytes(bytes);
        let dest = self.object_path(&hash);
        if dest.exists() {
            touch(&dest);
        } else {
            self.ensure_dir(dest.parent().expect("object has a parent"))?;
            atomic::write_atomic(&self.tmp_dir(), &dest, bytes, self.file_mode(true))?;
        }
        self.pin('o', [hash.as_str()])?;
        Ok(hash)
    }

    /// Read an object's bytes, checking them against its name; a corrupt
    /// one is moved to `quarantine/`.
    pub fn read_object(&self, hash: &Hash) -> Result<Vec<u8>> {
        let read = self.open_object(hash).and_then(|mut r| {
            let mut bytes = Vec::new();
            r.read_to_end(&mut bytes).map_err(|e| r.error(e))?;
            Ok(bytes)
        });
        if let Err(e) = &read {
            self.quarantine_damage(e);
        }
        read
    }

    /// Quarantine what a read found corrupt: the object's file (whole, or
    /// its chunk list when its chunks reassemble wrong) or the chunk.
    fn quarantine_damage(&self, e: &CacheError) {
        match e {
            CacheError::Corrupt { hash, .. } => {
                if let Some(h) = Hash::parse(hash) {
                    self.quarantine(&h);
                }
            }
            CacheError::CorruptChunk { chunk, .. } => {
                if let Some(c) = Hash::parse(chunk) {
                    self.quarantine_chunk(&c);
                }
            }
            _ => {}
        }
    }

    /// Move an object whose bytes do not match its name out of the way, so
    /// the next run that produces those bytes stores them afresh.
    pub(crate) fn quarantine(&self, hash: &Hash) {
        let q = self.dir(crate::bucket::Bucket::Quarantine);
        if self.ensure_dir(&q).is_ok() {
            let nanos =
                std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
            let whole = self.object_path(hash);
            let path = if whole.symlink_metadata().is_ok() { whole } else { self.chunk_list_path(hash) };
            let _ = std::fs::rename(path, q.join(format!("{hash}-{nanos}")));
            tracing::warn!("object {} is corrupt; moved to {}", hash.short(), q.display());
        }
    }

    /// Store several files or folders with a single flush to disk: every new
    /// object is written to `tmp/`, the filesystem is synced once, then each
    /// is renamed into place. Far cheaper than an fsync per file, and still
    /// no object is ever visible before its bytes are durable. Holds gc off
    /// while it works and pins everything it stored or found.
    pub fn put_paths(
        &self,
        paths: &[&Path],
        stat: &mut StatCache,
        escaping: EscapingLinks,
    ) -> Result<Vec<(OutputKind, Hash)>> {
        let _gc = self.gc_shared()?;
        let mut batch = Batch::default();
        let mut out = Vec::with_capacity(paths.len());
        let result = (|| {
            for path in paths {
                let meta = std::fs::metadata(path).at(path)?;
                if meta.is_dir() {
                    let mut entries = Vec::new();
                    for (rel, w) in walk(path, escaping)? {
                        entries.push(match w {
                            Walked::File(abs, meta) => {
                                let hash = self.store_file(&abs, &meta, stat, &mut batch)?;
                                TreeEntry { path: rel, exec: is_exec(&meta), hash, link: None }
                            }
                            Walked::Link(target) => {
                                self.stage_bytes(target.as_bytes(), &mut batch)?;
                                link_entry(&rel, &target)
                            }
                        });
                    }
                    batch.pinned.extend(entries.iter().map(|e| e.hash.clone()));
                    let hash = self.stage_bytes(&manifest_bytes(entries), &mut batch)?;
                    out.push((OutputKind::Dir, hash));
                } else {
                    out.push((OutputKind::File, self.store_file(path, &meta, stat, &mut batch)?));
                }
            }
            Ok(())
        })();
        match result {
            Ok(()) => {
                let pinned: Vec<Hash> =
                    batch.pinned.iter().cloned().chain(out.iter().map(|(_, h)| h.clone())).collect();
                self.commit(batch)?;
                self.pin('o', pinned.iter().map(Hash::as_str))?;
                Ok(out)
            }
            Err(e) => {
                for (tmp, _) in batch.pending {
                    let _ = std::fs::remove_file(tmp);
                }
                Err(e)
            }
        }
    }

    fn stage_bytes(&self, bytes: &[u8], batch: &mut Batch) -> Result<Hash> {
        let hash = Hash::of_bytes(bytes);
        let dest = self.object_path(&hash);
        if dest.exists() {
            touch(&dest);
        } else if !batch.has(&dest) {
            let tmp = atomic::temp_path(&self.tmp_dir());
            std::fs::write(&tmp, bytes).at(&tmp)?;
            atomic::set_mode(&tmp, self.file_mode(true))?;
            batch.add(tmp, dest);
        }
        Ok(hash)
    }

    /// Stage one file of `put_paths`, unless its object is already stored.
    fn store_file(
        &self,
        path: &Path,
        meta: &std::fs::Metadata,
        stat: &mut StatCache,
        batch: &mut Batch,
    ) -> Result<Hash> {
        if crate::chunked::stored_chunked(meta.len()) && stat.lookup(path, meta).is_none() {
            // Hashing first, only to find whether the object is stored,
            // would read a large file one more time: chunking hashes the
            // whole content on the way, and writes only chunks not stored.
            let hash = self.stage_chunked(path, batch, stat.resume(path, meta))?;
            stat.record(path, meta, &hash);
            return Ok(hash);
        }
        let known = stat.hash_with_meta(path, meta)?;
        self.stage_file(path, Some(&known), batch, || stat.resume(path, meta))
    }

    /// Copy a file into `tmp/` while hashing it (so what we name is exactly
    /// what we stored), unless the object is already there. Large files
    /// are stored as chunks (`chunked.rs`).
    fn stage_file(
        &self,
        path: &Path,
        known: Option<&Hash>,
        batch: &mut Batch,
        resume: impl FnOnce() -> Option<crate::chunked::Resume>,
    ) -> Result<Hash> {
        if let Some(h) = known {
            if self.has_object(h) {
                self.touch_object(h);
                return Ok(h.clone());
            }
        }
        if crate::chunked::stored_chunked(std::fs::metadata(path).at(path)?.len()) {
            return self.stage_chunked(path, batch, resume());
        }
        let tmp = atomic::temp_path(&self.tmp_dir());
        let staged = (|| {
            let mut src = File::open(path).at(path)?;
            let mut dst = File::create(&tmp).at(&tmp)?;
            let mut hasher = blake3::Hasher::new();
            let mut buf = vec![0u8; 1 << 16];
            loop {
                let n = src.read(&mut buf).at(path)?;
                if n == 0 {
                    break;
                }
                hasher.update(&buf[..n]);
                dst.write_all(&buf[..n]).at(&tmp)?;
            }
            Ok(Hash::from_blake3(hasher.finalize()))
        })();
        let hash = match staged {
            Ok(h) => h,
            Err(e) => {
                let _ = std::fs::remove_file(&tmp);
                return Err(e);
            }
        };
        let dest = self.object_path(&hash);
        if dest.exists() || batch.has(&dest) {
            touch(&dest);
            let _ = std::fs::remove_file(&tmp);
        } else {
            atomic::set_mode(&tmp, self.file_mode(true))?;
            batch.add(tmp, dest);
        }
        Ok(hash)
    }

    /// Make a batch durable, then rename every object into place. A small
    /// batch (a re-run whose output shares all but a few chunks: those and
    /// the chunk list) is synced file by file; a large one with one syncfs,
    /// cheaper than thousands of fsyncs. syncfs also writes back whatever
    /// else is dirty on the filesystem, such as the stage's 500 MB output
    /// in the workspace, which a store of three files should not wait for.
    fn commit(&self, batch: Batch) -> Result<()> {
        if batch.pending.is_empty() {
            return Ok(());
        }
        if batch.pending.len() <= SYNC_EACH_UP_TO {
            for (tmp, _) in &batch.pending {
                atomic::sync_file(tmp)?;
            }
        } else {
            atomic::sync_filesystem(&self.tmp_dir())?;
        }
        for (tmp, dest) in batch.pending {
            self.ensure_dir(dest.parent().expect("object has a parent"))?;
            atomic::rename_into_place(&tmp, &dest)?;
        }
        Ok(())
    }

    /// The entries of a folder manifest, checked: every path is a clean
    /// relative path (no `..`, not absolute), none repeats or lies inside
    /// another file, and every link stays inside the folder.
    pub fn read_tree(&self, hash: &Hash) -> Result<Vec<TreeEntry>> {
        let bytes = self.read_object(hash)?;
        let bad = |message: String| CacheError::BadRecord {
            path: self.object_path(hash),
            message: format!("folder manifest {}: {message}", hash.short()),
        };
        let m: Manifest = serde_json::from_slice(&bytes).map_err(|e| bad(e.to_string()))?;
        let mut paths: Vec<&str> = Vec::with_capacity(m.entries.len());
        for e in &m.entries {
            crate::paths::check_rel_path(&e.path).map_err(|msg| bad(format!("entry {msg}")))?;
            if let Some(t) = &e.link {
                if !crate::paths::link_stays_inside(&e.path, t) {
                    return Err(bad(format!("link `{}` → `{t}` leaves its folder", e.path)));
                }
            }
            paths.push(&e.path);
        }
        paths.sort_unstable();
        for pair in paths.windows(2) {
            if pair[0] == pair[1] || pair[1].strip_prefix(pair[0]).is_some_and(|rest| rest.starts_with('/')) {
                return Err(bad(format!("folder manifest entries `{}` and `{}` collide", pair[0], pair[1])));
            }
        }
        Ok(m.entries)
    }

    /// Every object an output needs (the manifest and its files for folders).
    pub fn objects_of(&self, out: &OutputRef) -> Result<Vec<Hash>> {
        let mut v = vec![out.hash.clone()];
        if out.kind == OutputKind::Dir {
            v.extend(self.read_tree(&out.hash)?.into_iter().map(|e| e.hash));
        }
        Ok(v)
    }

    /// Which of these outputs are not wholly in the cache (indexes), with gc
    /// held off; the present ones are pinned for this handle's lease, so they
    /// stay. A damaged manifest counts as missing.
    pub fn missing(&self, outs: &[OutputRef]) -> Result<Vec<usize>> {
        let _gc = self.gc_shared()?;
        let mut missing = Vec::new();
        let mut present = Vec::new();
        for (i, out) in outs.iter().enumerate() {
            let objs = match self.objects_of(out) {
                Ok(objs) => objs,
                Err(CacheError::Io { path, source }) => return Err(CacheError::Io { path, source }),
                Err(_) => {
                    missing.push(i);
                    continue;
                }
            };
            if objs.iter().all(|h| self.has_object(h)) {
                present.extend(objs);
            } else {
                missing.push(i);
            }
        }
        self.pin('o', present.iter().map(Hash::as_str))?;
        Ok(missing)
    }

    /// Check that every object of an output is present and intact; a corrupt
    /// one is moved to `quarantine/`. Returns the folder's entries.
    fn check_output(&self, out: &OutputRef) -> Result<Vec<TreeEntry>> {
        let entries = if out.kind == OutputKind::Dir { self.read_tree(&out.hash)? } else { Vec::new() };
        let hashes = std::iter::once(&out.hash).chain(entries.iter().map(|e| &e.hash));
        let hashes: Vec<&Hash> = hashes.collect();
        self.pin('o', hashes.iter().map(|h| h.as_str()))?;
        for h in hashes {
            if let Err(e) = self.open_object(h).and_then(|r| r.check_to_end()) {
                self.quarantine_damage(&e);
                return Err(e);
            }
        }
        Ok(entries)
    }

    /// Restore an output to `dest` (replacing what is there). Every object is
    /// verified first, so corrupt bytes never reach the workspace, and every
    /// path from a manifest is checked before anything is written. The
    /// caller answers for `dest` itself.
    pub fn restore(&self, out: &OutputRef, dest: &Path, mode: LinkMode) -> Result<()> {
        let _gc = self.gc_shared()?;
        let entries = self.check_output(out)?;
        remove_path(dest)?;
        match out.kind {
            OutputKind::File => self.restore_file(&out.hash, false, dest, mode),
            OutputKind::Dir => {
                std::fs::create_dir_all(dest).at(dest)?;
                for e in entries {
                    let target = dest.join(&e.path);
                    if let Some(parent) = target.parent() {
                        std::fs::create_dir_all(parent).at(parent)?;
                    }
                    match &e.link {
                        Some(t) => std::os::unix::fs::symlink(t, &target).at(&target)?,
                        None => self.restore_file(&e.hash, e.exec, &target, mode)?,
                    }
                }
                Ok(())
            }
        }
    }

    fn restore_file(&self, hash: &Hash, exec: bool, dest: &Path, mode: LinkMode) -> Result<()> {
        let obj = self.object_path(hash);
        if let Some(parent) = dest.parent() {
            std::fs::create_dir_all(parent).at(parent)?;
        }
        if !obj.exists() {
            // Stored as chunks: nothing to link to, so reassemble.
            return self.reassemble(hash, exec, dest);
        }
        // A link shares the object's inode: only safe where its read-only
        // mode is enforced (not for root) and it does not drop an exec bit.
        let may_alias = !exec && !mode_is_unenforced();
        let linked = match mode {
            LinkMode::Auto => reflink(&obj, dest) || (may_alias && std::fs::hard_link(&obj, dest).is_ok()),
            LinkMode::Reflink => reflink(&obj, dest),
            LinkMode::Hardlink => {
                if may_alias {
                    std::fs::hard_link(&obj, dest).is_ok()
                } else {
                    reflink(&obj, dest)
                }
            }
            LinkMode::Symlink => {
                if may_alias {
                    std::os::unix::fs::symlink(&obj, dest).is_ok()
                } else {
                    reflink(&obj, dest)
                }
            }
            LinkMode::Copy => false,
        };
        if linked {
            if exec {
                atomic::set_mode(dest, 0o555)?;
            }
            return Ok(());
        }
        // Copy through a temp file beside the destination so a killed restore
        // never leaves a half-written output under the real name.
        let tmp = restore_temp(dest);
        let copied = open_regular(&obj).and_then(|mut src| std::io::copy(&mut src, &mut File::create(&tmp)?));
        copied.at(&tmp)?;
        atomic::set_mode(&tmp, if exec { 0o755 } else { 0o644 })?;
        std::fs::rename(&tmp, dest).at(dest)
    }

    /// Write an object's bytes to `dest` through a temp file beside it,
    /// checked as they stream: the real name only ever holds intact bytes.
    fn reassemble(&self, hash: &Hash, exec: bool, dest: &Path) -> Result<()> {
        let tmp = restore_temp(dest);
        let copied = (|| {
            let mut src = self.open_object(hash)?;
            let mut out = std::io::BufWriter::with_capacity(1 << 20, File::create(&tmp).at(&tmp)?);
            std::io::copy(&mut src, &mut out).map_err(|e| src.error(e))?;
            out.into_inner().map_err(|e| e.into_error()).at(&tmp)?;
            atomic::set_mode(&tmp, if exec { 0o755 } else { 0o644 })
        })();
        if let Err(e) = copied {
            let _ = std::fs::remove_file(&tmp);
            return Err(e);
        }
        std::fs::rename(&tmp, dest).at(dest)
    }
}

/// The temp file a restore writes beside `dest` before renaming it.
fn restore_temp(dest: &Path) -> std::path::PathBuf {
    dest.with_file_name(format!(
        ".{}.dvx-tmp",
        dest.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_default()
    ))
}

/// Whether file modes do not stop this process from writing (root, or
/// CAP_DAC_OVERRIDE): a read-only hard link would then not protect the
/// object it shares bytes with.
fn mode_is_unenforced() -> bool {
    static UNENFORCED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *UNENFORCED.get_or_init(|| {
        let root = unsafe { libc::geteuid() } == 0;
        if root {
            tracing::debug!("running as root: restores copy (or reflink) instead of hard-linking cache objects");
        }
        root
    })
}

/// Copy-on-write clone (FICLONE); false where the filesystem cannot.
fn reflink(src: &Path, dest: &Path) -> bool {
    use std::os::unix::io::AsRawFd;
    const FICLONE: libc::c_ulong = 0x4004_9409;
    let Ok(s) = open_regular(src) else { return false };
    let Ok(d) = File::create(dest) else { return false };
    let ok = unsafe { libc::ioctl(d.as_raw_fd(), FICLONE as _, s.as_raw_fd()) } == 0;
    if !ok {
        drop(d);
        let _ = std::fs::remove_file(dest);
    } else {
        let _ = atomic::set_mode(dest, 0o444);
    }
    ok
}

/// Remove a file, symlink or folder if present.
pub fn remove_path(path: &Path) -> Result<()> {
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => {
            make_writable(path);
            std::fs::remove_dir_all(path).at(path)
        }
        Ok(_) => std::fs::remove_file(path).at(path),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(CacheError::Io { path: path.to_path_buf(), source: e }),
    }
}

/// Restored folders may hold read-only folders; make them removable.
fn make_writable(dir: &Path) {
    use std::os::unix::fs::PermissionsExt;
    for entry in walkdir::WalkDir::new(dir).into_iter().flatten() {
        if entry.file_type().is_dir() {
            let _ = std::fs::set_permissions(entry.path(), std::fs::Permissions::from_mode(0o755));
        }
    }
}

/// Refresh an object's mtime: gc keeps objects touched after it started.
fn touch(path: &Path) {
    let _ = open_regular(path).and_then(|f| f.set_modified(std::time::SystemTime::now()));
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    fn reports(path: &Path, stat: &Mutex<StatCache>) -> (Hash, Vec<HashProgress>) {
        let seen = Mutex::new(Vec::new());
        let (_, h) = hash_path_reporting(path, stat, &|p| seen.lock().unwrap().push(p)).unwrap();
        (h, seen.into_inner().unwrap())
    }

    #[test]
    fn small_and_large_batches_are_both_committed_whole() {
        // Up to SYNC_EACH_UP_TO new files are synced one by one, more with
        // one syncfs: either way every object lands, readable, under its name.
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::open(&dir.path().join("cache"), crate::CacheOptions::default()).unwrap();
        for files in [1, SYNC_EACH_UP_TO + 8] {
            let folder = dir.path().join(format!("out{files}"));
            std::fs::create_dir(&folder).unwrap();
            for i in 0..files {
                std::fs::write(folder.join(format!("f{i}")), format!("{files} {i}")).unwrap();
            }
            let stored = cache.put_paths(&[&folder], &mut StatCache::in_memory(), EscapingLinks::Refuse).unwrap();
            let entries = cache.read_tree(&stored[0].1).unwrap();
            assert_eq!(entries.len(), files);
            for e in entries {
                let i = e.path.trim_start_matches('f');
                assert_eq!(cache.read_object(&e.hash).unwrap(), format!("{files} {i}").into_bytes());
            }
            assert_eq!(std::fs::read_dir(cache.tmp_dir()).unwrap().count(), 0, "no temp file is left behind");
        }
    }

    #[test]
    fn hashing_reports_bytes_read_up_to_the_total_and_nothing_for_known_files() {
        let dir = tempfile::tempdir().unwrap();
        let folder = dir.path().join("folder");
        std::fs::create_dir(&folder).unwrap();
        let big = folder.join("big.bin");
        let size = crate::hash::REPORT_EVERY * 2 + 7;
        std::fs::write(&big, vec![7u8; size as usize]).unwrap();
        // Past the racy window, so the stat cache trusts it on the second look.
        std::thread::sleep(std::time::Duration::from_millis(150));
        let stat = Mutex::new(StatCache::in_memory());

        let (h, seen) = reports(&big, &stat);
        assert_eq!(h, crate::hash_file(&big).unwrap());
        assert_eq!(seen.len(), 3, "{seen:?}");
        assert!(seen.iter().all(|p| p.total == size));
        assert_eq!(seen.last().unwrap().done, size);
        let (_, again) = reports(&big, &stat);
        assert!(again.is_empty(), "a file the stat cache knows is not read: {again:?}");

        // A folder counts only the bytes it has to read.
        std::fs::write(folder.join("new.bin"), b"twelve bytes").unwrap();
        let (_, seen) = reports(&folder, &stat);
        assert_eq!(seen.last().copied(), Some(HashProgress { done: 12, total: 12 }), "{seen:?}");
    }
}
