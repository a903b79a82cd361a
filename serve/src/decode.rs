//! One generation with OpenAI's semantics: `max_tokens`, `stop` strings
//! (the answer ends before the first one, which is not returned), and text
//! handed out in pieces as it grows, holding back what might begin a stop
//! string.

use crate::generator::{Generator, Sampling};

/// How a generation ended, and what it made.
pub struct Outcome {
    /// The whole answer (stop string excluded).
    pub text: String,
    /// Tokens generated.
    pub completion_tokens: usize,
    /// `stop` (end of sequence or a stop string) or `length`.
    pub finish_reason: &'static str,
}

/// Generate after `prompt`; `emit` gets each new piece of text and returns
/// false to stop (a streaming client went away).
pub fn generate(
    g: &dyn Generator,
    prompt: &[u32],
    sampling: &Sampling,
    max_tokens: usize,
    stop: &[String],
    emit: &mut dyn FnMut(&str) -> bool,
) -> Result<Outcome, String> {
    let hold = stop.iter().map(|s| s.chars().count()).max().unwrap_or(1).saturating_sub(1);
    let mut ids = Vec::new();
    let mut text = String::new();
    let mut sent = 0;
    let mut finish = "stop";
    let mut error = None;
    let mut gone = false;
    if max_tokens == 0 {
        return Ok(Outcome { text, completion_tokens: 0, finish_reason: "length" });
    }
    g.generate(prompt, sampling, &mut |t| {
        ids.push(t);
        text = match g.decode(&ids) {
            Ok(s) => s,
            Err(e) => {
                error = Some(e);
                return false;
            }
        };
        if let Some(at) = stop.iter().filter(|s| !s.is_empty()).filter_map(|s| text.find(s.as_str())).min() {
            text.truncate(at);
            return false;
        }
        if ids.len() >= max_tokens {
            finish = "length";
            return false;
        }
        // Emit up to where a stop string could still begin.
        let safe = text.char_indices().rev().nth(hold.saturating_sub(1)).map_or(0, |(i, _)| i);
        let safe = if hold == 0 { text.len() } else { safe };
        if safe > sent && text.is_char_boundary(sent) {
            gone = !emit(&text[sent..safe]);
            sent = safe;
        }
        !gone
    })?;
    if let Some(e) = error {
        return Err(e);
    }
    if sent < text.len() && text.is_char_boundary(sent) && !gone {
        emit(&text[sent..]);
    }
    Ok(Outcome { text, completion_tokens: ids.len(), finish_reason: finish })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Emits bytes of a fixed text, one token per char.
    struct Script(&'static str);
    impl Generator for Script {
        fn chat_prompt(&self, _: &[(String, String)]) -> Result<Vec<u32>, String> {
            Ok(vec![])
        }
        fn text_prompt(&self, _: &str) -> Result<Vec<u32>, String> {
            Ok(vec![])
        }
        fn generate(&self, _: &[u32], _: &Sampling, on: &mut dyn FnMut(u32) -> bool) -> Result<(), String> {
            for c in self.0.chars() {
                if !on(c as u32) {
                    break;
                }
            }
            Ok(())
        }
        fn decode(&self, ids: &[u32]) -> Result<String, String> {
            Ok(ids.iter().map(|i| char::from_u32(*i).unwrap()).collect())
        }
    }

    fn run(text: &'static str, max: usize, stop: &[&str]) -> (Outcome, Vec<String>) {
        let stop: Vec<String> = stop.iter().map(|s| s.to_string()).collect();
        let mut pieces = Vec::new();
        let o = generate(&Script(text), &[], &Sampling::default(), max, &stop, &mut |p| {
            pieces.push(p.to_string());
            true
        })
        .unwrap();
        (o, pieces)
    }

    #[test]
    fn stop_strings_length_and_pieces() {
        let (o, pieces) = run("hello world###tail", 100, &["###"]);
        assert_eq!((o.text.as_str(), o.finish_reason), ("hello world", "stop"));
        assert_eq!(pieces.concat(), "hello world", "no piece of the stop string is sent");
        let (o, pieces) = run("hello", 3, &[]);
        assert_eq!((o.text.as_str(), o.finish_reason, o.completion_tokens), ("hel", "length", 3));
        assert_eq!(pieces.concat(), "hel");
        let (o, _) = run("ab", 100, &[]);
        assert_eq!(o.finish_reason, "stop");
    }
}
