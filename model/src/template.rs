//! Chat templates: how a record's turns become the text a model is trained on
//! and prompted with. Only assistant text (and its closing suffix) is trained
//! on by default; prompts end with the assistant prefix.

use serde::{Deserialize, Serialize};


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

/// What a template renders: a record's turns as `(role, text)`, whether they
/// came from a single-exchange (Alpaca-like) record, which `auto` lays out
/// differently from chats, and the raw `text` of a record with no turns.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Conversation {
    /// `(role, text)` in order; roles `system`, `user`, `assistant` (others count as user).
    pub turns: Vec<(String, String)>,
    /// From an instruction/output record rather than a chat.
    pub single_exchange: bool,
    /// A record without turns trains on this text, whole.
    pub text: Option<String>,
}

impl Conversation {
    /// A chat of `(role, content)` messages.
    pub fn chat(turns: Vec<(String, String)>) -> Self {
        Conversation { turns, single_exchange: false, text: None }
    }
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
    fn pick(&self, c: &Conversation) -> &Template {
        if c.single_exchange {
            &self.alpaca
        } else {
            &self.chat
        }
    }

    /// The training text of a conversation. One with no turns trains on its
    /// `text`, whole; `None` when there is nothing to train on.
    pub fn render(&self, c: &Conversation) -> Option<Vec<Segment>> {
        if c.turns.is_empty() {
            let text = c.text.as_ref()?;
            return Some(vec![Segment { text: text.clone(), train: true }]);
        }
        let t = self.pick(c);
        let mut out = Vec::new();
        for (role, text) in &c.turns {
            let (pre, end, train) = affixes(t, role);
            out.push(Segment { text: pre.to_string(), train: false });
            out.push(Segment { text: format!("{text}{end}"), train });
        }
        out.iter().any(|s| s.train).then_some(out)
    }

    /// The prompt for generating the last assistant turn, and that turn's
    /// text (the reference). `None` when there is no assistant turn.
    pub fn prompt(&self, c: &Conversation) -> Option<(String, String)> {
        let last = c.turns.iter().rposition(|(r, _)| r == "assistant")?;
        let t = self.pick(c);
        let mut prompt = String::new();
        for (role, text) in &c.turns[..last] {
            let (pre, end, _) = affixes(t, role);
            prompt.push_str(pre);
            prompt.push_str(text);
            prompt.push_str(end);
        }
        prompt.push_str(&t.assistant);
        Some((prompt, c.turns[last].1.clone()))
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

    fn turns(t: &[(&str, &str)]) -> Vec<(String, String)> {
        t.iter().map(|(r, x)| (r.to_string(), x.to_string())).collect()
    }

    fn exchange(user: &str, answer: &str) -> Conversation {
        Conversation { turns: turns(&[("user", user), ("assistant", answer)]), single_exchange: true, text: None }
    }

    fn joined(segs: &[Segment]) -> (String, String) {
        let all: String = segs.iter().map(|s| s.text.as_str()).collect();
        let trained: String = segs.iter().filter(|s| s.train).map(|s| s.text.as_str()).collect();
        (all, trained)
    }

    #[test]
    fn auto_alpaca_and_chat() {
        let set = TemplateParam::default().resolve().unwrap();
        let (all, trained) = joined(&set.render(&exchange("Find X", "grep -rn X")).unwrap());
        assert_eq!(all, "### Instruction:\nFind X\n\n### Response:\ngrep -rn X\n");
        assert_eq!(trained, "grep -rn X\n");
        let c = Conversation::chat(turns(&[("system", "S"), ("user", "q"), ("assistant", "a")]));
        let (all, _) = joined(&set.render(&c).unwrap());
        assert_eq!(all, "<|system|>\nS\n<|user|>\nq\n<|assistant|>\na\n");
        let (prompt, reference) = set.prompt(&c).unwrap();
        assert_eq!(prompt, "<|system|>\nS\n<|user|>\nq\n<|assistant|>\n");
        assert_eq!(reference, "a");
    }

    #[test]
    fn string_template_and_text_records() {
        let set = TemplateParam::Text("Q: {user}\nA: {assistant}\n".into()).resolve().unwrap();
        let a = exchange("hi", "yo");
        let (all, trained) = joined(&set.render(&a).unwrap());
        assert_eq!(all, "Q: hi\nA: yo\n");
        assert_eq!(trained, "yo\n");
        assert_eq!(set.prompt(&a).unwrap().0, "Q: hi\nA: ");
        let t = Conversation { text: Some("raw".into()), ..Conversation::default() };
        assert_eq!(joined(&set.render(&t).unwrap()).1, "raw");
        assert!(set.render(&Conversation::default()).is_none());
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
