//! Chat templates: how a record's turns become the text a model is trained on
//! and prompted with. Only assistant text (and its closing suffix) is trained
//! on by default; prompts end with the assistant prefix.

use serde::{Deserialize, Serialize};

use crate::records::{detect_shape, Record, Shape};

/// The `template` param: a preset name, a one-turn string with `{user}` and
/// `{assistant}` (and optionally `{system}`), or per-role prefixes/suffixes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum TemplateParam {
    /// `auto`, `alpaca`, `chat`, `chatml`, `plain`, or a string with placeholders.
    Text(String),
    /// Explicit role affixes.
    Roles(Template),
}

impl Default for TemplateParam {
    fn default() -> Self {
        TemplateParam::Text("auto".into())
    }
}

/// Per-role text around each turn. Stored in the model's `config.json`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Template {
    /// Before a system turn.
    pub system: String,
    /// After a system turn.
    pub system_end: String,
    /// Before a user turn.
    pub user: String,
    /// After a user turn.
    pub user_end: String,
    /// Before an assistant turn (the prompt ends with it).
    pub assistant: String,
    /// After an assistant turn (trained on, then the eos token).
    pub assistant_end: String,
}

/// A resolved template choice: fixed, or picked per record shape.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TemplateSet {
    /// For Alpaca-shaped records.
    pub alpaca: Template,
    /// For chat-shaped records (`messages`, `conversations`).
    pub chat: Template,
}

/// One piece of rendered text and whether the loss counts its tokens.
#[derive(Debug, Clone, PartialEq)]
pub struct Segment {
    /// The text.
    pub text: String,
    /// Trained on (assistant text) or context only.
    pub train: bool,
}

fn alpaca() -> Template {
    Template {
        system: String::new(),
        system_end: "\n\n".into(),
        user: "### Instruction:\n".into(),
        user_end: "\n\n".into(),
        assistant: "### Response:\n".into(),
        assistant_end: "\n".into(),
    }
}

fn chat() -> Template {
    Template {
        system: "<|system|>\n".into(),
        system_end: "\n".into(),
        user: "<|user|>\n".into(),
        user_end: "\n".into(),
        assistant: "<|assistant|>\n".into(),
        assistant_end: "\n".into(),
    }
}

fn chatml() -> Template {
    Template {
        system: "<|im_start|>system\n".into(),
        system_end: "<|im_end|>\n".into(),
        user: "<|im_start|>user\n".into(),
        user_end: "<|im_end|>\n".into(),
        assistant: "<|im_start|>assistant\n".into(),
        assistant_end: "<|im_end|>\n".into(),
    }
}

fn plain() -> Template {
    Template {
        system: String::new(),
        system_end: "\n".into(),
        user: "User: ".into(),
        user_end: "\n".into(),
        assistant: "Assistant: ".into(),
        assistant_end: "\n".into(),
    }
}

/// Parse a one-turn string: `[prefix]{system}[..]{user}[..]{assistant}[..]`.
fn from_string(s: &str) -> Result<Template, String> {
    let (before_asst, asst_end) = s
        .split_once("{assistant}")
        .ok_or("a template string needs `{assistant}` (or use a preset: auto, alpaca, chat, chatml, plain)")?;
    let (before_user, between) =
        before_asst.split_once("{user}").ok_or("a template string needs `{user}` before `{assistant}`")?;
    if asst_end.contains("{user}") || asst_end.contains("{assistant}") {
        return Err("a template string has one `{user}` and one `{assistant}`".into());
    }
    let (system, user) = match before_user.split_once("{system}") {
        Some((sys, rest)) => (sys.to_string(), rest.to_string()),
        None => (String::new(), before_user.to_string()),
    };
    Ok(Template {
        system,
        system_end: String::new(),
        user,
        user_end: String::new(),
        assistant: between.to_string(),
        assistant_end: asst_end.to_string(),
    })
}

impl TemplateParam {
    /// The templates this param stands for.
    pub fn resolve(&self) -> Result<TemplateSet, String> {
        let one = |t: Template| TemplateSet { alpaca: t.clone(), chat: t };
        match self {
            TemplateParam::Roles(t) => Ok(one(t.clone())),
            TemplateParam::Text(s) => match s.as_str() {
                "auto" => Ok(TemplateSet { alpaca: alpaca(), chat: chat() }),
                "alpaca" => Ok(one(alpaca())),
                "chat" => Ok(one(chat())),
                "chatml" => Ok(one(chatml())),
                "plain" => Ok(one(plain())),
                other => from_string(other).map(one),
            },
        }
    }
}

