//! Helpers shared by the dataset stages (`filter`, `score`, `balance`,
//! `merge`, `split`, `validate`): chunked parallel processing that keeps
//! input order, categories, canonical content hashes, a seeded RNG and
//! small statistics.

use std::collections::BTreeMap;
use std::path::Path;

use dvx_records::Unit;
use dvx_stage_api::{OutError, StageFailure};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use crate::records::{field, BadLine, Record, RecordReader};

/// Records handed to the thread pool at once: big enough to keep every
/// thread busy, small enough that a stage's memory stays flat.
pub const CHUNK: usize = 2048;

/// The category given to records whose category field is missing or null.
pub const NO_CATEGORY: &str = "(none)";

/// What to do with a line that is not a JSON object.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnError {
    /// Stop the stage, naming the file and line.
    #[default]
    Fail,
    /// Count the line, hand it to the rejects output if any, and go on.
    Skip,
}

/// Reads a dep's records a chunk at a time, in any format `dvx-records`
/// reads; items are parsed on the thread pool, since parsing is most of the
/// cost of a stage.
pub struct ChunkReader {
    inner: RecordReader,
}

impl ChunkReader {
    /// Open `path` (a file or a folder of records).
    pub fn open(path: &Path) -> Result<Self, StageFailure> {
        let inner = RecordReader::open(path)?;
        tracing::debug!(path = %path.display(), format = inner.format().name(), "reading records");
        Ok(ChunkReader { inner })
    }
}

/// The next good records (parsed in parallel, in file order). Bad records
/// go to `bad` under [`OnError::Skip`] and end the stage under
/// [`OnError::Fail`]; a read error that is not a bad record (a corrupt
/// compressed stream) ends the stage either way. An empty result means the
/// dep is done.
pub fn read_chunk(
    reader: &mut ChunkReader,
    pool: &rayon::ThreadPool,
    on_error: OnError,
    bad: &mut Vec<BadLine>,
) -> Result<Vec<(usize, Record)>, StageFailure> {
    loop {
        let Some(raw) = reader.inner.raw_chunk(CHUNK)? else {
            return Ok(Vec::new());
        };
        let source = &raw.source;
        let parsed: Vec<_> =
            pool.install(|| raw.items.into_par_iter().map(|(n, item)| source.parse(n, item)).collect());
        let mut chunk = Vec::with_capacity(parsed.len());
        for item in parsed {
            match item {
                Ok(rec) => chunk.push(rec),
                Err(b) if on_error == OnError::Skip => bad.push(b),
                Err(b) => return Err(b.into()),
            }
        }
        // A chunk of nothing but bad lines is not the end of the file.
        if !chunk.is_empty() {
            return Ok(chunk);
        }
    }
}

/// Refuses the outs at indices in `which` whose extension no record writer
/// supports (`.csv`, `.arrow`): better at load than silently written as JSONL.
pub fn check_record_outs(outs: &[&str], which: impl std::ops::RangeBounds<usize>) -> Result<(), OutError> {
    for (index, out) in outs.iter().enumerate().filter(|(i, _)| which.contains(i)) {
        dvx_records::WriteFormat::for_path(Path::new(out)).map_err(|message| OutError { index, message })?;
    }
    Ok(())
}

/// A malformed line as a record for a rejects file. Only the file's name is
/// kept: an absolute path would make the output differ between machines.
pub fn bad_line_record(b: &BadLine, reason_field: &str) -> Record {
    let mut r = Map::new();
    r.insert(reason_field.into(), json!(b.reason));
    r.insert("_file".into(), json!(file_name(&b.path)));
    // `_line` for text, `_row` for Parquet/Arrow rows, `_element` in a JSON array.
    let at = match b.unit {
        Unit::Line => "_line",
        Unit::Row => "_row",
        Unit::Element => "_element",
    };
    r.insert(at.into(), json!(b.line));
    r.insert("_raw".into(), json!(b.text));
    r
}

/// The last component of a path, for messages and outputs.
pub fn file_name(path: &std::path::Path) -> String {
    path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
}

/// A thread pool of `threads` workers (at least one).
pub fn pool(threads: usize) -> Result<rayon::ThreadPool, StageFailure> {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads.max(1))
        .build()
        .map_err(|e| StageFailure::new(format!("cannot start worker threads: {e}")))
}

/// `f` over `items` on `pool`; results come back in input order.
pub fn par_map<T: Sync, R: Send>(
    pool: &rayon::ThreadPool,
    items: &[T],
    f: impl Fn(&T) -> R + Sync + Send,
) -> Vec<R> {
    pool.install(|| items.par_iter().map(f).collect())
}

/// The category of a record: the value at `field` as text, or [`NO_CATEGORY`].
pub fn category_of(record: &Record, path: &str) -> String {
    match field(record, path) {
        None | Some(Value::Null) => NO_CATEGORY.to_string(),
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
    }
}

