//! Records of a flat schema (every field a scalar) decoded straight into
//! Arrow columns by one byte scan of their text.
//!
//! Most instruction datasets are flat: strings, a score, a category. For
//! them the general path scans each record for its shape (schema
//! inference), then arrow-json parses it onto a tape and decodes the tape:
//! three passes over text that is mostly long strings. Here one scan finds
//! each key's column and each value's bytes, and the row is committed only
//! if every value is one its column already takes (see [`Takes`]): such a
//! record leaves the inferred schema exactly as it is, so inferring it is
//! skipped too. Anything the scan is not sure of (an unknown or repeated
//! key, a value of another kind, a lone surrogate, a control character, a
//! number form it leaves to a parser) is not taken, and the caller decodes
//! that record the general way. Taken or not, the values that reach the
//! columns are the ones arrow-json's decode gives (tests check both).

use std::collections::HashMap;
use std::sync::Arc;

use arrow_array::builder::{BooleanBuilder, Float64Builder, Int64Builder, StringBuilder};
use arrow_array::cast::AsArray;
use arrow_array::types::{Float64Type, Int64Type};
use arrow_array::{ArrayRef, NullArray, RecordBatch};
use arrow_schema::{ArrowError, DataType, SchemaRef};

use crate::scan::{escape_at, Number, Scan};

/// The kinds of JSON value a column takes without changing the inferred
/// schema: those inference has seen there, and that its type holds as
/// they are. `null` is always taken.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Takes {
    pub string: bool,
    pub int: bool,
    pub float: bool,
    pub boolean: bool,
}

/// The most text one string column of a batch holds (its offsets are i32).
const MAX_BATCH_TEXT: usize = i32::MAX as usize;

/// One column being built.
enum Column {
    Utf8(StringBuilder),
    Int64(Int64Builder),
    Float64(Float64Builder),
    Boolean(BooleanBuilder),
    /// A field seen only as null: a count.
    Null(usize),
}

/// One value of the row being scanned, before it is committed.
#[derive(Debug, Clone, Copy)]
enum Cell {
    Missing,
    Null,
    /// A string body without escapes: a range of the record's text.
    Text(usize, usize),
    /// A string with escapes, decoded: a range of `FlatRows::unescaped`.
    Unescaped(usize, usize),
    Int(i64),
    Float(f64),
    Bool(bool),
}

/// Rows of a flat schema, built column by column.
pub(crate) struct FlatRows {
    schema: SchemaRef,
    names: Vec<Box<[u8]>>,
    takes: Vec<Takes>,
    index: HashMap<Box<[u8]>, usize>,
    columns: Vec<Column>,
    /// The row being scanned, a cell per column.
    cells: Vec<Cell>,
    unescaped: String,
    rows: usize,
    /// [`MAX_BATCH_TEXT`]; smaller in tests.
    max_text: usize,
}

impl FlatRows {
    /// Rows of `schema`, whose fields take `takes`; `None` unless every
    /// field is a scalar (and there is at least one).
    pub fn new(schema: SchemaRef, takes: Vec<Takes>) -> Option<FlatRows> {
        if schema.fields().is_empty() || schema.fields().len() != takes.len() {
            return None;
        }
        let columns = schema
            .fields()
            .iter()
            .map(|f| match f.data_type() {
                DataType::Utf8 => Some(Column::Utf8(StringBuilder::new())),
                DataType::Int64 => Some(Column::Int64(Int64Builder::new())),
                DataType::Float64 => Some(Column::Float64(Float64Builder::new())),
                DataType::Boolean => Some(Column::Boolean(BooleanBuilder::new())),
                DataType::Null => Some(Column::Null(0)),
                _ => None,
            })
            .collect::<Option<Vec<_>>>()?;
        let names: Vec<Box<[u8]>> = schema.fields().iter().map(|f| f.name().as_bytes().into()).collect();
        let index = names.iter().enumerate().map(|(i, n)| (n.clone(), i)).collect();
        let n = names.len();
        Some(FlatRows {
            schema,
            names,
            takes,
            index,
            columns,
            cells: vec![Cell::Missing; n],
            unescaped: String::new(),
            rows: 0,
            max_text: MAX_BATCH_TEXT,
        })
    }

    /// Rows held, not yet taken by [`FlatRows::finish`].
    pub fn len(&self) -> usize {
        self.rows
    }