impl TemplateSet {
    fn pick(&self, record: &Record) -> &Template {
        match detect_shape(record) {
            Shape::Alpaca => &self.alpaca,
            _ => &self.chat,
        }
    }

    /// The training text of a record. Records of no known shape train on their
    /// `text` field, whole; `None` when there is nothing to train on.
    pub fn render(&self, record: &Record) -> Option<Vec<Segment>> {
        let turns = crate::records::turns(record);
        if turns.is_empty() {
            let text = record.get("text")?.as_str()?;
            return Some(vec![Segment { text: text.to_string(), train: true }]);
        }
        let t = self.pick(record);
        let mut out = Vec::new();
        for (role, text) in &turns {
            let (pre, end, train) = affixes(t, role);
            out.push(Segment { text: pre.to_string(), train: false });
            out.push(Segment { text: format!("{text}{end}"), train });
        }
        out.iter().any(|s| s.train).then_some(out)
    }

    /// The prompt for generating the record's last assistant turn, and that
    /// turn's text (the reference). `None` when the record has no assistant turn.
    pub fn prompt(&self, record: &Record) -> Option<(String, String)> {
        let turns = crate::records::turns(record);
        let last = turns.iter().rposition(|(r, _)| r == "assistant")?;
        let t = self.pick(record);
        let mut prompt = String::new();
        for (role, text) in &turns[..last] {
            let (pre, end, _) = affixes(t, role);
            prompt.push_str(pre);
            prompt.push_str(text);
            prompt.push_str(end);
        }
        prompt.push_str(&t.assistant);
        Some((prompt, turns[last].1.clone()))
    }
}

/// Prefix, suffix and whether the turn is trained on.
fn affixes<'t>(t: &'t Template, role: &str) -> (&'t str, &'t str, bool) {
    match role {
        "assistant" => (&t.assistant, &t.assistant_end, true),
        "system" => (&t.system, &t.system_end, false),
        _ => (&t.user, &t.user_end, false),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn rec(v: serde_json::Value) -> Record {
        v.as_object().unwrap().clone()
    }

    fn joined(segs: &[Segment]) -> (String, String) {
        let all: String = segs.iter().map(|s| s.text.as_str()).collect();
        let trained: String = segs.iter().filter(|s| s.train).map(|s| s.text.as_str()).collect();
        (all, trained)
    }

    #[test]
    fn auto_alpaca_and_chat() {
        let set = TemplateParam::default().resolve().unwrap();
        let a = rec(json!({"instruction": "Find X", "input": "", "output": "grep -rn X"}));
        let (all, trained) = joined(&set.render(&a).unwrap());
        assert_eq!(all, "### Instruction:\nFind X\n\n### Response:\ngrep -rn X\n");
        assert_eq!(trained, "grep -rn X\n");
        let c = rec(json!({"messages": [
            {"role": "system", "content": "S"}, {"role": "user", "content": "q"},
            {"role": "assistant", "content": "a"}]}));
        let (all, _) = joined(&set.render(&c).unwrap());
        assert_eq!(all, "<|system|>\nS\n<|user|>\nq\n<|assistant|>\na\n");
        let (prompt, reference) = set.prompt(&c).unwrap();
        assert_eq!(prompt, "<|system|>\nS\n<|user|>\nq\n<|assistant|>\n");
        assert_eq!(reference, "a");
    }

    #[test]
    fn string_template_and_text_records() {
        let set = TemplateParam::Text("Q: {user}\nA: {assistant}\n".into()).resolve().unwrap();
        let a = rec(json!({"instruction": "hi", "output": "yo"}));
        let (all, trained) = joined(&set.render(&a).unwrap());
        assert_eq!(all, "Q: hi\nA: yo\n");
        assert_eq!(trained, "yo\n");
        assert_eq!(set.prompt(&a).unwrap().0, "Q: hi\nA: ");
        let t = rec(json!({"text": "raw"}));
        assert_eq!(joined(&set.render(&t).unwrap()).1, "raw");
        assert!(set.render(&rec(json!({"id": 1}))).is_none());
        assert!(set.prompt(&t).is_none());
    }

    #[test]
    fn bad_template_strings() {
        let err = TemplateParam::Text("{user} only".into()).resolve().unwrap_err();
        assert!(err.contains("needs `{assistant}`"), "{err}");
        let err = TemplateParam::Text("{assistant} {user}".into()).resolve().unwrap_err();
        assert!(err.contains("needs `{user}`"), "{err}");
    }
}
