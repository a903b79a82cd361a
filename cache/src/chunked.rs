//! Objects stored as chunks: writing them, finding out whether one is
//! complete, and their share of verify and gc. Callers of the cache never see
//! this: [`Cache::open_object`], [`Cache::restore`], [`Cache::has_object`] and
//! [`Cache::missing`] treat both forms alike.
//!
//! Chunks go to `chunks-v1/`, the list last, to `chunked-v1/` under the
//! object's own name, in one batch whose renames follow its one sync: a
//! kill -9 leaves at worst chunks no list names, which gc removes.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use crate::atomic;
use crate::bucket::Bucket;
use crate::chunking::{self, ChunkList, CHUNKED_FROM, MAX_CHUNKS, MAX_LIST_BYTES, MIN_CHUNK};
use crate::error::{CacheError, IoContext, Result};
use crate::gc::GcReport;
use crate::hash::{hash_object, open_regular, Hash};
use crate::objects::Batch;
use crate::store::Cache;
use crate::verify::VerifyReport;

/// Whether a file of `size` bytes is stored as chunks: large enough to gain,
/// small enough that its list stays within [`MAX_CHUNKS`] whatever its
/// content (a chunk is at least [`MIN_CHUNK`] bytes, the last aside).
pub(crate) fn stored_chunked(size: u64) -> bool {
    size >= CHUNKED_FROM && size / u64::from(MIN_CHUNK) < MAX_CHUNKS as u64
}

