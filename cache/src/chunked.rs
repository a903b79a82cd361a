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
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use crate::atomic;
use crate::bucket::Bucket;
use crate::chunking::{self, ChunkList, CHUNKED_FROM, MAX_CHUNKS, MAX_LIST_BYTES, MIN_CHUNK};
use crate::error::{CacheError, IoContext, Result};
use crate::gc::GcReport;
use crate::hash::{hash_object, open_regular, Hash};
use crate::objects::Batch;
use crate::pieces::{self, PieceHasher, PIECE};
use crate::resume::ResumeRecord;
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
    ///
    /// With a resume record from an earlier store of this path (`resume`,
    /// `resume.rs`), the file's pieces are hashed first (on two threads,
    /// several times faster than chunking; not at all when hashing the file
    /// as a dep did it) and the earlier chunks its unchanged prefix holds
    /// are taken as they are: only the rest is chunked. The whole content's
    /// hash is built from the pieces either way.
    pub(crate) fn stage_chunked(&self, path: &Path, batch: &mut Batch, resume: Option<Resume>) -> Result<Hash> {
        let (record_path, known, kept) = match resume {
            Some(r) => (Some(ResumeRecord::path_for(&r.dir, path)), r.pieces, r.kept),
            None => (None, None, None),
        };
        let mut file = File::open(path).at(path)?;
        // A stage's out was just written: the batch's syncfs will write it
        // back too, so start that now, beside the hashing.
        atomic::start_writeback(&file);
        let (mut chunks, mut pieces, from) = match record_path.as_deref().and_then(ResumeRecord::load) {
            Some(earlier) => {
                let known = match known {
                    Some(cvs) => Some(cvs),
                    None => kept_pieces(&earlier, kept, &mut file, path)?,
                };
                self.reusable_prefix(&earlier, known, &mut file, path, batch)?
            }
            None => (Vec::new(), PieceHasher::default(), 0),
        };
        // Hashing the pieces may have read the file: chunk from `from`.
        file.seek(SeekFrom::Start(from)).at(path)?;
        let chunks_dir = self.dir(Bucket::Chunks);
        let tmp_dir = self.tmp_dir();
        let mode = self.file_mode(true);
        let reused = chunks.len();
        chunking::split(file, path, &mut pieces, |round| {
            for (bytes, hash) in round.iter().zip(hash_in_parallel(round)) {
                let dest = crate::store::shard_path(&chunks_dir, &hash);
                if !batch.has(&dest) && !dest.exists() {
                    let tmp = atomic::temp_path(&tmp_dir);
                    let written = File::create(&tmp).and_then(|mut f| {
                        f.write_all(bytes)?;
                        atomic::start_writeback(&f);
                        Ok(())
                    });
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
        let size: u64 = chunks.iter().map(|(_, n)| u64::from(*n)).sum();
        let pieces = pieces.finish();
        // Large files only come here, so the root is a merge of pieces.
        let root = pieces::root(&pieces, size)
            .ok_or_else(|| std::io::Error::other(format!("{size} bytes is too small to store as chunks")))
            .at(path)?;
        let hash = Hash::from_blake3(root);
        tracing::debug!(path = %path.display(), chunks = chunks.len(), reused, from, "stored as chunks");
        if let Some(record_path) = &record_path {
            ResumeRecord { hash: hash.clone(), size, chunks: chunks.clone(), pieces }.save(record_path);
        }
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

    /// What of `earlier` (a store of an older version of the file) the file
    /// still holds: its pieces are hashed and compared with the earlier
    /// ones, and the earlier chunks within the equal prefix that
    /// [`chunking::stable_prefix`] allows, all still stored, are taken.
    /// Returns those chunks, a piece hasher fed up to where chunking goes on,
    /// and that offset (0: nothing reused, start over).
    fn reusable_prefix(
        &self,
        earlier: &ResumeRecord,
        known: Option<Vec<pieces::Cv>>,
        file: &mut File,
        path: &Path,
        batch: &Batch,
    ) -> Result<Prefix> {
        let now = match known {
            Some(cvs) => cvs,
            None => pieces::hash_file_pieces(0, file, path, &mut |_| {})?.0,
        };
        let same_pieces = now.iter().zip(&earlier.pieces).take_while(|(a, b)| a == b).count();
        // A short last piece of the earlier file never equals a full one, so
        // equal pieces are whole, equal bytes.
        let same = (same_pieces as u64 * PIECE as u64).min(earlier.size);
        let (n, from) = chunking::stable_prefix(&earlier.chunks, earlier.size, same);
        let stored = |c: &Hash| batch.has(&self.chunk_path(c)) || self.chunk_path(c).exists();
        if n == 0 || !earlier.chunks[..n].iter().all(|(c, _)| stored(c)) {
            return Ok((Vec::new(), PieceHasher::default(), 0));
        }
        // Chunking goes on at `from`; the piece hasher must see the bytes of
        // the piece `from` falls in from its start, so read those again.
        let piece_start = from / PIECE as u64 * PIECE as u64;
        let mut pieces = PieceHasher::resume(now[..(piece_start / PIECE as u64) as usize].to_vec());
        let mut head = vec![0u8; (from - piece_start) as usize];
        file.seek(SeekFrom::Start(piece_start)).at(path)?;
        file.read_exact(&mut head).at(path)?;
        pieces.update(&head);
        Ok((earlier.chunks[..n].to_vec(), pieces, from))
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

/// What a resumed store starts from: the earlier chunks taken, a piece
/// hasher fed up to where chunking goes on, and that offset.
type Prefix = (Vec<(Hash, u32)>, PieceHasher, u64);

/// Where a store keeps its resume records, and the file's piece CVs when
/// hashing it earlier in the run computed them (see [`StatCache::resume`]).
///
/// [`StatCache::resume`]: crate::StatCache
pub(crate) struct Resume {
    pub dir: PathBuf,
    pub pieces: Option<Vec<pieces::Cv>>,
    /// The object the file was written over, and how many of its first
    /// bytes the writer kept (`StatCache::note_kept_prefix`).
    pub kept: Option<(Hash, u64)>,
}

/// The pieces of `file` when its writer kept the first `bytes` of
/// `earlier`'s object (`kept`): the earlier CVs of the whole pieces in
/// those bytes, and the rest hashed. `None` when `kept` does not name
/// `earlier`'s object.
fn kept_pieces(
    earlier: &ResumeRecord,
    kept: Option<(Hash, u64)>,
    file: &mut File,
    path: &Path,
) -> Result<Option<Vec<pieces::Cv>>> {
    let Some((_, bytes)) = kept.filter(|(h, _)| *h == earlier.hash) else { return Ok(None) };
    // A claim past the end of the file cannot be right: hash it all.
    if bytes > file.metadata().at(path)?.len() {
        return Ok(None);
    }
    let whole = (bytes.min(earlier.size) / PIECE as u64) as usize;
    tracing::debug!(path = %path.display(), kept = bytes, "taking the pieces of the bytes its writer kept");
    let mut cvs = earlier.pieces[..whole].to_vec();
    file.seek(SeekFrom::Start((whole * PIECE) as u64)).at(path)?;
    let (rest, _) = pieces::hash_file_pieces((whole * PIECE) as u64, file, path, &mut |_| {})?;
    cvs.extend(rest);
    Ok(Some(cvs))
}

/// The blake3 of each chunk, the second half hashed on a second thread.
fn hash_in_parallel(chunks: &[&[u8]]) -> Vec<Hash> {
    pieces::on_two_threads(chunks, |c| Hash::of_bytes(c))
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
