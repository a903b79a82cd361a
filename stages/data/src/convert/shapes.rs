//! Record shapes and the conversion between them, through one middle form:
//! a list of messages (`role`, `content`, and whatever else an OpenAI
//! message carries, such as `tool_calls`, kept as it is) plus the fields
//! that are not part of the conversation.

use serde::Deserialize;
use serde_json::{Map, Value};

use crate::records::{Record, ANSWER_FIELDS, PROMPT_FIELDS};

/// A record shape `convert` reads or writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum RecordShape {
    /// `instruction` / `input` / `output`, optional `system`.
    Alpaca,
    /// `conversations: [{from, value}]`.
    Sharegpt,
    /// OpenAI `messages: [{role, content, ...}]`.
    Messages,
    /// `prompt` / `completion`.
    PromptCompletion,
    /// `text` (write only: a text has no turns to read back).
    Text,
}

impl RecordShape {
    pub(crate) fn name(self) -> &'static str {
        match self {
            RecordShape::Alpaca => "alpaca",
            RecordShape::Sharegpt => "sharegpt",
            RecordShape::Messages => "messages",
            RecordShape::PromptCompletion => "prompt_completion",
            RecordShape::Text => "text",
        }
    }
}


/// ShareGPT's `from` names for each role.
#[derive(Debug, Clone, Deserialize, serde::Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct RoleNames {
    pub(crate) user: String,
    pub(crate) assistant: String,
    pub(crate) system: String,
    pub(crate) tool: String,
}

impl Default for RoleNames {
    fn default() -> Self {
        RoleNames { user: "human".into(), assistant: "gpt".into(), system: "system".into(), tool: "tool".into() }
    }
}

impl RoleNames {
    fn to_sharegpt<'a>(&'a self, role: &'a str) -> &'a str {
        match role {
            "user" => &self.user,
            "assistant" => &self.assistant,
            "system" => &self.system,
            "tool" => &self.tool,
            other => other,
        }
    }

    fn from_sharegpt<'a>(&self, from: &'a str) -> &'a str {
        // Configured names first, then the common spellings.
        if from == self.user || from == "human" || from == "user" {
            "user"
        } else if from == self.assistant || from == "gpt" || from == "assistant" {
            "assistant"
        } else if from == self.system || from == "system" {
            "system"
        } else if from == self.tool || from == "tool" || from == "function_call" || from == "observation" {
            "tool"
        } else {
            from
        }
    }
}

/// A conversation: messages plus the record's other fields.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct Conversation {
    pub(crate) messages: Vec<Map<String, Value>>,
    pub(crate) extra: Record,
}

/// The shape a record has, from its fields.
pub(crate) fn detect(record: &Record) -> Option<RecordShape> {
    if record.get("messages").is_some_and(Value::is_array) {
        Some(RecordShape::Messages)
    } else if record.get("conversations").is_some_and(Value::is_array) {
        Some(RecordShape::Sharegpt)
    } else if record.contains_key("prompt") && record.contains_key("completion") {
        Some(RecordShape::PromptCompletion)
    } else if PROMPT_FIELDS.iter().any(|f| record.contains_key(*f)) {
        Some(RecordShape::Alpaca)
    } else if record.contains_key("text") {
        Some(RecordShape::Text)
    } else {
        None
    }
}

fn message(role: &str, content: Value) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("role".into(), Value::String(role.into()));
    m.insert("content".into(), content);
    m
}

fn text_of(v: &Value, what: &str) -> Result<String, String> {
    match v {
        Value::String(s) => Ok(s.clone()),
        Value::Null => Ok(String::new()),
        other => Err(format!("`{what}` is not a string: {other}")),
    }
}

