//! Records as the stages see them: reading and writing come from
//! `dvx-records`; here is the text of a record for the common dataset shapes (Alpaca
//! `instruction/input/output`, ShareGPT `conversations`, OpenAI-chat `messages`).

use serde_json::Value;

/// Reading and writing live in `dvx-records`, for every container.
pub use dvx_records::{field, read_all, Record, RecordReader, RecordWriter};

/// A writer for out `i`, taking over what the out held before this run
/// where the engine kept it aside (`StageContext::previous_outs`): records
/// that come out as before then cost a read, not a write
/// ([`RecordWriter::create_over`]), and the engine's store of the out
/// hashes only what changed. Same bytes either way.
pub fn out_writer(
    ctx: &dvx_stage_api::StageContext<'_>,
    i: usize,
) -> Result<RecordWriter, dvx_stage_api::StageFailure> {
    Ok(RecordWriter::create_over(&ctx.outs[i], ctx.previous_out(i))?.reporting_kept(ctx.kept_prefix(i)))
}

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
    shape_and_fields(record).0
}

/// The record's shape, and which of [`KNOWN_FIELDS`] it has (bit `i` for
/// field `i`). Small records are read in one pass over their keys: cheaper
/// than a dozen hashed lookups, and this runs for every record.
fn shape_and_fields(record: &Record) -> (Shape, u16) {
    let (mut bits, mut chat, mut sharegpt) = (0u16, false, false);
    if record.len() <= 32 {
        for (k, v) in record {
            match k.as_str() {
                "messages" => chat = v.is_array(),
                "conversations" => sharegpt = v.is_array(),
                k => {
                    if let Some(i) = KNOWN_FIELDS.iter().position(|f| *f == k) {
                        bits |= 1 << i;
                    }
                }
            }
        }
    } else {
        chat = record.get("messages").is_some_and(Value::is_array);
        sharegpt = record.get("conversations").is_some_and(Value::is_array);
        for (i, f) in KNOWN_FIELDS.iter().enumerate() {
            if record.contains_key(*f) {
                bits |= 1 << i;
            }
        }
    }
    let shape = if chat {
        Shape::Chat
    } else if sharegpt {
        Shape::ShareGpt
    } else if bits & !(1 << SYSTEM) & !(1 << INPUT) != 0 {
        Shape::Alpaca
    } else {
        Shape::Other
    };
    (shape, bits)
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

/// Field names that say which role a single-exchange record's field plays,
/// in one list so a record's text source is a set of bits.
const KNOWN_FIELDS: [&str; 9] =
    ["system", "instruction", "prompt", "question", "input", "output", "response", "completion", "answer"];
/// Places in [`KNOWN_FIELDS`] of the two that alone make no Alpaca record.
const SYSTEM: usize = 0;
const INPUT: usize = 4;

/// Where a record's text comes from, for a stage's log: its shape, the
/// known fields it has, and whether the text holds an answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TextSource {
    /// The record's shape.
    pub shape: Shape,
    /// Bit `i` set: the record has [`KNOWN_FIELDS`]`[i]` (Alpaca shape only).
    fields: u16,
    /// `Some(false)` when the text holds no answer; `None` when the shape
    /// does not say (unknown shapes).
    pub answered: Option<bool>,
}

/// Where `record`'s text comes from when read with `fields` (see [`record_text`]).
pub fn text_source(record: &Record, fields: &[String]) -> TextSource {
    let (shape, mut bits) = shape_and_fields(record);
    if shape != Shape::Alpaca {
        bits = 0;
    }
    let answered = match shape {
        Shape::Other => None,
        _ if !fields.is_empty() => Some(fields.iter().any(|f| {
            let top = f.split('.').next().unwrap_or(f);
            ANSWER_FIELDS.contains(&top) || top == "messages" || top == "conversations"
        })),
        Shape::Alpaca => Some(
            ANSWER_FIELDS
                .iter()
                .find(|f| KNOWN_FIELDS.iter().position(|k| k == *f).is_some_and(|i| bits & (1 << i) != 0))
                .and_then(|f| record.get(*f))
                .and_then(Value::as_str)
                .is_some_and(|s| !s.trim().is_empty()),
        ),
        Shape::Chat | Shape::ShareGpt => Some(turns(record).iter().any(|(r, t)| r == "assistant" && !t.trim().is_empty())),
    };
    TextSource { shape, fields: bits, answered }
}

