//! JSONL records: streaming reader with file/line errors, a buffered writer,
//! and the text of a record for the common dataset shapes (Alpaca
//! `instruction/input/output`, ShareGPT `conversations`, OpenAI-chat `messages`).

use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};

use dvx_stage_api::StageFailure;
use serde_json::{Map, Value};

/// One JSON object per line.
pub type Record = Map<String, Value>;

/// Streams the records of a JSONL file, one at a time, with their line numbers.
/// Blank lines are skipped. A line that is not a JSON object is an error naming
/// the file and line.
pub struct RecordReader {
    path: PathBuf,
    lines: std::io::Lines<BufReader<File>>,
    line_no: usize,
}

impl RecordReader {
    /// Open `path` for reading.
    pub fn open(path: &Path) -> Result<Self, StageFailure> {
        let file = File::open(path).map_err(|e| StageFailure::new(format!("cannot open {}: {e}", path.display())))?;
        Ok(RecordReader {
            path: path.to_path_buf(),
            lines: BufReader::with_capacity(1 << 20, file).lines(),
            line_no: 0,
        })
    }
}

/// A line that could not be read as a record.
#[derive(Debug)]
pub struct BadLine {
    /// File it came from.
    pub path: PathBuf,
    /// 1-based line number.
    pub line: usize,
    /// The raw text of the line.
    pub text: String,
    /// Why it is bad.
    pub reason: String,
}

impl From<BadLine> for StageFailure {
    fn from(b: BadLine) -> Self {
        StageFailure::bad_input(format!("{}:{}: {}", b.path.display(), b.line, b.reason))
    }
}

impl Iterator for RecordReader {
    /// `(line number, record)`, or the bad line.
    type Item = Result<(usize, Record), BadLine>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let line = self.lines.next()?;
            self.line_no += 1;
            let line = match line {
                Ok(l) => l,
                Err(e) => {
                    return Some(Err(BadLine {
                        path: self.path.clone(),
                        line: self.line_no,
                        text: String::new(),
                        reason: format!("cannot read line: {e}"),
                    }))
                }
            };
            if line.trim().is_empty() {
                continue;
            }
            return Some(match serde_json::from_str::<Value>(&line) {
                Ok(Value::Object(map)) => Ok((self.line_no, map)),
                Ok(_) => Err(BadLine {
                    path: self.path.clone(),
                    line: self.line_no,
                    text: line,
                    reason: "not a JSON object".into(),
                }),
                Err(e) => Err(BadLine {
                    path: self.path.clone(),
                    line: self.line_no,
                    reason: format!("malformed JSON: {e}"),
                    text: line,
                }),
            });
        }
    }
}

/// Reads every record of `path` into memory, failing on the first bad line.
pub fn read_all(path: &Path) -> Result<Vec<Record>, StageFailure> {
    let mut out = Vec::new();
    for item in RecordReader::open(path)? {
        out.push(item?.1);
    }
    Ok(out)
}

/// Writes records as JSONL (one compact object per line, keys in the order
/// they were inserted), creating parent folders.
pub struct RecordWriter {
    path: PathBuf,
    out: BufWriter<File>,
    count: usize,
}

impl RecordWriter {
    /// Create (truncate) `path`.
    pub fn create(path: &Path) -> Result<Self, StageFailure> {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        let file =
            File::create(path).map_err(|e| StageFailure::new(format!("cannot create {}: {e}", path.display())))?;
        Ok(RecordWriter { path: path.to_path_buf(), out: BufWriter::with_capacity(1 << 20, file), count: 0 })
    }

    /// Append one record.
    pub fn write(&mut self, record: &Record) -> Result<(), StageFailure> {
        serde_json::to_writer(&mut self.out, record)
            .map_err(|e| StageFailure::new(format!("cannot write {}: {e}", self.path.display())))?;
        self.out.write_all(b"\n")?;
        self.count += 1;
        Ok(())
    }

    /// How many records were written.
    pub fn count(&self) -> usize {
        self.count
    }

    /// Flush to disk.
    pub fn finish(mut self) -> Result<usize, StageFailure> {
        self.out.flush()?;
        Ok(self.count)
    }
}

/// Which shape a record has, for picking the fields that make up its text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// `instruction` / `input` / `output`.
    Alpaca,
    /// `conversations: [{from, value}]`.
    ShareGpt,
    /// `messages: [{role, content}]`.
    Chat,
    /// Anything else: all string fields.
    Other,
}

/// Detect the shape of a record from its fields.
pub fn detect_shape(record: &Record) -> Shape {
    if record.get("messages").is_some_and(Value::is_array) {
        Shape::Chat
    } else if record.get("conversations").is_some_and(Value::is_array) {
        Shape::ShareGpt
    } else if record.contains_key("instruction") || record.contains_key("output") {
        Shape::Alpaca
    } else {
        Shape::Other
    }
}

