//! Writing records in the format the out's extension names.
//!
//! JSONL forms write each record as one compact line, keys in the order
//! they were inserted. `.jsonl.gz` uses gzip level 6 with a zero mtime and
//! no file name in the header; `.jsonl.zst` uses zstd level 3, single
//! threaded: both give the same bytes for the same records.
//!
//! `.parquet` needs one schema for the whole file, so records are spooled
//! as JSONL next to the out while their schema is inferred (arrow-json's
//! rules, see `infer.rs`: integers with floats become doubles, fields in
//! first-seen order, a field missing from a record is null), then the spool
//! is decoded once and encoded a row group at a time. Fixed settings so the bytes are reproducible:
//! Snappy compression, [`PARQUET_ROW_GROUP`] rows per row group, and
//! `created_by` = `dvx` (no library version, no timestamps). A field whose
//! values have two JSON types that do not convert (a string and a number)
//! is an error naming the field: Parquet cannot hold it.

use std::fs::File;
use std::io::{BufReader, BufWriter, Seek, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_schema::Schema;
use dvx_stage_api::StageFailure;
use flate2::write::GzEncoder;
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;

use crate::format::WriteFormat;
use crate::infer::SchemaInference;
use crate::Record;

/// Rows per Parquet row group: what a reader holds in memory at once.
pub const PARQUET_ROW_GROUP: usize = 65_536;

/// Rows arrow-json decodes at once when encoding the spool.
const ENCODE_BATCH: usize = 8192;

enum Sink {
    Jsonl(BufWriter<File>),
    Gz(BufWriter<GzEncoder<File>>),
    Zst(BufWriter<zstd::Encoder<'static, File>>),
    /// JSONL spool and the schema of what it holds, turned into Parquet
    /// at [`RecordWriter::finish`].
    Parquet(BufWriter<tempfile::NamedTempFile>, Box<SchemaInference>),
}

impl Sink {
    /// The JSONL stream of a JSONL sink (plain or compressed).
    fn jsonl(&mut self) -> Option<&mut dyn Write> {
        match self {
            Sink::Jsonl(w) => Some(w),
            Sink::Gz(w) => Some(w),
            Sink::Zst(w) => Some(w),
            Sink::Parquet(..) => None,
        }
    }
}

/// Writes records to one out, in the format its extension names.
pub struct RecordWriter {
    path: PathBuf,
    sink: Sink,
    count: usize,
    /// A line's buffer, kept between records.
    scratch: String,
}

impl RecordWriter {
    /// Create (truncate) `path`, creating parent folders. An extension no
    /// writer supports is an error (see [`WriteFormat::for_path`]).
    pub fn create(path: &Path) -> Result<Self, StageFailure> {
        let format = WriteFormat::for_path(path).map_err(StageFailure::new)?;
        let cannot = |e: &dyn std::fmt::Display| StageFailure::new(format!("cannot create {}: {e}", path.display()));
        let parent = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
        std::fs::create_dir_all(parent).map_err(|e| cannot(&e))?;
        const BUF: usize = 1 << 20;
        let sink = if format == WriteFormat::Parquet {
            let spool = tempfile::Builder::new().prefix(".dvx-spool-").tempfile_in(parent).map_err(|e| cannot(&e))?;
            Sink::Parquet(BufWriter::with_capacity(BUF, spool), Box::default())
        } else {
            let file = File::create(path).map_err(|e| cannot(&e))?;
            match format {
                WriteFormat::Jsonl => Sink::Jsonl(BufWriter::with_capacity(BUF, file)),
                WriteFormat::JsonlGz => {
                    // GzBuilder's header has mtime 0 and no name unless asked.
                    let gz = flate2::GzBuilder::new().write(file, flate2::Compression::new(6));
                    Sink::Gz(BufWriter::with_capacity(BUF, gz))
                }
                WriteFormat::JsonlZst => {
                    let zst = zstd::Encoder::new(file, 3).map_err(|e| cannot(&e))?;
                    Sink::Zst(BufWriter::with_capacity(BUF, zst))
                }
                WriteFormat::Parquet => unreachable!("handled above"),
            }
        };
        Ok(RecordWriter { path: path.to_path_buf(), sink, count: 0, scratch: String::new() })
    }

    /// Append one record.
    pub fn write(&mut self, record: &Record) -> Result<(), StageFailure> {
        let failed =
            |e: &dyn std::fmt::Display| StageFailure::new(format!("cannot write {}: {e}", self.path.display()));
        if let Sink::Parquet(..) = self.sink {
            // The schema is inferred from the text, so it is made first.
            return self.put(&serde_json::to_string(record).map_err(|e| failed(&e))?);
        }
        let out = self.sink.jsonl().expect("not Parquet");
        serde_json::to_writer(&mut *out, record)
            .and_then(|()| out.write_all(b"\n").map_err(serde_json::Error::io))
            .map_err(|e| failed(&e))?;
        self.count += 1;
        Ok(())
    }

    /// Append one record given as its JSON text on one line (a JSONL
    /// input's line kept byte for byte). The caller has parsed it as an
    /// object; Parquet outs re-read it when encoding.
    pub fn write_json_line(&mut self, json: &str) -> Result<(), StageFailure> {
        self.put(json)
    }

    /// Append one record given as JSON object text in any layout (any
    /// spacing, escapes of any kind): JSONL outs get the compact line
    /// `serde_json` writes for the parsed record, without parsing it where
    /// [`crate::compact_into`] can; Parquet outs take a one-line text as it is.
    pub fn write_json_text(&mut self, json: &str) -> Result<(), StageFailure> {
        if matches!(self.sink, Sink::Parquet(..)) && !json.contains('\n') {
            return self.put(json);
        }
        let mut line = std::mem::take(&mut self.scratch);
        line.clear();
        if !crate::compact_into(json, &mut line) {
            line = crate::compact(json).ok_or_else(|| {
                StageFailure::new(format!("cannot write {}: a record is not JSON", self.path.display()))
            })?;
        }
        let put = self.put(&line);
        self.scratch = line;
        put
    }

    /// Write one record's JSON text, on one line, and its newline.
    fn put(&mut self, line: &str) -> Result<(), StageFailure> {
        let out = match &mut self.sink {
            Sink::Parquet(w, schema) => {
                schema.add(line).map_err(|e| parquet_failure(&self.path, &e))?;
                w as &mut dyn Write
            }
            sink => sink.jsonl().expect("not Parquet"),
        };
        out.write_all(line.as_bytes())
            .and_then(|()| out.write_all(b"\n"))
            .map_err(|e| StageFailure::new(format!("cannot write {}: {e}", self.path.display())))?;
        self.count += 1;
        Ok(())
    }

    /// How many records were written.
    pub fn count(&self) -> usize {
        self.count
    }

    /// Finish the file (flush, write trailers, encode Parquet); returns the
    /// number of records. Dropping a writer without finishing leaves the
    /// out incomplete.
    pub fn finish(self) -> Result<usize, StageFailure> {
        let path = self.path;
        let cannot = |e: &dyn std::fmt::Display| StageFailure::new(format!("cannot write {}: {e}", path.display()));
        match self.sink {
            Sink::Jsonl(w) => {
                w.into_inner().map_err(|e| cannot(&e.into_error()))?.sync_data().ok();
            }
            Sink::Gz(w) => {
                w.into_inner().map_err(|e| cannot(&e.into_error()))?.finish().map_err(|e| cannot(&e))?;
            }
            Sink::Zst(w) => {
                w.into_inner().map_err(|e| cannot(&e.into_error()))?.finish().map_err(|e| cannot(&e))?;
            }
            Sink::Parquet(w, schema) => {
                let spool = w.into_inner().map_err(|e| cannot(&e.into_error()))?;
                spool_to_parquet(spool, schema.schema(), &path)?;
            }
        }
        Ok(self.count)
    }
}

/// A record that Parquet cannot hold, as the out's failure.
fn parquet_failure(out: &Path, e: &dyn std::fmt::Display) -> StageFailure {
    StageFailure::bad_input(format!(
        "cannot write {} as Parquet: {e} (Parquet holds one type per field; write .jsonl to keep mixed types)",
        out.display()
    ))
}

/// Encode a JSONL spool of records with this `schema` as the Parquet file
/// `out` (see the module docs).
fn spool_to_parquet(mut spool: tempfile::NamedTempFile, schema: Schema, out: &Path) -> Result<(), StageFailure> {
    let fail = |e: &dyn std::fmt::Display| parquet_failure(out, e);
    let io = |e: &dyn std::fmt::Display| StageFailure::new(format!("cannot write {}: {e}", out.display()));
    let schema = Arc::new(schema);
    spool.rewind().map_err(|e| io(&e))?;
    let rows = arrow_json::ReaderBuilder::new(schema.clone())
        .with_batch_size(ENCODE_BATCH)
        .with_strict_mode(true)
        .build(BufReader::with_capacity(1 << 20, spool.as_file()))
        .map_err(|e| fail(&e))?;
    let props = WriterProperties::builder()
        .set_compression(Compression::SNAPPY)
        .set_max_row_group_row_count(Some(PARQUET_ROW_GROUP))
        .set_created_by("dvx".into())
        .build();
    let file = File::create(out).map_err(|e| io(&e))?;
    let mut writer =
        ArrowWriter::try_new(BufWriter::with_capacity(1 << 20, file), schema, Some(props)).map_err(|e| fail(&e))?;
    for batch in rows {
        writer.write(&batch.map_err(|e| fail(&e))?).map_err(|e| fail(&e))?;
    }
    writer.into_inner().map_err(|e| fail(&e))?.into_inner().map_err(|e| io(&e.into_error()))?;
    Ok(())
}
