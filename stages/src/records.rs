//! Records as the stages see them: reading and writing come from
//! `dvx-records`; here is the text of a record for the common dataset shapes (Alpaca
//! `instruction/input/output`, ShareGPT `conversations`, OpenAI-chat `messages`).

use serde_json::Value;

/// Reading and writing live in `dvx-records`, for every container.
pub use dvx_records::{field, read_all, Record, RecordReader, RecordWriter};

/// A record that could not be read (by line, row or element).
pub type BadLine = dvx_records::BadRecord;

/// Which shape a record has, for picking the fields that make up its text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// One exchange: `instruction` / `input` / `output`, or the other
    /// names in [`PROMPT_FIELDS`] and [`ANSWER_FIELDS`].
    Alpaca,
    /// `conversations: [{from, value}]`.
    ShareGpt,
    /// `messages: [{role, content}]`.
    Chat,
    /// Anything else: all string fields.
    Other,
}

/// Fields read as the prompt of a single-exchange record, in order of
/// preference: Alpaca's `instruction`, and the names other datasets use.
pub const PROMPT_FIELDS: [&str; 3] = ["instruction", "prompt", "question"];
/// Fields read as the answer: Alpaca's `output`, then `response` (seed
/// 002, Anthropic-HH exports), `completion`, `answer`.
pub const ANSWER_FIELDS: [&str; 4] = ["output", "response", "completion", "answer"];

/// Detect the shape of a record from its fields.
pub fn detect_shape(record: &Record) -> Shape {
    if record.get("messages").is_some_and(Value::is_array) {
        Shape::Chat
    } else if record.get("conversations").is_some_and(Value::is_array) {
        Shape::ShareGpt
    } else if PROMPT_FIELDS.iter().chain(&ANSWER_FIELDS).any(|f| record.contains_key(*f)) {
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
            let first = |names: &[&str]| names.iter().find_map(|n| record.get(*n)).and_then(Value::as_str);
            let mut user = first(&PROMPT_FIELDS).unwrap_or("").to_string();
            let input = str_of(record.get("input"));
            if !input.is_empty() {
                if !user.is_empty() {
                    user.push('\n');
                }
                user.push_str(&input);
            }
            vec![("user".into(), user), ("assistant".into(), first(&ANSWER_FIELDS).unwrap_or("").to_string())]
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
        // Seed 002's shape: the answer is in `response`, not missing.
        let seed = rec(json!({"instruction": "Do", "response": "done", "source": "s", "category": "c"}));
        assert_eq!(detect_shape(&seed), Shape::Alpaca);
        assert_eq!(turns(&seed), vec![("user".into(), "Do".into()), ("assistant".into(), "done".into())]);
        assert_eq!(record_text(&seed, &[]), "Do\ndone");
        let pc = rec(json!({"prompt": "p", "completion": "c", "id": "x"}));
        assert_eq!(record_text(&pc, &[]), "p\nc");
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
        assert!(err.message.contains("x.jsonl:3: malformed JSON"), "{}", err.message);
    }
}
