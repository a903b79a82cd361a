//! Every format reads back the records written, the fixtures written by
//! pyarrow and `datasets` read as the JSONL they were made from, and bad
//! input is named by file, position and cause.

use std::path::{Path, PathBuf};

use dvx_records::{read_all, record_hash, Format, Record, RecordReader, RecordWriter};
use serde_json::json;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/formats").join(name)
}

fn rec(v: serde_json::Value) -> Record {
    v.as_object().unwrap().clone()
}

/// Records with the shapes that must survive: nested message structs with
/// optional fields, unicode, floats, ints, bools, a field some records lack.
fn sample() -> Vec<Record> {
    vec![
        rec(json!({"instruction": "Say hi", "response": "hi ✓", "quality_score": 0.85, "n": 3, "ok": true,
                   "messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]})),
        rec(json!({"instruction": "Ünï \"quoted\"\n", "response": "", "quality_score": 1.5e-7, "n": -4, "ok": false,
                   "messages": [{"role": "assistant", "content": "",
                                 "tool_calls": [{"id": "c1", "function": {"name": "f", "arguments": "{}"}}]},
                                {"role": "tool", "content": "x", "tool_call_id": "c1"}]})),
        rec(json!({"instruction": "no messages", "response": "r", "quality_score": 2.0, "n": 0, "ok": true})),
    ]
}

fn write(path: &Path, records: &[Record]) {
    let mut w = RecordWriter::create(path).unwrap();
    for r in records {
        w.write(r).unwrap();
    }
    assert_eq!(w.finish().unwrap(), records.len());
}

#[test]
fn every_write_format_round_trips_and_is_deterministic() {
    let dir = tempfile::tempdir().unwrap();
    let records = sample();
    for name in ["a.jsonl", "a.jsonl.gz", "a.jsonl.zst", "a.parquet"] {
        let path = dir.path().join(name);
        write(&path, &records);
        let first = std::fs::read(&path).unwrap();
        assert_eq!(read_all(&path).unwrap(), records, "{name}");
        // Same records, same bytes.
        write(&path, &records);
        assert_eq!(std::fs::read(&path).unwrap(), first, "{name} is not deterministic");
        let hashes: Vec<u64> = read_all(&path).unwrap().iter().map(|r| record_hash(r, 7, &[])).collect();
        let expected: Vec<u64> = records.iter().map(|r| record_hash(r, 7, &[])).collect();
        assert_eq!(hashes, expected, "{name}");
    }
    // The spool is gone once the Parquet file is written.
    let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(left.len(), 4, "{left:?}");
}

#[test]
fn parquet_writer_settings_are_fixed() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.parquet");
    write(&path, &sample());
    let reader = parquet::file::reader::SerializedFileReader::new(std::fs::File::open(&path).unwrap()).unwrap();
    use parquet::file::reader::FileReader;
    let meta = reader.metadata();
    assert_eq!(meta.file_metadata().created_by(), Some("dvx"));
    let col = meta.row_group(0).column(0);
    assert_eq!(col.compression(), parquet::basic::Compression::SNAPPY);
}

#[test]
fn empty_outs_are_valid_files() {
    let dir = tempfile::tempdir().unwrap();
    for name in ["e.jsonl", "e.jsonl.gz", "e.jsonl.zst", "e.parquet"] {
        let path = dir.path().join(name);
        write(&path, &[]);
        assert_eq!(read_all(&path).unwrap(), Vec::<Record>::new(), "{name}");
    }
}

#[test]
fn pyarrow_and_datasets_fixtures_read_as_their_jsonl() {
    let seed = read_all(&fixture("seed.jsonl")).unwrap();
    assert_eq!(seed.len(), 24);
    for (name, format) in [
        ("seed.json", Format::JsonArray),
        ("seed.parquet", Format::Parquet),
        ("seed.zstd.parquet", Format::Parquet),
        ("seed_shards", Format::ParquetFolder),
        ("seed.arrow", Format::Arrow),
        ("seed_hf", Format::HfDisk),
    ] {
        let reader = RecordReader::open(&fixture(name)).unwrap();
        assert_eq!(reader.format(), format, "{name}");
        let got: Vec<Record> = reader.map(|r| r.unwrap().1).collect();
        assert_eq!(got, seed, "{name}");
        // Keys come back in the column order, which is the JSONL's.
        let keys: Vec<&String> = got[0].keys().collect();
        assert_eq!(keys, seed[0].keys().collect::<Vec<_>>(), "{name}");
    }
    let chat = read_all(&fixture("chat.jsonl")).unwrap();
    assert_eq!(read_all(&fixture("chat.parquet")).unwrap(), chat);
}

#[test]
fn rows_are_numbered_across_row_groups() {
    // seed.zstd.parquet has row groups of 5 rows.
    let rows: Vec<usize> = RecordReader::open(&fixture("seed.zstd.parquet")).unwrap().map(|r| r.unwrap().0).collect();
    assert_eq!(rows, (1..=24).collect::<Vec<_>>());
}

#[test]
fn a_column_with_no_json_form_is_named() {
    let err = RecordReader::open(&fixture("binary.parquet")).err().unwrap();
    assert!(
        err.message.ends_with(
            "binary.parquet: column `blob` has Arrow type Binary, which dvx cannot read as JSON (strings, numbers, \
             booleans, dates, lists, structs and maps can be read); cast it before"
        ),
        "{}",
        err.message
    );
}

#[test]
fn mixed_types_cannot_be_written_as_parquet_and_say_so() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.parquet");
    let mut w = RecordWriter::create(&path).unwrap();
    w.write(&rec(json!({"x": "text"}))).unwrap();
    w.write(&rec(json!({"x": 5}))).unwrap();
    let err = w.finish().unwrap_err();
    assert!(err.message.starts_with(&format!("cannot write {} as Parquet: ", path.display())), "{}", err.message);
    assert!(err.message.contains("x"), "{}", err.message);
    assert!(err.message.ends_with("write .jsonl to keep mixed types)"), "{}", err.message);
}

#[test]
fn bad_input_is_named_by_file_and_position() {
    let dir = tempfile::tempdir().unwrap();
    let array = dir.path().join("a.json");
    std::fs::write(&array, "[{\"a\": 1},\n 7]").unwrap();
    let items: Vec<_> = RecordReader::open(&array).unwrap().collect();
    assert_eq!(items[0].as_ref().unwrap().1, rec(json!({"a": 1})));
    let err = items[1].as_ref().unwrap_err();
    assert_eq!(err.message, format!("{}: element 2: not a JSON object", array.display()));

    let gz = dir.path().join("b.jsonl.gz");
    write(&gz, &sample());
    let mut bytes = std::fs::read(&gz).unwrap();
    bytes.truncate(bytes.len() / 2);
    std::fs::write(&gz, bytes).unwrap();
    let err = read_all(&gz).unwrap_err();
    assert!(err.message.starts_with(&format!("{}:1: cannot read line: ", gz.display())), "{}", err.message);

    let zst = dir.path().join("c.jsonl.zst");
    let mut enc = zstd::Encoder::new(Vec::new(), 3).unwrap();
    std::io::Write::write_all(&mut enc, b"{\"a\":1}\n{nope}\n").unwrap();
    std::fs::write(&zst, enc.finish().unwrap()).unwrap();
    let err = read_all(&zst).unwrap_err();
    assert!(err.message.starts_with(&format!("{}:2: malformed JSON", zst.display())), "{}", err.message);

    let dict = dir.path().join("dd");
    std::fs::create_dir_all(dict.join("train")).unwrap();
    std::fs::write(dict.join("dataset_dict.json"), "{\"splits\": [\"train\"]}").unwrap();
    let err = RecordReader::open(&dict).err().unwrap();
    assert!(err.message.contains("a datasets DatasetDict folder"), "{}", err.message);
}

#[test]
fn unsupported_out_extensions_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    for name in ["o.csv", "o.arrow", "o.json"] {
        let err = RecordWriter::create(&dir.path().join(name)).err().unwrap();
        assert!(
            err.message.contains("records are written as .jsonl, .jsonl.gz, .jsonl.zst or .parquet"),
            "{}",
            err.message
        );
        assert!(!dir.path().join(name).exists());
    }
}
