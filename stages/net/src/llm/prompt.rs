//! The messages of a request: a template over record fields (the same
//! placeholder rules as `multiply`) with an optional system prompt, or the
//! record's own conversation without its last assistant turn.

use serde_json::{json, Value};

use dvx_stage_api::{ParamError, StageFailure};

use crate::template::{compile, fill, Piece};
use crate::records::{turns, Record};

/// How a record becomes messages.
pub struct Prompt {
    system: Option<String>,
    template: Option<Vec<Piece>>,
}

impl Prompt {
    /// From the `prompt` and `system` params; no `prompt` means each
    /// record's own conversation.
    pub fn new(prompt: Option<&str>, system: Option<&str>) -> Result<Prompt, ParamError> {
        let template = prompt.map(compile).transpose().map_err(|e| ParamError::field("prompt", e))?;
        Ok(Prompt { system: system.map(str::to_string), template })
    }

    /// The request messages for `record` (`at` names it in errors).
    pub fn messages(&self, record: &Record, at: &str) -> Result<Vec<Value>, StageFailure> {
        let mut m = Vec::new();
        if let Some(s) = &self.system {
            m.push(json!({"role": "system", "content": s}));
        }
        match &self.template {
            Some(t) => m.push(json!({"role": "user", "content": fill(t, record, "prompt", at)?})),
            None => {
                let mut ts = turns(record);
                if ts.last().is_some_and(|(role, _)| role == "assistant") {
                    ts.pop();
                }
                if !ts.iter().any(|(role, _)| role == "user") {
                    return Err(StageFailure::bad_input(format!(
                        "{at}: the record has no user turn to answer (give `prompt` to build one from its fields)"
                    )));
                }
                m.extend(ts.into_iter().map(|(role, content)| json!({"role": role, "content": content})));
            }
        }
        Ok(m)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(v: Value) -> Record {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn template_or_own_turns() {
        let p = Prompt::new(Some("Explain {topic}."), Some("Be brief.")).unwrap();
        let m = p.messages(&rec(json!({"topic": "tides"})), "in:1").unwrap();
        assert_eq!(m[1], json!({"role": "user", "content": "Explain tides."}));
        assert_eq!(m[0]["role"], "system");
        let e = p.messages(&rec(json!({})), "in:2").unwrap_err();
        assert!(e.message.starts_with("in:2: template `prompt` uses `{topic}`"), "{}", e.message);

        let own = Prompt::new(None, None).unwrap();
        let chat = json!({"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "old"}]});
        assert_eq!(own.messages(&rec(chat), "in:3").unwrap(), vec![json!({"role": "user", "content": "hi"})]);
        assert!(own.messages(&rec(json!({"x": 1})), "in:4").unwrap_err().message.contains("no user turn"));
        assert!(Prompt::new(Some("{unclosed"), None).is_err());
    }
}
