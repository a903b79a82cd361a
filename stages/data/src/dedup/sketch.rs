//! Turning records into what dedup compares: the normalised text's exact
//! key, the shingle set and the MinHash signature. Records are read in
//! chunks (any format `dvx-records` reads) and each chunk is processed in
//! parallel, keeping input order.

use std::path::Path;

use dvx_records::{Raw, RecordReader, Source};

use dvx_stage_api::StageFailure;
use rayon::prelude::*;
use serde_json::Value;

use super::minhash::Permutations;
use super::params::SketchSpec;
use super::shingle;
use crate::field_check::FieldsSeen;
use crate::records::{self, Record};

/// Lines handed to the thread pool at once.
const CHUNK_LINES: usize = 16_384;

/// One parsed record: where it is, its score and its normalised text.
pub struct Parsed {
    /// 1-based line number.
    pub line: u64,
    /// The score field's value; `-inf` when the record has none.
    pub score: f64,
    /// The text after the configured normalisation: what is shingled and compared.
    pub norm: String,
    /// Exact-match key of `norm`.
    pub exact: u128,
    /// Which watched fields the record has ([`FieldsSeen::present`]).
    pub fields: u64,
}

/// The near-duplicate view of one text.
pub struct Sketch {
    /// Sorted distinct shingle hashes.
    pub shingles: Vec<u64>,
    /// MinHash signature (`num_perm` values): what the LSH bands are cut from.
    pub sig: Vec<u32>,
}

/// Parses and sketches records for one set of settings.
pub struct Sketcher {
    spec: SketchSpec,
    perms: Permutations,
    sig_len: usize,
    score_field: Option<String>,
    /// The fields the params name, watched for typos.
    fields: FieldsSeen,
}

impl Sketcher {
    /// A sketcher for `spec` computing the first `sig_len` signature
    /// entries; `score_field` is read from records when given.
    pub fn new(spec: SketchSpec, sig_len: usize, score_field: Option<String>) -> Self {
        let perms = Permutations::new(spec.num_perm, spec.seed);
        Sketcher { spec, perms, sig_len, score_field, fields: FieldsSeen::new() }
    }

    /// Watch the records parsed for the fields `fields` names; see
    /// [`Sketcher::check_fields`].
    pub fn watching(mut self, fields: FieldsSeen) -> Self {
        self.fields = fields;
        self
    }

    /// Count a record parsed by an earlier run, with the watched fields in `mask`.
    pub fn mark(&self, mask: u64) {
        self.fields.mark(mask);
    }

    /// Whether [`Parsed::fields`] covers every watched field (else records cannot be replayed).
    pub fn fits_mask(&self) -> bool {
        self.fields.fits_mask()
    }

    /// Fail when a watched field occurs in no record parsed.
    pub fn check_fields(&self) -> Result<(), StageFailure> {
        self.fields.check()
    }

    /// Where the watched records' text came from, for the log.
    pub fn text_report(&self, stage: &str) -> Option<String> {
        self.fields.text_report(stage)
    }

    /// Parse item `line` of `source`.
    pub fn parse(&self, source: &Source, line: u64, text: &str) -> Result<Parsed, StageFailure> {
        let bad = |reason: String| {
            StageFailure::from(dvx_records::BadRecord {
                path: source.path.clone(),
                line: line as usize,
                unit: source.unit,
                text: text.into(),
                reason,
            })
        };
        let (_, record): (usize, Record) =
            source.parse_str(line as usize, text).map_err(|b| dvx_records::BadRecord { text: text.into(), ..b })?;
        self.fields.observe(&record);
        let fields = self.fields.present(&record);
        let score = match &self.score_field {
            None => f64::NEG_INFINITY,
            Some(f) => match records::field(&record, f) {
                None | Some(Value::Null) => f64::NEG_INFINITY,
                Some(Value::Number(n)) => n.as_f64().unwrap_or(f64::NEG_INFINITY),
                Some(Value::String(s)) => match s.trim().parse::<f64>() {
                    Ok(v) if v.is_finite() => v,
                    _ => return Err(bad(format!("score field `{f}` is not a number: {s:?}"))),
                },
                Some(other) => return Err(bad(format!("score field `{f}` is not a number: {other}"))),
            },
        };
        let norm = self.normalised(&record);
        let exact = shingle::exact_key(&norm);
        Ok(Parsed { line, score, norm, exact, fields })
    }

    /// A record's normalised text.
    pub fn normalised(&self, record: &Record) -> String {
        shingle::normalize(&records::record_text(record, &self.spec.fields), &self.spec.normalize)
    }

    /// The shingles of a normalised text (without its signature).
    pub fn shingles(&self, norm: &str) -> Vec<u64> {
        shingle::shingles(norm, &self.spec.shingle)
    }

    /// Shingles and signature of a normalised text.
    pub fn sketch(&self, norm: &str) -> Sketch {
        let shingles = shingle::shingles(norm, &self.spec.shingle);
        let sig = self.perms.signature(&shingles, self.sig_len);
        Sketch { shingles, sig }
    }

    /// Parse a chunk of `(line, text)` in parallel; the first bad line in
    /// input order is the error, whatever the thread count.
    pub fn parse_chunk(&self, source: &Source, chunk: &[(u64, String)]) -> Result<Vec<Parsed>, StageFailure> {
        let results: Vec<_> = chunk.par_iter().map(|(line, text)| self.parse(source, *line, text)).collect();
        results.into_iter().collect()
    }

    /// Sketch many texts in parallel, in order.
    pub fn sketch_all(&self, norms: &[&str]) -> Vec<Sketch> {
        norms.par_iter().map(|n| self.sketch(n)).collect()
    }
}

/// Calls `f` with successive chunks of the records of `path` as
/// `(1-based line or row number, JSON text)`, with the file they come from.
pub fn read_chunks(
    path: &Path,
    mut f: impl FnMut(&Source, Vec<(u64, String)>) -> Result<(), StageFailure>,
) -> Result<(), StageFailure> {
    let mut reader = RecordReader::open(path)?;
    while let Some(chunk) = reader.raw_chunk(CHUNK_LINES)? {
        let source = chunk.source;
        let mut lines = Vec::with_capacity(chunk.items.len());
        for (at, raw) in chunk.items {
            let text = match raw {
                Raw::Text(Ok(text)) => text,
                Raw::Value(v) => v.to_string(),
                Raw::Text(Err(reason)) => {
                    return Err(dvx_records::BadRecord {
                        path: source.path.clone(),
                        line: at,
                        unit: source.unit,
                        text: String::new(),
                        reason,
                    }
                    .into())
                }
            };
            lines.push((at as u64, text));
        }
        f(&source, lines)?;
    }
    Ok(())
}

/// Calls `f` with the JSON text of each record of `path`, in order.
pub fn for_each_line(path: &Path, mut f: impl FnMut(u64, &str) -> Result<(), StageFailure>) -> Result<(), StageFailure> {
    read_chunks(path, |_, chunk| chunk.iter().try_for_each(|(line, text)| f(*line, text)))
}
