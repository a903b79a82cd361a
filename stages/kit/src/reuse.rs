//! Record-wise reuse: a kind whose result for a record depends on that
//! record alone (`filter`, `score`, `multiply`, `convert`, `validate`'s
//! per-record stats, `dedup`'s signatures) processes only the records its
//! earlier runs have not seen, and writes the same bytes as a full run.
//!
//! The input is cut into content-defined batches of items (a JSONL line, a
//! Parquet row as JSON text): a batch ends after a line whose xxh3 hash
//! hits [`AVG`] (once it holds [`MIN`] items, at [`MAX`] at the latest, and
//! at the end of each file). So an append, an edit or a deletion changes
//! only the batches around it. A batch is known by its *anchor* (the line
//! that ended the batch before it, or its file's name at a file's start):
//! one memo entry per anchor holds the batch's content hash (blake3 of all
//! its items at once, which hashes several KiB-chunks side by side), a
//! 128-bit blake3 id per item, the hashes of its runs and the kind's
//! per-item result. A batch whose content hash matches is replayed whole
//! without parsing a line or hashing its items one by one. One that differs
//! (an edit, an append to the last batch, records replaced all over it) is
//! matched a run of about [`RUN_AVG`] items at a time (content-defined too,
//! each run hashed at once): runs the entry holds give their ids and
//! results; only the other items are hashed one by one, and those whose id
//! the entry holds reuse their result; the rest are processed. Entries are
//! keyed by the kind, its version and its normalised params (the salt), so
//! a change to any of those starts afresh. The memo is written as batches
//! finish; a memo that cannot write only costs the next run its reuse.

use std::collections::HashMap;
use std::path::Path;

use std::sync::Arc;

use dvx_records::{JsonlScan, Raw, RawChunk, RecordReader, RecordWriter, ScanLine, Source, Unit};
use dvx_stage_api::{Memo, MemoKey, StageFailure};
use rayon::prelude::*;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde::Serialize;

/// A batch ends after a line whose hash is 0 modulo this: batches of about
/// `MIN + AVG` items, a few hundred memo entries for a million records.
const AVG: u64 = 2048;
/// Items a batch holds before a hash may end it.
const MIN: usize = 1024;
/// Items a batch holds at most.
const MAX: usize = 16384;
/// Items read from the reader at once.
const READ: usize = 2048;
/// A run of items inside a batch ends after an item whose xxh3 (its upper
/// half, independent of the batch cut) is 0 modulo this, or at [`RUN_MAX`]
/// items: a batch that changed is matched against its earlier entry a run
/// at a time (one blake3 call over the run's bytes, several KiB-chunks side
/// by side) and only the items of runs that differ are hashed one by one
/// (a lone item of 1-2 KiB is a serial blake3 call, several times slower).
const RUN_AVG: u64 = 32;
/// Items a run holds at most.
const RUN_MAX: usize = 256;
/// Memo entry format; changing it makes old entries misses, not errors.
const ENTRY_MAGIC: &[u8; 8] = b"dvxrb03\n";
/// The format before entries kept their runs' hashes: still read (its
/// items are matched by id), and rewritten when its batch changes.
const ENTRY_MAGIC_V2: &[u8; 8] = b"dvxrb02\n";
/// The format before the content hash covered the items' bytes at once:
/// its content hash is that of the item ids. Still read, so an upgrade
/// reprocesses nothing.
const ENTRY_MAGIC_V1: &[u8; 8] = b"dvxrb01\n";

/// A block of whole lines of a plain JSONL file and where it lies in it.
#[derive(Debug)]
pub struct LineBlock {
    text: String,
    at: u64,
}

/// One unparsed input item: JSON text, or why it could not be read.
#[derive(Debug, Clone)]
pub enum Item {
    /// The item's JSON text (a line, or a row/element written as JSON).
    Text(String),
    /// A line's text inside a block of a plain JSONL file read at once
    /// (shared by the block's items, so reading costs no string per line).
    Line(Arc<LineBlock>, std::ops::Range<usize>),
    /// Bad UTF-8 and the like: the reader's reason.
    Unreadable(String),
}

impl Item {
    fn from_raw(raw: Raw) -> Item {
        match raw {
            Raw::Text(Ok(t)) => Item::Text(t),
            Raw::Text(Err(reason)) => Item::Unreadable(reason),
            Raw::Value(v) => Item::Text(v.to_string()),
        }
    }

    fn parts(&self) -> (u8, &[u8]) {
        match self {
            Item::Text(t) => (0, t.as_bytes()),
            Item::Line(block, at) => (0, block.text[at.clone()].as_bytes()),
            Item::Unreadable(r) => (1, r.as_bytes()),
        }
    }

    fn id(&self) -> [u8; 16] {
        let (tag, bytes) = self.parts();
        let mut h = blake3::Hasher::new();
        h.update(&[tag]).update(&(bytes.len() as u64).to_le_bytes()).update(bytes);
        h.finalize().as_bytes()[..16].try_into().expect("16 bytes")
    }

    /// Where the item's text starts in its file, when it was read as a
    /// line of a plain JSONL file (so it can be read again by itself).
    pub fn offset(&self) -> Option<u64> {
        match self {
            Item::Line(block, at) => Some(block.at + at.start as u64),
            _ => None,
        }
    }

    /// The text, for parsing; unreadable items have none.
    pub fn text(&self) -> Result<&str, &str> {
        match self {
            Item::Text(t) => Ok(t),
            Item::Line(block, at) => Ok(&block.text[at.clone()]),
            Item::Unreadable(r) => Err(r),
        }
    }
}

/// A run of consecutive items of one file.
pub struct Batch {
    /// The file they come from.
    pub source: Source,
    /// `(line/row/element number, item)`.
    pub items: Vec<(usize, Item)>,
    anchor: [u8; 32],
    /// [`Batch::content_of`] the items, hashed by the thread that read them.
    content: [u8; 32],
}

impl Batch {
    /// Parse item `i` (a bad one as the reader names it).
    pub fn parse(&self, i: usize) -> Result<dvx_records::Record, dvx_records::BadRecord> {
        match &self.items[i] {
            (at, Item::Unreadable(r)) => self.source.parse(*at, Raw::Text(Err(r.clone()))).map(|(_, r)| r),
            (at, item) => {
                let t = item.text().expect("readable");
                self.source
                    .parse_str(*at, t)
                    .map(|(_, r)| r)
                    .map_err(|b| dvx_records::BadRecord { text: t.to_string(), ..b })
            }
        }
    }
}

impl Batch {
    /// The content hash: blake3 of the items' count, tags and lengths, then
    /// of their bytes, each followed by `\n` (so the encoding is one-to-one).
    /// Consecutive lines of a block are that very slice of it, hashed where
    /// it lies; only other items are copied, so blake3 sees long inputs and
    /// works on many chunks at once without a copy of the batch.
    fn content_of(items: &[(usize, Item)]) -> [u8; 32] {
        let mut head = Vec::with_capacity(15 + 9 * items.len());
        head.extend_from_slice(b"items3\0");
        head.extend_from_slice(&(items.len() as u64).to_le_bytes());
        for (_, it) in items {
            let (tag, bytes) = it.parts();
            head.push(tag);
            head.extend_from_slice(&(bytes.len() as u64).to_le_bytes());
        }
        let mut h = ContentHasher { h: blake3::Hasher::new(), copied: Vec::new(), run: None };
        h.h.update(&head);
        for (_, it) in items {
            match it {
                Item::Line(block, at) => h.line(block.text.as_bytes(), at.clone()),
                other => h.copy(other.parts().1),
            }
        }
        h.finish()
    }

