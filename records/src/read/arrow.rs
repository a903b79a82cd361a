//! Parquet and Arrow IPC feeds: record batches, each row encoded as a
//! JSON line by arrow-json and parsed like any JSONL line, so a record's
//! JSON (and its hash) is the same whichever container it came from.
//!
//! Parquet has no "absent": a field one record lacks is null in the file.
//! Nulls are left out of the records read (at every depth), so records
//! written from JSONL read back as they were.

use std::collections::VecDeque;
use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};

use arrow_array::RecordBatch;
use arrow_json::writer::LineDelimited;
use arrow_json::WriterBuilder;
use arrow_schema::{ArrowError, DataType, Schema};
use dvx_stage_api::StageFailure;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use super::{Feed, Raw};
use crate::error::Unit;

/// Rows decoded at once: a small slice of a row group.
const BATCH_ROWS: usize = 1024;

type Batches = Box<dyn Iterator<Item = Result<RecordBatch, ArrowError>> + Send>;

pub(super) struct ArrowRows {
    path: PathBuf,
    batches: Batches,
    /// Rows of the current batch as JSON lines, with their row numbers.
    pending: VecDeque<(usize, String)>,
    row: usize,
}

/// Rows of a Parquet file, streamed a row group at a time.
pub(super) fn parquet(path: &Path, file: File) -> Result<Box<dyn Feed>, StageFailure> {
    let cannot =
        |e: &dyn std::fmt::Display| StageFailure::new(format!("cannot read {} as Parquet: {e}", path.display()));
    let builder = ParquetRecordBatchReaderBuilder::try_new(file).map_err(|e| cannot(&e))?;
    check_schema(path, builder.schema())?;
    let reader = builder.with_batch_size(BATCH_ROWS).build().map_err(|e| cannot(&e))?;
    Ok(Box::new(ArrowRows::new(path, Box::new(reader))))
}

/// Rows of an Arrow IPC file (`ARROW1`) or stream (what `datasets` writes).
pub(super) fn ipc(path: &Path, file: File) -> Result<Box<dyn Feed>, StageFailure> {
    let cannot = |e: &dyn std::fmt::Display| StageFailure::new(format!("cannot read {} as Arrow: {e}", path.display()));
    let mut head = [0u8; 6];
    let is_file = {
        use std::io::{Read, Seek};
        let mut f = &file;
        let n = f.read(&mut head).map_err(|e| cannot(&e))?;
        f.rewind().map_err(|e| cannot(&e))?;
        head[..n].starts_with(b"ARROW1")
    };
    let batches: Batches = if is_file {
        let reader = arrow_ipc::reader::FileReader::try_new(file, None).map_err(|e| cannot(&e))?;
        check_schema(path, &reader.schema())?;
        Box::new(reader)
    } else {
        let reader = arrow_ipc::reader::StreamReader::try_new(BufReader::with_capacity(1 << 20, file), None)
            .map_err(|e| cannot(&e))?;
        check_schema(path, &reader.schema())?;
        Box::new(reader)
    };
    Ok(Box::new(ArrowRows::new(path, batches)))
}

impl ArrowRows {
    fn new(path: &Path, batches: Batches) -> Self {
        ArrowRows { path: path.to_path_buf(), batches, pending: VecDeque::new(), row: 0 }
    }

    /// Encode the next batch's rows; false at the end.
    fn fill(&mut self) -> Result<bool, StageFailure> {
        let Some(batch) = self.batches.next() else {
            return Ok(false);
        };
        let first = self.row + 1;
        let fail = |e: &dyn std::fmt::Display| {
            StageFailure::bad_input(format!("{}: rows from {first}: {e}", self.path.display()))
        };
        let batch = batch.map_err(|e| fail(&e))?;
        let mut writer = WriterBuilder::new().with_explicit_nulls(false).build::<_, LineDelimited>(Vec::new());
        writer.write(&batch).map_err(|e| fail(&e))?;
        writer.finish().map_err(|e| fail(&e))?;
        let text = writer.into_inner();
        for line in text.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
            self.row += 1;
            // arrow-json writes UTF-8 only.
            self.pending.push_back((self.row, String::from_utf8_lossy(line).into_owned()));
        }
        Ok(true)
    }
}

impl Feed for ArrowRows {
    fn unit(&self) -> Unit {
        Unit::Row
    }

    fn next_items(&mut self, max: usize) -> Result<Vec<(usize, Raw)>, StageFailure> {
        let mut out = Vec::new();
        while out.len() < max {
            match self.pending.pop_front() {
                Some((row, line)) => out.push((row, Raw::Text(Ok(line)))),
                None => {
                    if !self.fill()? {
                        break;
                    }
                }
            }
        }
        Ok(out)
    }
}

/// Every column must have a JSON form; a column that has none is named.
fn check_schema(path: &Path, schema: &Schema) -> Result<(), StageFailure> {
    for f in schema.fields() {
        if let Some((column, ty)) = unreadable(f.name(), f.data_type()) {
            return Err(StageFailure::bad_input(format!(
                "{}: column `{column}` has Arrow type {ty}, which dvx cannot read as JSON (strings, numbers, \
                 booleans, dates, lists, structs and maps can be read); cast it before",
                path.display()
            )));
        }
    }
    Ok(())
}

/// The first column (dotted path) under `name` of a type with no JSON form.
fn unreadable(name: &str, ty: &DataType) -> Option<(String, DataType)> {
    use DataType::*;
    let nested = |child: &str, ty: &DataType| unreadable(&format!("{name}.{child}"), ty);
    match ty {
        Null | Boolean | Int8 | Int16 | Int32 | Int64 | UInt8 | UInt16 | UInt32 | UInt64 | Float16 | Float32
        | Float64 | Utf8 | LargeUtf8 | Utf8View | Date32 | Date64 | Timestamp(..) | Decimal128(..) | Decimal256(..) => {
            None
        }
        List(f) | LargeList(f) | FixedSizeList(f, _) | ListView(f) | LargeListView(f) => {
            unreadable(name, f.data_type())
        }
        Struct(fields) => fields.iter().find_map(|f| nested(f.name(), f.data_type())),
        Map(entries, _) => unreadable(name, entries.data_type()),
        Dictionary(_, values) => unreadable(name, values),
        other => Some((name.to_string(), other.clone())),
    }
}
