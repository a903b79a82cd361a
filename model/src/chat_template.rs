//! A model's own chat template: the Jinja `chat_template` of its
//! `tokenizer_config.json` (or `chat_template.jinja`), rendered the way
//! transformers' `apply_chat_template` renders it, and the special tokens the
//! model's files name (`tokenizer_config.json`, `generation_config.json`).

use std::fmt::Write as _;
use std::ops::Range;
use std::path::Path;

use minijinja::value::{Kwargs, Value};
use minijinja::{Environment, Error, ErrorKind};
use serde::{Deserialize, Serialize};
use serde_json::Value as Json;

use crate::chat_input::Chat;

/// The date `strftime_now` renders where the output must be reproducible
/// (training, benchmarks): Llama 3.1's template falls back to this date too.
pub const FIXED_DATE: (i32, u32, u32) = (2024, 7, 26);

/// A Jinja chat template with the special-token texts it may print.
/// Stored in a trained model's `config.json` (dvx section), so serving the
/// model renders prompts exactly as it was trained.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChatTemplate {
    /// The Jinja source.
    pub source: String,
    /// The template named `tool_use` where the model lists several:
    /// transformers renders conversations that offer tools with it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_use: Option<String>,
    /// `bos_token` as the template sees it (absent for models without one, e.g. Qwen).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bos_token: Option<String>,
    /// `eos_token` as the template sees it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eos_token: Option<String>,
    /// `pad_token`, when the model names one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pad_token: Option<String>,
    /// `unk_token`, when the model names one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unk_token: Option<String>,
}

/// What a model folder says about its chat format and special tokens
/// (`tokenizer_config.json`, `generation_config.json`, `chat_template.jinja`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ModelChat {
    /// The chat template, when the model has one.
    pub template: Option<ChatTemplate>,
    /// Whether `tokenizer_config.json` exists (its specials then override `config.json`'s).
    pub has_tokenizer_config: bool,
    /// `bos_token` text, `None` when null or when `add_bos_token` is false.
    pub bos_token: Option<String>,
    /// `eos_token` text.
    pub eos_token: Option<String>,
    /// `pad_token` text.
    pub pad_token: Option<String>,
    /// `generation_config.json`'s `eos_token_id` (an int or a list): generation stops at any.
    pub eos_token_ids: Vec<u32>,
    /// `generation_config.json`'s `pad_token_id`.
    pub pad_token_id: Option<u32>,
}

/// A token in `tokenizer_config.json`: a string or an `AddedToken` map.
fn token_text(v: Option<&Json>) -> Option<String> {
    match v? {
        Json::String(s) => Some(s.clone()),
        Json::Object(m) => m.get("content").and_then(Json::as_str).map(str::to_string),
        _ => None,
    }
}

/// Ids of a Hugging Face `*_token_id` field: an int or a list of ints.
pub fn token_ids(v: Option<&Json>) -> Vec<u32> {
    match v {
        Some(Json::Number(n)) => n.as_u64().map(|n| vec![n as u32]).unwrap_or_default(),
        Some(Json::Array(a)) => a.iter().filter_map(|x| x.as_u64()).map(|n| n as u32).collect(),
        _ => Vec::new(),
    }
}

fn read_json(p: &Path) -> Result<Option<Json>, String> {
    if !p.is_file() {
        return Ok(None);
    }
    let text = std::fs::read_to_string(p).map_err(|e| format!("cannot read {}: {e}", p.display()))?;
    serde_json::from_str(&text).map(Some).map_err(|e| format!("{}: {e}", p.display()))
}

/// `chat_template` is a string or a list of `{name, template}`; transformers
/// uses the one named `default`, or `tool_use` when tools are offered.
/// Returns (default, tool_use).
fn pick_template(v: &Json, p: &Path) -> Result<Option<(String, Option<String>)>, String> {
    match v {
        Json::Null => Ok(None),
        Json::String(s) => Ok(Some((s.clone(), None))),
        Json::Array(list) => {
            let named = |n: &str| {
                list.iter()
                    .find(|t| t.get("name").and_then(Json::as_str) == Some(n))
                    .and_then(|t| t.get("template"))
                    .and_then(Json::as_str)
                    .map(str::to_string)
            };
            match named("default") {
                Some(s) => Ok(Some((s, named("tool_use")))),
                None => Err(format!("{}: `chat_template` lists templates but none is named `default`", p.display())),
            }
        }
        _ => Err(format!("{}: `chat_template` must be a string or a list of named templates", p.display())),
    }
}