    fn new(source: Source, items: Vec<(usize, Item)>, anchor: [u8; 32]) -> Batch {
        let content = Batch::content_of(&items);
        Batch { source, items, anchor, content }
    }

    /// Item `i`'s bad-record report as a full run gives it, for a kind's
    /// rejects out: the reason kept from an earlier run, the place from this one.
    pub fn bad_line(&self, line: usize, item: &Item, reason: String) -> dvx_records::BadRecord {
        let text = item.text().unwrap_or_default().to_string();
        dvx_records::BadRecord { path: self.source.path.clone(), line, unit: self.source.unit, text, reason }
    }
}

/// Feeds [`Batch::content_of`]'s bytes section to blake3: a run of
/// consecutive lines of one block as one slice, other items copied.
struct ContentHasher<'a> {
    h: blake3::Hasher,
    copied: Vec<u8>,
    /// A block and the range of it owed to the hash; the `\n` after its
    /// end is owed too.
    run: Option<(&'a [u8], std::ops::Range<usize>)>,
}

impl<'a> ContentHasher<'a> {
    fn line(&mut self, block: &'a [u8], at: std::ops::Range<usize>) {
        if let Some((b, owed)) = &mut self.run {
            // The next line of the same block, right after this one's `\n`.
            if b.as_ptr() == block.as_ptr() && at.start == owed.end + 1 && block[owed.end] == b'\n' {
                owed.end = at.end;
                return;
            }
        }
        self.end_run();
        self.run = Some((block, at));
    }

    fn copy(&mut self, bytes: &[u8]) {
        self.end_run();
        self.copied.extend_from_slice(bytes);
        self.copied.push(b'\n');
    }

    fn end_run(&mut self) {
        if !self.copied.is_empty() {
            self.h.update(&self.copied);
            self.copied.clear();
        }
        if let Some((b, owed)) = self.run.take() {
            if b.get(owed.end) == Some(&b'\n') {
                self.h.update(&b[owed.start..owed.end + 1]);
            } else {
                self.h.update(&b[owed]).update(b"\n");
            }
        }
    }

    fn finish(mut self) -> [u8; 32] {
        self.end_run();
        *self.h.finalize().as_bytes()
    }
}

/// An `Option<f64>` kept as its bits: JSON text would not promise the same number back.
pub mod opt_f64_bits {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<S: Serializer>(v: &Option<f64>, s: S) -> Result<S::Ok, S::Error> {
        v.map(f64::to_bits).serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<f64>, D::Error> {
        Ok(Option::<u64>::deserialize(d)?.map(f64::from_bits))
    }
}

/// Reads a dep as content-defined [`Batch`]es, on a thread of its own: the
/// reading, cutting and content hashing of the next batches (most of a
/// re-run's work when most batches are replayed) overlap the stage's work
/// on this one.
pub struct Batches {
    batches: dvx_records::Ahead<Batch>,
    /// Whether a plain JSONL file is scanned a block at a time (tests look).
    #[cfg(test)]
    from_scan: bool,
}

impl Batches {
    /// Open `path` (any format `dvx-records` reads) and start reading it.
    pub fn open(path: &Path) -> Result<Batches, StageFailure> {
        let mut cutter = Cutter::open(path)?;
        #[cfg(test)]
        let from_scan = matches!(cutter.from, From::Scan(..));
        let batches = dvx_records::Ahead::spawn(&path.display().to_string(), move || cutter.next_batch())?;
        Ok(Batches {
            batches,
            #[cfg(test)]
            from_scan,
        })
    }

    /// The next batch; `None` when the dep is done.
    pub fn next_batch(&mut self) -> Result<Option<Batch>, StageFailure> {
        self.batches.recv()
    }
}

/// Cuts a dep into content-defined [`Batch`]es (on [`Batches`]' thread).
struct Cutter {
    /// Where items come from: a plain JSONL file is scanned a block at a
    /// time; anything else goes through the record reader.
    from: From,
    /// Items read but not yet batched, with their file.
    pending: Option<(Source, std::collections::VecDeque<(usize, Item)>)>,
    /// The anchor of the next batch.
    anchor: [u8; 32],
    /// The file the next batch continues, if any.
    file: Option<std::path::PathBuf>,
    /// Anchors handed out so far and how often: a repeated anchor (the same
    /// line ending two batches) is told apart by its occurrence, so the two
    /// batches do not overwrite each other's entry on every run.
    anchors: HashMap<[u8; 32], u32>,
}

/// Whether `item` ends a batch that holds [`MIN`] items or more.
fn may_end_a_batch(item: &Item) -> bool {
    twox_hash::XxHash3_64::oneshot(item.parts().1).is_multiple_of(AVG)
}

fn file_anchor(path: &Path) -> [u8; 32] {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    *blake3::Hasher::new().update(b"file\0").update(name.as_bytes()).finalize().as_bytes()
}

enum From {
    Scan(JsonlScan, Source, Vec<ScanLine>),
    Reader(RecordReader),
}

impl Cutter {
    fn open(path: &Path) -> Result<Cutter, StageFailure> {
        let from = match JsonlScan::open(path)? {
            Some(scan) => {
                tracing::debug!(path = %path.display(), "reading plain JSONL in batches, a block at a time");
                From::Scan(scan, Source { path: path.to_path_buf(), unit: Unit::Line }, Vec::new())
            }
            None => {
                let reader = RecordReader::open(path)?;
                tracing::debug!(path = %path.display(), format = reader.format().name(), "reading records in batches");
                From::Reader(reader)
            }
        };
        Ok(Cutter { from, pending: None, anchor: [0; 32], file: None, anchors: HashMap::new() })
    }

    fn fill(&mut self) -> Result<bool, StageFailure> {
        if self.pending.as_ref().is_some_and(|(_, q)| !q.is_empty()) {
            return Ok(true);
        }
        match &mut self.from {
            From::Reader(reader) => match reader.raw_chunk(READ)? {
                None => Ok(false),
                Some(RawChunk { source, items }) => {
                    let items = items.into_iter().map(|(at, raw)| (at, Item::from_raw(raw))).collect();
                    self.pending = Some((source, items));
                    Ok(true)
                }
            },
            From::Scan(scan, source, lines) => {
                let Some(block) = scan.next_block_owned(lines)? else { return Ok(false) };
                let at = scan.block_at();
                // Lines end at a `\n` (and a byte-order mark or `\r` taken
                // off is whole characters), so a block that is UTF-8 is
                // sliced into its lines' texts as it is.
                // (simdutf8 checks a block several times faster than std,
                // which was a sixth of the reading thread's time.)
                let items = match simdutf8::basic::from_utf8(&block) {
                    Ok(_) => {
                        // SAFETY: the bytes were just checked to be UTF-8.
                        let text = unsafe { String::from_utf8_unchecked(block) };
                        let block = Arc::new(LineBlock { text, at });
                        lines.iter().map(|l| (l.line, Item::Line(block.clone(), l.text.clone()))).collect()
                    }
                    Err(_) => lines
                        .iter()
                        .map(|l| match l.text(&block, &source.path) {
                            Ok(t) => (l.line, Item::Text(t.to_string())),
                            Err(bad) => (l.line, Item::Unreadable(bad.reason)),
                        })
                        .collect(),
                };
                self.pending = Some((source.clone(), items));
                Ok(true)
            }
        }
    }