/// Interns category names so per-record data can hold a small id; ids are
/// handed out in first-seen order, names are reported sorted.
#[derive(Default)]
pub struct Categories {
    ids: BTreeMap<String, u32>,
    names: Vec<String>,
}

impl Categories {
    /// The id of `name`, adding it when new.
    pub fn id(&mut self, name: String) -> u32 {
        if let Some(&id) = self.ids.get(&name) {
            return id;
        }
        let id = self.names.len() as u32;
        self.ids.insert(name.clone(), id);
        self.names.push(name);
        id
    }

    /// How many categories there are.
    pub fn len(&self) -> usize {
        self.names.len()
    }

    /// Whether there are none yet.
    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    /// `(name, id)` sorted by name.
    pub fn sorted(&self) -> impl Iterator<Item = (&str, u32)> {
        self.ids.iter().map(|(n, &id)| (n.as_str(), id))
    }
}

/// A record's identity for split and balance: the one canonical record hash.
pub use dvx_records::record_hash as content_hash;

/// A 128-bit digest of some text, for exact-duplicate sets.
pub fn digest(text: &str) -> [u8; 16] {
    digest_bytes(text.as_bytes())
}

/// A 128-bit digest of bytes (a value's canonical JSON), for exact-duplicate sets.
pub fn digest_bytes(bytes: &[u8]) -> [u8; 16] {
    blake3::hash(bytes).as_bytes()[..16].try_into().expect("16 bytes")
}

/// Lowercase with runs of whitespace folded to one space and the ends
/// trimmed: what "exact duplicate" compares.
pub fn normalize_text(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ").to_lowercase()
}

/// `x` rounded to 4 decimals, so metrics print and compare cleanly.
pub fn round4(x: f64) -> f64 {
    (x * 1e4).round() / 1e4
}

/// Split `total` into parts proportional to `weights`, summing to exactly
/// `total` (largest remainder; ties go to the earlier part).
pub fn apportion(total: usize, weights: &[f64]) -> Vec<usize> {
    let sum: f64 = weights.iter().sum();
    if sum <= 0.0 || weights.is_empty() {
        return vec![0; weights.len()];
    }
    let exact: Vec<f64> = weights.iter().map(|w| total as f64 * w / sum).collect();
    let mut parts: Vec<usize> = exact.iter().map(|e| e.floor() as usize).collect();
    let mut left = total - parts.iter().sum::<usize>();
    let mut order: Vec<usize> = (0..weights.len()).collect();
    order.sort_by(|&a, &b| {
        let ra = exact[a] - exact[a].floor();
        let rb = exact[b] - exact[b].floor();
        rb.total_cmp(&ra).then(a.cmp(&b))
    });
    for i in order {
        if left == 0 {
            break;
        }
        parts[i] += 1;
        left -= 1;
    }
    parts
}

