//! A Parquet file's columns described as Hugging Face `datasets` features,
//! in the list form a dataset card's YAML header (`dataset_info.features`)
//! uses: `{name, dtype}` for a scalar, `{name, list: [...]}` for a list of
//! structs, `{name, sequence: dtype}` for a list of scalars, `{name,
//! struct: [...]}` for a struct.

use std::fs::File;
use std::path::Path;

use arrow_schema::{DataType, Field, Fields};
use dvx_stage_api::StageFailure;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use serde_json::{json, Map, Value};

/// The features of the Parquet file at `path`, from its schema alone (no
/// row is read).
pub fn hf_features(path: &Path) -> Result<Value, StageFailure> {
    let cannot = |e: &dyn std::fmt::Display| StageFailure::new(format!("cannot read {}: {e}", path.display()));
    let file = File::open(path).map_err(|e| cannot(&e))?;
    let builder = ParquetRecordBatchReaderBuilder::try_new(file).map_err(|e| cannot(&e))?;
    Ok(fields(builder.schema().fields()))
}

fn fields(fields: &Fields) -> Value {
    Value::Array(fields.iter().map(|f| named(f)).collect())
}

/// `{name, ...}` for one column or struct field.
fn named(f: &Field) -> Value {
    let mut m = Map::new();
    m.insert("name".into(), json!(f.name()));
    for (k, v) in feature(f.data_type()) {
        m.insert(k, v);
    }
    Value::Object(m)
}

/// The feature of a type, as the key/value pairs that sit next to `name`.
fn feature(dt: &DataType) -> Map<String, Value> {
    let mut m = Map::new();
    match dt {
        DataType::Struct(fs) => {
            m.insert("struct".into(), fields(fs));
        }
        DataType::List(item) | DataType::LargeList(item) | DataType::FixedSizeList(item, _) => {
            match item.data_type() {
                DataType::Struct(fs) => {
                    m.insert("list".into(), fields(fs));
                }
                inner => {
                    let f = feature(inner);
                    // A list of scalars is `sequence: dtype`; of lists, the nested form.
                    let v = match f.get("dtype") {
                        Some(d) if f.len() == 1 => d.clone(),
                        _ => Value::Object(f),
                    };
                    m.insert("sequence".into(), v);
                }
            }
        }
        scalar => {
            m.insert("dtype".into(), json!(dtype(scalar)));
        }
    }
    m
}

/// The `datasets` dtype name of a scalar Arrow type.
fn dtype(dt: &DataType) -> String {
    match dt {
        DataType::Null => "null".into(),
        DataType::Boolean => "bool".into(),
        DataType::Int8 => "int8".into(),
        DataType::Int16 => "int16".into(),
        DataType::Int32 => "int32".into(),
        DataType::Int64 => "int64".into(),
        DataType::UInt8 => "uint8".into(),
        DataType::UInt16 => "uint16".into(),
        DataType::UInt32 => "uint32".into(),
        DataType::UInt64 => "uint64".into(),
        DataType::Float16 => "float16".into(),
        DataType::Float32 => "float32".into(),
        DataType::Float64 => "float64".into(),
        DataType::Utf8 | DataType::Utf8View => "string".into(),
        DataType::LargeUtf8 => "large_string".into(),
        DataType::Binary | DataType::BinaryView => "binary".into(),
        DataType::LargeBinary => "large_binary".into(),
        other => other.to_string().to_lowercase(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Record, RecordWriter};

    #[test]
    fn features_of_written_records() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.parquet");
        let mut w = RecordWriter::create(&p).unwrap();
        let r: Record = serde_json::from_value(json!({
            "messages": [{"role": "user", "content": "q"}],
            "tags": ["a"], "score": 0.5, "n": 3, "ok": true, "meta": {"src": "s"}
        }))
        .unwrap();
        w.write(&r).unwrap();
        w.finish().unwrap();
        assert_eq!(
            hf_features(&p).unwrap(),
            json!([
                {"name": "messages", "list": [{"name": "role", "dtype": "string"}, {"name": "content", "dtype": "string"}]},
                {"name": "tags", "sequence": "string"},
                {"name": "score", "dtype": "float64"},
                {"name": "n", "dtype": "int64"},
                {"name": "ok", "dtype": "bool"},
                {"name": "meta", "struct": [{"name": "src", "dtype": "string"}]},
            ])
        );
    }
}
