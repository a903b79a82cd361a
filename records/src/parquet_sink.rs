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

    /// Take one record given as its JSON text on one line.
    pub fn put(&mut self, text: &str) -> Result<(), StageFailure> {
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
            State::Streaming { rows, .. } => rows.decode(text).map_err(|e| failure(&self.out, &e)),
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
                let mut rows = Rows::new(self.inference.schema(), &self.dir).map_err(|e| fail(&e))?;
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
        let mut rows = Rows::new(self.inference.schema(), &self.dir).map_err(|e| fail(&e))?;
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
        w.write_all(text.as_bytes())
            .and_then(|()| w.write_all(b"\n"))
            .map_err(|e| StageFailure::new(format!("cannot write {}: {e}", self.out.display())))
    }
}

impl Rows {
    fn new(schema: Schema, dir: &Path) -> Result<Rows, Box<dyn std::error::Error + Send + Sync>> {
        let schema = Arc::new(schema);
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
        Ok(Rows { decoder, writer })
    }

    /// Decode one record's text (a whole JSON object).
    fn decode(&mut self, text: &str) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        if self.decoder.len() >= ENCODE_BATCH {
            self.flush()?;
        }
        let read = self.decoder.decode(text.as_bytes())?;
        debug_assert_eq!(read, text.len(), "one record fits a batch with room");
        Ok(())
    }

    /// Decode every record of a JSONL stream.
    fn decode_all(&mut self, mut reader: impl std::io::BufRead) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
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
        if let Some(batch) = self.decoder.flush()? {
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
        let mut inference = SchemaInference::default();
        texts.iter().for_each(|t| inference.add(t).unwrap());
        let mut rows = Rows::new(inference.schema(), dir).unwrap();
        let jsonl: String = texts.iter().map(|t| format!("{t}\n")).collect();
        rows.decode_all(std::io::Cursor::new(jsonl)).unwrap();
        std::fs::read(rows.finish().unwrap().path()).unwrap()
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

    #[test]
    fn a_late_record_parquet_cannot_hold_names_its_field() {
        let dir = tempfile::tempdir().unwrap();
        let mut texts: Vec<String> = (0..LEARN_RECORDS + 10).map(|i| format!(r#"{{"n": {i}}}"#)).collect();
        texts.push(r#"{"n": "text"}"#.into());
        let err = sink_writes(&texts, dir.path()).unwrap_err().message;
        assert!(err.contains("as Parquet") && err.contains("'n'"), "{err}");
    }
}