    /// The next batch; `None` when the dep is done.
    fn next_batch(&mut self) -> Result<Option<Batch>, StageFailure> {
        let mut items = Vec::new();
        let mut source: Option<Source> = None;
        while self.fill()? {
            let (src, queue) = self.pending.as_mut().expect("filled");
            if self.file.as_deref() != Some(src.path.as_path()) {
                if !items.is_empty() {
                    break; // a new file starts a new batch
                }
                self.file = Some(src.path.clone());
                self.anchor = file_anchor(&src.path);
            }
            if source.is_none() {
                source = Some(src.clone());
            }
            let mut ended = false;
            while let Some((at, item)) = queue.pop_front() {
                // Only an item that may end the batch needs its hash.
                let ends = items.len() + 1 >= MIN && may_end_a_batch(&item);
                items.push((at, item));
                if ends || items.len() >= MAX {
                    ended = true;
                    break;
                }
            }
            if ended {
                let anchor = self.unique(self.anchor);
                let (_, last) = items.last().expect("an item");
                self.anchor = *blake3::Hasher::new().update(b"after\0").update(&last.id()).finalize().as_bytes();
                return Ok(Some(Batch::new(source.expect("set"), items, anchor)));
            }
        }
        let anchor = self.unique(self.anchor);
        Ok(source.map(|source| Batch::new(source, items, anchor)))
    }

    /// `anchor` the first time, then `anchor` with its occurrence number.
    fn unique(&mut self, anchor: [u8; 32]) -> [u8; 32] {
        let n = self.anchors.entry(anchor).or_default();
        *n += 1;
        if *n == 1 {
            return anchor;
        }
        *blake3::Hasher::new().update(&anchor).update(&n.to_le_bytes()).finalize().as_bytes()
    }
}

/// A kind's per-item result as the memo keeps it: the kind's result for a
/// record, or why the item is not one (bad JSON, not an object, unreadable).
/// Kept as `{"r": …}` / `{"b": {"r": reason}}`.
#[derive(Clone, Serialize, serde::Deserialize)]
pub enum PerItem<R> {
    #[serde(rename = "b")]
    Bad {
        #[serde(rename = "r")]
        reason: String,
    },
    #[serde(rename = "r")]
    Record(R),
}

/// The second pass of a kind that decides after reading everything: calls
/// `f(n, text)` for the `n`-th record of `path`, in order, where `is_rec`
/// marks which items the first pass found to be records. The items are
/// those [`Batches`] yields, read without cutting them into batches (no
/// per-item hash).
pub fn for_each_record(
    path: &Path,
    is_rec: &[bool],
    mut f: impl FnMut(usize, &str) -> Result<(), StageFailure>,
) -> Result<(), StageFailure> {
    // The next item's record number, if it is one.
    let (mut item, mut n) = (0, 0);
    let mut next_record = || {
        let record = is_rec.get(item).copied().unwrap_or(false);
        item += 1;
        n += usize::from(record);
        record.then_some(n - 1)
    };
    if let Some(scan) = JsonlScan::open(path)? {
        // A plain JSONL file: its lines as slices of large blocks, no string
        // each, read ahead while the caller writes.
        let mut scan = scan.ahead()?;
        let mut lines = Vec::new();
        while let Some(block) = scan.next_block(&mut lines)? {
            for l in &lines {
                if let Some(k) = next_record() {
                    f(k, l.text(block, path).unwrap_or_default())?;
                }
            }
        }
        return Ok(());
    }
    let mut reader = RecordReader::open(path)?;
    while let Some(RawChunk { items, .. }) = reader.raw_chunk(READ)? {
        for (_, raw) in items {
            if let Some(k) = next_record() {
                match raw {
                    Raw::Text(Ok(t)) => f(k, &t)?,
                    raw => f(k, Item::from_raw(raw).text().unwrap_or_default())?,
                }
            }
        }
    }
    Ok(())
}

/// Whether `text` is already the line a JSONL out gets for it (the compact
/// form [`dvx_records::compact_into`] makes), so a kind that copies records
/// can write it as it is: checked once for a processed record, then kept in
/// its per-item result.
pub fn is_compact(text: &str) -> bool {
    let mut l = String::with_capacity(text.len());
    dvx_records::compact_into(text, &mut l) && l == text
}

/// Copy a record's line to `w`: as it is when [`is_compact`] said so,
/// else through the writer's compaction.
pub fn copy_line(w: &mut RecordWriter, text: &str, compact: bool) -> Result<(), StageFailure> {
    if compact {
        w.write_json_line(text)
    } else {
        w.write_json_text(text)
    }
}

/// Input lines written as they stand, gathered into runs of consecutive
/// lines of one block so that each run goes to the writer in one call:
/// copying a million kept lines one at a time (each into the writer's
/// buffer, then compared with the earlier out) was most of a re-run's
/// writing.
#[derive(Default)]
pub struct LineRuns {
    /// The block, the bytes of the run's lines in it (each with its `\n`), how many.
    run: Option<(Arc<LineBlock>, std::ops::Range<usize>, usize)>,
}

impl LineRuns {
    /// Write `item`, whose text is the line a JSONL out gets for it
    /// ([`is_compact`]), after the lines before it.
    pub fn write(&mut self, w: &mut RecordWriter, item: &Item) -> Result<(), StageFailure> {
        if let Item::Line(block, at) = item {
            // A line ending in `\n` alone is, with it, the bytes written.
            if block.text.as_bytes().get(at.end) == Some(&b'\n') {
                if let Some((b, run, n)) = &mut self.run {
                    if Arc::ptr_eq(b, block) && run.end == at.start {
                        run.end = at.end + 1;
                        *n += 1;
                        return Ok(());
                    }
                }
                self.flush(w)?;
                self.run = Some((block.clone(), at.start..at.end + 1, 1));
                return Ok(());
            }
        }
        self.flush(w)?;
        w.write_json_line(item.text().unwrap_or_default())
    }

    /// Write the run held: before anything else is written to the same
    /// writer, and at the end.
    pub fn flush(&mut self, w: &mut RecordWriter) -> Result<(), StageFailure> {
        match self.run.take() {
            Some((block, run, n)) => w.write_json_lines(&block.text[run], n),
            None => Ok(()),
        }
    }
}

/// The default of every record-wise kind's `reuse` param.
pub fn on() -> bool {
    true
}

/// `reuse: true` is left out of normalised params, so adding the param
/// changed no key; `reuse: false` is a different key, and so a real re-run.
pub fn is_on(v: &bool) -> bool {
    *v
}

/// The docs row of the `reuse` param.
pub fn param_doc() -> dvx_stage_api::ParamDoc {
    dvx_stage_api::ParamDoc::new(
        "reuse",
        "bool",
        "true",
        "Reuse earlier runs' per-record results for unchanged records; `false` processes every record.",
    )
}

/// Per-item results of one kind, kept across runs through the memo.
pub struct Reuse<'a> {
    memo: Option<&'a dyn Memo>,
    salt: [u8; 32],
    /// Items processed this run.
    pub processed: usize,
    /// Items whose result came from an earlier run.
    pub reused: usize,
    /// Items whose id was hashed one by one (those of runs no earlier
    /// entry held): what a changed batch costs besides processing.
    pub hashed: usize,
}