/// Read `record` as `shape` into a conversation.
pub(crate) fn read(mut record: Record, shape: RecordShape, roles: &RoleNames) -> Result<Conversation, String> {
    let mut messages = Vec::new();
    match shape {
        RecordShape::Messages => {
            let Some(Value::Array(list)) = record.remove("messages") else {
                return Err("no `messages` list".into());
            };
            for (i, m) in list.into_iter().enumerate() {
                match m {
                    Value::Object(m) if m.get("role").is_some_and(Value::is_string) => messages.push(m),
                    _ => return Err(format!("`messages.{i}` is not an object with a string `role`")),
                }
            }
        }
        RecordShape::Sharegpt => {
            let Some(Value::Array(list)) = record.remove("conversations") else {
                return Err("no `conversations` list".into());
            };
            for (i, turn) in list.into_iter().enumerate() {
                let Value::Object(mut t) = turn else {
                    return Err(format!("`conversations.{i}` is not an object"));
                };
                let from = match t.remove("from") {
                    Some(Value::String(s)) => s,
                    _ => return Err(format!("`conversations.{i}.from` is missing or not a string")),
                };
                let value = text_of(t.get("value").unwrap_or(&Value::Null), &format!("conversations.{i}.value"))?;
                messages.push(message(roles.from_sharegpt(&from), Value::String(value)));
            }
        }
        RecordShape::Alpaca => {
            if let Some(system) = record.remove("system") {
                let s = text_of(&system, "system")?;
                if !s.is_empty() {
                    messages.push(message("system", Value::String(s)));
                }
            }
            let prompt = take_first(&mut record, &PROMPT_FIELDS)?.unwrap_or_default();
            let input = match record.remove("input") {
                Some(v) => text_of(&v, "input")?,
                None => String::new(),
            };
            let user = if input.is_empty() { prompt } else { format!("{prompt}\n\n{input}") };
            let answer = take_first(&mut record, &ANSWER_FIELDS)?
                .ok_or_else(|| format!("no answer field (one of {})", ANSWER_FIELDS.join(", ")))?;
            messages.push(message("user", Value::String(user)));
            messages.push(message("assistant", Value::String(answer)));
        }
        RecordShape::PromptCompletion => {
            let prompt = text_of(&record.remove("prompt").unwrap_or(Value::Null), "prompt")?;
            let completion = text_of(&record.remove("completion").unwrap_or(Value::Null), "completion")?;
            messages.push(message("user", Value::String(prompt)));
            messages.push(message("assistant", Value::String(completion)));
        }
        RecordShape::Text => return Err("a `text` record has no turns to convert".into()),
    }
    Ok(Conversation { messages, extra: record })
}

/// The first of `fields` the record has, removed; the others stay as extra fields.
fn take_first(record: &mut Record, fields: &[&str]) -> Result<Option<String>, String> {
    for f in fields {
        if let Some(v) = record.remove(*f) {
            return text_of(&v, f).map(Some);
        }
    }
    Ok(None)
}

/// Checks a conversation can be a training example: an optional system
/// message first, then user and assistant turns alternating (tool messages
/// may follow an assistant turn), starting with user, none empty.
pub(crate) fn check(c: &Conversation) -> Result<(), String> {
    let mut expect_user = true;
    let mut turns = 0;
    for (i, m) in c.messages.iter().enumerate() {
        let role = m.get("role").and_then(Value::as_str).unwrap_or("");
        let empty = match m.get("content") {
            Some(Value::String(s)) => s.trim().is_empty(),
            Some(Value::Null) | None => true,
            Some(_) => false,
        };
        let has_tool_calls = m.get("tool_calls").is_some_and(|t| !t.is_null());
        if empty && !has_tool_calls {
            return Err(format!("turn {} ({role}) is empty", i + 1));
        }
        match role {
            "system" if i == 0 => {}
            "system" => return Err(format!("turn {}: a system message after the first turn", i + 1)),
            "user" if expect_user => expect_user = false,
            "assistant" if !expect_user => {
                expect_user = true;
                turns += 1;
            }
            "tool" if expect_user && turns > 0 => {}
            "assistant" if expect_user && turns > 0 && prev_is_tool(c, i) => {}
            "user" | "assistant" | "tool" => {
                return Err(format!("turn {} ({role}): turns do not alternate user / assistant", i + 1))
            }
            other => return Err(format!("turn {}: unknown role `{other}`", i + 1)),
        }
    }
    if turns == 0 || !expect_user {
        return Err("the conversation does not end with an assistant answer".into());
    }
    Ok(())
}

fn prev_is_tool(c: &Conversation, i: usize) -> bool {
    i > 0 && c.messages[i - 1].get("role").and_then(Value::as_str) == Some("tool")
}

/// What to do with the system prompt.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct SystemPolicy {
    /// Added as the first message when a record has none.
    pub(crate) add: Option<String>,
    /// Remove any system message.
    pub(crate) drop: bool,
}

pub(crate) fn apply_system(c: &mut Conversation, policy: &SystemPolicy) {
    let has = c.messages.first().and_then(|m| m.get("role")).and_then(Value::as_str) == Some("system");
    if policy.drop {
        if has {
            c.messages.remove(0);
        }
    } else if let (Some(text), false) = (&policy.add, has) {
        c.messages.insert(0, message("system", Value::String(text.clone())));
    }
}