impl ModelChat {
    /// Read what the folder `dir` has; missing files mean "not said".
    pub fn read(dir: &Path) -> Result<ModelChat, String> {
        let tc_path = dir.join("tokenizer_config.json");
        let tc = read_json(&tc_path)?;
        let gc = read_json(&dir.join("generation_config.json"))?;
        let mut out = ModelChat { has_tokenizer_config: tc.is_some(), ..ModelChat::default() };
        let empty = Json::Null;
        let tc_field = |k: &str| tc.as_ref().unwrap_or(&empty).get(k);
        let add_bos = tc_field("add_bos_token").and_then(Json::as_bool).unwrap_or(true);
        let bos = token_text(tc_field("bos_token"));
        out.bos_token = bos.clone().filter(|_| add_bos);
        out.eos_token = token_text(tc_field("eos_token"));
        out.pad_token = token_text(tc_field("pad_token"));
        // Newer transformers save the template beside the config.
        let jinja = dir.join("chat_template.jinja");
        let source = if jinja.is_file() {
            let s = std::fs::read_to_string(&jinja).map_err(|e| format!("cannot read {}: {e}", jinja.display()))?;
            Some((s, None))
        } else {
            match tc_field("chat_template") {
                Some(t) => pick_template(t, &tc_path)?,
                None => None,
            }
        };
        out.template = source.map(|(source, tool_use)| ChatTemplate {
            source,
            tool_use,
            bos_token: bos,
            eos_token: out.eos_token.clone(),
            pad_token: out.pad_token.clone(),
            unk_token: token_text(tc_field("unk_token")),
        });
        if let Some(gc) = &gc {
            out.eos_token_ids = token_ids(gc.get("eos_token_id"));
            out.pad_token_id = token_ids(gc.get("pad_token_id")).first().copied();
        }
        Ok(out)
    }
}

/// A day as `strftime_now` sees it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Today(chrono::NaiveDate);

impl Today {
    /// [`FIXED_DATE`]: reproducible renders.
    pub fn fixed() -> Today {
        let (y, m, d) = FIXED_DATE;
        Today(chrono::NaiveDate::from_ymd_opt(y, m, d).expect("a valid date"))
    }

    /// Today (UTC), for serving.
    pub fn now() -> Today {
        let secs =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0);
        chrono::DateTime::from_timestamp(secs, 0).map(|t| Today(t.date_naive())).unwrap_or_else(Today::fixed)
    }
}

/// `raise_exception(msg)`: the template refuses the conversation.
fn raise_exception(msg: String) -> Result<Value, Error> {
    Err(Error::new(ErrorKind::InvalidOperation, format!("the chat template refuses this conversation: {msg}")))
}

/// Python's `json.dumps(v, ensure_ascii=False)` (`, ` and `: ` separators),
/// or with `indent`, as transformers' `tojson` filter writes it.
fn tojson(v: &Value, indent: Option<Value>, kw: Kwargs) -> Result<Value, Error> {
    let indent = match indent.or(kw.get::<Option<Value>>("indent")?) {
        Some(i) if !i.is_none() => Some(usize::try_from(i)?),
        _ => None,
    };
    let _: Option<bool> = kw.get("sort_keys")?;
    kw.assert_all_used()?;
    let json = serde_json::to_value(v)
        .map_err(|e| Error::new(ErrorKind::InvalidOperation, format!("tojson: cannot serialize: {e}")))?;
    let mut out = String::new();
    write_py_json(&mut out, &json, indent, 0);
    Ok(Value::from_safe_string(out))
}

fn write_py_json(out: &mut String, v: &Json, indent: Option<usize>, depth: usize) {
    let newline = |out: &mut String, d: usize| {
        if let Some(n) = indent {
            out.push('\n');
            out.push_str(&" ".repeat(n * d));
        }
    };
    let sep = if indent.is_some() { "," } else { ", " };
    match v {
        Json::Array(a) if !a.is_empty() => {
            out.push('[');
            for (i, x) in a.iter().enumerate() {
                if i > 0 {
                    out.push_str(sep);
                }
                newline(out, depth + 1);
                write_py_json(out, x, indent, depth + 1);
            }
            newline(out, depth);
            out.push(']');
        }
        Json::Object(m) if !m.is_empty() => {
            out.push('{');
            for (i, (k, x)) in m.iter().enumerate() {
                if i > 0 {
                    out.push_str(sep);
                }
                newline(out, depth + 1);
                out.push_str(&Json::String(k.clone()).to_string());
                out.push_str(": ");
                write_py_json(out, x, indent, depth + 1);
            }
            newline(out, depth);
            out.push('}');
        }
        other => out.push_str(&other.to_string()),
    }
}

