//! Automatic checks on a generated answer, the ones seed 003 did by hand:
//! template bleeding (the template's own markers, such as `<|user|>`, in
//! an answer), truncation (generation hit `max_new_tokens`) and agent-like
//! openings ("I'll start by…") from a configurable list.

use serde::Serialize;

use dvx_model::TemplateSet;

/// Openings seed 003 removed from its data as agent-like.
pub const DEFAULT_AGENT_OPENINGS: [&str; 6] =
    ["I'll start by", "Let me analyze", "Let me check", "I need to", "I will now", "As an AI"];

/// What the checks found in one answer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Flags {
    /// Generation stopped at `max_new_tokens` (or the context), not at eos.
    pub truncated: bool,
    /// A template marker appears in the answer.
    pub template_bleed: bool,
    /// The answer opens like an agent narrating its plan.
    pub agent_opening: bool,
}

/// Per-model counts of [`Flags`] over all answers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    /// Answers checked.
    pub answers: usize,
    /// Of which truncated.
    pub truncated: usize,
    /// Of which show a template marker.
    pub template_bleed: usize,
    /// Of which open like an agent.
    pub agent_opening: usize,
}

impl Counts {
    /// Count one answer's flags.
    pub fn add(&mut self, f: Flags) {
        self.answers += 1;
        self.truncated += usize::from(f.truncated);
        self.template_bleed += usize::from(f.template_bleed);
        self.agent_opening += usize::from(f.agent_opening);
    }
}

/// The checks for one model: its template's markers and the openings.
pub struct Checker {
    markers: Vec<String>,
    openings: Vec<String>,
}

impl Checker {
    /// Markers are every role prefix and suffix of the model's templates,
    /// trimmed, that holds more than letters and spaces (`<|user|>`,
    /// `### Response:`, `[INST]`): plain words would match ordinary prose.
    pub fn new(templates: &TemplateSet, openings: &[String]) -> Self {
        let mut markers: Vec<String> = [&templates.alpaca, &templates.chat]
            .iter()
            .flat_map(|t| [&t.system, &t.system_end, &t.user, &t.user_end, &t.assistant, &t.assistant_end])
            .map(|s| s.trim().to_string())
            .filter(|s| s.chars().any(|c| !c.is_alphanumeric() && !c.is_whitespace()) && s.chars().count() >= 3)
            .collect();
        markers.sort();
        markers.dedup();
        Checker { markers, openings: openings.iter().map(|o| o.to_lowercase()).collect() }
    }

    /// The markers looked for.
    pub fn markers(&self) -> &[String] {
        &self.markers
    }

    /// Flags of one answer.
    pub fn check(&self, answer: &str, truncated: bool) -> Flags {
        let opening = answer.trim_start().to_lowercase();
        Flags {
            truncated,
            template_bleed: self.markers.iter().any(|m| answer.contains(m.as_str())),
            agent_opening: self.openings.iter().any(|o| opening.starts_with(o.as_str())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dvx_model::TemplateParam;

    #[test]
    fn bleeding_openings_truncation() {
        let openings: Vec<String> = DEFAULT_AGENT_OPENINGS.iter().map(|s| s.to_string()).collect();
        let auto = TemplateParam::default().resolve().unwrap();
        let c = Checker::new(&auto, &openings);
        assert!(c.markers().contains(&"<|user|>".to_string()), "{:?}", c.markers());
        assert!(c.markers().contains(&"### Response:".to_string()), "{:?}", c.markers());
        let f = c.check("TypeScript, mostly.\n<|user|>\nand you?", false);
        assert!(f.template_bleed && !f.agent_opening && !f.truncated);
        let f = c.check("  i'll start by reading the file", true);
        assert!(!f.template_bleed && f.agent_opening && f.truncated);
        assert_eq!(c.check("Direct answer: I'll start by nothing", false), Flags::default());
        // ChatML's markers are its own; `plain`'s "User:" is a word and a colon, kept.
        let chatml = TemplateParam::Text("chatml".into()).resolve().unwrap();
        let c = Checker::new(&chatml, &[]);
        assert!(c.check("ok<|im_end|>", false).template_bleed);
        assert!(!c.check("ok <|user|>", false).template_bleed);
        let mut n = Counts::default();
        n.add(Flags { truncated: true, ..Flags::default() });
        n.add(Flags::default());
        assert_eq!((n.answers, n.truncated, n.agent_opening), (2, 1, 0));
    }
}
