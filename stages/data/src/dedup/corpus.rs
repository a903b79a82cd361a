//! Every record dedup looks at, stored compactly: per record its place,
//! score and exact key; per distinct text (the first record with it, its
//! "representative") the shingle hashes and LSH band hashes. Signatures are
//! reduced to band hashes at once and never kept; shingle hashes past a
//! memory budget are spilled to disk (`spill.rs`).

use std::borrow::Cow;
use std::collections::hash_map::Entry as MapEntry;
use std::collections::HashMap;
use std::path::Path;

use dvx_stage_api::StageFailure;

use super::lsh::band_hashes;
use super::sigfile::Reader;
use super::sketch::{read_chunks, Sketcher};
use super::spill::{ShingleStore, Spill};

/// No slot: the record is not a representative.
const NONE: u32 = u32::MAX;

/// The records of a dedup run: inputs first (ids `0..n_input`), then references.
pub struct Corpus {
    /// Source names (dep paths relative to the pipeline folder).
    pub sources: Vec<String>,
    /// Per record: index into `sources`.
    pub source: Vec<u32>,
    /// Per record: 1-based line.
    pub line: Vec<u64>,
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
    /// Per slot: its shingle hashes.
    shingles: ShingleStore,
    /// Band hashes, `bands` per slot.
    pub band_hash: Vec<u64>,
    /// LSH bands (0 when not sketching).
    pub bands: usize,
    rows: usize,
    seen: HashMap<u128, u32>,
}

impl Corpus {
    /// An empty corpus; with `bands == 0` no sketches are made (exact mode).
    /// Shingle hashes past `spill`'s budget go to disk.
    pub fn new(bands: usize, rows: usize, spill: Spill) -> Self {
        Corpus {
            sources: Vec::new(),
            source: Vec::new(),
            line: Vec::new(),
            score: Vec::new(),
            exact: Vec::new(),
            rep: Vec::new(),
            n_input: 0,
            empty_inputs: 0,
            inputs_done: false,
            slot: Vec::new(),
            sketched: Vec::new(),
            shingles: ShingleStore::new(spill),
            band_hash: Vec::new(),
            bands,
            rows,
            seen: HashMap::new(),
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

    /// Shingle hashes of a sketched record (read back from disk when spilled).
    pub fn shingles_of(&self, id: u32) -> Result<Cow<'_, [u64]>, StageFailure> {
        let slot = self.slot[self.rep[id as usize] as usize] as usize;
        self.shingles.get(slot)
    }

    /// Bytes of shingle hashes spilled to disk.
    pub fn spilled_bytes(&self) -> u64 {
        self.shingles.spilled_bytes()
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
        self.slot[id as usize] = self.sketched.len() as u32;
        self.sketched.push(id);
        self.shingles.push(shingles)?;
        band_hashes(sig, self.bands, self.rows, &mut self.band_hash);
        Ok(())
    }

    fn add_source(&mut self, name: String) -> u32 {
        self.sources.push(name);
        (self.sources.len() - 1) as u32
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
}