impl ChatTemplate {
    /// An environment configured as transformers configures Jinja2:
    /// `trim_blocks`, `lstrip_blocks`, loop controls, Python string and dict
    /// methods, `raise_exception`, `strftime_now` and a Python-style `tojson`.
    ///
    /// `{% generation %}` blocks (transformers' assistant-mask extension)
    /// render their body; with `mark`, between [`GENERATION_OPEN`] and
    /// [`GENERATION_CLOSE`], so training can find them.
    fn environment(source: &str, today: Today, mark: bool) -> Result<Environment<'static>, String> {
        let mut env = Environment::new();
        env.set_trim_blocks(true);
        env.set_lstrip_blocks(true);
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.add_function("raise_exception", raise_exception);
        env.add_function("strftime_now", move |fmt: String| -> Result<Value, Error> {
            let mut s = String::new();
            write!(s, "{}", today.0.format(&fmt))
                .map_err(|_| Error::new(ErrorKind::InvalidOperation, format!("strftime_now: bad format `{fmt}`")))?;
            Ok(Value::from(s))
        });
        env.add_filter("tojson", tojson);
        env.add_function(GENERATION_FN, move |state: &minijinja::State, kwargs: Kwargs| -> Result<Value, Error> {
            let caller: Value = kwargs.get("caller")?;
            kwargs.assert_all_used()?;
            let body = caller.call(state, &[])?;
            let body = body.as_str().map(str::to_string).unwrap_or_else(|| body.to_string());
            Ok(Value::from_safe_string(if mark { format!("{GENERATION_OPEN}{body}{GENERATION_CLOSE}") } else { body }))
        });
        env.add_template_owned("chat_template", with_generation_calls(source))
            .map_err(|e| format!("the chat template does not parse: {e}"))?;
        Ok(env)
    }

    /// Whether the template marks what the assistant generates with
    /// `{% generation %}` blocks.
    pub fn has_generation_blocks(&self) -> bool {
        with_generation_calls(&self.source) != self.source
    }

    /// The source that renders `chat`: `tool_use` when tools are offered and
    /// the model has one, as transformers picks it; refused when the chat's
    /// tools or tool calls would be dropped by it.
    fn source_for(&self, chat: Chat<'_>) -> Result<&str, String> {
        let source = match (&self.tool_use, chat.tools) {
            (Some(t), Some(_)) => t.as_str(),
            _ => self.source.as_str(),
        };
        chat.check_supported_by(source)?;
        Ok(source)
    }

    /// The text of `chat`, as `apply_chat_template(messages, tools=...)`
    /// renders it (`documents` unset).
    pub fn render(&self, chat: Chat<'_>, add_generation_prompt: bool, today: Today) -> Result<String, String> {
        let env = Self::environment(self.source_for(chat)?, today, false)?;
        render_with(&env, self, chat, add_generation_prompt)
    }

    /// The training text of `messages` and the byte ranges trained on.
    ///
    /// A template with `{% generation %}` blocks says itself what the
    /// assistant generates: the text of each block, as transformers'
    /// `return_assistant_tokens_mask` takes it (end-of-turn tokens included
    /// where the block holds them). Otherwise each assistant message's
    /// content is found right after the text the template renders for the
    /// conversation before it (with the generation prompt); templates that
    /// render earlier turns differently fall back to searching after the
    /// previous assistant message.
    ///
    /// An assistant message that calls tools is trained from where its turn
    /// begins (its content, or the end of the generation prompt) to the end
    /// of what the template renders for it, less trailing whitespace and the
    /// eos text (the end-of-turn token is then trained as the closing special
    /// token): the calls as the template writes them. Tool results are not
    /// trained.
    pub fn render_for_training(&self, chat: Chat<'_>) -> Result<TrainingText, String> {
        let source = self.source_for(chat)?;
        if with_generation_calls(source) != source {
            return self.render_generation_blocks(source, chat);
        }
        let env = Self::environment(source, Today::fixed(), false)?;
        let text = render_with(&env, self, chat, false)?;
        let mut spans = Vec::new();
        let mut after = 0;
        for i in 0..chat.messages.len() {
            let content = chat.content(i);
            let calls = chat.calls_tools(i);
            if chat.role(i) != "assistant" || (content.trim().is_empty() && !calls) {
                continue;
            }
            let prefix = render_with(&env, self, chat.upto(i), true)?;
            let prefix_fits = text.starts_with(&prefix);
            let from = if prefix_fits { prefix.len().max(after) } else { after };
            let found = if content.trim().is_empty() {
                None
            } else {
                let found = [content, content.trim()]
                    .iter()
                    .find_map(|c| text[from..].find(c).map(|at| from + at..from + at + c.len()))
                    .ok_or_else(|| {
                        format!("the chat template does not show assistant message {} as it is (it rewrites it)", i + 1)
                    })?;
                Some(found)
            };
            let span = if calls {
                let turn = render_with(&env, self, chat.upto(i + 1), false)?;
                let not_found = || {
                    format!(
                        "cannot find assistant message {}'s tool calls: the chat template renders the conversation \
                         before it differently once later messages follow",
                        i + 1
                    )
                };
                if !prefix_fits || !text.starts_with(&turn) || turn.len() < from {
                    return Err(not_found());
                }
                let mut end = turn.trim_end().len();
                if let Some(eos) = self.eos_token.as_deref().filter(|e| !e.is_empty()) {
                    if turn[..end].ends_with(eos) {
                        end -= eos.len();
                    }
                }
                let start = found.map_or(from, |f| f.start);
                if end <= start {
                    return Err(not_found());
                }
                start..end
            } else {
                found.expect("content is not empty")
            };
            after = span.end;
            spans.push(span);
        }
        Ok(TrainingText { text, spans, from_generation_blocks: false })
    }

    fn render_generation_blocks(&self, source: &str, chat: Chat<'_>) -> Result<TrainingText, String> {
        for (i, m) in chat.messages.iter().enumerate() {
            if m.to_string().contains([GENERATION_OPEN, GENERATION_CLOSE]) {
                return Err(format!(
                    "message {} holds the character U+F0000 or U+F0001, which dvx uses to find the template's \
                     {{% generation %}} blocks",
                    i + 1
                ));
            }
        }
        let env = Self::environment(source, Today::fixed(), true)?;
        let marked = render_with(&env, self, chat, false)?;
        let mut text = String::with_capacity(marked.len());
        let mut spans = Vec::new();
        let mut open: Option<usize> = None;
        for c in marked.chars() {
            match c {
                GENERATION_OPEN if open.is_none() => open = Some(text.len()),
                GENERATION_CLOSE => {
                    // Nested blocks count once, as the outer one.
                    if let Some(start) = open.take().filter(|&s| s < text.len()) {
                        spans.push(start..text.len());
                    }
                }
                GENERATION_OPEN => {}
                c => text.push(c),
            }
        }
        Ok(TrainingText { text, spans, from_generation_blocks: true })
    }
}