impl<'a> Reuse<'a> {
    /// Reuse for `kind` at `version` with these (normalised) params; off
    /// (every item processed, nothing kept) when `on` is false or the memo
    /// keeps nothing.
    pub fn new(memo: &'a dyn Memo, kind: &str, version: u32, params: &impl Serialize, on: bool) -> Self {
        let params = serde_json::to_value(params).unwrap_or_default();
        let mut h = blake3::Hasher::new();
        h.update(b"dvx record reuse\0").update(kind.as_bytes()).update(b"\0");
        h.update(&version.to_le_bytes());
        h.update(&dvx_cache::canonical_json(&params));
        Reuse {
            memo: (on && memo.keeps()).then_some(memo),
            salt: *h.finalize().as_bytes(),
            processed: 0,
            reused: 0,
            hashed: 0,
        }
    }

    /// The result of every item of `batch`, in order: from the memo where an
    /// earlier run kept it, else from `f(index in batch)` on `pool`. An
    /// error from `f` (the first by position) ends the stage.
    pub fn results<R>(
        &mut self,
        batch: &Batch,
        pool: &rayon::ThreadPool,
        f: impl Fn(usize) -> Result<R, StageFailure> + Sync + Send,
    ) -> Result<Vec<R>, StageFailure>
    where
        R: Serialize + DeserializeOwned + Clone + Send,
    {
        let n = batch.items.len();
        let Some(memo) = self.memo else {
            self.processed += n;
            return compute(pool, (0..n).collect(), &f).map(|v| v.into_iter().map(|(_, r)| r).collect());
        };
        let key: MemoKey = *blake3::Hasher::new().update(&self.salt).update(&batch.anchor).finalize().as_bytes();
        let content = batch.content;
        let mut old: Option<Entry<R>> = memo.get(&key).and_then(|b| Entry::decode(&b));
        if let Some(e) = old.take_if(|e| e.content == Content::Items(content) && e.results.len() == n) {
            self.reused += n;
            return Ok(e.results);
        }
        let runs = Run::all_of(&batch.items, pool);
        let mut ids: Vec<Option<[u8; 16]>> = vec![None; n];
        let mut results: Vec<Option<R>> = vec![None; n];
        // Runs whose bytes the earlier entry holds take its ids and results.
        if let Some(e) = &old {
            let earlier: HashMap<([u8; 32], usize), usize> =
                e.runs.iter().map(|r| ((r.hash, r.len), r.start)).collect();
            for run in &runs {
                // (Decoding checked that the earlier runs cover its items.)
                if let Some(&from) = earlier.get(&(run.hash, run.len)) {
                    for (k, i) in (run.start..run.start + run.len).enumerate() {
                        ids[i] = Some(e.ids[from + k]);
                        results[i] = Some(e.results[from + k].clone());
                    }
                }
            }
        }
        let unhashed: Vec<usize> = (0..n).filter(|&i| ids[i].is_none()).collect();
        let hashed: Vec<[u8; 16]> = pool.install(|| unhashed.par_iter().map(|&i| batch.items[i].1.id()).collect());
        self.hashed += hashed.len();
        for (&i, id) in unhashed.iter().zip(hashed) {
            ids[i] = Some(id);
        }
        let ids: Vec<[u8; 16]> = ids.into_iter().map(|id| id.expect("every item has an id")).collect();
        if let Some(e) = old.take_if(|e| e.content == Content::Ids(ids_hash(&ids)) && e.results.len() == n) {
            // An entry of the first format, for this very batch: kept in the new one.
            self.reused += n;
            let entry = Entry { content: Content::Items(content), ids, runs, results: e.results };
            self.keep(memo, &key, &entry);
            return Ok(entry.results);
        }
        if let Some(e) = old {
            let by_id: HashMap<[u8; 16], usize> = e.ids.iter().enumerate().map(|(i, id)| (*id, i)).collect();
            for &i in &unhashed {
                if let Some(&j) = by_id.get(&ids[i]) {
                    results[i] = Some(e.results[j].clone());
                }
            }
        }
        let todo: Vec<usize> = (0..n).filter(|&i| results[i].is_none()).collect();
        self.reused += n - todo.len();
        self.processed += todo.len();
        for (i, r) in compute(pool, todo, &f)? {
            results[i] = Some(r);
        }
        let results: Vec<R> = results.into_iter().map(|r| r.expect("every item has a result")).collect();
        let entry = Entry { content: Content::Items(content), ids, runs, results };
        self.keep(memo, &key, &entry);
        Ok(entry.results)
    }

    fn keep<R: Serialize + DeserializeOwned>(&self, memo: &dyn Memo, key: &MemoKey, entry: &Entry<R>) {
        // A hint: entries are checked on read, and a lost one costs only
        // processing its batch again, not a wait for the disk per batch.
        if let Err(e) = memo.put_hint(key, &entry.encode()) {
            tracing::warn!("cannot keep per-record results for the next run: {e}");
        }
    }

    /// One line for the stage log: how much was reused.
    pub fn summary(&self) -> String {
        format!("records processed: {}, reused from earlier runs: {}", self.processed, self.reused)
    }
}

fn compute<R: Send>(
    pool: &rayon::ThreadPool,
    todo: Vec<usize>,
    f: &(impl Fn(usize) -> Result<R, StageFailure> + Sync + Send),
) -> Result<Vec<(usize, R)>, StageFailure> {
    let done: Vec<Result<R, StageFailure>> = pool.install(|| todo.par_iter().map(|&i| f(i)).collect());
    todo.into_iter().zip(done).map(|(i, r)| r.map(|r| (i, r))).collect()
}

/// The hash of a batch's item ids: the content hash of [`ENTRY_MAGIC_V1`] entries.
fn ids_hash(ids: &[[u8; 16]]) -> [u8; 32] {
    let mut h = blake3::Hasher::new();
    h.update(b"ids\0");
    ids.iter().for_each(|id| _ = h.update(id));
    *h.finalize().as_bytes()
}

/// What an entry's content hash covers.
#[derive(Debug, PartialEq, Eq)]
enum Content {
    /// The items' framed bytes ([`Batch::content`]).
    Items([u8; 32]),
    /// Their ids ([`ids_hash`]), in entries of the earlier format.
    Ids([u8; 32]),
}

/// A run of a batch's items ([`RUN_AVG`]) and the hash of its bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Run {
    start: usize,
    len: usize,
    /// [`Batch::content_of`] the run's items.
    hash: [u8; 32],
}

impl Run {
    /// The runs of `items`, in order, hashed on `pool`.
    fn all_of(items: &[(usize, Item)], pool: &rayon::ThreadPool) -> Vec<Run> {
        let ends: Vec<bool> = pool.install(|| items.par_iter().map(|(_, it)| ends_a_run(it)).collect());
        let mut bounds = Vec::new();
        let mut start = 0;
        for (i, end) in ends.into_iter().enumerate() {
            if end || i + 1 - start >= RUN_MAX || i + 1 == items.len() {
                bounds.push((start, i + 1 - start));
                start = i + 1;
            }
        }
        pool.install(|| {
            bounds
                .into_par_iter()
                .map(|(start, len)| Run { start, len, hash: Batch::content_of(&items[start..start + len]) })
                .collect()
        })
    }
}