    /// Add the record `text` if every value in it is one its column takes;
    /// false (and nothing added) otherwise.
    pub fn take(&mut self, text: &str) -> bool {
        self.cells.fill(Cell::Missing);
        self.unescaped.clear();
        if self.scan(text).is_none() || self.would_overflow() {
            return false;
        }
        for (column, cell) in self.columns.iter_mut().zip(&self.cells) {
            match (column, *cell) {
                (Column::Null(n), _) => *n += 1,
                (Column::Utf8(b), Cell::Text(a, z)) => b.append_value(&text[a..z]),
                (Column::Utf8(b), Cell::Unescaped(a, z)) => b.append_value(&self.unescaped[a..z]),
                (Column::Int64(b), Cell::Int(v)) => b.append_value(v),
                (Column::Float64(b), Cell::Float(v)) => b.append_value(v),
                (Column::Boolean(b), Cell::Bool(v)) => b.append_value(v),
                (Column::Utf8(b), _) => b.append_null(),
                (Column::Int64(b), _) => b.append_null(),
                (Column::Float64(b), _) => b.append_null(),
                (Column::Boolean(b), _) => b.append_null(),
            }
        }
        self.rows += 1;
        true
    }

    /// Add the one row of `batch` (a record decoded the general way, with
    /// this schema).
    pub fn append(&mut self, batch: &RecordBatch) -> Result<(), ArrowError> {
        if batch.num_rows() != 1 || batch.num_columns() != self.columns.len() {
            return Err(ArrowError::JsonError(format!("expected one record, decoded {} rows", batch.num_rows())));
        }
        let overflows = self.columns.iter().zip(batch.columns()).any(|(column, array)| {
            matches!((column, array.as_string_opt::<i32>()), (Column::Utf8(b), Some(a))
                if !array.is_null(0) && b.values_slice().len() + a.value(0).len() > self.max_text)
        });
        if overflows {
            return Err(ArrowError::JsonError(format!(
                "offset overflow: a batch of {} records holds more than 2 GiB of one field's text",
                self.rows + 1
            )));
        }
        for (column, array) in self.columns.iter_mut().zip(batch.columns()) {
            let null = array.is_null(0);
            match column {
                Column::Null(n) => *n += 1,
                Column::Utf8(b) if null => b.append_null(),
                Column::Int64(b) if null => b.append_null(),
                Column::Float64(b) if null => b.append_null(),
                Column::Boolean(b) if null => b.append_null(),
                Column::Utf8(b) => {
                    b.append_value(array.as_string_opt::<i32>().ok_or_else(|| mismatch(array))?.value(0))
                }
                Column::Int64(b) => {
                    b.append_value(array.as_primitive_opt::<Int64Type>().ok_or_else(|| mismatch(array))?.value(0))
                }
                Column::Float64(b) => {
                    b.append_value(array.as_primitive_opt::<Float64Type>().ok_or_else(|| mismatch(array))?.value(0))
                }
                Column::Boolean(b) => b.append_value(array.as_boolean_opt().ok_or_else(|| mismatch(array))?.value(0)),
            }
        }
        self.rows += 1;
        Ok(())
    }

    /// The rows held, as a batch; none are held after.
    pub fn finish(&mut self) -> Result<RecordBatch, ArrowError> {
        let rows = std::mem::take(&mut self.rows);
        let arrays: Vec<ArrayRef> = self
            .columns
            .iter_mut()
            .map(|c| -> ArrayRef {
                // The next batch is sized like this one: no growing as it fills.
                match c {
                    Column::Utf8(b) => {
                        let array = b.finish();
                        *b = StringBuilder::with_capacity(rows, array.value_data().len());
                        Arc::new(array)
                    }
                    Column::Int64(b) => Arc::new(std::mem::replace(b, Int64Builder::with_capacity(rows)).finish()),
                    Column::Float64(b) => Arc::new(std::mem::replace(b, Float64Builder::with_capacity(rows)).finish()),
                    Column::Boolean(b) => Arc::new(std::mem::replace(b, BooleanBuilder::with_capacity(rows)).finish()),
                    Column::Null(n) => Arc::new(NullArray::new(std::mem::take(n))),
                }
            })
            .collect();
        debug_assert!(arrays.iter().all(|a| a.len() == rows));
        RecordBatch::try_new(self.schema.clone(), arrays)
    }

    /// Whether the scanned row's text would take a string column past what
    /// one batch can hold (left to the general path, which says so).
    fn would_overflow(&self) -> bool {
        self.columns.iter().zip(&self.cells).any(|(column, cell)| match (column, *cell) {
            (Column::Utf8(b), Cell::Text(a, z) | Cell::Unescaped(a, z)) => {
                b.values_slice().len() + (z - a) > self.max_text
            }
            _ => false,
        })
    }