/// min / mean / p50 / p95 / max of some values (nearest-rank percentiles),
/// or `null` when there are none.
pub fn summary(values: &mut [f64]) -> Value {
    if values.is_empty() {
        return Value::Null;
    }
    values.sort_by(f64::total_cmp);
    let n = values.len();
    let rank = |p: f64| values[((p * n as f64).ceil() as usize).clamp(1, n) - 1];
    let mean = values.iter().sum::<f64>() / n as f64;
    json!({
        "min": round4(values[0]),
        "mean": round4(mean),
        "p50": round4(rank(0.50)),
        "p95": round4(rank(0.95)),
        "max": round4(values[n - 1]),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use dvx_cache::canonical_json;

    #[test]
    fn canonical_ignores_key_order() {
        let a: Record = serde_json::from_str(r#"{"b":1,"a":{"y":[1,"x"],"x":null}}"#).unwrap();
        let b: Record = serde_json::from_str(r#"{"a":{"x":null,"y":[1,"x"]},"b":1}"#).unwrap();
        let s = canonical_json(&Value::Object(a.clone()));
        assert_eq!(s, br#"{"a":{"x":null,"y":[1,"x"]},"b":1}"#);
        assert_eq!(content_hash(&a, 7, &[]), content_hash(&b, 7, &[]));
        assert_ne!(content_hash(&a, 7, &[]), content_hash(&a, 8, &[]));
    }

    /// The canonical JSON writer stages had before they used the cache's:
    /// kept here to show the two give the same bytes, so the content hashes
    /// behind `split` and `balance` (and so shipped version hashes) are unchanged.
    fn former_stages_canonical_json(v: &Value, out: &mut String) {
        use std::fmt::Write as _;
        match v {
            Value::Object(m) => {
                let mut keys: Vec<&String> = m.keys().collect();
                keys.sort();
                out.push('{');
                for (i, k) in keys.into_iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    out.push_str(&Value::String(k.clone()).to_string());
                    out.push(':');
                    former_stages_canonical_json(&m[k], out);
                }
                out.push('}');
            }
            Value::Array(a) => {
                out.push('[');
                for (i, item) in a.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    former_stages_canonical_json(item, out);
                }
                out.push(']');
            }
            other => {
                let _ = write!(out, "{other}");
            }
        }
    }

    #[test]
    fn canonical_json_is_byte_identical_to_the_former_stages_writer() {
        let cases = [
            r#"{"z":{"b":[1,{"d":2,"c":[[],{}]}],"a":null},"y":true,"x":false,"":""}"#,
            r#"{"é":"ü","ä":"\u0000\u001f\"\\/\b\f\n\r\t","😀":"\ud83d\ude00","日本":"語","\u2028":"\u2029","Z":"a","a":"Z"}"#,
            r#"[0,-0,1,-1,42,18446744073709551615,-9223372036854775808,0.1,-0.0,1.5,1e300,-2.5e-300,123456789.123456789,3.0,1E2]"#,
            r#"{"n":{"int":7,"neg":-7,"f":7.25,"exp":6.02e23,"tiny":5e-324},"deep":[[[[["x"]]]]]}"#,
            r#""just a string with \u00e9 and \ud834\udd1e""#,
            "null",
            "12.0",
        ];
        for case in cases {
            let v: Value = serde_json::from_str(case).unwrap_or_else(|e| panic!("{case}: {e}"));
            let mut former = String::new();
            former_stages_canonical_json(&v, &mut former);
            assert_eq!(canonical_json(&v), former.as_bytes(), "{case}");
        }
        // And so the record hashes split and balance use are the same.
        let rec: Record = serde_json::from_str(cases[0]).unwrap();
        let mut former = String::new();
        former_stages_canonical_json(&Value::Object(rec.clone()), &mut former);
        let mut h = blake3::Hasher::new();
        h.update(&3u64.to_le_bytes());
        h.update(former.as_bytes());
        let expected = u64::from_le_bytes(h.finalize().as_bytes()[..8].try_into().unwrap());
        assert_eq!(content_hash(&rec, 3, &[]), expected);
    }

    #[test]
    fn apportion_sums_exactly() {
        assert_eq!(apportion(10, &[1.0, 1.0, 1.0]), vec![4, 3, 3]);
        assert_eq!(apportion(80, &[0.5, 0.25, 0.25]), vec![40, 20, 20]);
        assert_eq!(apportion(5, &[0.0, 0.0]), vec![0, 0]);
    }

    #[test]
    fn summary_percentiles() {
        let mut v: Vec<f64> = (1..=20).map(f64::from).collect();
        assert_eq!(summary(&mut v), json!({"min": 1.0, "mean": 10.5, "p50": 10.0, "p95": 19.0, "max": 20.0}));
        assert_eq!(summary(&mut []), Value::Null);
    }

    #[test]
    fn chunks_skip_bad_lines_without_ending_early() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.jsonl");
        // More bad lines than one chunk holds, then an invalid UTF-8 line, then a record.
        let mut bytes = "oops\n".repeat(CHUNK + 5).into_bytes();
        bytes.extend_from_slice(b"\xff\n\n{\"a\":1}\n");
        std::fs::write(&p, bytes).unwrap();
        let pool = pool(2).unwrap();
        let mut reader = ChunkReader::open(&p).unwrap();
        let mut bad = Vec::new();
        let chunk = read_chunk(&mut reader, &pool, OnError::Skip, &mut bad).unwrap();
        assert_eq!(chunk, vec![(CHUNK + 8, json!({"a": 1}).as_object().unwrap().clone())]);
        assert_eq!(bad.len(), CHUNK + 6);
        assert_eq!((bad[0].line, bad[0].text.as_str()), (1, "oops"));
        assert!(bad[CHUNK + 5].reason.starts_with("cannot read line"), "{}", bad[CHUNK + 5].reason);
        assert!(read_chunk(&mut reader, &pool, OnError::Skip, &mut bad).unwrap().is_empty());
        let mut reader = ChunkReader::open(&p).unwrap();
        let err = read_chunk(&mut reader, &pool, OnError::Fail, &mut bad).unwrap_err();
        assert!(
            err.message.ends_with("x.jsonl:1: malformed JSON: expected value at line 1 column 1"),
            "{}",
            err.message
        );
    }

    #[test]
    fn a_folder_without_records_fails_at_open_naming_what_it_wants() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("notes.txt"), "x").unwrap();
        let err = ChunkReader::open(dir.path()).err().unwrap();
        assert_eq!(
            err.message,
            format!(
                "{}: a folder of records holds .parquet shards or a datasets.save_to_disk dataset (state.json), \
                 and this one has neither",
                dir.path().display()
            )
        );
    }

    #[test]
    fn normalize_folds_case_and_space() {
        assert_eq!(normalize_text("  Hello\n\tWorld  "), "hello world");
    }
}
