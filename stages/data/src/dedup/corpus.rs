//! Every record dedup looks at, stored compactly: per record its place,
//! score and exact key; per distinct text (the first record with it, its
//! "representative") its LSH band hashes (see [`BandTable`]). Signatures are
//! reduced to band hashes at once and never kept. An input text's shingle
//! hashes are not kept either (they are most of a record's size): once the
//! buckets are known, [`Corpus::fill_shingles`] reads again, from the input,
//! only the texts that share a bucket with another, whose Jaccard may be
//! checked. Reference texts keep their shingles. Shingles past a memory
//! budget go to disk ([`ShingleStore`]).

use std::collections::hash_map::Entry as MapEntry;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

use dvx_stage_api::StageFailure;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::bands::BandTable;
use super::lsh::band_hashes;
use super::pairs::{pair_key, KnownPairs};
use super::shingle::jaccard;
use super::shingles::ShingleStore;
use super::sigfile::Reader;
use super::sketch::{read_chunks, Sketcher};
use crate::reuse::{Batch, Batches, Reuse};
use std::borrow::Cow;

/// No slot: the record is not a representative.
const NONE: u32 = u32::MAX;
/// No known place in the file.
const NO_OFFSET: u64 = u64::MAX;

/// The records of a dedup run: inputs first (ids `0..n_input`), then references.
pub struct Corpus {
    /// Source names (dep paths relative to the pipeline folder).
    pub sources: Vec<String>,
    /// Per record: index into `sources`.
    pub source: Vec<u32>,
    /// Per record: 1-based line.
    pub line: Vec<u64>,
    /// Per input record read as a line of a plain JSONL file: where its
    /// text starts in it ([`NO_OFFSET`] otherwise), so a candidate's text is
    /// read again by itself rather than by reading the whole input again.
    offset: Vec<u64>,
    /// Per record: score (`-inf` when none).
    pub score: Vec<f64>,
    /// Per record: exact-match key.
    pub exact: Vec<u128>,
    /// Per record: the first record with the same exact key (maybe itself).
    pub rep: Vec<u32>,
    /// Number of input (non-reference) records.
    pub n_input: usize,
    /// Input records whose normalised text is empty.
    pub empty_inputs: usize,
    inputs_done: bool,
    /// Per record: its slot when it is a sketched representative, else `NONE`.
    slot: Vec<u32>,
    /// Per slot: the record.
    pub sketched: Vec<u32>,
    /// Per slot: its handle in `shingles`; `NONE` for an input text until
    /// it is read again (see [`Corpus::fill_shingles`]).
    shingle_of: Vec<u32>,
    shingles: ShingleStore,
    /// Band hashes, `bands` per slot.
    pub band_hash: BandTable,
    /// LSH bands (0 when not sketching).
    pub bands: usize,
    rows: usize,
    seen: HashMap<u128, u32, foldhash::fast::FixedState>,
    /// Similarities of text pairs found by earlier runs, and those this run used.
    pub pairs: KnownPairs,
}

impl Corpus {
    /// An empty corpus; with `bands == 0` no sketches are made (exact mode).
    /// Band hashes past their memory budget are spilled into `spill_dir`.
    pub fn new(bands: usize, rows: usize, spill_dir: &Path) -> Self {
        Corpus {
            sources: Vec::new(),
            source: Vec::new(),
            line: Vec::new(),
            offset: Vec::new(),
            score: Vec::new(),
            exact: Vec::new(),
            rep: Vec::new(),
            n_input: 0,
            empty_inputs: 0,
            inputs_done: false,
            slot: Vec::new(),
            sketched: Vec::new(),
            shingle_of: Vec::new(),
            shingles: ShingleStore::new(spill_dir),
            band_hash: BandTable::new(bands, spill_dir),
            bands,
            rows,
            seen: HashMap::default(),
            pairs: KnownPairs::default(),
        }
    }

    /// Number of records.
    pub fn len(&self) -> usize {
        self.rep.len()
    }