/// Whether `item` ends a run ([`RUN_AVG`]).
fn ends_a_run(item: &Item) -> bool {
    (twox_hash::XxHash3_64::oneshot(item.parts().1) >> 32).is_multiple_of(RUN_AVG)
}

/// A batch's memo entry: content hash, item ids, its runs, results.
struct Entry<R> {
    content: Content,
    ids: Vec<[u8; 16]>,
    /// Empty in entries of the earlier formats.
    runs: Vec<Run>,
    results: Vec<R>,
}

impl<R: Serialize + DeserializeOwned> Entry<R> {
    /// `magic, content hash, n, n ids, [run count, (len u32, hash) per run], results`:
    /// the runs, and results as MessagePack rather than JSON, only in the
    /// current format (first-format entries, kept for tests, have neither).
    fn encode(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(56 + self.ids.len() * 40 + self.runs.len() * 36);
        let (magic, content) = match &self.content {
            Content::Items(c) => (ENTRY_MAGIC, c),
            Content::Ids(c) => (ENTRY_MAGIC_V1, c),
        };
        b.extend_from_slice(magic);
        b.extend_from_slice(content);
        b.extend_from_slice(&(self.ids.len() as u64).to_le_bytes());
        self.ids.iter().for_each(|id| b.extend_from_slice(id));
        if magic == ENTRY_MAGIC {
            b.extend_from_slice(&(self.runs.len() as u64).to_le_bytes());
            for r in &self.runs {
                b.extend_from_slice(&(r.len as u32).to_le_bytes());
                b.extend_from_slice(&r.hash);
            }
            // MessagePack with field names: as self-describing as JSON (so
            // fields skipped or added since read back), about half the
            // bytes and twice as fast to read back.
            rmp_serde::encode::write_named(&mut b, &self.results).expect("results serialise");
        } else {
            serde_json::to_writer(&mut b, &self.results).expect("results serialise");
        }
        b
    }

    /// `None` for anything malformed: an entry is only ever a hint.
    fn decode(b: &[u8]) -> Option<Self> {
        let (magic, rest) = b.split_at_checked(8)?;
        let hash: [u8; 32] = rest.get(..32)?.try_into().ok()?;
        let content = match magic {
            m if m == ENTRY_MAGIC || m == ENTRY_MAGIC_V2 => Content::Items(hash),
            m if m == ENTRY_MAGIC_V1 => Content::Ids(hash),
            _ => return None,
        };
        let n = u64::from_le_bytes(rest.get(32..40)?.try_into().ok()?) as usize;
        let ids_end = 40usize.checked_add(n.checked_mul(16)?)?;
        let ids = rest.get(40..ids_end)?.chunks_exact(16).map(|c| c.try_into().expect("16")).collect();
        let (runs, results): (Vec<Run>, Vec<R>) = if magic == ENTRY_MAGIC {
            let (runs, at) = decode_runs(rest, ids_end, n)?;
            // Nesting capped as serde_json caps it: a hostile entry is a
            // miss, not a stack overflow.
            let mut de = rmp_serde::Deserializer::from_read_ref(rest.get(at..)?);
            de.set_max_depth(128);
            (runs, Vec::<R>::deserialize(&mut de).ok()?)
        } else {
            (Vec::new(), serde_json::from_slice(rest.get(ids_end..)?).ok()?)
        };
        (results.len() == n).then_some(Entry { content, ids, runs, results })
    }
}

/// The run table at `at` in `rest` (a count, then a length and a hash per
/// run) and where it ends; `None` unless the runs cover the `n` items
/// exactly, none of them empty.
fn decode_runs(rest: &[u8], mut at: usize, n: usize) -> Option<(Vec<Run>, usize)> {
    let count = u64::from_le_bytes(rest.get(at..at.checked_add(8)?)?.try_into().ok()?) as usize;
    at += 8;
    let table = rest.get(at..at.checked_add(count.checked_mul(36)?)?)?;
    let mut runs = Vec::with_capacity(count);
    let mut start = 0usize;
    for r in table.chunks_exact(36) {
        let len = u32::from_le_bytes(r[..4].try_into().expect("4")) as usize;
        runs.push(Run { start, len, hash: r[4..].try_into().expect("32") });
        start = start.checked_add(len)?;
    }
    (start == n && runs.iter().all(|r| r.len > 0)).then_some((runs, at + table.len()))
}

/// For each kind's tests: an incremental run equals a full run.
#[cfg(any(test, feature = "testkit"))]
pub mod testing {
    use dvx_stage_api::{MemoryMemo, TypedStage};
    use serde_json::Value;

    use crate::testkit::{run_with_memo, Run};

    /// Lines `from..to` of [`incremental_line`].
    pub fn lines(from: usize, to: usize) -> Vec<String> {
        (from..to).map(incremental_line).collect()
    }