impl TextSource {
    /// `alpaca: instruction + input + response`, `messages`, `conversations`,
    /// `no known shape: every string field`.
    pub fn describe(&self) -> String {
        match self.shape {
            Shape::Chat => "OpenAI `messages`".into(),
            Shape::ShareGpt => "ShareGPT `conversations`".into(),
            Shape::Other => "no known shape: every string field".into(),
            Shape::Alpaca => {
                // The fields `turns` reads: the first prompt field, `input`, the first answer field.
                let has = |f: &str| KNOWN_FIELDS.iter().position(|k| *k == f).is_some_and(|i| self.fields & (1 << i) != 0);
                let mut used: Vec<&str> = PROMPT_FIELDS.iter().copied().find(|f| has(f)).into_iter().collect();
                if has("input") {
                    used.push("input");
                }
                used.extend(ANSWER_FIELDS.iter().copied().find(|f| has(f)));
                if used.is_empty() {
                    "alpaca: no text field".into()
                } else {
                    format!("alpaca: {}", used.join(" + "))
                }
            }
        }
    }
}

/// A tally of [`TextSource`]s over a stage's records, kept from any thread,
/// then written as the stage's log lines by [`TextSources::report`].
#[derive(Debug)]
pub struct TextSources {
    fields: Vec<String>,
    /// Records per source; a handful of distinct sources in practice.
    seen: std::sync::Mutex<Vec<(TextSource, usize)>>,
}

impl TextSources {
    /// A tally for a stage that reads records' text with `fields` (`[]` = their turns).
    pub fn new(fields: &[String]) -> Self {
        TextSources { fields: fields.to_vec(), seen: std::sync::Mutex::new(Vec::new()) }
    }

    /// Count `record`.
    pub fn observe(&self, record: &Record) {
        let s = text_source(record, &self.fields);
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        match seen.iter_mut().find(|(k, _)| *k == s) {
            Some((_, n)) => *n += 1,
            None => seen.push((s, 1)),
        }
    }

    /// The log lines: where the text came from, and a warning when some
    /// records' text holds no answer. `None` when no record was seen.
    pub fn report(&self, stage: &str) -> Option<String> {
        let seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        let total: usize = seen.iter().map(|(_, n)| n).sum();
        if total == 0 {
            return None;
        }
        let mut by: std::collections::BTreeMap<String, usize> = std::collections::BTreeMap::new();
        for (s, n) in seen.iter() {
            *by.entry(s.describe()).or_default() += n;
        }
        let shapes: Vec<String> = by.iter().map(|(d, n)| format!("{d} ({n})")).collect();
        let mut out = if self.fields.is_empty() {
            format!("{stage}: text of {total} record(s) from their turns: {}", shapes.join(", "))
        } else {
            format!("{stage}: text of {total} record(s) from fields {} (shapes: {})", self.fields.join(", "), shapes.join(", "))
        };
        let unanswered: usize = seen.iter().filter(|(s, _)| s.answered == Some(false)).map(|(_, n)| n).sum();
        if unanswered > 0 {
            let why = if self.fields.is_empty() {
                format!("no answer field ({}) or assistant turn", ANSWER_FIELDS.join(", "))
            } else {
                "the fields named leave out the answer".to_string()
            };
            let warn = format!(
                "{stage}: WARNING: the text of {unanswered} of {total} record(s) holds no answer ({why}): \
                 records that share a prompt read as the same text"
            );
            tracing::warn!("{warn}");
            out.push('\n');
            out.push_str(&warn);
        }
        Some(out)
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

    #[test]
    fn text_sources_name_shape_fields_and_missing_answers() {
        let t = TextSources::new(&[]);
        t.observe(&rec(json!({"instruction": "q", "input": "x", "response": "a"})));
        t.observe(&rec(json!({"instruction": "q", "input": "y", "response": "b"})));
        t.observe(&rec(json!({"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]})));
        t.observe(&rec(json!({"question": "only a question"})));
        t.observe(&rec(json!({"text": "plain"})));
        assert_eq!(
            t.report("dedup").unwrap(),
            "dedup: text of 5 record(s) from their turns: OpenAI `messages` (1), alpaca: instruction + input + response (2), \
             alpaca: question (1), no known shape: every string field (1)\n\
             dedup: WARNING: the text of 1 of 5 record(s) holds no answer (no answer field (output, response, completion, \
             answer) or assistant turn): records that share a prompt read as the same text"
        );
        assert_eq!(TextSources::new(&[]).report("x"), None);
        let named = TextSources::new(&["instruction".to_string(), "response".to_string()]);
        named.observe(&rec(json!({"instruction": "q", "response": "a"})));
        assert_eq!(
            named.report("filter").unwrap(),
            "filter: text of 1 record(s) from fields instruction, response (shapes: alpaca: instruction + response (1))"
        );
    }

}