/// A conversation rendered for training.
#[derive(Debug, Clone, PartialEq)]
pub struct TrainingText {
    /// The text the template renders.
    pub text: String,
    /// Byte ranges of `text` trained on.
    pub spans: Vec<Range<usize>>,
    /// Whether the spans are the template's `{% generation %}` blocks (then
    /// they hold what the assistant generates, end-of-turn tokens included
    /// where the template puts them inside).
    pub from_generation_blocks: bool,
}

/// Marks the start of a `{% generation %}` block's output while rendering for training.
const GENERATION_OPEN: char = '\u{F0000}';
/// Marks its end.
const GENERATION_CLOSE: char = '\u{F0001}';
/// The function a `{% generation %}` block becomes a `{% call %}` of.
const GENERATION_FN: &str = "__dvx_generation";

/// `source` with `{% generation %}` / `{% endgeneration %}` (whitespace
/// control kept) turned into a call block of [`GENERATION_FN`]: transformers
/// implements the tag as a call block too, so scoping and whitespace are
/// Jinja's own.
fn with_generation_calls(source: &str) -> String {
    let mut out = String::with_capacity(source.len());
    let mut rest = source;
    while let Some(at) = rest.find("{%") {
        out.push_str(&rest[..at]);
        let tag = &rest[at..];
        let Some(end) = tag.find("%}") else { break };
        let inner = &tag[2..end];
        let (left, body) = match inner.strip_prefix(['-', '+']) {
            Some(b) => (&inner[..1], b),
            None => ("", inner),
        };
        let (body, right) = match body.strip_suffix(['-', '+']) {
            Some(b) => (b, &body[body.len() - 1..]),
            None => (body, ""),
        };
        let replaced = match body.trim() {
            "generation" => Some(format!("{{%{left} call {GENERATION_FN}() {right}%}}")),
            "endgeneration" => Some(format!("{{%{left} endcall {right}%}}")),
            _ => None,
        };
        match replaced {
            Some(r) => out.push_str(&r),
            None => out.push_str(&tag[..end + 2]),
        }
        rest = &tag[end + 2..];
    }
    out.push_str(rest);
    out
}