    /// A line of the incremental checks: categories, spaced and compact JSON,
    /// scores, some records failing rules or schema.
    pub fn incremental_line(i: usize) -> String {
        let cat = ["a", "b", "c"][i % 3];
        let word = if i.is_multiple_of(4) { "bad" } else { "good" };
        let score = (i * 37 % 100) as f64 / 100.0;
        if i.is_multiple_of(5) {
            format!("{{\"category\": \"{cat}\", \"instruction\": \"task {i} é?\", \"output\": \"{word} answer {i}\", \"score\": {score}}}")
        } else if i.is_multiple_of(11) {
            format!(r#"{{"category":"{cat}","instruction":"task {i}","score":"high"}}"#)
        } else {
            format!(r#"{{"category":"{cat}","instruction":"task {i}","output":"{word} answer {i}","score":{score}}}"#)
        }
    }

    /// The `records processed: N` figure of a log.
    pub fn processed(r: &Run) -> usize {
        let line = r.log.lines().find(|l| l.starts_with("records processed: ")).unwrap_or_else(|| panic!("{}", r.log));
        line["records processed: ".len()..].split(',').next().unwrap().parse().unwrap()
    }

    /// An entry of today's format as dvx wrote it before entries held runs
    /// and binary results (the second format: results as JSON).
    pub(super) fn as_v2(value: &[u8]) -> Vec<u8> {
        let e = super::Entry::<serde_json::Value>::decode(value).expect("an entry");
        let super::Content::Items(content) = e.content else { panic!("an entry of today's format") };
        let mut b = super::ENTRY_MAGIC_V2.to_vec();
        b.extend_from_slice(&content);
        b.extend_from_slice(&(e.ids.len() as u64).to_le_bytes());
        e.ids.iter().for_each(|id| b.extend_from_slice(id));
        serde_json::to_writer(&mut b, &e.results).expect("JSON");
        b
    }

    /// A memo that keeps entries as an earlier version of a kind wrote
    /// them (JSON results, see [`as_v2`]): `strip` (a per-item field added
    /// since) cut out of every value.
    struct Stripping<'a>(&'a MemoryMemo, &'static str, std::sync::atomic::AtomicUsize);

    impl dvx_stage_api::Memo for Stripping<'_> {
        fn get(&self, key: &dvx_stage_api::MemoKey) -> Option<Vec<u8>> {
            self.0.get(key)
        }
        fn put(&self, key: &dvx_stage_api::MemoKey, value: &[u8]) -> Result<(), String> {
            let strip = self.1.as_bytes();
            let value = &as_v2(value);
            let (mut v, mut at) = (Vec::with_capacity(value.len()), 0);
            while at < value.len() {
                if value[at..].starts_with(strip) {
                    at += strip.len();
                    self.2.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                } else {
                    v.push(value[at]);
                    at += 1;
                }
            }
            self.0.put(key, &v)
        }
    }

    /// Runs `kind` over `lines` with entries written without the per-item
    /// field `strip` (as an earlier version kept them), then after an append
    /// of `more` with the current entries: the re-run reuses every earlier
    /// record and writes the bytes of a full run.
    pub fn assert_reuses_entries_without<T: TypedStage>(
        kind: impl Fn() -> T,
        mut lines: Vec<String>,
        more: Vec<String>,
        outs: &[&str],
        params: Value,
        strip: &'static str,
    ) {
        let memo = MemoryMemo::default();
        let text = |lines: &[String]| lines.iter().map(|l| format!("{l}\n")).collect::<String>();
        let old = Stripping(&memo, strip, Default::default());
        let first = run_with_memo(kind(), &[&text(&lines)], outs, params.clone(), 2, &old).unwrap();
        assert_eq!(processed(&first), lines.len());
        assert!(old.2.into_inner() > 0, "no entry held `{strip}`");
        let n = more.len();
        lines.extend(more);
        let inc = run_with_memo(kind(), &[&text(&lines)], outs, params.clone(), 2, &memo).unwrap();
        let full = run_with_memo(kind(), &[&text(&lines)], outs, params, 2, &MemoryMemo::default()).unwrap();
        assert_eq!(processed(&inc), n, "{}", inc.log);
        for i in 0..outs.len() {
            assert!(inc.text(i) == full.text(i), "outs[{i}] differs from a full run");
        }
        assert_eq!(inc.metrics, full.metrics);
    }

    /// Runs `kind` over `lines` through one memo, then after an append of
    /// `more`, a deletion in the middle and an edit of one line (to `edit`),
    /// and checks that each re-run processes only the new or changed lines
    /// and writes the bytes and metrics of a full run without a memo.
    pub fn assert_incremental<T: TypedStage>(
        kind: impl Fn() -> T,
        mut lines: Vec<String>,
        more: Vec<String>,
        edit: String,
        outs: &[&str],
        params: Value,
    ) {
        let memo = MemoryMemo::default();
        let step = |lines: &[String], what: &str, expect: usize| {
            let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
            let inc = run_with_memo(kind(), &[&text], outs, params.clone(), 2, &memo).unwrap();
            let full = run_with_memo(kind(), &[&text], outs, params.clone(), 2, &MemoryMemo::default()).unwrap();
            assert_eq!(processed(&inc), expect, "{what}: {}", inc.log);
            for i in 0..outs.len() {
                assert!(inc.text(i) == full.text(i), "{what}: outs[{i}] differs from a full run");
            }
            assert_eq!(inc.metrics, full.metrics, "{what}");
        };
        step(&lines, "first run", lines.len());
        step(&lines, "no change", 0);
        let n = more.len();
        lines.extend(more);
        step(&lines, "append", n);
        lines.remove(lines.len() / 2);
        step(&lines, "delete in the middle", 0);
        let at = lines.len() / 3;
        lines[at] = edit;
        step(&lines, "edit one record", 1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dvx_stage_api::{Memo, MemoryMemo};
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn write(dir: &Path, lines: &[String]) -> std::path::PathBuf {
        let p = dir.join("in.jsonl");
        std::fs::write(&p, lines.iter().map(|l| format!("{l}\n")).collect::<String>()).unwrap();
        p
    }

    /// Runs a "length of the line" kind over `path`; returns results and how many were computed.
    fn run(path: &Path, memo: &dyn Memo) -> (Vec<usize>, usize) {
        let (out, processed, _) = run_hashing(path, memo);
        (out, processed)
    }

    /// [`run`], and how many items were hashed one by one.
    fn run_hashing(path: &Path, memo: &dyn Memo) -> (Vec<usize>, usize, usize) {
        let pool = crate::support::pool(2).unwrap();
        let mut reuse = Reuse::new(memo, "test", 1, &serde_json::json!({}), true);
        let calls = AtomicUsize::new(0);
        let mut batches = Batches::open(path).unwrap();
        let mut out = Vec::new();
        while let Some(b) = batches.next_batch().unwrap() {
            let r = reuse
                .results(&b, &pool, |i| {
                    calls.fetch_add(1, Ordering::Relaxed);
                    Ok(b.items[i].1.text().unwrap().len())
                })
                .unwrap();
            out.extend(r);
        }
        assert_eq!(reuse.processed, calls.load(Ordering::Relaxed));
        (out, reuse.processed, reuse.hashed)
    }

    #[test]
    fn a_plain_jsonl_file_scanned_in_blocks_gives_the_readers_batches() {
        // The same bytes as a plain file (scanned a block at a time) and
        // gzipped (through the record reader): the same items, line
        // numbers, unreadable reasons, anchors and content hashes (but the
        // first anchor: a file's name starts its first batch).
        let dir = tempfile::tempdir().unwrap();
        let mut bytes = b"\xef\xbb\xbf{\"n\":0}\r\n\n".to_vec();
        for i in 1..6000 {
            match i % 1000 {
                7 => bytes.extend_from_slice(b"{\"bad\": \"\xff\"}\n"),
                8 => bytes.extend_from_slice(b"   \n"),
                9 => bytes.extend_from_slice(format!("{{\"n\": {i}}}\r\n").as_bytes()),
                _ => bytes.extend_from_slice(format!("{{\"n\":{i},\"t\":\"{}\"}}\n", "é".repeat(i % 50)).as_bytes()),
            }
        }
        bytes.extend_from_slice(b"{\"last\":true}");
        std::fs::write(dir.path().join("in.jsonl"), &bytes).unwrap();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut gz, &bytes).unwrap();
        std::fs::write(dir.path().join("in.jsonl.gz"), gz.finish().unwrap()).unwrap();
        let batches = |path: &Path| {
            let mut b = Batches::open(path).unwrap();
            let mut out = Vec::new();
            while let Some(batch) = b.next_batch().unwrap() {
                let items: Vec<(usize, Result<String, String>)> = batch
                    .items
                    .iter()
                    .map(|(at, it)| (*at, it.text().map(str::to_string).map_err(str::to_string)))
                    .collect();
                out.push((items, batch.anchor, batch.content));
            }
            out
        };
        let mut scanned = batches(&dir.path().join("in.jsonl"));
        let read = batches(&dir.path().join("in.jsonl.gz"));
        assert!(Batches::open(&dir.path().join("in.jsonl")).unwrap().from_scan);
        assert!(!Batches::open(&dir.path().join("in.jsonl.gz")).unwrap().from_scan);
        assert!(scanned.len() > 2, "{} batches", scanned.len());
        assert_ne!(scanned[0].1, read[0].1);
        scanned[0].1 = read[0].1;
        assert!(scanned == read);
        let unreadable = scanned.iter().flat_map(|b| &b.0).filter(|(_, t)| t.is_err()).count();
        assert_eq!(unreadable, 6);
        // A line read from a plain UTF-8 file says where its text lies in it.
        let clean: Vec<u8> =
            bytes.split(|b| *b == b'\n').filter(|l| !l.contains(&0xff)).collect::<Vec<_>>().join(&b'\n');
        std::fs::write(dir.path().join("clean.jsonl"), &clean).unwrap();
        let mut b = Batches::open(&dir.path().join("clean.jsonl")).unwrap();
        let mut placed = 0;
        while let Some(batch) = b.next_batch().unwrap() {
            for (_, it) in &batch.items {
                let (at, t) = (it.offset().expect("placed") as usize, it.text().unwrap());
                assert_eq!(&clean[at..at + t.len()], t.as_bytes());
                placed += 1;
            }
        }
        assert_eq!(placed, 1 + 5999 - 6 - 6 + 1, "every line but the blank ones");
        // The second pass finds the same records both ways too.
        let items: Vec<bool> = scanned.iter().flat_map(|b| &b.0).map(|(_, t)| t.is_ok()).collect();
        let is_rec: Vec<bool> = items.iter().enumerate().map(|(i, ok)| *ok && i % 3 != 1).collect();
        let second = |path: &Path| {
            let mut out = Vec::new();
            for_each_record(path, &is_rec, |n, t| Ok(out.push((n, t.to_string())))).unwrap();
            out
        };
        let plain = second(&dir.path().join("in.jsonl"));
        assert_eq!(plain.len(), is_rec.iter().filter(|r| **r).count());
        assert_eq!(plain, second(&dir.path().join("in.jsonl.gz")));
        assert_eq!(plain[0].1, r#"{"n":0}"#);
    }

    #[test]
    fn the_content_hash_tells_items_apart_but_not_how_they_were_read() {
        let block = Arc::new(LineBlock { text: "{\"a\":1}\n{\"b\":2}\r\n{\"c\":3}\n".to_string(), at: 0 });
        let line = |at: std::ops::Range<usize>| Item::Line(block.clone(), at);
        let text = |t: &str| Item::Text(t.to_string());
        let (a, b, c) = (r#"{"a":1}"#, r#"{"b":2}"#, r#"{"c":3}"#);
        let lines = [(1, line(0..7)), (2, line(8..15)), (3, line(17..24))];
        let texts = [(1, text(a)), (2, text(b)), (3, text(c))];
        let mixed = [(1, line(0..7)), (2, text(b)), (3, line(17..24))];
        let want = Batch::content_of(&texts);
        assert_eq!(Batch::content_of(&lines), want);
        assert_eq!(Batch::content_of(&mixed), want);
        let joined = [(1, text(&format!("{a}{b}"))), (3, text(c))];
        let fewer = [(1, text(a)), (2, text(b))];
        let unreadable = [(1, text(a)), (2, Item::Unreadable(b.to_string())), (3, text(c))];
        let moved = [(1, text(a)), (2, text(&format!("{b}\n{c}"))), (3, text(""))];
        for other in [&joined[..], &fewer, &unreadable, &moved] {
            assert_ne!(Batch::content_of(other), want);
        }
    }

    #[test]
    fn only_new_and_changed_items_are_processed() {
        let dir = tempfile::tempdir().unwrap();
        let mut lines: Vec<String> = (0..20_000).map(|i| format!("{{\"n\":{i}}}")).collect();
        let p = write(dir.path(), &lines);
        let memo = MemoryMemo::default();
        let (full, processed) = run(&p, &memo);
        assert_eq!((full.len(), processed), (20_000, 20_000));
        assert!(memo.len() > 3, "several batches: {}", memo.len());
        assert_eq!(run(&p, &memo).1, 0, "no-op re-run processes nothing");
        lines.extend((0..500).map(|i| format!("{{\"new\":{i}}}")));
        let p = write(dir.path(), &lines);
        let (appended, processed) = run(&p, &memo);
        assert_eq!(processed, 500);
        assert_eq!(appended, lines.iter().map(String::len).collect::<Vec<_>>());
        lines[7_000] = "{\"edited\":true}".into();
        lines.remove(12_345);
        let p = write(dir.path(), &lines);
        let (edited, processed) = run(&p, &memo);
        assert_eq!(processed, 1);
        assert_eq!(edited, lines.iter().map(String::len).collect::<Vec<_>>());
    }

    #[test]
    fn a_line_ending_two_batches_does_not_make_them_share_an_entry() {
        let dir = tempfile::tempdir().unwrap();
        // Find a line that ends a batch, then repeat the whole block: the
        // same line ends two batches.
        let block: Vec<String> = (0..6000).map(|i| format!("{{\"n\":{i}}}")).collect();
        let lines: Vec<String> = block.iter().chain(&block).cloned().collect();
        let p = write(dir.path(), &lines);
        let memo = MemoryMemo::default();
        assert_eq!(run(&p, &memo).1, 12_000);
        assert_eq!(run(&p, &memo).1, 0, "an unchanged input reuses everything");
    }

    /// Keeps every entry as `.1` rewrites it: as an earlier dvx wrote it.
    struct Rewriting<'a>(&'a MemoryMemo, fn(&mut Vec<u8>));

    impl Memo for Rewriting<'_> {
        fn get(&self, key: &dvx_stage_api::MemoKey) -> Option<Vec<u8>> {
            self.0.get(key)
        }
        fn put(&self, key: &dvx_stage_api::MemoKey, value: &[u8]) -> Result<(), String> {
            let mut v = value.to_vec();
            (self.1)(&mut v);
            self.0.put(key, &v)
        }
    }

    /// An entry in the first format, as a memo written before the content
    /// hash covered the items' bytes holds it.
    fn as_v1(v: &mut Vec<u8>) {
        assert!(v.starts_with(ENTRY_MAGIC));
        let mut e = Entry::<serde_json::Value>::decode(v).unwrap();
        e.content = Content::Ids(ids_hash(&e.ids));
        *v = e.encode();
        assert!(v.starts_with(ENTRY_MAGIC_V1));
    }

    /// An entry in the second format: no runs.
    fn as_v2(v: &mut Vec<u8>) {
        *v = testing::as_v2(v);
    }

    #[test]
    fn entries_of_the_earlier_format_are_reused_and_rewritten() {
        let dir = tempfile::tempdir().unwrap();
        let mut lines: Vec<String> = (0..9_000).map(|i| format!("{{\"n\":{i}}}")).collect();
        let p = write(dir.path(), &lines);
        let memo = MemoryMemo::default();
        let (full, processed) = run(&p, &Rewriting(&memo, as_v1));
        assert_eq!((full.len(), processed), (9_000, 9_000));
        let rewrites = CountPuts(&memo, AtomicUsize::new(0));
        assert_eq!(run(&p, &rewrites), (full, 0), "old entries replay");
        assert_eq!(rewrites.1.load(Ordering::Relaxed), memo.len(), "each is rewritten in the new format");
        let again = CountPuts(&memo, AtomicUsize::new(0));
        assert_eq!(run(&p, &again).1, 0);
        assert_eq!(again.1.load(Ordering::Relaxed), 0, "new-format entries replay as they are");
        lines.push("{\"new\":1}".into());
        let p = write(dir.path(), &lines);
        assert_eq!(run(&p, &memo).1, 1, "reuse by item id");
    }

    #[test]
    fn a_changed_batch_hashes_only_the_items_of_its_changed_runs() {
        let dir = tempfile::tempdir().unwrap();
        let mut lines: Vec<String> =
            (0..30_000).map(|i| format!("{{\"n\":{i},\"t\":\"{}\"}}", "x".repeat(i % 90))).collect();
        let p = write(dir.path(), &lines);
        let memo = MemoryMemo::default();
        let (_, processed, hashed) = run_hashing(&p, &memo);
        assert_eq!((processed, hashed), (30_000, 30_000), "a first run hashes every item");
        // Records replaced all over the file, as a re-sampling upstream does:
        // every batch changes, a few runs in each.
        for at in (500..30_000).step_by(1_000) {
            lines[at] = format!("{{\"replaced\":{at}}}");
        }
        let p = write(dir.path(), &lines);
        let (out, processed, hashed) = run_hashing(&p, &memo);
        assert_eq!(processed, 30);
        assert_eq!(out, lines.iter().map(String::len).collect::<Vec<_>>());
        assert!(hashed < 30 * 4 * RUN_AVG as usize, "{hashed} items hashed one by one");
        assert_eq!(run_hashing(&p, &memo), (out, 0, 0), "and then it replays");
    }

    #[test]
    fn entries_without_runs_are_reused_by_item_id_and_rewritten_when_their_batch_changes() {
        let dir = tempfile::tempdir().unwrap();
        let mut lines: Vec<String> = (0..9_000).map(|i| format!("{{\"n\":{i}}}")).collect();
        let p = write(dir.path(), &lines);
        let memo = MemoryMemo::default();
        run(&p, &Rewriting(&memo, as_v2));
        let puts = CountPuts(&memo, AtomicUsize::new(0));
        assert_eq!(run(&p, &puts).1, 0, "they replay");
        assert_eq!(puts.1.load(Ordering::Relaxed), 0, "as they are");
        lines[4_000] = "{\"edited\":1}".into();
        let p = write(dir.path(), &lines);
        let puts = CountPuts(&memo, AtomicUsize::new(0));
        assert_eq!(run(&p, &puts).1, 1, "the edited item alone is processed");
        assert_eq!(puts.1.load(Ordering::Relaxed), 1, "its batch's entry is rewritten, with runs");
        assert_eq!(run_hashing(&p, &memo).2, 0);
    }

    /// An entry with another content hash, as dvx kept it before the hash
    /// left out the frame copy (`items\0`, each item framed).
    fn with_other_content_hash(v: &mut Vec<u8>) {
        let other = blake3::hash(&v[8..40]);
        v[8..40].copy_from_slice(other.as_bytes());
    }

    #[test]
    fn entries_whose_content_hash_was_framed_otherwise_are_reused_by_item_id() {
        let dir = tempfile::tempdir().unwrap();
        let lines: Vec<String> = (0..9_000).map(|i| format!("{{\"n\":{i}}}")).collect();
        let p = write(dir.path(), &lines);
        let memo = MemoryMemo::default();
        let (full, processed) = run(&p, &Rewriting(&memo, with_other_content_hash));
        assert_eq!((full.len(), processed), (9_000, 9_000));
        let rewrites = CountPuts(&memo, AtomicUsize::new(0));
        assert_eq!(run(&p, &rewrites), (full.clone(), 0), "nothing processed again");
        assert_eq!(rewrites.1.load(Ordering::Relaxed), memo.len(), "each entry is rewritten with today's hash");
        let again = CountPuts(&memo, AtomicUsize::new(0));
        assert_eq!(run(&p, &again), (full, 0));
        assert_eq!(again.1.load(Ordering::Relaxed), 0, "and then replays as it is");
    }

    /// Takes hints only: a durable `put` fails the test.
    struct HintsOnly<'a>(&'a MemoryMemo, AtomicUsize);

    impl Memo for HintsOnly<'_> {
        fn get(&self, key: &dvx_stage_api::MemoKey) -> Option<Vec<u8>> {
            self.0.get(key)
        }
        fn put(&self, _key: &dvx_stage_api::MemoKey, _value: &[u8]) -> Result<(), String> {
            panic!("per-record results were kept durably (a wait for the disk per batch)")
        }
        fn put_hint(&self, key: &dvx_stage_api::MemoKey, value: &[u8]) -> Result<(), String> {
            self.1.fetch_add(1, Ordering::Relaxed);
            self.0.put(key, value)
        }
    }