    /// The record's values into `cells`; `None` if any is not taken.
    fn scan(&mut self, text: &str) -> Option<()> {
        let mut s = Scan::new(text.as_bytes());
        if s.peek()? != b'{' {
            return None;
        }
        s.i += 1;
        if s.peek()? == b'}' {
            s.i += 1;
            return s.peek().is_none().then_some(());
        }
        // Records mostly keep the schema's key order: try the next column first.
        let mut next = 0;
        loop {
            if s.peek()? != b'"' {
                return None;
            }
            let key = s.string()?;
            if memchr::memchr(b'\\', key).is_some() {
                return None;
            }
            let col = match self.names.get(next) {
                Some(name) if **name == *key => next,
                _ => *self.index.get(key)?,
            };
            next = col + 1;
            if !matches!(self.cells[col], Cell::Missing) || s.peek()? != b':' {
                return None;
            }
            s.i += 1;
            self.cells[col] = self.value(&mut s, text, col)?;
            let c = s.peek()?;
            s.i += 1;
            match c {
                b',' => {}
                b'}' => return s.peek().is_none().then_some(()),
                _ => return None,
            }
        }
    }

    /// One value for column `col`, if it takes it.
    fn value(&mut self, s: &mut Scan, text: &str, col: usize) -> Option<Cell> {
        let takes = self.takes[col];
        match (&self.columns[col], s.peek()?) {
            (_, b'n') => s.word(b"null").map(|()| Cell::Null),
            (Column::Boolean(_), b't') if takes.boolean => s.word(b"true").map(|()| Cell::Bool(true)),
            (Column::Boolean(_), b'f') if takes.boolean => s.word(b"false").map(|()| Cell::Bool(false)),
            (Column::Utf8(_), b'"') if takes.string => {
                let start = s.i + 1;
                let body = s.string()?;
                // JSON refuses them raw; left to the parser to say so.
                if body.iter().fold(false, |any, &b| any | (b < 0x20)) {
                    return None;
                }
                let end = start + body.len();
                if memchr::memchr(b'\\', body).is_none() {
                    return Some(Cell::Text(start, end));
                }
                let from = self.unescaped.len();
                unescape(&text[start..end], &mut self.unescaped)?;
                Some(Cell::Unescaped(from, self.unescaped.len()))
            }
            (column @ (Column::Int64(_) | Column::Float64(_)), b'-' | b'0'..=b'9') => {
                let float_column = matches!(column, Column::Float64(_));
                let start = s.i;
                let kind = s.number()?;
                let number = &text[start..s.i];
                match kind {
                    Number::Int if !takes.int => None,
                    Number::Int if !float_column => number.parse().ok().map(Cell::Int),
                    Number::Fraction | Number::Exponent if !(takes.float && float_column) => None,
                    // Correctly rounded, as arrow-json's parse is.
                    _ => number.parse::<f64>().ok().filter(|v| v.is_finite()).map(Cell::Float),
                }
            }
            _ => None,
        }
    }
}

fn mismatch(array: &ArrayRef) -> ArrowError {
    ArrowError::JsonError(format!("a decoded column has type {}, not the schema's", array.data_type()))
}

