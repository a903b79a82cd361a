//! Records written as Parquet, one pass over their text where it can be.
//!
//! Parquet needs one schema for the whole file, and the schema is inferred
//! from every record (`infer.rs`). Most files settle on their schema in
//! their first records, so the sink holds the first [`LEARN_RECORDS`]
//! records (or [`LEARN_BYTES`] of text), infers their schema, then decodes
//! each record straight into the file while every later record leaves the
//! inferred schema as it is. Should a later record change it (a new field,
//! a wider type), the rows written so far go back to JSON text in a spool,
//! the rest of the records follow them there, and the spool is decoded
//! with the final schema when the writer finishes. Either way the file
//! holds the bytes one decode of all records with the final schema gives:
//! rows decoded earlier conform to that schema, and their JSON text decodes
//! to the same values.
//!
//! Fixed settings make the bytes reproducible: Snappy compression,
//! [`PARQUET_ROW_GROUP`] rows per row group, batches of [`ENCODE_BATCH`]
//! rows, and `created_by` = `dvx` (no library version, no timestamps).

use std::io::{BufReader, BufWriter, Seek, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_json::reader::Decoder;
use arrow_schema::Schema;
use dvx_stage_api::StageFailure;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;
use tempfile::NamedTempFile;

use crate::flat::{FlatRows, Takes};
use crate::infer::SchemaInference;

/// Rows per Parquet row group: what a reader holds in memory at once.
pub const PARQUET_ROW_GROUP: usize = 65_536;

/// Rows decoded at once, and so the rows of each write to the encoder.
const ENCODE_BATCH: usize = 8192;

/// Records held before the schema is taken as known…
const LEARN_RECORDS: usize = 1024;
/// …or this much of their text, whichever comes first.
const LEARN_BYTES: usize = 8 << 20;

const BUF: usize = 1 << 20;

enum State {
    /// The first records, held until their schema is known.
    Learning { texts: Vec<String>, bytes: usize },
    /// Decoding records straight into the file, while the schema inferred
    /// at `generation` holds.
    Streaming { rows: Box<Rows>, generation: u64 },
    /// The schema changed while streaming: JSON text, decoded at finish.
    Spooled(BufWriter<NamedTempFile>),
}

/// Records being decoded with one schema into a Parquet file.
struct Rows {
    decoder: Decoder,
    /// Set when the schema is flat: rows are built here, and `decoder`
    /// decodes only the records `flat` does not take, one at a time.
    flat: Option<FlatRows>,
    writer: ArrowWriter<BufWriter<NamedTempFile>>,
}

/// The Parquet form of one out.
pub(crate) struct ParquetSink {
    out: PathBuf,
    dir: PathBuf,
    inference: SchemaInference,
    state: State,
}

impl ParquetSink {
    /// A sink writing `out`, its temporary files next to it in `dir`.
    pub fn new(out: &Path, dir: &Path) -> Self {
        ParquetSink {
            out: out.to_path_buf(),
            dir: dir.to_path_buf(),
            inference: SchemaInference::default(),
            state: State::Learning { texts: Vec::new(), bytes: 0 },
        }
    }

    /// Take one record given as its JSON text (one object, any layout).
    pub fn put(&mut self, text: &str) -> Result<(), StageFailure> {
        if let State::Streaming { rows, .. } = &mut self.state {
            // A record the flat decoder takes leaves the schema as inferred.
            if rows.take(text).map_err(|e| failure(&self.out, &e))? {
                return Ok(());
            }
        }
        self.inference.add(text).map_err(|e| failure(&self.out, &e))?;
        match &mut self.state {
            State::Learning { texts, bytes } => {
                texts.push(text.to_string());
                *bytes += text.len();
                if texts.len() >= LEARN_RECORDS || *bytes >= LEARN_BYTES {
                    let texts = std::mem::take(texts);
                    self.start_streaming(texts)?;
                }
                Ok(())
            }
            State::Streaming { generation, .. } if *generation != self.inference.generation() => {
                self.spool_what_was_written()?;
                self.put_spooled(text)
            }
            State::Streaming { rows, .. } => rows.decode_general(text).map_err(|e| failure(&self.out, &e)),
            State::Spooled(_) => self.put_spooled(text),
        }
    }

    /// Write the file.
    pub fn finish(mut self) -> Result<(), StageFailure> {
        if let State::Learning { texts, .. } = &mut self.state {
            let texts = std::mem::take(texts);
            self.start_streaming(texts)?;
        }
        let out = self.out.clone();
        let fail = |e: &dyn std::fmt::Display| failure(&out, e);
        let io = |e: &dyn std::fmt::Display| StageFailure::new(format!("cannot write {}: {e}", out.display()));
        let file = match self.state {
            State::Learning { .. } => unreachable!("streaming started above"),
            State::Streaming { rows, .. } => rows.finish().map_err(|e| fail(&e))?,
            State::Spooled(spool) => {
                let mut spool = spool.into_inner().map_err(|e| io(&e.into_error()))?;
                spool.rewind().map_err(|e| io(&e))?;
                let mut rows = Rows::new(self.inference.schema(), None, &self.dir).map_err(|e| fail(&e))?;
                let reader = BufReader::with_capacity(BUF, spool.as_file());
                rows.decode_all(reader).map_err(|e| fail(&e))?;
                rows.finish().map_err(|e| fail(&e))?
            }
        };
        file.persist(&out).map_err(|e| io(&e.error))?;
        Ok(())
    }

    /// Begin the file with the schema of the records so far, and decode them.
    fn start_streaming(&mut self, texts: Vec<String>) -> Result<(), StageFailure> {
        let fail = |e: &dyn std::fmt::Display| failure(&self.out, e);
        let mut rows =
            Rows::new(self.inference.schema(), self.inference.flat_takes(), &self.dir).map_err(|e| fail(&e))?;
        for t in &texts {
            rows.decode(t).map_err(|e| fail(&e))?;
        }
        self.state = State::Streaming { rows: Box::new(rows), generation: self.inference.generation() };
        Ok(())
    }

    /// The schema changed: the rows in the file so far go back to JSON text
    /// in a spool, which the rest of the records follow.
    fn spool_what_was_written(&mut self) -> Result<(), StageFailure> {
        let State::Streaming { rows, .. } = std::mem::replace(&mut self.state, State::Learning { texts: vec![], bytes: 0 })
        else {
            unreachable!("called while streaming");
        };
        let fail = |e: &dyn std::fmt::Display| failure(&self.out, e);
        let io = |e: &dyn std::fmt::Display| StageFailure::new(format!("cannot write {}: {e}", self.out.display()));
        tracing::debug!(out = %self.out.display(), "a record changed the Parquet schema: re-encoding at the end");
        let written = rows.finish().map_err(|e| fail(&e))?;
        let spool = tempfile::Builder::new().prefix(".dvx-spool-").tempfile_in(&self.dir).map_err(|e| io(&e))?;
        let mut json = arrow_json::LineDelimitedWriter::new(BufWriter::with_capacity(BUF, spool));
        let batches = ParquetRecordBatchReaderBuilder::try_new(written.reopen().map_err(|e| io(&e))?)
            .and_then(|b| b.with_batch_size(ENCODE_BATCH).build())
            .map_err(|e| fail(&e))?;
        for batch in batches {
            json.write(&batch.map_err(|e| fail(&e))?).map_err(|e| fail(&e))?;
        }
        json.finish().map_err(|e| fail(&e))?;
        self.state = State::Spooled(json.into_inner());
        Ok(())
    }

    fn put_spooled(&mut self, text: &str) -> Result<(), StageFailure> {
        let State::Spooled(w) = &mut self.state else { unreachable!("spooling") };
        // The spool is JSONL: a record on one line.
        let line = match memchr::memchr(b'\n', text.as_bytes()) {
            None => std::borrow::Cow::Borrowed(text),
            Some(_) => crate::compact(text)
                .ok_or_else(|| failure(&self.out, &"a record is not JSON"))?
                .into(),
        };
        w.write_all(line.as_bytes())
            .and_then(|()| w.write_all(b"\n"))
            .map_err(|e| StageFailure::new(format!("cannot write {}: {e}", self.out.display())))
    }
}

impl Rows {
    /// Rows of `schema`; `takes` (see `flat.rs`) decodes a flat one by a
    /// byte scan where it can.
    fn new(schema: Schema, takes: Option<Vec<Takes>>, dir: &Path) -> Result<Rows, Box<dyn std::error::Error + Send + Sync>> {
        let schema = Arc::new(schema);
        let flat = takes.and_then(|takes| FlatRows::new(schema.clone(), takes));
        let decoder = arrow_json::ReaderBuilder::new(schema.clone())
            .with_batch_size(ENCODE_BATCH)
            .with_strict_mode(true)
            .build_decoder()?;
        let props = WriterProperties::builder()
            .set_compression(Compression::SNAPPY)
            .set_max_row_group_row_count(Some(PARQUET_ROW_GROUP))
            .set_created_by("dvx".into())
            .build();
        // The mode `File::create` gives (a temporary file's own is 0600).
        let mut file = tempfile::Builder::new();
        #[cfg(unix)]
        file.permissions(std::os::unix::fs::PermissionsExt::from_mode(0o666));
        let file = file.prefix(".dvx-parquet-").tempfile_in(dir)?;
        let writer = ArrowWriter::try_new(BufWriter::with_capacity(BUF, file), schema, Some(props))?;
        Ok(Rows { decoder, flat, writer })
    }

    /// Rows decoded and not yet encoded.
    fn held(&self) -> usize {
        self.flat.as_ref().map_or(self.decoder.len(), FlatRows::len)
    }

    /// Add a record if the flat decoder takes it (it then leaves the
    /// schema as inferred); false otherwise, or if the schema is not flat.
    fn take(&mut self, text: &str) -> Result<bool, Box<dyn std::error::Error + Send + Sync>> {
        if self.flat.is_none() {
            return Ok(false);
        }
        if self.held() >= ENCODE_BATCH {
            self.flush()?;
        }
        Ok(self.flat.as_mut().is_some_and(|flat| flat.take(text)))
    }

    /// Decode one record's text (a whole JSON object).
    fn decode(&mut self, text: &str) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        if self.take(text)? {
            return Ok(());
        }
        self.decode_general(text)
    }

    /// Decode one record's text with arrow-json.
    fn decode_general(&mut self, text: &str) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        if self.held() >= ENCODE_BATCH {
            self.flush()?;
        }
        let read = self.decoder.decode(text.as_bytes())?;
        debug_assert_eq!(read, text.len(), "one record fits a batch with room");
        if let Some(flat) = &mut self.flat {
            let row = self.decoder.flush()?.ok_or("a record decoded to no row")?;
            flat.append(&row)?;
        }
        Ok(())
    }

    /// Decode every record of a JSONL stream (with arrow-json alone: rows
    /// made without `takes`).
    fn decode_all(&mut self, mut reader: impl std::io::BufRead) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        debug_assert!(self.flat.is_none(), "a flat decoder's rows would go out of order");
        loop {
            let buf = reader.fill_buf()?;
            if buf.is_empty() {
                return Ok(());
            }
            let n = buf.len();
            let read = self.decoder.decode(buf)?;
            reader.consume(read);
            if read < n {
                self.flush()?;
            }
        }
    }

    fn flush(&mut self) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        let batch = match &mut self.flat {
            Some(flat) if flat.len() == 0 => None,
            Some(flat) => Some(flat.finish()?),
            None => self.decoder.flush()?,
        };
        if let Some(batch) = batch {
            self.writer.write(&batch)?;
        }
        Ok(())
    }

    /// Encode what is left; the finished file.
    fn finish(mut self) -> Result<NamedTempFile, Box<dyn std::error::Error + Send + Sync>> {
        self.flush()?;
        Ok(self.writer.into_inner()?.into_inner().map_err(|e| e.into_error())?)
    }
}