fn content_text(m: &Map<String, Value>) -> String {
    crate::records::value_text(m.get("content").unwrap_or(&Value::Null))
}

/// Write a conversation as `shape`: the shape's fields first, then the extra fields.
pub(crate) fn write(c: Conversation, shape: RecordShape, roles: &RoleNames) -> Result<Record, String> {
    let mut out = Record::new();
    let (system, rest): (Vec<_>, Vec<_>) =
        c.messages.iter().partition(|m| m.get("role").and_then(Value::as_str) == Some("system"));
    let single = |what: &str| -> Result<(String, String), String> {
        match rest.as_slice() {
            [u, a] => Ok((content_text(u), content_text(a))),
            _ => Err(format!("{what} holds one exchange; this record has {} messages besides the system prompt", rest.len())),
        }
    };
    match shape {
        RecordShape::Messages => {
            out.insert("messages".into(), Value::Array(c.messages.into_iter().map(Value::Object).collect()));
        }
        RecordShape::Sharegpt => {
            let turns = c
                .messages
                .iter()
                .map(|m| {
                    let role = m.get("role").and_then(Value::as_str).unwrap_or("");
                    let mut t = Map::new();
                    t.insert("from".into(), Value::String(roles.to_sharegpt(role).into()));
                    t.insert("value".into(), Value::String(content_text(m)));
                    Value::Object(t)
                })
                .collect();
            out.insert("conversations".into(), Value::Array(turns));
        }
        RecordShape::Alpaca => {
            let (user, answer) = single("alpaca")?;
            out.insert("instruction".into(), Value::String(user));
            out.insert("input".into(), Value::String(String::new()));
            out.insert("output".into(), Value::String(answer));
            if let Some(s) = system.first() {
                out.insert("system".into(), Value::String(content_text(s)));
            }
        }
        RecordShape::PromptCompletion => {
            if !system.is_empty() {
                return Err("prompt/completion has no place for a system prompt (set `drop_system: true`)".into());
            }
            let (user, answer) = single("prompt/completion")?;
            out.insert("prompt".into(), Value::String(user));
            out.insert("completion".into(), Value::String(answer));
        }
        RecordShape::Text => {
            let text = c.messages.iter().map(content_text).collect::<Vec<_>>().join("\n\n");
            out.insert("text".into(), Value::String(text));
        }
    }
    for (k, v) in c.extra {
        if !out.contains_key(&k) {
            out.insert(k, v);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn rec(v: Value) -> Record {
        v.as_object().unwrap().clone()
    }

    fn conv(v: Value, shape: RecordShape) -> Conversation {
        read(rec(v), shape, &RoleNames::default()).unwrap()
    }

    #[test]
    fn seed_shape_reads_its_response_as_the_answer() {
        let c = conv(json!({"instruction": "q", "response": "a", "source": "s"}), RecordShape::Alpaca);
        assert_eq!(c.messages, vec![message("user", json!("q")), message("assistant", json!("a"))]);
        assert_eq!(c.extra, rec(json!({"source": "s"})));
        let err = read(rec(json!({"instruction": "q"})), RecordShape::Alpaca, &RoleNames::default()).unwrap_err();
        assert_eq!(err, "no answer field (one of output, response, completion, answer)");
    }

    #[test]
    fn alternation_and_empty_turns_are_checked() {
        let ok = conv(json!({"conversations": [{"from": "system", "value": "s"}, {"from": "human", "value": "q"}, {"from": "gpt", "value": "a"}]}), RecordShape::Sharegpt);
        assert_eq!(check(&ok), Ok(()));
        let twice = conv(json!({"conversations": [{"from": "human", "value": "q"}, {"from": "human", "value": "q2"}, {"from": "gpt", "value": "a"}]}), RecordShape::Sharegpt);
        assert_eq!(check(&twice), Err("turn 2 (user): turns do not alternate user / assistant".into()));
        let empty = conv(json!({"conversations": [{"from": "human", "value": "q"}, {"from": "gpt", "value": " "}]}), RecordShape::Sharegpt);
        assert_eq!(check(&empty), Err("turn 2 (assistant) is empty".into()));
        let tools = conv(
            json!({"messages": [
                {"role": "user", "content": "wx?"},
                {"role": "assistant", "content": "", "tool_calls": [{"id": "c1"}]},
                {"role": "tool", "content": "sunny", "tool_call_id": "c1"},
                {"role": "assistant", "content": "sunny"}]}),
            RecordShape::Messages,
        );
        assert_eq!(check(&tools), Ok(()));
    }
}
