//! Writing records in the format the out's extension names.
//!
//! JSONL forms write each record as one compact line, keys in the order
//! they were inserted. `.jsonl.gz` uses gzip level 6 with a zero mtime and
//! no file name in the header; `.jsonl.zst` uses zstd level 3, single
//! threaded: both give the same bytes for the same records.
//!
//! `.parquet` needs one schema for the whole file: see `parquet_sink.rs`
//! for how it is inferred and how the file is made in one pass where it can
//! be, with fixed settings so the bytes are reproducible. A field whose
//! values have two JSON types that do not convert (a string and a number)
//! is an error naming the field: Parquet cannot hold it.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use dvx_stage_api::StageFailure;
use flate2::write::GzEncoder;

use crate::format::WriteFormat;
use crate::parquet_sink::ParquetSink;
use crate::Record;

enum Sink {
    Jsonl(BufWriter<File>),
    Gz(BufWriter<GzEncoder<File>>),
    Zst(BufWriter<zstd::Encoder<'static, File>>),
    Parquet(Box<ParquetSink>),
}

impl Sink {
    /// The JSONL stream of a JSONL sink (plain or compressed).
    fn jsonl(&mut self) -> Option<&mut dyn Write> {
        match self {
            Sink::Jsonl(w) => Some(w),
            Sink::Gz(w) => Some(w),
            Sink::Zst(w) => Some(w),
            Sink::Parquet(_) => None,
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
            Sink::Parquet(Box::new(ParquetSink::new(path, parent)))
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
        if let Sink::Parquet(_) = self.sink {
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
    /// [`crate::compact_into`] can; Parquet outs take the text as it is.
    pub fn write_json_text(&mut self, json: &str) -> Result<(), StageFailure> {
        if matches!(self.sink, Sink::Parquet(_)) {
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
            Sink::Parquet(p) => {
                p.put(line)?;
                self.count += 1;
                return Ok(());
            }
            sink => sink.jsonl().expect("not Parquet"),
        };
        out.write_all(line.as_bytes())
            .and_then(|()| out.write_all(b"\n"))
            .map_err(|e| StageFailure::new(format!("cannot write {}: {e}", self.path.display())))?;
        self.count += 1;
        Ok(())
    }

    /// Append `records` consecutive JSONL lines given as they stand in a
    /// JSONL input, each ending in `\n` (the caller read them as records:
    /// [`crate::ScanLine::whole`] lines): JSONL outs copy the bytes in one
    /// write, Parquet outs take them line by line.
    pub fn write_json_lines(&mut self, lines: &str, records: usize) -> Result<(), StageFailure> {
        debug_assert_eq!(lines.bytes().filter(|&b| b == b'\n').count(), records);
        let out = match &mut self.sink {
            Sink::Parquet(_) => return lines.lines().try_for_each(|l| self.put(l)),
            sink => sink.jsonl().expect("not Parquet"),
        };
        out.write_all(lines.as_bytes())
            .map_err(|e| StageFailure::new(format!("cannot write {}: {e}", self.path.display())))?;
        self.count += records;
        Ok(())
    }

    /// Whether the out is JSONL (plain or compressed): lines as
    /// [`RecordWriter::write_json_line`] takes them.
    pub fn writes_jsonl(&self) -> bool {
        !matches!(self.sink, Sink::Parquet(_))
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
            // Flushed, not synced: the cache makes its own copy durable
            // when it stores the out, and an fsync here would wait for the
            // whole file to reach the disk (0.5-0.9 s for 500 MB) on every run.
            Sink::Jsonl(w) => {
                w.into_inner().map_err(|e| cannot(&e.into_error()))?;
            }
            Sink::Gz(w) => {
                w.into_inner().map_err(|e| cannot(&e.into_error()))?.finish().map_err(|e| cannot(&e))?;
            }
            Sink::Zst(w) => {
                w.into_inner().map_err(|e| cannot(&e.into_error()))?.finish().map_err(|e| cannot(&e))?;
            }
            Sink::Parquet(p) => p.finish()?,
        }
        Ok(self.count)
    }
}
