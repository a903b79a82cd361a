//! External memory for dedup: the shingle hashes of every distinct text,
//! kept in memory up to a budget and spilled to an unnamed temporary file
//! beside the out past it.
//!
//! Shingles are by far the largest part of a dedup run (a 1.5 KB record has
//! about 200 five-word shingles, 1.6 KB of hashes; 16 GB for 10M records),
//! yet they are read only for candidate pairs, a few percent of the records.
//! So once the budget is spent, later texts' shingles are appended to the
//! file (through a small write buffer) and read back with positioned reads
//! when a pair is checked. Where they are kept never changes a result: the
//! same hashes come back in the same order.
//!
//! The budget is [`DEFAULT_MEMORY`] bytes, or `DVX_DEDUP_MEMORY` (bytes, as
//! a plain number) when set: a tuning knob for the host, not a param, since
//! the outputs are the same bytes whatever it is.

use std::borrow::Cow;
use std::fs::File;
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use dvx_stage_api::StageFailure;

/// Bytes of shingle hashes kept in memory before spilling.
pub const DEFAULT_MEMORY: u64 = 1 << 30;

/// Bytes of spilled hashes gathered before one write to the file.
const WRITE_BUFFER: usize = 4 << 20;

/// Where and after how much to spill.
#[derive(Debug, Clone)]
pub struct Spill {
    /// Folder of the temporary file (the out's, so it is on the disk the
    /// outputs go to, not a memory-backed `/tmp`).
    pub dir: PathBuf,
    /// Bytes of shingle hashes kept in memory.
    pub memory: u64,
}

impl Spill {
    /// Spill beside `out`, with the budget from `DVX_DEDUP_MEMORY` or the default.
    pub fn beside(out: &Path) -> Result<Spill, StageFailure> {
        let dir = out.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new(".")).to_path_buf();
        let memory = match std::env::var("DVX_DEDUP_MEMORY") {
            Err(_) => DEFAULT_MEMORY,
            Ok(v) => v.trim().parse().map_err(|_| {
                StageFailure::new(format!("DVX_DEDUP_MEMORY={v:?}: expected a number of bytes, like 1073741824"))
            })?,
        };
        Ok(Spill { dir, memory })
    }

}

/// The shingle hashes of each slot (0, 1, 2, … in the order pushed).
pub struct ShingleStore {
    spill: Spill,
    /// Per slot: where its hashes end, counted in hashes over memory, then file.
    end: Vec<u64>,
    /// Hashes of slots `0..mem_slots`.
    mem: Vec<u64>,
    /// Slots whose hashes are in `mem`; later ones are in the file.
    mem_slots: usize,
    file: Option<SpillFile>,
}

/// The spilled hashes: in the file up to `flushed` bytes, then in `pending`.
struct SpillFile {
    file: File,
    flushed: u64,
    pending: Vec<u8>,
}

impl ShingleStore {
    /// An empty store that spills as `spill` says.
    pub fn new(spill: Spill) -> Self {
        ShingleStore { spill, end: Vec::new(), mem: Vec::new(), mem_slots: 0, file: None }
    }

    /// Bytes of hashes spilled to disk so far.
    pub fn spilled_bytes(&self) -> u64 {
        self.file.as_ref().map_or(0, |f| f.flushed + f.pending.len() as u64)
    }

    /// Add the next slot's hashes.
    pub fn push(&mut self, shingles: &[u64]) -> Result<(), StageFailure> {
        let start = self.end.last().copied().unwrap_or(0);
        let fits = (self.mem.len() + shingles.len()) as u64 * 8 <= self.spill.memory;
        if self.file.is_none() && fits {
            self.mem.extend_from_slice(shingles);
            self.mem_slots += 1;
        } else {
            let file = match &mut self.file {
                Some(f) => f,
                None => {
                    let file = unnamed_file(&self.spill.dir).map_err(|e| self.io_error(&e))?;
                    tracing::info!(dir = %self.spill.dir.display(), memory = self.spill.memory, "dedup: spilling shingle hashes to disk");
                    self.file.insert(SpillFile { file, flushed: 0, pending: Vec::with_capacity(WRITE_BUFFER) })
                }
            };
            for h in shingles {
                file.pending.extend_from_slice(&h.to_le_bytes());
            }
            // Whole slots only, so a slot is all in the file or all pending.
            if file.pending.len() >= WRITE_BUFFER {
                file.file.write_all(&file.pending).map_err(|e| io_error(&self.spill.dir, &e))?;
                file.flushed += file.pending.len() as u64;
                file.pending.clear();
            }
        }
        self.end.push(start + shingles.len() as u64);
        Ok(())
    }

    /// The hashes of `slot`, borrowed from memory or read back from the file.
    pub fn get(&self, slot: usize) -> Result<Cow<'_, [u64]>, StageFailure> {
        let start = if slot == 0 { 0 } else { self.end[slot - 1] };
        let end = self.end[slot];
        if slot < self.mem_slots {
            return Ok(Cow::Borrowed(&self.mem[start as usize..end as usize]));
        }
        let f = self.file.as_ref().expect("a slot past memory is spilled");
        let base = self.mem.len() as u64;
        let (from, to) = ((start - base) * 8, (end - base) * 8);
        let mut bytes = vec![0u8; (to - from) as usize];
        if from >= f.flushed {
            let at = (from - f.flushed) as usize;
            let n = bytes.len();
            bytes.copy_from_slice(&f.pending[at..at + n]);
        } else {
            f.file.read_exact_at(&mut bytes, from).map_err(|e| {
                StageFailure::new(format!(
                    "dedup: cannot read back shingle hashes spilled to a temporary file in {}: {e}",
                    self.spill.dir.display()
                ))
            })?;
        }
        Ok(Cow::Owned(bytes.chunks_exact(8).map(|c| u64::from_le_bytes(c.try_into().expect("8 bytes"))).collect()))
    }

    fn io_error(&self, e: &std::io::Error) -> StageFailure {
        io_error(&self.spill.dir, e)
    }
}

