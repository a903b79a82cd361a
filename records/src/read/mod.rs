//! Reading records from any supported container, a chunk at a time.
//!
//! [`RecordReader::raw_chunk`] hands out unparsed items (a JSONL line, a
//! Parquet row already encoded as a JSON line) so the caller can parse a
//! chunk on its own threads; [`Source::parse`] turns one into a record or a
//! [`BadRecord`]. The reader is also an [`Iterator`] of parsed records.
//! Memory stays within one chunk (and one Parquet row group or Arrow batch).

mod ahead;
mod arrow;
mod folder;
mod lines;
mod scan;

use std::collections::VecDeque;
use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

use dvx_stage_api::StageFailure;
use serde_json::Value;

use crate::error::{BadRecord, Unit};
use crate::format::{detect, Format};
use crate::Record;

pub use ahead::Ahead;
pub use scan::{JsonlScan, ScanAhead, ScanLine};

/// Items handed out by the [`Iterator`] implementation's read-ahead.
const ITER_CHUNK: usize = 1024;

/// One unparsed item.
#[derive(Debug)]
pub enum Raw {
    /// A line of JSON text, or why it could not be read (bad UTF-8).
    Text(Result<String, String>),
    /// A value already parsed (an element of a JSON array).
    Value(Value),
}

/// Where items come from, to name them in errors.
#[derive(Debug, Clone)]
pub struct Source {
    /// The file (a shard, inside a folder).
    pub path: PathBuf,
    /// What item numbers count.
    pub unit: Unit,
}

impl Source {
    /// Parse item number `at` into a record.
    pub fn parse(&self, at: usize, raw: Raw) -> Result<(usize, Record), BadRecord> {
        let bad = |text: String, reason: String| BadRecord {
            path: self.path.clone(),
            line: at,
            unit: self.unit,
            text,
            reason,
        };
        match raw {
            Raw::Text(Err(reason)) => Err(bad(String::new(), reason)),
            Raw::Text(Ok(text)) => self.parse_str(at, &text).map_err(|b| BadRecord { text, ..b }),
            Raw::Value(Value::Object(map)) => Ok((at, map)),
            Raw::Value(other) => Err(bad(other.to_string(), "not a JSON object".into())),
        }
    }
}

impl Source {
    /// Parse item number `at`, given as JSON text, into a record.
    pub fn parse_str(&self, at: usize, text: &str) -> Result<(usize, Record), BadRecord> {
        let bad = |reason: String| BadRecord {
            path: self.path.clone(),
            line: at,
            unit: self.unit,
            text: String::new(),
            reason,
        };
        match serde_json::from_str::<Value>(text) {
            Ok(Value::Object(map)) => Ok((at, map)),
            Ok(_) => Err(bad("not a JSON object".into())),
            Err(e) => Err(bad(format!("malformed JSON: {e}"))),
        }
    }
}

/// Up to a chunk of items from one file.
pub struct RawChunk {
    /// Where they come from.
    pub source: Source,
    /// `(1-based line/row/element number, item)`.
    pub items: Vec<(usize, Raw)>,
}

/// One open file of records.
trait Feed: Send {
    /// Up to `max` items; none when the file is done. An error ends the read.
    fn next_items(&mut self, max: usize) -> Result<Vec<(usize, Raw)>, StageFailure>;
    /// How item numbers are counted.
    fn unit(&self) -> Unit;
}

/// Streams the records of a dep in any supported format.
pub struct RecordReader {
    path: PathBuf,
    format: Format,
    /// Files still to open (shards of a folder).
    files: VecDeque<PathBuf>,
    current: Option<(Source, Box<dyn Feed>)>,
    /// Read-ahead for the [`Iterator`] implementation.
    ahead: VecDeque<(Source, usize, Raw)>,
    done: bool,
}