    /// Whether record `id` came from a reference.
    pub fn is_ref(&self, id: u32) -> bool {
        id as usize >= self.n_input
    }

    /// Shingle hashes of a sketched record.
    pub fn shingles_of(&self, id: u32) -> Result<Cow<'_, [u64]>, StageFailure> {
        let slot = self.slot[self.rep[id as usize] as usize] as usize;
        match self.shingle_of[slot] {
            NONE => Err(StageFailure::new(format!("dedup: the shingles of record {id} were never read"))),
            h => self.shingles.get(h),
        }
    }

    /// The exact Jaccard similarity of two sketched records' texts: found by
    /// an earlier run, else from their shingles (which must be at hand).
    pub fn similarity(&self, a: u32, b: u32) -> Result<f64, StageFailure> {
        let key = pair_key(self.exact[a as usize], self.exact[b as usize]);
        let j = match self.pairs.get(key) {
            Some(j) => j,
            None => jaccard(&self.shingles_of(a)?, &self.shingles_of(b)?),
        };
        self.pairs.note(key, j);
        Ok(j)
    }

    /// Whether an earlier run found the similarity of `a` and `b`.
    pub fn knows_similarity(&self, a: u32, b: u32) -> bool {
        self.pairs.get(pair_key(self.exact[a as usize], self.exact[b as usize])).is_some()
    }

    /// Room for `more` records beyond those held: growing a million-record
    /// corpus a record at a time (its map rehashing, its columns copied on
    /// every doubling, each new page faulted in) cost most of a re-run's
    /// replaying of sketches.
    fn reserve(&mut self, more: usize) {
        self.source.reserve(more);
        self.line.reserve(more);
        self.offset.reserve(more);
        self.score.reserve(more);
        self.exact.reserve(more);
        self.rep.reserve(more);
        self.slot.reserve(more);
        self.seen.reserve(more);
        if self.bands > 0 {
            self.sketched.reserve(more);
            self.shingle_of.reserve(more);
            self.band_hash.reserve(more);
        }
    }

    /// Add a record; returns its id and whether its text is new.
    fn push(&mut self, source: u32, line: u64, score: f64, exact: u128) -> (u32, bool) {
        let id = u32::try_from(self.rep.len()).ok().filter(|&i| i != NONE).expect("fewer than 2^32 records");
        self.source.push(source);
        self.line.push(line);
        self.score.push(score);
        self.exact.push(exact);
        self.slot.push(NONE);
        let (rep, new) = match self.seen.entry(exact) {
            MapEntry::Occupied(e) => (*e.get(), false),
            MapEntry::Vacant(e) => (*e.insert(id), true),
        };
        self.rep.push(rep);
        (id, new)
    }

    fn add_sketch(&mut self, id: u32, shingles: &[u64], sig: &[u32]) -> Result<(), StageFailure> {
        self.add_slot(id, Some(shingles))?;
        let mut hashes = Vec::with_capacity(self.bands);
        band_hashes(sig, self.bands, self.rows, &mut hashes);
        self.band_hash.push(&hashes)
    }

    /// Make `id` a sketched representative (its band hashes pushed by the caller).
    fn add_slot(&mut self, id: u32, shingles: Option<&[u64]>) -> Result<(), StageFailure> {
        self.slot[id as usize] = self.sketched.len() as u32;
        self.sketched.push(id);
        let handle = match shingles {
            Some(sh) => self.shingles.add(sh)?,
            None => NONE,
        };
        self.shingle_of.push(handle);
        Ok(())
    }

    fn add_source(&mut self, name: String) -> u32 {
        self.sources.push(name);
        (self.sources.len() - 1) as u32
    }

    /// Read an input file (any format `dvx-records` reads) through `reuse`:
    /// records an earlier run saw are replayed from the memo, the rest are
    /// parsed and sketched. Either way a text's shingles are not kept; they
    /// are read again only when it meets a candidate (see
    /// [`Corpus::fill_shingles`]).
    pub fn add_input(
        &mut self,
        sk: &Sketcher,
        path: &Path,
        name: String,
        reuse: &mut Reuse<'_>,
        pool: &rayon::ThreadPool,
    ) -> Result<(), StageFailure> {
        let source = self.add_source(name);
        let (bands, rows) = (self.bands, self.rows);
        let mut batches = Batches::open(path)?;
        let size = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
        let mut first = true;
        while let Some(batch) = batches.next_batch()? {
            if std::mem::take(&mut first) {
                self.reserve(records_in(size, &batch));
            }
            let seen = reuse.results(&batch, pool, |i| Seen::of(sk, &batch, i, bands, rows).map(Packed))?;
            for ((at, item), Packed(s)) in batch.items.iter().zip(seen) {
                sk.mark(s.fields);
                if s.empty {
                    self.empty_inputs += 1;
                }
                let (id, new) = self.push(source, *at as u64, f64::from_bits(s.score), s.exact());
                self.offset.resize(id as usize, NO_OFFSET);
                self.offset.push(item.offset().unwrap_or(NO_OFFSET));
                if new && bands > 0 {
                    if s.bands.len() != bands {
                        return Err(StageFailure::new("a replayed dedup sketch has the wrong number of bands"));
                    }
                    self.add_slot(id, None)?;
                    self.band_hash.push(&s.bands)?;
                }
            }
        }
        Ok(())
    }

    /// Whether record `id`'s text lacks its shingles.
    pub fn lacks(&self, id: u32) -> bool {
        let slot = self.slot[self.rep[id as usize] as usize];
        slot != NONE && self.shingle_of[slot as usize] == NONE
    }

    /// Read again the shingles of the input records `ids` (representatives
    /// without them, sorted by id) from `inputs` (the input deps, in the
    /// order they were added): each text by itself at its offset where it
    /// was read as a line of a plain JSONL file (always, for such an input:
    /// an unreadable line ends the stage before), else in one streaming pass
    /// in input order that parses only those records, in parallel a chunk
    /// at a time. `done(n)` is told of every `n` records found.
    pub fn fill_shingles(
        &mut self,
        sk: &Sketcher,
        inputs: &[PathBuf],
        ids: &[u32],
        done: &dyn Fn(u64),
    ) -> Result<(), StageFailure> {
        debug_assert!(ids.windows(2).all(|w| w[0] < w[1]));
        // Ids are given in input order, so each input's wanted records are a
        // run of `ids`, in line order.
        let mut next = 0usize;
        for (k, input) in inputs.iter().enumerate() {
            let from = next;
            while next < ids.len() && self.source[ids[next] as usize] as usize == k {
                next += 1;
            }
            let mut wanted = ids[from..next].iter().copied().peekable();
            if wanted.peek().is_none() {
                continue;
            }
            if ids[from..next].iter().all(|&id| self.offset.get(id as usize).is_some_and(|&o| o != NO_OFFSET)) {
                self.fill_at_offsets(sk, input, &ids[from..next], done)?;
                continue;
            }
            read_chunks(input, |file, chunk| {
                let found = chunk
                    .iter()
                    .filter_map(|(line, text)| Some((self.next_wanted(&mut wanted, *line)?, *line as usize, &**text)))
                    .collect();
                self.shingle_found(sk, file, found, done)
            })?;
        }
        match ids.iter().find(|&&id| self.lacks(id)) {
            Some(&id) => Err(StageFailure::new(format!(
                "{} changed while dedup was running (line {} is gone)",
                inputs[self.source[id as usize] as usize].display(),
                self.line[id as usize]
            ))),
            None => Ok(()),
        }
    }

    /// The wanted record on `line` of the input being read, if any, taken
    /// off `wanted` (ids in line order) with any wanted before it.
    fn next_wanted(&self, wanted: &mut std::iter::Peekable<impl Iterator<Item = u32>>, line: u64) -> Option<u32> {
        while let Some(&id) = wanted.peek() {
            if self.line[id as usize] > line {
                return None;
            }
            wanted.next();
            if self.line[id as usize] == line {
                return Some(id);
            }
        }
        None
    }

    /// [`Corpus::fill_shingles`] for records whose place in a plain JSONL
    /// input is known: each text is read by itself.
    fn fill_at_offsets(
        &mut self,
        sk: &Sketcher,
        input: &Path,
        ids: &[u32],
        done: &dyn Fn(u64),
    ) -> Result<(), StageFailure> {
        let file = std::fs::File::open(input)
            .map_err(|e| StageFailure::new(format!("cannot open {}: {e}", input.display())))?;
        let source = dvx_records::Source { path: input.to_path_buf(), unit: dvx_records::Unit::Line };
        for some in ids.chunks(4096) {
            let texts = some
                .iter()
                .map(|&id| Ok((id, read_line_at(&file, self.offset[id as usize], input)?)))
                .collect::<Result<Vec<(u32, String)>, StageFailure>>()?;
            let found = texts.iter().map(|(id, text)| (*id, self.line[*id as usize] as usize, text.as_str())).collect();
            self.shingle_found(sk, &source, found, done)?;
        }
        Ok(())
    }

    /// Shingle the wanted texts one read found, `(id, line, text)`, in
    /// parallel, and keep their shingles. A text whose exact key is not
    /// the one its record was sketched with means the input changed.
    fn shingle_found(
        &mut self,
        sk: &Sketcher,
        file: &dvx_records::Source,
        found: Vec<(u32, usize, &str)>,
        done: &dyn Fn(u64),
    ) -> Result<(), StageFailure> {
        let n = found.len() as u64;
        let shingled: Vec<Result<(u32, Vec<u64>), StageFailure>> = found
            .into_par_iter()
            .map(|(id, line, text)| {
                let (_, record) = file.parse_str(line, text)?;
                let norm = sk.normalised(&record);
                if super::shingle::exact_key(&norm) != self.exact[id as usize] {
                    return Err(StageFailure::new(format!(
                        "{} changed while dedup was running (line {line} is not what it was)",
                        file.path.display()
                    )));
                }
                Ok((id, sk.shingles(&norm)))
            })
            .collect();
        for s in shingled {
            let (id, shingles) = s?;
            let slot = self.slot[id as usize] as usize;
            self.shingle_of[slot] = self.shingles.add(&shingles)?;
        }
        done(n);
        Ok(())
    }

    /// Read a JSONL file (inputs must all come before references).
    pub fn add_jsonl(&mut self, sk: &Sketcher, path: &Path, name: String) -> Result<(), StageFailure> {
        let source = self.add_source(name);
        read_chunks(path, |file, chunk| {
            let parsed = sk.parse_chunk(file, &chunk)?;
            drop(chunk);
            let mut fresh = Vec::new();
            for p in &parsed {
                if p.norm.is_empty() && !self.inputs_done {
                    self.empty_inputs += 1;
                }
                let (id, new) = self.push(source, p.line, p.score, p.exact);
                if new && self.bands > 0 {
                    fresh.push((id, p.norm.as_str()));
                }
            }
            let norms: Vec<&str> = fresh.iter().map(|(_, n)| *n).collect();
            for ((id, _), s) in fresh.iter().zip(sk.sketch_all(&norms)) {
                self.add_sketch(*id, &s.shingles, &s.sig)?;
            }
            Ok(())
        })
    }

    /// Read a signature file (as a reference).
    pub fn add_signatures(&mut self, mut reader: Reader) -> Result<(), StageFailure> {
        let base = self.sources.len() as u32;
        for name in std::mem::take(&mut reader.header.sources) {
            self.add_source(name);
        }
        // Keep the header's source count for bounds checks in next_entry.
        reader.header.sources = self.sources[base as usize..].to_vec();
        while let Some(e) = reader.next_entry()? {
            let (id, new) = self.push(base + e.source, e.line, f64::NEG_INFINITY, e.exact);
            if new && self.bands > 0 {
                self.add_sketch(id, &e.shingles, &e.sig)?;
            }
        }
        Ok(())
    }

    /// Mark the records read so far as the inputs.
    pub fn end_inputs(&mut self) {
        self.n_input = self.len();
        self.inputs_done = true;
    }

    /// All records are in: make the band hashes readable, and drop the
    /// exact-key map that only adding records needs.
    pub fn seal_bands(&mut self) -> Result<(), StageFailure> {
        self.seen = HashMap::default();
        self.band_hash.seal()
    }

    /// More shingles are needed after all (`fill_shingles` again, then seal).
    pub fn unseal_shingles(&mut self) {
        self.shingles.unseal()
    }

    /// All shingles needed are in: make them readable.
    pub fn seal_shingles(&mut self) -> Result<(), StageFailure> {
        self.shingles.seal()
    }

    /// Whether band hashes and shingles went to disk.
    pub fn spilled(&self) -> (bool, bool) {
        (self.band_hash.spilled(), self.shingles.spilled())
    }
}