/// A new file in `dir`, unlinked at once: it is freed when closed, even
/// after a crash, and nothing else sees it.
fn unnamed_file(dir: &Path) -> std::io::Result<File> {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let path = dir.join(format!(".dvx-dedup-spill-{}-{n}", std::process::id()));
    let file = std::fs::OpenOptions::new().read(true).write(true).create_new(true).open(&path)?;
    std::fs::remove_file(&path)?;
    Ok(file)
}

fn io_error(dir: &Path, e: &std::io::Error) -> StageFailure {
    StageFailure::new(format!(
        "dedup: cannot spill shingle hashes to a temporary file in {}: {e} (free some disk there, or raise DVX_DEDUP_MEMORY)",
        dir.display()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slots() -> Vec<Vec<u64>> {
        // Sizes around the write buffer, so slots land in memory, pending and the file.
        (0..400u64).map(|i| (0..(i * 37 % 3000) + 1).map(|k| k.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ i).collect()).collect()
    }

    #[test]
    fn spilled_hashes_read_back_as_pushed() {
        let dir = tempfile::tempdir().unwrap();
        for memory in [0, 8 * 5000, 1 << 20, u64::MAX] {
            let mut store = ShingleStore::new(Spill { dir: dir.path().to_path_buf(), memory });
            let want = slots();
            for s in &want {
                store.push(s).unwrap();
            }
            assert_eq!(store.end.len(), want.len());
            for (i, s) in want.iter().enumerate() {
                assert_eq!(store.get(i).unwrap().as_ref(), s.as_slice(), "slot {i} with memory {memory}");
            }
            let total: u64 = want.iter().map(|s| s.len() as u64 * 8).sum();
            match memory {
                0 => assert_eq!(store.spilled_bytes(), total),
                u64::MAX => assert_eq!(store.spilled_bytes(), 0),
                _ => assert!(store.spilled_bytes() > 0 && store.spilled_bytes() < total),
            }
        }
        // The file has no name: nothing is left in the folder.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn a_missing_folder_is_a_clear_error() {
        let mut store = ShingleStore::new(Spill { dir: PathBuf::from("/nonexistent/dvx-spill"), memory: 0 });
        let e = store.push(&[1, 2]).unwrap_err();
        assert!(e.message.contains("cannot spill shingle hashes") && e.message.contains("/nonexistent/dvx-spill"), "{}", e.message);
    }

    /// Dedup's links, clusters and pair counts on planted near-duplicates,
    /// with shingles in memory and with all or part of them spilled.
    #[test]
    fn spilling_changes_no_result() {
        use crate::dedup::cluster::{self, UnionFind};
        use crate::dedup::corpus::Corpus;
        use crate::dedup::params::DedupParams;
        use crate::dedup::sketch::Sketcher;
        use crate::seeded::SplitMix64;

        let dir = tempfile::tempdir().unwrap();
        let mut rng = SplitMix64::new(5);
        let mut docs: Vec<String> = Vec::new();
        for i in 0..600 {
            let text = if i > 10 && rng.next_u64() % 3 == 0 {
                let mut words: Vec<String> =
                    docs[(rng.next_u64() % docs.len() as u64) as usize].split(' ').map(str::to_string).collect();
                let at = (rng.next_u64() % words.len() as u64) as usize;
                words[at] = format!("edit{i}");
                words.join(" ")
            } else {
                (0..30 + rng.next_u64() % 60).map(|_| format!("v{}", rng.next_u64() % 3000)).collect::<Vec<_>>().join(" ")
            };
            docs.push(text);
        }
        let input = dir.path().join("in.jsonl");
        let jsonl: String =
            docs.iter().enumerate().map(|(i, t)| format!("{}\n", serde_json::json!({"text": t, "score": i % 7}))).collect();
        std::fs::write(&input, jsonl).unwrap();

        let p = DedupParams::default();
        let (bands, rows) = p.bands_rows().unwrap();
        let run = |memory: u64| {
            let sk = Sketcher::new(p.spec(), bands * rows, Some(p.score_field.clone()));
            let mut corpus = Corpus::new(bands, rows, Spill { dir: dir.path().to_path_buf(), memory });
            corpus.add_jsonl(&sk, &input, "in.jsonl".into()).unwrap();
            corpus.end_inputs();
            let mut uf = UnionFind::new(corpus.len());
            cluster::link_exact(&corpus, &mut uf);
            let stats = cluster::link_near(&corpus, &mut uf, p.threshold).unwrap();
            let decided = cluster::decide(&corpus, &mut uf, true).unwrap();
            (stats, decided, corpus.spilled_bytes())
        };
        let (stats, decided, spilled) = run(u64::MAX);
        assert_eq!(spilled, 0);
        assert!(stats.confirmed > 50 && !decided.0.is_empty(), "{stats:?}");
        for memory in [0, 20_000] {
            let (s, d, spilled) = run(memory);
            assert!(spilled > 0, "memory {memory}");
            assert_eq!((s, &d), (stats, &decided), "memory {memory}");
        }
    }
}