/// A record that Parquet cannot hold, as the out's failure.
pub(crate) fn failure(out: &Path, e: &dyn std::fmt::Display) -> StageFailure {
    StageFailure::bad_input(format!(
        "cannot write {} as Parquet: {e} (Parquet holds one type per field; write .jsonl to keep mixed types)",
        out.display()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What the sink must write: every record decoded once with the schema
    /// inferred from them all.
    fn one_decode(texts: &[String], dir: &Path) -> Vec<u8> {
        try_one_decode(texts, dir).unwrap()
    }

    fn try_one_decode(texts: &[String], dir: &Path) -> Result<Vec<u8>, String> {
        let mut inference = SchemaInference::default();
        texts.iter().try_for_each(|t| inference.add(t))?;
        let mut rows = Rows::new(inference.schema(), None, dir).map_err(|e| e.to_string())?;
        let jsonl: String = texts.iter().map(|t| format!("{t}\n")).collect();
        rows.decode_all(std::io::Cursor::new(jsonl)).map_err(|e| e.to_string())?;
        Ok(std::fs::read(rows.finish().map_err(|e| e.to_string())?.path()).unwrap())
    }

    fn sink_writes(texts: &[String], dir: &Path) -> Result<Vec<u8>, StageFailure> {
        let out = dir.join("out.parquet");
        let mut sink = ParquetSink::new(&out, dir);
        for t in texts {
            sink.put(t)?;
        }
        sink.finish()?;
        let bytes = std::fs::read(&out).unwrap();
        let left: Vec<_> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(left, vec![std::ffi::OsString::from("out.parquet")], "no temporary file is left");
        std::fs::remove_file(&out).unwrap();
        Ok(bytes)
    }

    fn record(i: usize) -> String {
        format!(r#"{{"id": {i}, "text": "record {i} \"quoted\"", "score": {}.5, "tags": ["a", "b{i}"]}}"#, i % 7)
    }

    #[test]
    fn one_pass_or_spooled_the_file_is_one_decode_with_the_final_schema() {
        let dir = tempfile::tempdir().unwrap();
        // (name, records, index of a record that changes the schema and how)
        let n = 3 * ENCODE_BATCH + 17;
        let cases: Vec<(&str, Vec<String>)> = vec![
            ("no change", (0..n).map(record).collect()),
            ("fewer than are learned", (0..10).map(record).collect()),
            ("none", vec![]),
            ("a new field after streaming began", {
                let mut v: Vec<String> = (0..n).map(record).collect();
                v[2 * ENCODE_BATCH + 5] = r#"{"id": 1, "late": {"x": true}}"#.into();
                v
            }),
            ("an integer field that turns float", {
                let mut v: Vec<String> = (0..n).map(|i| format!(r#"{{"n": {i}}}"#)).collect();
                v[LEARN_RECORDS + 3] = r#"{"n": 2.25}"#.into();
                v
            }),
            ("a field first seen only as null", {
                let mut v: Vec<String> = (0..n).map(|i| format!(r#"{{"n": {i}, "maybe": null}}"#)).collect();
                v[n - 1] = r#"{"n": 0, "maybe": ["late", null]}"#.into();
                v
            }),
        ];
        for (name, texts) in cases {
            assert!(sink_writes(&texts, dir.path()).unwrap() == one_decode(&texts, dir.path()), "{name}");
        }
    }

    /// A flat record: strings with and without escapes, numbers, a
    /// boolean, nulls, a field left out, keys in another order.
    fn flat(i: usize) -> String {
        match i % 5 {
            0 => format!(r#"{{"text": "line {i}\nnext \u00e9 \ud83d\ude00", "score": {}.25, "n": {i}, "ok": true}}"#, i % 9),
            1 => format!(r#"{{"n": -{i}, "text": "plain {i}", "ok": false, "score": 1e-3}}"#),
            2 => r#"{"text": null, "score": null, "n": null, "ok": null}"#.to_string(),
            3 => format!(r#"{{"text": "no score", "n": {i}}}"#),
            _ => format!(r#"{{"text":"{i}","score":-0.5,"n":0,"ok":true}}"#),
        }
    }

    #[test]
    fn flat_records_are_written_as_one_decode_writes_them() {
        let dir = tempfile::tempdir().unwrap();
        let n = 3 * ENCODE_BATCH + 17;
        let cases: Vec<(&str, Vec<String>)> = vec![
            ("no change", (0..n).map(flat).collect()),
            ("fewer than are learned", (0..10).map(flat).collect()),
            ("records the scan leaves to arrow-json", {
                let mut v: Vec<String> = (0..n).map(flat).collect();
                v[ENCODE_BATCH - 1] = r#"{"text": "repeated", "text": "key"}"#.into();
                v[ENCODE_BATCH] = r#"{"text": "a long integer part", "score": 1234567890123456789.5}"#.into();
                v[2 * ENCODE_BATCH + 1] = r#"{"\u0074ext": "an escaped key"}"#.into();
                v
            }),
            ("an integer in a column of fractions", {
                let mut v: Vec<String> = (0..n).map(|i| format!(r#"{{"score": {i}.5}}"#)).collect();
                v[2 * ENCODE_BATCH] = r#"{"score": 2}"#.into();
                v
            }),
            ("a new field, and records laid out on several lines", {
                let mut v: Vec<String> = (0..n).map(flat).collect();
                v[LEARN_RECORDS - 1] = "{\"text\":\n \"lines\",\r\n\"n\": 1\n}".into();
                v[LEARN_RECORDS + 1] = r#"{"late": "field"}"#.into();
                v[LEARN_RECORDS + 2] = "{\"text\":\n \"lines\",\n\"late\": \"again\"}".into();
                v
            }),
        ];
        for (name, texts) in cases {
            assert!(sink_writes(&texts, dir.path()).unwrap() == one_decode(&texts, dir.path()), "{name}");
        }
        // Random flat files: now and then a value of another kind, a new
        // (escaped) key, or one the sink must refuse.
        let mut next = crate::test_rng::below(0xD1B5_4A32_D192_ED03);
        let mut written = 0;
        for round in 0..9 {
            let kinds = [0, 2, 1, 3].map(|k| if next(5) == 0 { next(4) as u8 } else { k });
            let noise = [50, 1 << 40, 1 << 40][round % 3];
            let texts: Vec<String> = (0..[40, LEARN_RECORDS + 40, ENCODE_BATCH + 40][round % 3])
                .map(|_| {
                    let mut t = String::new();
                    crate::test_rng::flat_record(&mut next, kinds, noise, &mut t);
                    t
                })
                .collect();
            match (sink_writes(&texts, dir.path()), try_one_decode(&texts, dir.path())) {
                (Ok(ours), Ok(one)) => {
                    assert!(ours == one, "round {round}");
                    written += 1;
                }
                (Err(_), Err(_)) => {}
                (ours, one) => panic!("round {round}: sink {:?}, one decode {:?}", ours.map(|_| ()), one.map(|_| ())),
            }
        }
        assert!(written >= 3, "{written} of 9 files written");
    }

    #[test]
    fn a_late_record_parquet_cannot_hold_names_its_field() {
        let dir = tempfile::tempdir().unwrap();
        let mut texts: Vec<String> = (0..LEARN_RECORDS + 10).map(|i| format!(r#"{{"n": {i}}}"#)).collect();
        texts.push(r#"{"n": "text"}"#.into());
        let err = sink_writes(&texts, dir.path()).unwrap_err().message;
        assert!(err.contains("as Parquet") && err.contains("'n'"), "{err}");
    }
}