/// What dedup keeps of one input record, in memory and across runs (through
/// the memo): everything but the shingles, which are large and needed only
/// for the few records that meet a candidate.
///
/// The memo keeps it [`Packed`].
#[derive(Clone, Debug, PartialEq)]
pub struct Seen {
    /// The exact key, as two halves.
    exact: [u64; 2],
    /// The score's bits (`-inf` when none).
    score: u64,
    /// Watched fields present.
    fields: u64,
    /// The normalised text is empty.
    empty: bool,
    /// LSH band hashes (none in exact mode); inline for up to 16 bands, so
    /// replaying a million records allocates nothing per record.
    bands: smallvec::SmallVec<[u64; 16]>,
}

impl Seen {
    /// Parse and sketch item `i` of `batch` (`bands == 0`: no sketch).
    fn of(sk: &Sketcher, batch: &Batch, i: usize, bands: usize, rows: usize) -> Result<Seen, StageFailure> {
        let (at, item) = &batch.items[i];
        let text = item.text().map_err(|reason| batch.bad_line(*at, item, reason.to_string()))?;
        let p = sk.parse(&batch.source, *at as u64, text)?;
        let mut s = Seen {
            exact: [(p.exact >> 64) as u64, p.exact as u64],
            score: p.score.to_bits(),
            fields: p.fields,
            empty: p.norm.is_empty(),
            bands: Default::default(),
        };
        if bands > 0 {
            let sketch = sk.sketch(&p.norm);
            let mut hashes = Vec::with_capacity(bands);
            band_hashes(&sketch.sig, bands, rows, &mut hashes);
            s.bands = hashes.into();
        }
        Ok(s)
    }

