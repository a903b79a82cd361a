//! What a chat template is given, as transformers' `apply_chat_template`
//! gives it: the messages as JSON objects (`role`, `content` and whatever
//! else a message carries: `tool_calls`, `tool_call_id`, `name`, reasoning),
//! with fields set to null left out, and the `tools` offered (function
//! schemas, as they are).

use serde_json::{Map, Value as Json};

/// A conversation as a chat template sees it.
#[derive(Debug, Clone, Copy)]
pub struct Chat<'a> {
    /// One JSON object per message.
    pub messages: &'a [Json],
    /// The tools offered, `None` when the record offers none.
    pub tools: Option<&'a [Json]>,
}

impl<'a> Chat<'a> {
    /// The first `n` messages, same tools: what the template renders before message `n`.
    pub fn upto(self, n: usize) -> Chat<'a> {
        Chat { messages: &self.messages[..n], tools: self.tools }
    }

    /// Message `i`'s role.
    pub fn role(&self, i: usize) -> &'a str {
        self.messages[i].get("role").and_then(Json::as_str).unwrap_or("")
    }

    /// Message `i`'s content when it is text.
    pub fn content(&self, i: usize) -> &'a str {
        self.messages[i].get("content").and_then(Json::as_str).unwrap_or("")
    }

    /// Whether message `i` calls tools.
    pub fn calls_tools(&self, i: usize) -> bool {
        self.messages[i].get("tool_calls").is_some_and(|c| !c.is_null())
    }

    /// Refuse a conversation whose tools or tool calls the template
    /// `source` never reads: it would drop them silently. (Tool results are
    /// messages like others: a template renders them by their role.)
    pub fn check_supported_by(&self, source: &str) -> Result<(), String> {
        if self.tools.is_some() && !source.contains("tools") {
            return Err("the record offers `tools`, but the model's chat template has no tool support \
                        (it never reads `tools`)"
                .into());
        }
        for i in 0..self.messages.len() {
            if self.calls_tools(i) && !source.contains("tool_calls") {
                return Err(format!(
                    "message {} has `tool_calls`, but the model's chat template has no tool support \
                     (it never reads `tool_calls`)",
                    i + 1
                ));
            }
        }
        Ok(())
    }
}

/// Reasoning fields transformers copies into one another, so templates that
/// read any of the names see a message's reasoning.
const REASONING_FIELDS: [&str; 3] = ["reasoning_content", "thinking", "reasoning"];

/// A message of a record as a template sees it: `raw` (an OpenAI-style
/// message object) with null fields left out, `content` replaced by `text`
/// where the record's content is a list of parts (dvx gives templates text,
/// as its presets get it), and the reasoning aliases transformers adds.
pub fn template_message(raw: &Map<String, Json>, text: &str) -> Json {
    let mut m: Map<String, Json> =
        raw.iter().filter(|(_, v)| !v.is_null()).map(|(k, v)| (k.clone(), v.clone())).collect();
    if m.get("content").is_some_and(Json::is_array) {
        m.insert("content".into(), Json::String(text.to_string()));
    }
    if let Some(r) = REASONING_FIELDS.iter().find_map(|k| m.get(*k).cloned()) {
        // transformers: {"thinking": r, **message, "reasoning_content": r}
        let mut out = Map::new();
        out.insert("thinking".into(), r.clone());
        out.extend(m); // an existing key keeps its place, as in a Python dict
        out.insert("reasoning_content".into(), r);
        return Json::Object(out);
    }
    Json::Object(m)
}

/// A `(role, content)` message.
pub fn plain_message(role: &str, content: &str) -> Json {
    let mut m = Map::new();
    m.insert("role".into(), Json::String(role.to_string()));
    m.insert("content".into(), Json::String(content.to_string()));
    Json::Object(m)
}

/// A record's `tools`: a list of function schemas, or that list as a JSON
/// string (as some exports store it). Null is none.
pub fn read_tools(v: Option<&Json>) -> Result<Option<Vec<Json>>, String> {
    let parsed;
    let list = match v {
        None | Some(Json::Null) => return Ok(None),
        Some(Json::String(s)) => {
            parsed = serde_json::from_str::<Json>(s).map_err(|e| {
                format!("field `tools` is a string but not JSON ({e}); give a list of function schemas")
            })?;
            &parsed
        }
        Some(other) => other,
    };
    match list {
        Json::Array(items) if items.iter().all(Json::is_object) => Ok(Some(items.clone())),
        _ => Err("field `tools` must be a list of function schemas (objects)".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn messages_as_transformers_gives_them() {
        let raw = json!({"role": "assistant", "content": null, "tool_calls": [{"type": "function"}], "name": null});
        let m = template_message(raw.as_object().unwrap(), "");
        assert_eq!(m, json!({"role": "assistant", "tool_calls": [{"type": "function"}]}));
        let raw = json!({"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]});
        assert_eq!(template_message(raw.as_object().unwrap(), "a\nb"), json!({"role": "user", "content": "a\nb"}));
        let raw = json!({"role": "assistant", "content": "x", "reasoning": "r"});
        let m = template_message(raw.as_object().unwrap(), "x");
        let keys: Vec<&String> = m.as_object().unwrap().keys().collect();
        assert_eq!(keys, ["thinking", "role", "content", "reasoning", "reasoning_content"]);
        assert_eq!(m["thinking"], "r");
    }

    #[test]
    fn tools_field() {
        assert_eq!(read_tools(None).unwrap(), None);
        let t = read_tools(Some(&json!([{"type": "function"}]))).unwrap().unwrap();
        assert_eq!(t, vec![json!({"type": "function"})]);
        assert_eq!(read_tools(Some(&json!("[{\"a\": 1}]"))).unwrap().unwrap(), vec![json!({"a": 1})]);
        assert!(read_tools(Some(&json!("nope"))).unwrap_err().contains("not JSON"));
        assert!(read_tools(Some(&json!([1]))).unwrap_err().contains("list of function schemas"));
    }

    #[test]
    fn tool_support_is_checked() {
        let msgs = [plain_message("user", "q"), json!({"role": "assistant", "tool_calls": []})];
        let tools = [json!({})];
        let chat = Chat { messages: &msgs, tools: Some(&tools) };
        assert!(chat.check_supported_by("{{ tools }}{{ m.tool_calls }}").is_ok());
        assert!(chat.check_supported_by("{{ m.content }}").unwrap_err().contains("never reads `tools`"));
        let chat = Chat { tools: None, ..chat };
        assert!(chat.check_supported_by("{{ m.content }}").unwrap_err().contains("message 2 has `tool_calls`"));
    }
}