    #[test]
    fn results_are_kept_as_hints() {
        let dir = tempfile::tempdir().unwrap();
        let lines: Vec<String> = (0..9_000).map(|i| format!("{{\"n\":{i}}}")).collect();
        let p = write(dir.path(), &lines);
        let memo = MemoryMemo::default();
        let hints = HintsOnly(&memo, AtomicUsize::new(0));
        assert_eq!(run(&p, &hints).1, 9_000);
        assert!(hints.1.load(Ordering::Relaxed) > 0);
        assert_eq!(run(&p, &memo).1, 0, "the hints are reused");
    }

    /// Counts the entries written through it.
    struct CountPuts<'a>(&'a MemoryMemo, AtomicUsize);

    impl Memo for CountPuts<'_> {
        fn get(&self, key: &dvx_stage_api::MemoKey) -> Option<Vec<u8>> {
            self.0.get(key)
        }
        fn put(&self, key: &dvx_stage_api::MemoKey, value: &[u8]) -> Result<(), String> {
            assert!(value.starts_with(ENTRY_MAGIC));
            self.1.fetch_add(1, Ordering::Relaxed);
            self.0.put(key, value)
        }
    }

    #[test]
    fn damaged_entries_are_misses() {
        assert!(Entry::<u8>::decode(b"dvxrb02\nshort").is_none());
        let run = Run { start: 0, len: 1, hash: [3; 32] };
        let e =
            Entry { content: Content::Items([1; 32]), ids: vec![[2; 16]], runs: vec![run.clone()], results: vec![7u8] };
        let mut b = e.encode();
        let back = Entry::<u8>::decode(&b).unwrap();
        assert_eq!((back.results, back.runs), (vec![7], vec![run]));
        b.truncate(b.len() - 1);
        assert!(Entry::<u8>::decode(&b).is_none());
        // Results nested past any sane depth are a miss, not a stack overflow.
        let mut deep = e.encode();
        let results_at = deep.len() - rmp_serde::to_vec_named(&vec![7u8]).unwrap().len();
        deep.truncate(results_at);
        deep.push(0x91); // the results: an array of one item, nested 100,000 deep
        deep.extend(std::iter::repeat_n(0x91, 100_000));
        deep.push(0x07);
        assert!(Entry::<serde_json::Value>::decode(&deep).is_none());
        // Runs that do not cover the items exactly are refused.
        for runs in [vec![], vec![Run { start: 0, len: 2, hash: [3; 32] }]] {
            let e = Entry { content: Content::Items([1; 32]), ids: vec![[2; 16]], runs, results: vec![7u8] };
            assert!(Entry::<u8>::decode(&e.encode()).is_none());
        }
    }
}