    fn exact(&self) -> u128 {
        (u128::from(self.exact[0]) << 64) | u128::from(self.exact[1])
    }

    /// Hex of: a flags byte (bit 0: empty), then exact, score, fields and
    /// the band hashes as little-endian u64s.
    fn pack(&self) -> String {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let hex: Vec<u8> =
            self.packed_bytes().iter().flat_map(|b| [HEX[usize::from(b >> 4)], HEX[usize::from(b & 15)]]).collect();
        String::from_utf8(hex).expect("hex is ASCII")
    }

    /// The bytes [`Seen::pack`] writes in hex.
    fn packed_bytes(&self) -> smallvec::SmallVec<[u8; 256]> {
        let mut bytes = smallvec::SmallVec::with_capacity(1 + 8 * (4 + self.bands.len()));
        bytes.push(u8::from(self.empty));
        for v in self.exact.iter().chain([&self.score, &self.fields]).chain(&self.bands) {
            bytes.extend_from_slice(&v.to_le_bytes());
        }
        bytes
    }

    fn unpack(hex: &str) -> Option<Seen> {
        let hex = hex.as_bytes();
        if hex.len() % 2 != 0 {
            return None;
        }
        // One table lookup per hex digit; 0xff marks anything else.
        const fn digits() -> [u8; 256] {
            let mut t = [0xffu8; 256];
            let mut i = 0;
            while i < 10 {
                t[b'0' as usize + i] = i as u8;
                i += 1;
            }
            let mut i = 0;
            while i < 6 {
                t[b'a' as usize + i] = 10 + i as u8;
                i += 1;
            }
            t
        }
        static DIGIT: [u8; 256] = digits();
        let mut bad = 0u8;
        let bytes: smallvec::SmallVec<[u8; 256]> = hex
            .chunks_exact(2)
            .map(|pair| {
                let (hi, lo) = (DIGIT[usize::from(pair[0])], DIGIT[usize::from(pair[1])]);
                bad |= (hi | lo) & 0xf0;
                (hi << 4) | lo
            })
            .collect();
        if bad != 0 {
            return None;
        }
        Seen::from_packed_bytes(&bytes)
    }

