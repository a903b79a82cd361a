//! Chat templates: how a record's turns become the text a model is trained on
//! and prompted with. Only assistant text (and its closing suffix) is trained
//! on by default; prompts end with the assistant prefix. A model's own Jinja
//! template ([`ChatTemplate`]) replaces dvx's presets when it has one.

use std::borrow::Cow;
use std::ops::Range;

use serde::{Deserialize, Serialize};
use serde_json::Value as Json;

use crate::chat_input::{plain_message, read_tools, template_message, Chat};
use crate::chat_template::{ChatTemplate, Today};

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
    /// The model's own chat template; when set it renders every record and
    /// the presets above are unused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<ChatTemplate>,
}

/// What a template renders: a record's turns as `(role, text)`, whether they
/// came from a single-exchange (Alpaca-like) record, which `auto` lays out
/// differently from chats, and the raw `text` of a record with no turns.
/// For a model's own template, also the messages as JSON objects when the
/// record's messages carry more than role and text (tool calls, tool
/// results' ids), and the tools it offers.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Conversation {
    /// `(role, text)` in order; roles `system`, `user`, `assistant` (others count as user).
    pub turns: Vec<(String, String)>,
    /// From an instruction/output record rather than a chat.
    pub single_exchange: bool,
    /// A record without turns trains on this text, whole.
    pub text: Option<String>,
    /// Empty, or one JSON object per turn: the message as a model's template
    /// is given it (see [`crate::chat_input::template_message`]).
    pub messages: Vec<Json>,
    /// The function schemas the record offers, given to a model's template as `tools`.
    pub tools: Option<Vec<Json>>,
}

impl Conversation {
    /// A chat of `(role, content)` messages.
    pub fn chat(turns: Vec<(String, String)>) -> Self {
        Conversation { turns, ..Conversation::default() }
    }

    /// Give a model's template an OpenAI-messages record's `raw` messages
    /// whole (one per turn), where they carry more than role and content
    /// (`tool_calls`, `tool_call_id`, `name`…), and its `tools`, as
    /// transformers' `apply_chat_template(messages, tools=...)` does.
    pub fn with_openai_messages(mut self, raw: &[Json], tools: Option<&Json>) -> Result<Self, String> {
        self.tools = read_tools(tools)?;
        let plain = |m: &Json| {
            m.as_object().is_some_and(|m| m.iter().all(|(k, v)| k == "role" || k == "content" || v.is_null()))
        };
        if (self.tools.is_some() || !raw.iter().all(plain)) && raw.len() == self.turns.len() {
            self.messages = raw
                .iter()
                .zip(&self.turns)
                .enumerate()
                .map(|(i, (m, (_, text)))| match m.as_object() {
                    Some(m) => Ok(template_message(m, text)),
                    None => Err(format!("message {} is not an object", i + 1)),
                })
                .collect::<Result<_, _>>()?;
        }
        Ok(self)
    }

    /// The messages a model's template is given: [`Self::messages`], or the
    /// turns as `{role, content}`.
    fn template_messages(&self) -> Cow<'_, [Json]> {
        if self.messages.len() == self.turns.len() && !self.messages.is_empty() {
            Cow::Borrowed(&self.messages)
        } else {
            Cow::Owned(self.turns.iter().map(|(r, c)| plain_message(r, c)).collect())
        }
    }

    /// Whether the conversation offers tools or calls them.
    pub fn uses_tools(&self) -> bool {
        self.tools.is_some() || self.messages.iter().any(|m| m.get("tool_calls").is_some_and(|c| !c.is_null()))
    }

    /// dvx's presets have no tool support: refuse rather than drop the tools and calls.
    fn check_no_tools(&self) -> Result<(), String> {
        match self.uses_tools() {
            true => Err("the record uses tools (`tools` or `tool_calls`), which dvx's preset templates cannot \
                         render; use a base model with its own chat template that supports tools"
                .into()),
            false => Ok(()),
        }
    }
}