/// A string body's escapes decoded onto `out`; `None` for a lone surrogate.
fn unescape(body: &str, out: &mut String) -> Option<()> {
    let mut rest = body;
    while let Some(at) = rest.find('\\') {
        out.push_str(&rest[..at]);
        let (c, len) = escape_at(rest.as_bytes(), at)?;
        out.push(c);
        rest = &rest[at + len..];
    }
    out.push_str(rest);
    Some(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::infer::SchemaInference;
    use crate::test_rng::{below, flat_record};

    /// arrow-json's decode of `texts` with `schema`, as the general path does it.
    fn arrow_json(schema: SchemaRef, texts: &[&str]) -> RecordBatch {
        let mut decoder =
            arrow_json::ReaderBuilder::new(schema.clone()).with_strict_mode(true).build_decoder().unwrap();
        for t in texts {
            decoder.decode(t.as_bytes()).unwrap();
        }
        decoder.flush().unwrap().unwrap_or_else(|| RecordBatch::new_empty(schema))
    }

    /// What inference learnt from `learn`, as flat rows.
    fn learnt(learn: &[&str]) -> Option<(SchemaInference, FlatRows)> {
        let mut inference = SchemaInference::default();
        for t in learn {
            inference.add(t).ok()?;
        }
        let rows = FlatRows::new(Arc::new(inference.schema()), inference.flat_takes()?)?;
        Some((inference, rows))
    }

    /// Whatever the scan takes leaves inference as it was and decodes to
    /// arrow-json's values; on files of random flat records it takes most.
    #[test]
    fn a_taken_record_changes_no_schema_and_decodes_as_arrow_json_does() {
        let mut next = below(0x9E37_79B9_7F4A_7C15);
        let (mut taken_in_all, mut offered) = (0, 0);
        for _ in 0..300 {
            let kinds = [0, 2, 1, 3].map(|k| if next(4) == 0 { next(4) as u8 } else { k });
            let texts: Vec<String> = (0..40)
                .map(|_| {
                    let mut t = String::new();
                    flat_record(&mut next, kinds, 25, &mut t);
                    t
                })
                .collect();
            let texts: Vec<&str> = texts.iter().map(String::as_str).collect();
            let Some((mut inference, mut rows)) = learnt(&texts[..20]) else { continue };
            let mut taken = Vec::new();
            for t in &texts {
                offered += 1;
                let generation = inference.generation();
                if rows.take(t) {
                    taken.push(*t);
                    inference.add(t).unwrap();
                    assert_eq!(inference.generation(), generation, "taken, yet it changes the schema: {t}");
                }
            }
            taken_in_all += taken.len();
            let schema = rows.schema.clone();
            assert_eq!(rows.finish().unwrap(), arrow_json(schema, &taken), "{taken:#?}");
        }
        assert!(taken_in_all * 6 > offered, "took {taken_in_all} of {offered}");
    }

    #[test]
    fn takes_only_what_it_is_sure_of() {
        let (_, mut rows) = learnt(&[r#"{"s": "x", "f": 1.5, "i": 3, "b": true, "z": null}"#]).unwrap();
        let fields = rows.schema.fields().iter().map(|f| f.data_type().clone()).collect::<Vec<_>>();
        assert_eq!(fields, [DataType::Utf8, DataType::Float64, DataType::Int64, DataType::Boolean, DataType::Null]);
        for (text, taken) in [
            (r#"{"s": "a\n\u00e9\ud83d\ude00\"", "f": -2.5e-3, "i": -7, "b": false, "z": null}"#, true),
            (r#"{"i": 1, "s": "order does not matter"}"#, true),
            (r#" { } "#, true),
            (r#"{"s": null, "f": null, "i": null, "b": null}"#, true),
            // Each of these changes the schema, or is left to a parser.
            (r#"{"f": 2}"#, false),
            (r#"{"i": 2.5}"#, false),
            (r#"{"s": 1}"#, false),
            (r#"{"z": "late"}"#, false),
            (r#"{"new": 1}"#, false),
            (r#"{"s": "a", "s": "b"}"#, false),
            (r#"{"\u0073": "escaped key"}"#, false),
            (r#"{"s": "lone \ud83d surrogate"}"#, false),
            (r#"{"s": "low \ude00 first"}"#, false),
            ("{\"s\": \"raw\ttab\"}", false),
            (r#"{"f": 1e400}"#, false),
            (r#"{"i": 12345678901234567890}"#, false),
            (r#"{"i": -0}"#, false),
            (r#"{"i": 01}"#, false),
            (r#"{"s": "x"} trailing"#, false),
            (r#"{"s": "x",}"#, false),
            (r#"{"s": "x""#, false),
            (r#"["s"]"#, false),
        ] {
            assert_eq!(rows.take(text), taken, "{text}");
        }
        let batch = rows.finish().unwrap();
        assert_eq!(batch.num_rows(), 4);
        assert_eq!(batch.column(0).as_string::<i32>().value(0), "a\n\u{e9}\u{1F600}\"");
    }

    /// Text past what a batch's offsets can hold is an error, not a panic.
    #[test]
    fn a_batch_too_large_for_its_offsets_is_refused() {
        let (_, mut rows) = learnt(&[r#"{"s": "x"}"#]).unwrap();
        rows.max_text = 10;
        assert!(rows.take(r#"{"s": "0123456789"}"#));
        assert!(!rows.take(r#"{"s": "a"}"#), "one byte past the limit is left to the general path");
        let err = rows.append(&arrow_json(rows.schema.clone(), &[r#"{"s": "a"}"#])).unwrap_err();
        assert!(err.to_string().contains("offset overflow"), "{err}");
        assert_eq!(rows.finish().unwrap().num_rows(), 1);
    }

    #[test]
    fn a_row_decoded_the_general_way_is_appended_in_place() {
        let (_, mut rows) = learnt(&[r#"{"s": "x", "f": 1.5}"#]).unwrap();
        let schema = rows.schema.clone();
        let texts = [
            r#"{"s": "one", "f": 1.0}"#,
            r#"{"s": "a long integer part", "f": 1234567890123456789.5}"#,
            r#"{"f": 3.5}"#,
        ];
        for t in texts {
            if !rows.take(t) {
                rows.append(&arrow_json(schema.clone(), &[t])).unwrap();
            }
        }
        assert_eq!(rows.finish().unwrap(), arrow_json(schema, &texts));
    }
}