    /// The record [`Seen::packed_bytes`] gave these bytes.
    fn from_packed_bytes(bytes: &[u8]) -> Option<Seen> {
        if bytes.len() % 8 != 1 || bytes.len() < 1 + 32 {
            return None;
        }
        let mut words = bytes[1..].chunks_exact(8).map(|w| u64::from_le_bytes(w.try_into().expect("8 bytes")));
        let mut next = || words.next().expect("at least four words");
        let (exact, score, fields) = ([next(), next()], next(), next());
        Some(Seen { exact, score, fields, empty: bytes[0] & 1 == 1, bands: words.collect() })
    }
}

/// A [`Seen`] as the memo keeps it: [`Seen::packed_bytes`], as bytes in a
/// binary entry, in hex in a JSON one (reading a million records' 17
/// numbers each as JSON numbers was most of a re-run's memo time).
#[derive(Clone)]
pub struct Packed(pub Seen);

impl Serialize for Packed {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() {
            s.serialize_str(&self.0.pack())
        } else {
            s.serialize_bytes(&self.0.packed_bytes())
        }
    }
}

impl<'de> Deserialize<'de> for Packed {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Packed, D::Error> {
        d.deserialize_any(Either).map(Packed)
    }
}

/// Visits the packed bytes, or their hex.
struct Either;

