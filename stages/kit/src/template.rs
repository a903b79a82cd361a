//! `{field}` templates, shared by `multiply` and the LLM kinds' prompts:
//! `{name}` is the record's field `name` (dotted paths work); `{{` and `}}`
//! are literal braces.

use dvx_stage_api::StageFailure;

use crate::records::{field, value_text, Record};

/// A template split into literal text and placeholders (shared with the
/// LLM kinds' prompt templates).
#[derive(Debug, Clone, PartialEq)]
pub enum Piece {
    Text(String),
    Field(String),
}

/// Split `t` into text and placeholders, or say what is malformed.
pub fn compile(t: &str) -> Result<Vec<Piece>, String> {
    let mut pieces = Vec::new();
    let mut text = String::new();
    let mut chars = t.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '{' if chars.peek() == Some(&'{') => {
                chars.next();
                text.push('{');
            }
            '}' if chars.peek() == Some(&'}') => {
                chars.next();
                text.push('}');
            }
            '{' => {
                let mut name = String::new();
                loop {
                    match chars.next() {
                        Some('}') => break,
                        Some(c) if c.is_alphanumeric() || c == '_' || c == '.' || c == '-' => name.push(c),
                        Some(c) => {
                            return Err(format!(
                            "`{c}` cannot appear in a placeholder (`{{{name}{c}`); write `{{{{` for a literal brace"
                        ))
                        }
                        None => return Err(format!("unclosed placeholder `{{{name}`")),
                    }
                }
                if name.is_empty() {
                    return Err("empty placeholder `{}`".into());
                }
                if !text.is_empty() {
                    pieces.push(Piece::Text(std::mem::take(&mut text)));
                }
                pieces.push(Piece::Field(name));
            }
            '}' => return Err("lone `}`; write `}}` for a literal brace".into()),
            c => text.push(c),
        }
    }
    if !text.is_empty() {
        pieces.push(Piece::Text(text));
    }
    Ok(pieces)
}

/// `pieces` with each placeholder replaced by `record`'s field; a missing
/// field is bad input naming the template `id` and the record (`at`).
pub fn fill(pieces: &[Piece], record: &Record, id: &str, at: &str) -> Result<String, StageFailure> {
    let mut out = String::new();
    for p in pieces {
        match p {
            Piece::Text(t) => out.push_str(t),
            Piece::Field(name) => match field(record, name) {
                Some(v) => out.push_str(&value_text(v)),
                None => {
                    return Err(StageFailure::bad_input(format!(
                        "{at}: template `{id}` uses `{{{name}}}`, which this record does not have"
                    )))
                }
            },
        }
    }
    Ok(out)
}