impl Cache {
    /// The chunk list of `hash`, checked ([`ChunkList::parse`]); `None`
    /// when the object has none. A list that is not a regular file or does
    /// not parse is a [`CacheError::BadRecord`].
    pub(crate) fn read_chunk_list(&self, hash: &Hash) -> Result<Option<ChunkList>> {
        let path = self.chunk_list_path(hash);
        let bad = |message: String| CacheError::BadRecord {
            path: path.clone(),
            message: format!("chunk list of object {}: {message}", hash.short()),
        };
        let file = match open_regular(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) if e.raw_os_error() == Some(libc::ELOOP) || e.kind() == std::io::ErrorKind::Other => {
                return Err(bad("not a regular file".into()))
            }
            Err(e) => return Err(e).at(&path),
        };
        // Read one byte past the limit, so an oversized list is refused
        // without reading it all.
        let mut bytes = Vec::new();
        file.take(MAX_LIST_BYTES + 1).read_to_end(&mut bytes).at(&path)?;
        ChunkList::parse(&bytes).map(Some).map_err(bad)
    }

    /// Whether `hash` has a well-formed chunk list whose chunks are all
    /// present (not whether their bytes are right: reading checks that).
    pub(crate) fn has_chunked(&self, hash: &Hash) -> bool {
        match self.read_chunk_list(hash) {
            Ok(Some(list)) => list.chunks.iter().all(|(c, _)| self.chunk_path(c).exists()),
            _ => false,
        }
    }

    /// Copy a large file into the batch as chunks while hashing it; returns
    /// the hash of its whole content. Chunks already stored are not written
    /// again; the list is staged last, and only when the object is not
    /// already complete in the store.
    pub(crate) fn stage_chunked(&self, path: &Path, batch: &mut Batch) -> Result<Hash> {
        let file = File::open(path).at(path)?;
        let mut whole = blake3::Hasher::new();
        let mut chunks = Vec::new();
        let chunks_dir = self.dir(Bucket::Chunks);
        let tmp_dir = self.tmp_dir();
        let mode = self.file_mode(true);
        chunking::split(file, path, &mut whole, |round| {
            for (bytes, hash) in round.iter().zip(hash_in_parallel(round)) {
                let dest = crate::store::shard_path(&chunks_dir, &hash);
                if !batch.has(&dest) && !dest.exists() {
                    let tmp = atomic::temp_path(&tmp_dir);
                    let written = File::create(&tmp).and_then(|mut f| f.write_all(bytes));
                    if let Err(e) = written {
                        let _ = std::fs::remove_file(&tmp);
                        return Err(e).at(&tmp);
                    }
                    atomic::set_mode(&tmp, mode)?;
                    batch.add(tmp, dest);
                }
                chunks.push((hash, bytes.len() as u32));
            }
            Ok(())
        })?;
        let hash = Hash::from_blake3(whole.finalize());
        let dest = self.chunk_list_path(&hash);
        if batch.has(&dest) {
            return Ok(hash);
        }
        if self.object_path(&hash).exists() || self.has_chunked(&hash) {
            self.touch_object(&hash);
            return Ok(hash);
        }
        let tmp = atomic::temp_path(&tmp_dir);
        std::fs::write(&tmp, ChunkList::new(chunks).to_bytes()).at(&tmp)?;
        atomic::set_mode(&tmp, mode)?;
        batch.add(tmp, dest);
        Ok(hash)
    }

    /// Refresh the mtime of an object's file (whole, or its chunk list):
    /// gc keeps what was touched after it started.
    pub(crate) fn touch_object(&self, hash: &Hash) {
        let whole = self.object_path(hash);
        let path = if whole.exists() { whole } else { self.chunk_list_path(hash) };
        let _ = open_regular(&path).and_then(|f| f.set_modified(std::time::SystemTime::now()));
    }

    /// Move a chunk whose bytes do not match its name out of the way, so
    /// the next run that produces those bytes stores it afresh.
    pub(crate) fn quarantine_chunk(&self, chunk: &Hash) {
        let q = self.dir(Bucket::Quarantine);
        if self.ensure_dir(&q).is_ok() {
            let _ = std::fs::rename(self.chunk_path(chunk), q.join(format!("chunk-{chunk}-{}", nanos())));
            tracing::warn!("chunk {} is corrupt; moved to {}", chunk.short(), q.display());
        }
    }

    /// Verify's part for chunked objects: reassemble every listed object,
    /// checking each chunk and the whole (objects the whole-object pass found
    /// corrupt are in `corrupt`, and damaged ones are added), then hash the
    /// chunks no reassembly reached. With `repair`, damaged lists and
    /// corrupt chunks go to `quarantine/`.
    pub(crate) fn verify_chunked(
        &self,
        repair: bool,
        report: &mut VerifyReport,
        corrupt: &mut BTreeSet<Hash>,
    ) -> Result<()> {
        // Chunks already judged: true when intact.
        let mut judged: BTreeMap<Hash, bool> = BTreeMap::new();
        for (name, list_path) in self.sharded_files(Bucket::ChunkLists)? {
            let Some(hash) = Hash::parse(&name) else {
                report.bad_records.push((list_path, "not a chunk list (its name is not a blake3 hash)".into()));
                continue;
            };
            report.objects += 1;
            let list = match self.read_chunk_list(&hash) {
                Ok(Some(list)) => list,
                Ok(None) => continue, // removed meanwhile
                Err(CacheError::BadRecord { path, message }) => {
                    report.bad_records.push((path, message));
                    corrupt.insert(hash.clone());
                    if repair {
                        self.quarantine_list(&hash);
                    }
                    continue;
                }
                Err(e) => return Err(e),
            };
            let names: Vec<Hash> = list.chunks.iter().map(|(c, _)| c.clone()).collect();
            let why = match self.open_chunked(&hash, list).check_to_end() {
                Ok(()) => {
                    judged.extend(names.into_iter().map(|c| (c, true)));
                    continue;
                }
                Err(CacheError::MissingChunk { chunk, .. }) => format!("chunk {} is missing", &chunk[..12]),
                Err(CacheError::CorruptChunk { chunk, actual, .. }) => {
                    let chunk = Hash::parse(&chunk).expect("a chunk list names chunks by hash");
                    let why = format!("chunk {} is corrupt (its bytes hash to {actual})", chunk.short());
                    let first = judged.insert(chunk.clone(), false) != Some(false);
                    if repair && first {
                        self.quarantine_chunk(&chunk);
                    }
                    why
                }
                Err(CacheError::Corrupt { actual, .. }) => {
                    format!("its chunks reassemble to bytes that hash to {actual}")
                }
                Err(e) => return Err(e),
            };
            report.damaged.push((hash.clone(), why));
            corrupt.insert(hash.clone());
            if repair {
                self.quarantine_list(&hash);
            }
        }
        for (name, path) in self.sharded_files(Bucket::Chunks)? {
            let Some(chunk) = Hash::parse(&name) else {
                report.bad_records.push((path, "not a chunk (its name is not a blake3 hash)".into()));
                continue;
            };
            if judged.contains_key(&chunk) {
                continue;
            }
            let actual = match hash_object(&path) {
                Ok(h) => h.to_string(),
                Err(CacheError::Io { source, .. }) if source.kind() != std::io::ErrorKind::NotFound => {
                    "(not a regular file)".to_string()
                }
                Err(e) => return Err(e),
            };
            if actual != chunk.as_str() {
                if repair {
                    self.quarantine_chunk(&chunk);
                }
                report.corrupt.push((format!("chunk {name}"), actual));
            }
        }
        Ok(())
    }

    fn quarantine_list(&self, hash: &Hash) {
        let q = self.dir(Bucket::Quarantine);
        if self.ensure_dir(&q).is_ok() {
            let _ = std::fs::rename(self.chunk_list_path(hash), q.join(format!("chunked-{hash}-{}", nanos())));
        }
    }

    /// Gc's part for chunked objects: a chunk list goes with its object
    /// (kept when `live` names it or it is `recent`), a chunk lives while a
    /// kept list names it (or is recent).
    pub(crate) fn sweep_chunked(
        &self,
        live: &BTreeSet<Hash>,
        recent: &dyn Fn(&Path) -> bool,
        dry_run: bool,
        report: &mut GcReport,
    ) -> Result<()> {
        let mut live_chunks = BTreeSet::new();
        for (name, path) in self.sharded_files(Bucket::ChunkLists)? {
            // Files not named like a list are verify's to report.
            let Some(hash) = Hash::parse(&name) else { continue };
            if live.contains(&hash) || recent(&path) {
                match self.read_chunk_list(&hash) {
                    Ok(Some(list)) => live_chunks.extend(list.chunks.into_iter().map(|(c, _)| c)),
                    Ok(None) => {}
                    // Kept, and `verify --repair` deals with it.
                    Err(e) => tracing::warn!("gc: cannot read the chunk list of {}: {e}", hash.short()),
                }
                continue;
            }
            report.objects += 1;
            report.bytes += file_len(&path);
            if !dry_run {
                let _ = std::fs::remove_file(&path);
            }
        }
        for (name, path) in self.sharded_files(Bucket::Chunks)? {
            let Some(chunk) = Hash::parse(&name) else { continue };
            if live_chunks.contains(&chunk) || recent(&path) {
                continue;
            }
            report.chunks += 1;
            report.bytes += file_len(&path);
            if !dry_run {
                let _ = std::fs::remove_file(&path);
            }
        }
        Ok(())
    }

    /// Chunk lists (each an object) and the bytes lists and chunks hold.
    pub(crate) fn chunked_stats(&self) -> Result<(usize, u64)> {
        let lists = self.sharded_files(Bucket::ChunkLists)?;
        let chunks = self.sharded_files(Bucket::Chunks)?;
        let bytes = lists.iter().chain(&chunks).map(|(_, p)| file_len(p)).sum();
        Ok((lists.len(), bytes))
    }

    /// Every file under a sharded bucket (`ab/cdef…`), with the name it
    /// claims (shard + file).
    pub(crate) fn sharded_files(&self, bucket: Bucket) -> Result<Vec<(String, PathBuf)>> {
        let mut v = Vec::new();
        for shard in crate::runs::read_dir_sorted(&self.dir(bucket))? {
            for file in crate::runs::read_dir_sorted(&shard)? {
                let name = format!(
                    "{}{}",
                    shard.file_name().unwrap_or_default().to_string_lossy(),
                    file.file_name().unwrap_or_default().to_string_lossy()
                );
                v.push((name, file));
            }
        }
        Ok(v)
    }
}

/// The blake3 of each chunk, the second half hashed on a second thread.
fn hash_in_parallel(chunks: &[&[u8]]) -> Vec<Hash> {
    let (first, second) = chunks.split_at(chunks.len() / 2);
    let hash_all = |part: &[&[u8]]| part.iter().map(|c| Hash::of_bytes(c)).collect::<Vec<_>>();
    std::thread::scope(|s| {
        let later = s.spawn(|| hash_all(second));
        let mut hashes = hash_all(first);
        hashes.extend(later.join().expect("hashing thread"));
        hashes
    })
}

fn file_len(path: &Path) -> u64 {
    std::fs::symlink_metadata(path).map(|m| m.len()).unwrap_or(0)
}

fn nanos() -> u128 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0)
}

#[cfg(test)]
#[path = "chunked_tests.rs"]
mod tests;