/// The turns of a conversation record as `(role, text)`, whatever its shape.
/// Alpaca records become a user turn (instruction + input) and an assistant turn.
pub fn turns(record: &Record) -> Vec<(String, String)> {
    let str_of = |v: Option<&Value>| v.and_then(Value::as_str).unwrap_or("").to_string();
    match detect_shape(record) {
        Shape::Chat => record["messages"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|m| (str_of(m.get("role")), content_text(m.get("content"))))
            .collect(),
        Shape::ShareGpt => record["conversations"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|m| {
                let role = match str_of(m.get("from")).as_str() {
                    "human" | "user" => "user".to_string(),
                    "gpt" | "assistant" => "assistant".to_string(),
                    other => other.to_string(),
                };
                (role, str_of(m.get("value")))
            })
            .collect(),
        Shape::Alpaca => {
            let mut user = str_of(record.get("instruction"));
            let input = str_of(record.get("input"));
            if !input.is_empty() {
                if !user.is_empty() {
                    user.push('\n');
                }
                user.push_str(&input);
            }
            vec![("user".into(), user), ("assistant".into(), str_of(record.get("output")))]
        }
        Shape::Other => Vec::new(),
    }
}

/// Text of a chat `content`, which may be a string or a list of parts.
fn content_text(v: Option<&Value>) -> String {
    match v {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(parts)) => parts
            .iter()
            .filter_map(|p| p.get("text").and_then(Value::as_str).or_else(|| p.as_str()))
            .collect::<Vec<_>>()
            .join("\n"),
        _ => String::new(),
    }
}

/// The value at a dotted field path (`meta.category`, `messages.0.content`).
pub fn field<'a>(record: &'a Record, path: &str) -> Option<&'a Value> {
    let mut parts = path.split('.');
    let mut cur = record.get(parts.next()?)?;
    for part in parts {
        cur = match cur {
            Value::Object(m) => m.get(part)?,
            Value::Array(a) => a.get(part.parse::<usize>().ok()?)?,
            _ => return None,
        };
    }
    Some(cur)
}

/// A value rendered as text: strings as they are, conversations as their
/// turns' text, anything else as compact JSON.
pub fn value_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        Value::Array(items) => items
            .iter()
            .map(|i| match i {
                Value::Object(m) => {
                    m.get("content").or_else(|| m.get("value")).map(value_text).unwrap_or_else(|| i.to_string())
                }
                other => value_text(other),
            })
            .collect::<Vec<_>>()
            .join("\n"),
        other => other.to_string(),
    }
}

/// The text of a record: the named fields joined by newlines, or, when
/// `fields` is empty, the text of its turns (all string fields for unknown
/// shapes, in key order).
pub fn record_text(record: &Record, fields: &[String]) -> String {
    if !fields.is_empty() {
        return fields.iter().filter_map(|f| field(record, f)).map(value_text).collect::<Vec<_>>().join("\n");
    }
    match detect_shape(record) {
        Shape::Other => record.values().filter_map(Value::as_str).collect::<Vec<_>>().join("\n"),
        _ => turns(record).into_iter().map(|(_, t)| t).collect::<Vec<_>>().join("\n"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn rec(v: Value) -> Record {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn shapes_and_text() {
        let a = rec(json!({"instruction": "Do", "input": "x", "output": "done"}));
        assert_eq!(detect_shape(&a), Shape::Alpaca);
        assert_eq!(record_text(&a, &[]), "Do\nx\ndone");
        let s = rec(json!({"conversations": [{"from": "human", "value": "hi"}, {"from": "gpt", "value": "yo"}]}));
        assert_eq!(turns(&s), vec![("user".into(), "hi".into()), ("assistant".into(), "yo".into())]);
        let c = rec(json!({"messages": [{"role": "user", "content": "q"}], "meta": {"cat": "CRUD"}}));
        assert_eq!(record_text(&c, &[]), "q");
        assert_eq!(field(&c, "meta.cat"), Some(&json!("CRUD")));
        assert_eq!(field(&c, "messages.0.role"), Some(&json!("user")));
    }

    #[test]
    fn reader_names_bad_line() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.jsonl");
        std::fs::write(&p, "{\"a\":1}\n\n{oops\n").unwrap();
        let items: Vec<_> = RecordReader::open(&p).unwrap().collect();
        assert_eq!(items.len(), 2);
        let err = items[1].as_ref().unwrap_err();
        assert_eq!(err.line, 3);
        assert!(err.reason.starts_with("malformed JSON"));
    }
}