impl<'de> serde::de::Visitor<'de> for Either {
    type Value = Seen;
    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a packed dedup record")
    }
    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Seen, E> {
        Seen::unpack(v).ok_or_else(|| E::custom("not a packed dedup record"))
    }
    fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<Seen, E> {
        Seen::from_packed_bytes(v).ok_or_else(|| E::custom("not a packed dedup record"))
    }
}

/// About how many records a plain JSONL file of `size` bytes holds, from
/// the line lengths of its first batch (0 when its items have no place in
/// a file: nothing is reserved then).
fn records_in(size: u64, first: &Batch) -> usize {
    let at = |i: usize| first.items.get(i).and_then(|(_, item)| item.offset());
    match (at(0), first.items.len().checked_sub(1).and_then(at)) {
        (Some(a), Some(b)) if b > a => {
            let per_line = (b - a) as f64 / (first.items.len() - 1) as f64;
            // A little over, so a file of shorter lines further on does not
            // double every column at its very end.
            (size as f64 / per_line * 1.05) as usize
        }
        _ => 0,
    }
}

/// The text of the line whose text starts at `at` in `file`: up to its
/// `\n`, without a `\r` before it.
fn read_line_at(file: &std::fs::File, at: u64, path: &Path) -> Result<String, StageFailure> {
    use std::os::unix::fs::FileExt;
    let mut line = Vec::new();
    let mut buf = vec![0u8; 8192];
    loop {
        let n = match file.read_at(&mut buf, at + line.len() as u64) {
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(StageFailure::new(format!("cannot read {}: {e}", path.display()))),
        };
        if n == 0 {
            break;
        }
        if let Some(end) = buf[..n].iter().position(|&b| b == b'\n') {
            line.extend_from_slice(&buf[..end]);
            break;
        }
        line.extend_from_slice(&buf[..n]);
    }
    if line.last() == Some(&b'\r') {
        line.pop();
    }
    String::from_utf8(line)
        .map_err(|_| StageFailure::new(format!("{} changed while dedup was running", path.display())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_is_read_again_from_where_its_text_starts() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("in.jsonl");
        let long = format!("{{\"t\":\"{}\"}}", "x".repeat(20_000));
        let text = format!("{{\"a\":1}}\r\n{long}\n{{\"b\":\"é\"}}\n{{\"last\":2}}");
        std::fs::write(&path, &text).unwrap();
        let file = std::fs::File::open(&path).unwrap();
        let at = |s: &str| text.find(s).unwrap() as u64;
        assert_eq!(read_line_at(&file, 0, &path).unwrap(), r#"{"a":1}"#, "\\r taken off");
        assert_eq!(read_line_at(&file, at("{\"t\""), &path).unwrap(), long, "longer than one read");
        assert_eq!(read_line_at(&file, at("{\"b\""), &path).unwrap(), r#"{"b":"é"}"#);
        assert_eq!(read_line_at(&file, at("{\"last\""), &path).unwrap(), r#"{"last":2}"#, "no \\n at the end");
        std::fs::write(&path, b"{\"a\":\"\xff\"}\n").unwrap();
        let err = read_line_at(&std::fs::File::open(&path).unwrap(), 0, &path).unwrap_err();
        assert!(err.to_string().contains("changed while dedup was running"), "{err}");
    }

    #[test]
    fn a_packed_record_reads_back_the_same_and_a_damaged_one_not_at_all() {
        let seen = Seen {
            exact: [u64::MAX, 7],
            score: (-2.5f64).to_bits(),
            fields: 5,
            empty: true,
            bands: smallvec::smallvec![1, 2, 3],
        };
        let packed = serde_json::to_string(&Packed(seen.clone())).unwrap();
        assert!(packed.starts_with("\"01ffffffffffffffff07"), "{packed}");
        let back: Packed = serde_json::from_str(&packed).unwrap();
        assert_eq!(back.0, seen);
        // In a binary entry: its bytes, not their hex.
        let binary = rmp_serde::to_vec_named(&Packed(seen.clone())).unwrap();
        assert_eq!(binary.len(), 2 + 1 + 8 * 7);
        let back: Packed = rmp_serde::from_slice(&binary).unwrap();
        assert_eq!(back.0, seen);
        // No bands (exact mode); damaged strings are refused.
        let plain = Seen { bands: Default::default(), ..seen.clone() };
        let back: Packed = serde_json::from_str(&serde_json::to_string(&Packed(plain.clone())).unwrap()).unwrap();
        assert_eq!(back.0.bands, plain.bands);
        // More bands than are held inline.
        let many = Seen { bands: (0..40u64).map(|b| b << 40 | b).collect(), ..seen };
        let back: Packed = serde_json::from_str(&serde_json::to_string(&Packed(many.clone())).unwrap()).unwrap();
        assert_eq!(back.0, many);
        for bad in ["\"\"", "\"0\"", &packed.replace('f', "g"), &format!("{}0\"", &packed[..packed.len() - 1])] {
            assert!(serde_json::from_str::<Packed>(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_records_of_a_plain_jsonl_file_are_estimated_from_its_first_batch() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("in.jsonl");
        let text: String =
            (0..20_000).map(|i| format!("{{\"i\":{i},\"t\":\"{}\"}}\n", "x".repeat(40 + i % 7))).collect();
        std::fs::write(&path, &text).unwrap();
        let batch = Batches::open(&path).unwrap().next_batch().unwrap().unwrap();
        let guess = records_in(text.len() as u64, &batch);
        assert!((20_000..22_000).contains(&guess), "{guess}");
        // Items with no place in a file (other formats): nothing is guessed.
        let one = dir.path().join("one.jsonl");
        std::fs::write(&one, "{\"i\":1}\n").unwrap();
        assert_eq!(records_in(1 << 30, &Batches::open(&one).unwrap().next_batch().unwrap().unwrap()), 0);
    }
}