impl RecordReader {
    /// Open `path`: a file or a folder (Parquet shards, `save_to_disk`).
    pub fn open(path: &Path) -> Result<Self, StageFailure> {
        let cannot = |e: &dyn std::fmt::Display| StageFailure::new(format!("cannot open {}: {e}", path.display()));
        let mut format = detect(path).map_err(|e| cannot(&e))?;
        let files: VecDeque<PathBuf> = match format {
            Format::ParquetFolder => folder::parquet_shards(path)?.into(),
            Format::HfDisk => folder::save_to_disk_files(path)?.into(),
            _ => [path.to_path_buf()].into(),
        };
        let mut reader = RecordReader {
            path: path.to_path_buf(),
            format,
            files,
            current: None,
            ahead: VecDeque::new(),
            done: false,
        };
        // Open the first file now, so a bad header fails at open and the
        // format (array or lines) is known for logs.
        reader.open_next()?;
        if let Some((source, _)) = &reader.current {
            if format == Format::Jsonl && source.unit == Unit::Element {
                format = Format::JsonArray;
            }
        }
        reader.format = format;
        Ok(reader)
    }

    /// The format the dep was read as.
    pub fn format(&self) -> Format {
        self.format
    }

    /// The dep's path as given.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn open_next(&mut self) -> Result<bool, StageFailure> {
        let Some(file) = self.files.pop_front() else {
            return Ok(false);
        };
        let feed = open_file(&file)?;
        self.current = Some((Source { path: file, unit: feed.unit() }, feed));
        Ok(true)
    }

    /// The next items, up to `max`, all from one file; `None` at the end.
    pub fn raw_chunk(&mut self, max: usize) -> Result<Option<RawChunk>, StageFailure> {
        if self.done {
            return Ok(None);
        }
        loop {
            if self.current.is_none() && !self.open_next()? {
                self.done = true;
                return Ok(None);
            }
            let (source, feed) = self.current.as_mut().expect("opened");
            let items = match feed.next_items(max.max(1)) {
                Ok(items) => items,
                Err(e) => {
                    self.done = true;
                    return Err(e);
                }
            };
            if items.is_empty() {
                self.current = None;
                continue;
            }
            return Ok(Some(RawChunk { source: source.clone(), items }));
        }
    }
}

impl Iterator for RecordReader {
    /// `(line/row number, record)`, a bad record, or an error that ends the read.
    type Item = Result<(usize, Record), StageFailure>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.ahead.is_empty() {
            match self.raw_chunk(ITER_CHUNK) {
                Ok(Some(chunk)) => {
                    let source = chunk.source;
                    self.ahead.extend(chunk.items.into_iter().map(|(at, raw)| (source.clone(), at, raw)));
                }
                Ok(None) => return None,
                Err(e) => return Some(Err(e)),
            }
        }
        let (source, at, raw) = self.ahead.pop_front()?;
        Some(source.parse(at, raw).map_err(StageFailure::from))
    }
}

/// Reads every record of `path` into memory, failing on the first bad one.
pub fn read_all(path: &Path) -> Result<Vec<Record>, StageFailure> {
    RecordReader::open(path)?.map(|r| r.map(|(_, rec)| rec)).collect()
}

/// Opens one file in the format its content shows.
fn open_file(path: &Path) -> Result<Box<dyn Feed>, StageFailure> {
    let cannot = |e: &dyn std::fmt::Display| StageFailure::new(format!("cannot open {}: {e}", path.display()));
    let format = detect(path).map_err(|e| cannot(&e))?;
    let file = File::open(path).map_err(|e| cannot(&e))?;
    let text: Box<dyn Read + Send> = match format {
        Format::Parquet => return arrow::parquet(path, file),
        Format::Arrow => return arrow::ipc(path, file),
        Format::ParquetFolder | Format::HfDisk => {
            return Err(cannot(&"a folder inside a folder of records is not read; point the dep at it"))
        }
        Format::JsonlGz => Box::new(flate2::read::MultiGzDecoder::new(BufReader::with_capacity(1 << 16, file))),
        Format::JsonlZst => Box::new(zstd::Decoder::new(file).map_err(|e| cannot(&e))?),
        Format::Jsonl | Format::JsonArray => Box::new(file),
    };
    let mut text = BufReader::with_capacity(1 << 20, text);
    // An array of objects or one object per line: the first character tells.
    let starts_array = match text.fill_buf() {
        Ok(buf) => buf.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'['),
        Err(e) => return Err(cannot(&e)),
    };
    // A `.jsonl` file starting with `[` is JSONL with a bad first line.
    let name = path.file_name().map(|n| n.to_string_lossy().to_lowercase()).unwrap_or_default();
    let starts_array = starts_array && !name.contains(".jsonl");
    Ok(if starts_array { Box::new(lines::JsonArray::new(path, text)) } else { Box::new(lines::Lines::new(path, text)) })
}