/// A conversation rendered for training: one text, tokenized whole (so a
/// SentencePiece tokenizer sees it as the model's own template would give it),
/// and which of its bytes the loss counts.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Rendered {
    /// The text.
    pub text: String,
    /// Byte ranges of `text` trained on; a token overlapping one is trained.
    pub train: Vec<Range<usize>>,
    /// Byte offsets where dvx's presets insert the eos id (trained): the
    /// model learns to stop after each turn it speaks.
    pub eos_at: Vec<usize>,
    /// Put the tokenizer's bos id first (dvx's presets; a model's template
    /// writes its own bos).
    pub bos: bool,
    /// Also train the special token right after each trained range: the
    /// end-of-turn token a model's template writes after an answer.
    pub train_closing_special: bool,
}

/// A generation prompt and the answer it should lead to.
#[derive(Debug, Clone, PartialEq)]
pub struct Prompt {
    /// The prompt, ending where the assistant's answer begins.
    pub text: String,
    /// The record's last assistant turn.
    pub reference: String,
    /// Put the tokenizer's bos id first (see [`Rendered::bos`]).
    pub bos: bool,
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
        let one = |t: Template| TemplateSet { alpaca: t.clone(), chat: t, model: None };
        match self {
            TemplateParam::Roles(t) => Ok(one(t.clone())),
            TemplateParam::Text(s) => match s.as_str() {
                "auto" => Ok(TemplateSet { alpaca: alpaca(), chat: chat(), model: None }),
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

    /// The model's own template; presets kept as `auto`'s for records it cannot render.
    pub fn from_model(t: ChatTemplate) -> TemplateSet {
        TemplateSet { alpaca: alpaca(), chat: chat(), model: Some(t) }
    }

    /// The template when none is asked for: a trained model's own (`own`,
    /// from its dvx section), else the model's Jinja template, else `auto`.
    pub fn default_for(own: Option<TemplateSet>, model: Option<ChatTemplate>) -> Result<TemplateSet, String> {
        match (own, model) {
            (Some(t), _) => Ok(t),
            (None, Some(m)) => Ok(TemplateSet::from_model(m)),
            (None, None) => TemplateParam::default().resolve(),
        }
    }

    /// Whether `param` asks for the default choice (unset or `auto`).
    pub fn is_auto(param: Option<&TemplateParam>) -> bool {
        match param {
            None => true,
            Some(TemplateParam::Text(s)) => s == "auto",
            Some(TemplateParam::Roles(_)) => false,
        }
    }

    /// The training text of a conversation. One with no turns trains on its
    /// `text`, whole; `None` when there is nothing to train on.
    pub fn render(&self, c: &Conversation) -> Result<Option<Rendered>, String> {
        if c.turns.is_empty() {
            let Some(text) = c.text.as_ref() else { return Ok(None) };
            let r = Rendered {
                text: text.clone(),
                train: vec![0..text.len()],
                eos_at: vec![text.len()],
                bos: true,
                ..Rendered::default()
            };
            return Ok(Some(r));
        }
        if let Some(m) = &self.model {
            let msgs = c.template_messages();
            let t = m.render_for_training(Chat { messages: &msgs, tools: c.tools.as_deref() })?;
            // Generation blocks hold the end-of-turn token themselves where the template trains it.
            let closing = !t.from_generation_blocks;
            let r = Rendered {
                text: t.text,
                train: t.spans,
                eos_at: Vec::new(),
                bos: false,
                train_closing_special: closing,
            };
            return Ok((!r.train.is_empty()).then_some(r));
        }
        c.check_no_tools()?;
        let t = self.pick(c);
        let mut r = Rendered { bos: true, ..Rendered::default() };
        for (role, text) in &c.turns {
            let (pre, end, train) = affixes(t, role);
            r.text.push_str(pre);
            let start = r.text.len();
            r.text.push_str(text);
            r.text.push_str(end);
            if train {
                r.train.push(start..r.text.len());
                r.eos_at.push(r.text.len());
            }
        }
        Ok((!r.train.is_empty()).then_some(r))
    }

    /// The prompt for generating the last assistant turn, and that turn's
    /// text (the reference). `None` when there is no assistant turn.
    /// `today` is the date a model's template may print (`strftime_now`).
    pub fn prompt(&self, c: &Conversation, today: Today) -> Result<Option<Prompt>, String> {
        let Some(last) = c.turns.iter().rposition(|(r, _)| r == "assistant") else { return Ok(None) };
        let reference = c.turns[last].1.clone();
        if let Some(m) = &self.model {
            let msgs = c.template_messages();
            let text = m.render(Chat { messages: &msgs[..last], tools: c.tools.as_deref() }, true, today)?;
            return Ok(Some(Prompt { text, reference, bos: false }));
        }
        c.check_no_tools()?;
        let t = self.pick(c);
        let mut prompt = String::new();
        for (role, text) in &c.turns[..last] {
            let (pre, end, _) = affixes(t, role);
            prompt.push_str(pre);
            prompt.push_str(text);
            prompt.push_str(end);
        }
        prompt.push_str(&t.assistant);
        Ok(Some(Prompt { text: prompt, reference, bos: true }))
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
        Conversation {
            turns: turns(&[("user", user), ("assistant", answer)]),
            single_exchange: true,
            ..Conversation::default()
        }
    }

    fn joined(r: &Rendered) -> (String, String) {
        let trained: String = r.train.iter().map(|s| &r.text[s.clone()]).collect();
        (r.text.clone(), trained)
    }

    #[test]
    fn auto_alpaca_and_chat() {
        let set = TemplateParam::default().resolve().unwrap();
        let (all, trained) = joined(&set.render(&exchange("Find X", "grep -rn X")).unwrap().unwrap());
        assert_eq!(all, "### Instruction:\nFind X\n\n### Response:\ngrep -rn X\n");
        assert_eq!(trained, "grep -rn X\n");
        let c = Conversation::chat(turns(&[("system", "S"), ("user", "q"), ("assistant", "a")]));
        let (all, _) = joined(&set.render(&c).unwrap().unwrap());
        assert_eq!(all, "<|system|>\nS\n<|user|>\nq\n<|assistant|>\na\n");
        let p = set.prompt(&c, Today::fixed()).unwrap().unwrap();
        assert_eq!(p.text, "<|system|>\nS\n<|user|>\nq\n<|assistant|>\n");
        assert_eq!(p.reference, "a");
        assert!(p.bos);
    }

    #[test]
    fn string_template_and_text_records() {
        let set = TemplateParam::Text("Q: {user}\nA: {assistant}\n".into()).resolve().unwrap();
        let a = exchange("hi", "yo");
        let (all, trained) = joined(&set.render(&a).unwrap().unwrap());
        assert_eq!(all, "Q: hi\nA: yo\n");
        assert_eq!(trained, "yo\n");
        assert_eq!(set.prompt(&a, Today::fixed()).unwrap().unwrap().text, "Q: hi\nA: ");
        let t = Conversation { text: Some("raw".into()), ..Conversation::default() };
        assert_eq!(joined(&set.render(&t).unwrap().unwrap()).1, "raw");
        assert!(set.render(&Conversation::default()).unwrap().is_none());
        assert!(set.prompt(&t, Today::fixed()).unwrap().is_none());
    }

    #[test]
    fn bad_template_strings() {
        let err = TemplateParam::Text("{user} only".into()).resolve().unwrap_err();
        assert!(err.contains("needs `{assistant}`"), "{err}");
        let err = TemplateParam::Text("{assistant} {user}".into()).resolve().unwrap_err();
        assert!(err.contains("needs `{user}`"), "{err}");
    }
}
