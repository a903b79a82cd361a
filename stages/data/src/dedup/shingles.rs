//! The shingle hashes of the texts whose Jaccard may be checked (input texts
//! that share a bucket, and reference texts): about 1.7 KB a text for
//! seed-002 records. Held in memory up to a budget; past it, appended to an
//! unnamed file (beside the stage's first out) and read back per check.

use std::borrow::Cow;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use dvx_stage_api::StageFailure;

/// Bytes of shingle hashes held in memory before more go to disk. Tests
/// lower it to make small inputs spill; outputs never depend on it.
pub static BUDGET: AtomicUsize = AtomicUsize::new(1 << 30);

/// Where one text's shingles are: `len` hashes from `at`, in memory or on disk.
#[derive(Clone, Copy)]
struct Span {
    at: u64,
    len: u32,
    disk: bool,
}

/// Texts' shingle hashes, by the handle [`ShingleStore::add`] returned.
pub struct ShingleStore {
    spans: Vec<Span>,
    mem: Vec<u64>,
    /// Hashes past the budget, and how many it holds.
    file: Option<(BufWriter<File>, u64)>,
    sealed: Option<File>,
    /// Shingles in the sealed spill file.
    sealed_len: u64,
    dir: PathBuf,
}

fn io_err(what: &str, dir: &Path, e: std::io::Error) -> StageFailure {
    StageFailure::new(format!("cannot {what} dedup's shingle spill file in {}: {e}", dir.display()))
}

impl ShingleStore {
    /// An empty store spilling into `dir`.
    pub fn new(dir: &Path) -> Self {
        ShingleStore {
            spans: Vec::new(),
            mem: Vec::new(),
            file: None,
            sealed: None,
            sealed_len: 0,
            dir: dir.to_path_buf(),
        }
    }

    /// Keep `shingles`; returns their handle.
    pub fn add(&mut self, shingles: &[u64]) -> Result<u32, StageFailure> {
        let len = u32::try_from(shingles.len()).map_err(|_| StageFailure::new("dedup: a text with 2^32 shingles"))?;
        if self.sealed.is_some() {
            return Err(StageFailure::new("dedup: shingles added after linking began"));
        }
        if self.file.is_none() && (self.mem.len() + shingles.len()) * 8 > BUDGET.load(Ordering::Relaxed) {
            tracing::debug!(texts = self.spans.len(), dir = %self.dir.display(), "dedup spills shingles to disk");
            let file = tempfile::tempfile_in(&self.dir).map_err(|e| io_err("create", &self.dir, e))?;
            self.file = Some((BufWriter::with_capacity(1 << 16, file), 0));
        }
        let span = match &mut self.file {
            None => {
                self.mem.extend_from_slice(shingles);
                Span { at: (self.mem.len() - shingles.len()) as u64, len, disk: false }
            }
            Some((w, n)) => {
                let bytes: Vec<u8> = shingles.iter().flat_map(|h| h.to_le_bytes()).collect();
                w.write_all(&bytes).map_err(|e| io_err("write", &self.dir, e))?;
                *n += u64::from(len);
                Span { at: *n - u64::from(len), len, disk: true }
            }
        };
        self.spans.push(span);
        u32::try_from(self.spans.len() - 1).map_err(|_| StageFailure::new("dedup: over 2^32 texts with shingles"))
    }

    /// Whether some shingles went to disk.
    pub fn spilled(&self) -> bool {
        self.file.is_some() || self.sealed.is_some()
    }

    /// No more texts: flush what went to disk.
    pub fn seal(&mut self) -> Result<(), StageFailure> {
        if let Some((w, n)) = self.file.take() {
            self.sealed = Some(w.into_inner().map_err(|e| io_err("write", &self.dir, e.into_error()))?);
            self.sealed_len = n;
        }
        Ok(())
    }

    /// Take shingles again after [`ShingleStore::seal`]: a spill file goes on
    /// where it ended (reads are positioned, so its cursor is still there).
    pub fn unseal(&mut self) {
        if let Some(file) = self.sealed.take() {
            self.file = Some((BufWriter::with_capacity(1 << 16, file), self.sealed_len));
        }
    }

    /// The shingles of handle `h`.
    pub fn get(&self, h: u32) -> Result<Cow<'_, [u64]>, StageFailure> {
        let Span { at, len, disk } = self.spans[h as usize];
        if !disk {
            return Ok(Cow::Borrowed(&self.mem[at as usize..at as usize + len as usize]));
        }
        let file = self.sealed.as_ref().ok_or_else(|| StageFailure::new("dedup: shingles read before sealing"))?;
        let mut bytes = vec![0u8; len as usize * 8];
        file.read_exact_at(&mut bytes, at * 8).map_err(|e| io_err("read", &self.dir, e))?;
        Ok(Cow::Owned(bytes.chunks_exact(8).map(|c| u64::from_le_bytes(c.try_into().expect("8 bytes"))).collect()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn texts_past_the_budget_are_read_back_from_disk() {
        let dir = tempfile::tempdir().unwrap();
        let texts: Vec<Vec<u64>> = (0..50u64).map(|i| (0..=i).map(|j| i * 1000 + j).collect()).collect();
        let mut store = ShingleStore::new(dir.path());
        // Room for the first few texts only (a local budget: BUDGET is shared).
        let handles: Vec<u32> = texts
            .iter()
            .map(|t| {
                if store.mem.len() > 40 && store.file.is_none() {
                    let file = tempfile::tempfile_in(dir.path()).unwrap();
                    store.file = Some((BufWriter::new(file), 0));
                }
                store.add(t).unwrap()
            })
            .collect();
        assert!(store.spilled());
        assert!(store.get(handles[49]).is_err(), "reading before sealing is refused");
        store.seal().unwrap();
        for (h, t) in handles.iter().zip(&texts) {
            assert_eq!(store.get(*h).unwrap().as_ref(), t.as_slice());
        }
        assert!(matches!(store.get(handles[0]).unwrap(), Cow::Borrowed(_)));
        assert!(matches!(store.get(handles[49]).unwrap(), Cow::Owned(_)));
        assert!(store.add(&[1]).is_err(), "adding after sealing is refused");
    }
}
