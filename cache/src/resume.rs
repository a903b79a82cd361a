//! What storing a large file last time found, kept beside the workspace's
//! stat cache so the next store of a grown or edited version of that file
//! chunks and hashes only what changed.
//!
//! A record holds the object's chunk list and the CVs of its pieces
//! (`pieces.rs`). It is a hint, never a source of truth: the next store
//! hashes the new file's pieces and takes earlier chunks only where the
//! pieces' CVs prove the bytes unchanged, and only chunks still in the
//! store. It is local (the workspace's own, like the stat cache), written
//! from bytes this process hashed; a record that is torn, damaged or of
//! another format is ignored.

use std::path::{Path, PathBuf};

use crate::atomic;
use crate::chunking::{MAX_CHUNK, MAX_CHUNKS};
use crate::hash::Hash;
use crate::pieces::{Cv, PIECE};

const MAGIC: &[u8] = b"dvx-resume-1\n";

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ResumeRecord {
    pub hash: Hash,
    pub size: u64,
    pub chunks: Vec<(Hash, u32)>,
    pub pieces: Vec<Cv>,
}

impl ResumeRecord {
    /// Where the record for the file at `path` lives under `dir`.
    pub fn path_for(dir: &Path, path: &Path) -> PathBuf {
        dir.join(blake3::hash(path.as_os_str().as_encoded_bytes()).to_hex().as_str())
    }

    /// The record at `file`, if there is a well-formed one.
    pub fn load(file: &Path) -> Option<ResumeRecord> {
        let bytes = std::fs::read(file).ok()?;
        let record = ResumeRecord::parse(&bytes);
        if record.is_none() {
            tracing::debug!(record = %file.display(), "ignoring a damaged resume record");
        }
        record
    }

    /// Write the record (atomically; no fsync: losing it costs one full
    /// store). Failure only costs that too, so it is logged, not returned.
    pub fn save(&self, file: &Path) {
        let Some(dir) = file.parent() else { return };
        let written = std::fs::create_dir_all(dir).and_then(|()| {
            let tmp = atomic::temp_path(dir);
            std::fs::write(&tmp, self.to_bytes()).and_then(|()| std::fs::rename(&tmp, file)).inspect_err(|_| {
                let _ = std::fs::remove_file(&tmp);
            })
        });
        if let Err(e) = written {
            tracing::debug!(record = %file.display(), "cannot write a resume record: {e}");
        }
    }

    fn to_bytes(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(MAGIC.len() + 48 + self.chunks.len() * 36 + self.pieces.len() * 32 + 32);
        b.extend_from_slice(MAGIC);
        b.extend_from_slice(&raw(&self.hash));
        b.extend_from_slice(&self.size.to_le_bytes());
        b.extend_from_slice(&(self.chunks.len() as u32).to_le_bytes());
        for (h, len) in &self.chunks {
            b.extend_from_slice(&raw(h));
            b.extend_from_slice(&len.to_le_bytes());
        }
        b.extend_from_slice(&(self.pieces.len() as u32).to_le_bytes());
        for cv in &self.pieces {
            b.extend_from_slice(cv);
        }
        let sum = blake3::hash(&b);
        b.extend_from_slice(sum.as_bytes());
        b
    }

    fn parse(bytes: &[u8]) -> Option<ResumeRecord> {
        let body = bytes.strip_prefix(MAGIC)?;
        let (body, sum) = body.split_at_checked(body.len().checked_sub(32)?)?;
        if blake3::hash(&bytes[..bytes.len() - 32]).as_bytes() != sum {
            return None;
        }
        let mut r = Reader(body);
        let hash = r.hash()?;
        let size = u64::from_le_bytes(r.take(8)?.try_into().ok()?);
        let n_chunks = r.u32()? as usize;
        if n_chunks > MAX_CHUNKS {
            return None;
        }
        let mut chunks = Vec::with_capacity(n_chunks);
        let mut total = 0u64;
        for _ in 0..n_chunks {
            let h = r.hash()?;
            let len = r.u32()?;
            if len == 0 || len > MAX_CHUNK {
                return None;
            }
            total += u64::from(len);
            chunks.push((h, len));
        }
        let n_pieces = r.u32()? as u64;
        if total != size || n_pieces != size.div_ceil(PIECE as u64) {
            return None;
        }
        let pieces = (0..n_pieces).map(|_| r.take(32).and_then(|b| b.try_into().ok())).collect::<Option<Vec<Cv>>>()?;
        r.0.is_empty().then_some(ResumeRecord { hash, size, chunks, pieces })
    }
}

fn raw(h: &Hash) -> [u8; 32] {
    *blake3::Hash::from_hex(h.as_str()).expect("a Hash is 64 hex characters").as_bytes()
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let (head, rest) = self.0.split_at_checked(n)?;
        self.0 = rest;
        Some(head)
    }

    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.take(4)?.try_into().ok()?))
    }

    fn hash(&mut self) -> Option<Hash> {
        Some(Hash::from_blake3(blake3::Hash::from_bytes(self.take(32)?.try_into().ok()?)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record() -> ResumeRecord {
        let size = (5 * PIECE + 5) as u64;
        ResumeRecord {
            hash: Hash::of_bytes(b"whole"),
            size,
            chunks: vec![(Hash::of_bytes(b"a"), MAX_CHUNK), (Hash::of_bytes(b"b"), (size - MAX_CHUNK as u64) as u32)],
            pieces: vec![[1; 32], [2; 32], [3; 32], [4; 32], [5; 32], [6; 32]],
        }
    }

    #[test]
    fn a_record_reads_back_as_written() {
        let dir = tempfile::tempdir().unwrap();
        let file = ResumeRecord::path_for(dir.path(), Path::new("/w/data.jsonl"));
        record().save(&file);
        assert_eq!(ResumeRecord::load(&file), Some(record()));
        assert_ne!(file, ResumeRecord::path_for(dir.path(), Path::new("/w/data2.jsonl")));
    }

    #[test]
    fn a_damaged_torn_or_inconsistent_record_is_ignored() {
        let good = record().to_bytes();
        for cut in [0, 5, MAGIC.len() + 10, good.len() - 1] {
            assert_eq!(ResumeRecord::parse(&good[..cut]), None, "cut at {cut}");
        }
        let mut flipped = good.clone();
        flipped[MAGIC.len() + 40] ^= 1;
        assert_eq!(ResumeRecord::parse(&flipped), None);
        // Consistent checksum, inconsistent content: chunk lengths that do
        // not add up, or a piece count that does not fit the size.
        let mut r = record();
        r.size += 1;
        assert_eq!(ResumeRecord::parse(&r.to_bytes()), None);
        let mut r = record();
        r.pieces.pop();
        assert_eq!(ResumeRecord::parse(&r.to_bytes()), None);
        let mut r = record();
        r.chunks[0].1 = 0;
        assert_eq!(ResumeRecord::parse(&r.to_bytes()), None);
    }
}