fn render_with(
    env: &Environment<'_>,
    t: &ChatTemplate,
    chat: Chat<'_>,
    add_generation_prompt: bool,
) -> Result<String, String> {
    let mut ctx: Vec<(&str, Value)> = vec![
        ("messages", Value::from_serialize(chat.messages)),
        ("add_generation_prompt", Value::from(add_generation_prompt)),
        ("tools", chat.tools.map_or(Value::from(()), Value::from_serialize)),
        ("documents", Value::from(())),
    ];
    // Unset specials stay undefined, as in transformers' special_tokens_map.
    for (name, v) in [
        ("bos_token", &t.bos_token),
        ("eos_token", &t.eos_token),
        ("pad_token", &t.pad_token),
        ("unk_token", &t.unk_token),
    ] {
        if let Some(v) = v {
            ctx.push((name, Value::from(v.as_str())));
        }
    }
    let tmpl = env.get_template("chat_template").map_err(|e| e.to_string())?;
    tmpl.render(Value::from_iter(ctx)).map_err(|e| {
        let mut msg = format!("chat template: {e}");
        let mut src = std::error::Error::source(&e);
        while let Some(s) = src {
            let _ = write!(msg, ": {s}");
            src = s.source();
        }
        msg
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(src: &str) -> ChatTemplate {
        ChatTemplate {
            source: src.into(),
            tool_use: None,
            bos_token: Some("<s>".into()),
            eos_token: Some("</s>".into()),
            pad_token: None,
            unk_token: None,
        }
    }

    fn msgs(m: &[(&str, &str)]) -> Vec<Json> {
        m.iter().map(|(r, c)| crate::chat_input::plain_message(r, c)).collect()
    }

    fn chat(m: &[Json]) -> Chat<'_> {
        Chat { messages: m, tools: None }
    }

    #[test]
    fn renders_with_hf_settings() {
        let tpl = t("{{ bos_token }}{% for m in messages %}\n{% if m.role == 'user' %}\n[U]{{ m['content'].strip() }}{% else %}\n[A]{{ m.content }}{{ eos_token }}{% endif %}\n{% endfor %}\n{% if add_generation_prompt %}[A]{% endif %}\n");
        let m = msgs(&[("user", " hi "), ("assistant", "yo")]);
        assert_eq!(tpl.render(chat(&m), false, Today::fixed()).unwrap(), "<s>[U]hi[A]yo</s>");
        assert_eq!(tpl.render(chat(&m[..1]), true, Today::fixed()).unwrap(), "<s>[U]hi[A]");
        let t = tpl.render_for_training(chat(&m)).unwrap();
        assert_eq!(&t.text[t.spans[0].clone()], "yo");
        assert!(!t.from_generation_blocks && !tpl.has_generation_blocks());
    }

    /// transformers' `{% generation %}` tag (SmolLM3- and OLMo-style
    /// templates): rendered as its body, with Jinja's whitespace control on
    /// the tag, and training takes exactly the blocks' text.
    #[test]
    fn generation_blocks_render_their_body_and_are_what_training_takes() {
        let src = "{%- for m in messages -%}\n\
            {%- if m.role == 'assistant' -%}\n\
            <|im_start|>assistant\n{% generation %}{{ m.content }}<|im_end|>{% endgeneration %}\n\n\
            {%- else -%}\n\
            <|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n\n\
            {%- endif -%}\n\
            {%- endfor -%}\n\
            {%- if add_generation_prompt %}<|im_start|>assistant\n{% endif -%}";
        let tpl = t(src);
        assert!(tpl.has_generation_blocks());
        let m = msgs(&[("user", "hi"), ("assistant", "yo"), ("user", "again"), ("assistant", "sure")]);
        let plain = tpl.render(chat(&m), false, Today::fixed()).unwrap();
        // The same template with the tags deleted renders the same text.
        let untagged = t(&src.replace("{% generation %}", "").replace("{% endgeneration %}", ""));
        assert_eq!(plain, untagged.render(chat(&m), false, Today::fixed()).unwrap());
        // transformers 5.24 (`render_jinja_template`) renders this text and
        // gives the generation indices (51, 63) and (117, 131).
        assert_eq!(
            plain,
            "<|im_start|>user\nhi<|im_end|><|im_start|>assistant\nyo<|im_end|>\
             <|im_start|>user\nagain<|im_end|><|im_start|>assistant\nsure<|im_end|>"
        );
        let r = tpl.render_for_training(chat(&m)).unwrap();
        assert_eq!(r.text, plain);
        assert!(r.from_generation_blocks);
        let trained: Vec<&str> = r.spans.iter().map(|s| &r.text[s.clone()]).collect();
        assert_eq!(trained, ["yo<|im_end|>", "sure<|im_end|>"]);
        assert_eq!(r.spans, vec![51..63, 117..131]);
        // Whitespace control on the tag itself is kept.
        let trimmed = t("A  {%- generation -%}  B  {%- endgeneration -%}  C");
        assert_eq!(trimmed.render(chat(&[]), false, Today::fixed()).unwrap(), "ABC");
        let r = trimmed.render_for_training(chat(&[])).unwrap();
        assert_eq!((r.text.as_str(), r.spans.clone()), ("ABC", vec![1..2]));
        let err = tpl.render_for_training(chat(&msgs(&[("user", "\u{F0000}")]))).unwrap_err();
        assert!(err.contains("U+F0000"), "{err}");
    }

    #[test]
    fn helpers_and_errors() {
        let tpl = t("{{ strftime_now('%d %b %Y') }}|{{ {'a': [1, 'é']} | tojson }}|{% for x in [1,2,3] %}{% if x == 2 %}{% break %}{% endif %}{{ x }}{% endfor %}|{{ tools is none }}|{{ 'a b'.split() | length }}");
        assert_eq!(tpl.render(chat(&[]), false, Today::fixed()).unwrap(), "26 Jul 2024|{\"a\": [1, \"é\"]}|1|True|2");
        let tpl = t(
            "{% if messages[0].role != 'user' %}{{ raise_exception('Conversation roles must alternate') }}{% endif %}",
        );
        let err = tpl.render(chat(&msgs(&[("assistant", "x")])), false, Today::fixed()).unwrap_err();
        assert!(err.contains("Conversation roles must alternate"), "{err}");
        let err = t("{% for %}").render(chat(&[]), false, Today::fixed()).unwrap_err();
        assert!(err.contains("does not parse"), "{err}");
    }

    #[test]
    fn reads_model_files() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("tokenizer_config.json"),
            r#"{"bos_token": null, "eos_token": {"content": "<|im_end|>", "special": true}, "chat_template": [{"name": "tool_use", "template": "T"}, {"name": "default", "template": "D"}]}"#,
        )
        .unwrap();
        std::fs::write(dir.path().join("generation_config.json"), r#"{"eos_token_id": [7, 9], "bos_token_id": 1}"#)
            .unwrap();
        let m = ModelChat::read(dir.path()).unwrap();
        assert_eq!(m.bos_token, None);
        assert_eq!(m.eos_token.as_deref(), Some("<|im_end|>"));
        assert_eq!(m.eos_token_ids, vec![7, 9]);
        let tpl = m.template.unwrap();
        assert_eq!((tpl.source.as_str(), tpl.tool_use.as_deref()), ("D", Some("T")));
        // transformers renders with `tool_use` when tools are offered.
        let (tools, m1) = ([serde_json::json!({"name": "f"})], msgs(&[("user", "q")]));
        let tpl = ChatTemplate { source: "plain".into(), tool_use: Some("{{ tools | length }} tools".into()), ..tpl };
        assert_eq!(tpl.render(Chat { messages: &m1, tools: Some(&tools) }, false, Today::fixed()).unwrap(), "1 tools");
        assert_eq!(tpl.render(chat(&m1), false, Today::fixed()).unwrap(), "plain");
        std::fs::write(dir.path().join("chat_template.jinja"), "J").unwrap();
        assert_eq!(ModelChat::read(dir.path()).unwrap().template.unwrap().source, "J");
        std::fs::remove_file(dir.path().join("chat_template.jinja")).unwrap();
        std::fs::write(
            dir.path().join("tokenizer_config.json"),
            r#"{"chat_template": [{"name": "x", "template": "T"}]}"#,
        )
        .unwrap();
        let err = ModelChat::read(dir.path()).unwrap_err();
        assert!(err.contains("none is named `default`"), "{err}");
        assert_eq!(ModelChat::read(&dir.path().join("nope")).unwrap(), ModelChat::default());
    }
}
