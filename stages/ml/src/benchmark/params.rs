//! The `benchmark` stage's params.

use std::collections::BTreeSet;

use dvx_stage_api::{ParamDoc, ParamError, ParamsDoc};
use serde::{Deserialize, Serialize};

use dvx_model::TemplateParam;

use crate::train::DeviceParam;

/// Columns the scoring sheet writes itself; no criterion may take their names.
pub const RESERVED: [&str; 8] =
    ["model", "id", "question", "answer", "truncated", "template_bleed", "agent_opening", "notes"];

/// One model dep: its display name and, for a LoRA adapter, the name of the
/// entry holding its base.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ModelEntry {
    /// Just a name.
    Name(String),
    /// `{name, base}`.
    Spec(ModelSpec),
}

/// A model entry written out.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelSpec {
    /// Shown in the table.
    pub name: String,
    /// Another entry's name: the base this adapter was trained on.
    #[serde(default)]
    pub base: Option<String>,
    /// For a `.gguf` file: an earlier entry (the model it was exported
    /// from) whose tokenizer and chat template it runs with.
    #[serde(default)]
    pub from: Option<String>,
}

impl ModelEntry {
    /// Display name.
    pub fn name(&self) -> &str {
        match self {
            ModelEntry::Name(n) => n,
            ModelEntry::Spec(s) => &s.name,
        }
    }
    /// Base entry, for adapters.
    pub fn base(&self) -> Option<&str> {
        match self {
            ModelEntry::Name(_) => None,
            ModelEntry::Spec(s) => s.base.as_deref(),
        }
    }
    /// For a GGUF: the entry whose tokenizer and template it uses.
    pub fn from(&self) -> Option<&str> {
        match self {
            ModelEntry::Name(_) => None,
            ModelEntry::Spec(s) => s.from.as_deref(),
        }
    }
}

/// What accuracy measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Task {
    /// Seed 004: does the answer grep, read a file, or answer directly?
    /// Compared with the record's `label_field`.
    #[default]
    ToolChoice,
    /// No labelled task: loss, speed and size only (and `exact_match_field`).
    None,
}

/// How much worse than the baseline counts as a regression.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Tolerance {
    /// Accuracy drop allowed, in percentage points.
    pub accuracy_pts: f64,
    /// Valid-loss rise allowed, in percent of the baseline's loss.
    pub loss_pct: f64,
}

impl Default for Tolerance {
    fn default() -> Self {
        Tolerance { accuracy_pts: 0.0, loss_pct: 2.0 }
    }
}

/// All of `benchmark`'s params.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BenchParams {
    /// One entry per model dep, in order.
    pub models: Vec<ModelEntry>,
    /// Entry the others are compared with; default: the first.
    pub baseline: Option<String>,
    /// Eval records generated for: 0 = all that have an assistant turn;
    /// N = a seeded sample of N stratified by label (at least one per class).
    #[serde(default)]
    pub prompts: usize,
    /// Generation stops after this many tokens (or at eos); an answer that
    /// hits it is counted as truncated.
    #[serde(default = "d_new")]
    pub max_new_tokens: usize,
    /// Sampling temperature; 0 = greedy.
    #[serde(default)]
    pub temperature: f64,
    /// Nucleus sampling: keep the most likely tokens up to this probability.
    #[serde(default = "d_top_p")]
    pub top_p: f64,
    /// Seeds the stratified sample and the sampling draws.
    #[serde(default)]
    pub seed: u64,
    /// Answers opening with one of these (case-insensitive) count as agent-like.
    #[serde(default = "d_openings")]
    pub agent_openings: Vec<String>,
    /// Field of a questions-file record holding the question (records with
    /// an assistant turn are prompted like eval records instead).
    #[serde(default = "d_question")]
    pub question_field: String,
    /// Score columns of the scoring sheet (`.csv` out), each 0–10.
    #[serde(default = "d_criteria")]
    pub criteria: Vec<String>,
    /// The labelled task.
    #[serde(default)]
    pub task: Task,
    /// Field (dotted path) holding the expected label.
    #[serde(default = "d_label")]
    pub label_field: String,
    /// Also count generations equal (trimmed) to this field's text.
    pub exact_match_field: Option<String>,
    /// Regression thresholds.
    #[serde(default)]
    pub tolerance: Tolerance,
    /// Leave timing columns out of the table and JSON (they still go to the
    /// log and the metrics' `timing`), so the outputs are reproducible.
    #[serde(default = "d_true")]
    pub deterministic: bool,
    /// Template for models whose folder has none (Hugging Face folders).
    pub template: Option<TemplateParam>,
    /// Cut eval examples to this many tokens (default: each model's context).
    pub max_length: Option<usize>,
    /// Examples per batch for the loss.
    #[serde(default = "d_batch")]
    pub batch_size: usize,
    /// `cpu` or `cuda`.
    #[serde(default)]
    pub device: DeviceParam,
}

impl ParamsDoc for BenchParams {
    fn doc() -> Vec<ParamDoc> {
        vec![
            ParamDoc::new(
                "models",
                "list of names or {name, base, from}",
                "required",
                "One entry per model dep (a model folder, or a `.gguf` file `export-model` wrote), in order; `base` \
                 names the entry an adapter was trained on; `from`, for a `.gguf`, an earlier entry whose tokenizer \
                 and chat template it runs with (the model it was exported from).",
            ),
            ParamDoc::new("baseline", "string", "-", "Entry the others are compared with; default: the first."),
            ParamDoc::new(
                "prompts",
                "integer",
                "0",
                "Eval records generated for: 0 = all; N = a seeded sample stratified by label, at least one per class.",
            ),
            ParamDoc::new(
                "max_new_tokens",
                "integer",
                "64",
                "Generation stops after this many tokens (or at eos); hitting it counts as truncated.",
            ),
            ParamDoc::new("temperature", "number", "0", "Sampling temperature; 0 = greedy."),
            ParamDoc::new("top_p", "number", "1", "Nucleus sampling: keep the most likely tokens up to this probability."),
            ParamDoc::new("seed", "integer", "0", "Seeds the stratified sample and the sampling draws."),
            ParamDoc::new(
                "agent_openings",
                "list of strings",
                "I'll start by, Let me analyze, …",
                "Answers opening with one of these (any case) count as agent-like.",
            ),
            ParamDoc::new(
                "question_field",
                "field path",
                "question",
                "Questions-file field holding the question (records with an assistant turn are prompted as chats).",
            ),
            ParamDoc::new(
                "criteria",
                "list of strings",
                "accuracy, style, completeness",
                "Score columns (0–10) of the scoring sheet (`.csv` out).",
            ),
            ParamDoc::new("task", "tool_choice | none", "tool_choice", "What accuracy measures."),
            ParamDoc::new("label_field", "field path", "pattern", "Field holding the expected label."),
            ParamDoc::new(
                "exact_match_field",
                "field path",
                "-",
                "Also count generations equal (trimmed) to this field's text.",
            ),
            ParamDoc::new(
                "tolerance",
                "{accuracy_pts, loss_pct}",
                "{accuracy_pts: 0, loss_pct: 2}",
                "How much worse than the baseline counts as a regression: accuracy when the whole 95% interval of the drop is above `accuracy_pts`; loss beyond `loss_pct`.",
            ),
            ParamDoc::new(
                "deterministic",
                "bool",
                "true",
                "Leave timings out of the table and JSON so outputs reproduce.",
            ),
            ParamDoc::new("template", "name or map", "-", "Template for models whose folder has none."),
            ParamDoc::new(
                "max_length",
                "integer",
                "-",
                "Cut eval examples to this many tokens; default: each model's context.",
            ),
            ParamDoc::new("batch_size", "integer", "8", "Examples per batch for the loss."),
            ParamDoc::new("device", "cpu | cuda", "cpu", "Where tensors live."),
        ]
    }
}

fn d_top_p() -> f64 {
    1.0
}
fn d_openings() -> Vec<String> {
    super::checks::DEFAULT_AGENT_OPENINGS.iter().map(|s| s.to_string()).collect()
}
fn d_question() -> String {
    "question".into()
}
fn d_criteria() -> Vec<String> {
    ["accuracy", "style", "completeness"].iter().map(|s| s.to_string()).collect()
}
fn d_new() -> usize {
    64
}
fn d_label() -> String {
    "pattern".into()
}
fn d_true() -> bool {
    true
}
fn d_batch() -> usize {
    8
}

impl BenchParams {
    /// Check values, and the models against the number of deps.
    pub fn check(&self, deps: usize) -> Result<(), ParamError> {
        let p = self;
        if p.models.is_empty() {
            return Err(ParamError::field("models", "name at least one model"));
        }
        if deps != p.models.len() + 1 && deps != p.models.len() + 2 {
            return Err(ParamError::field(
                "models",
                format!(
                    "{} models named but {deps} deps: give one model folder per entry, then the eval JSONL \
                     (then, optionally, a questions file)",
                    p.models.len()
                ),
            ));
        }
        let mut seen = BTreeSet::new();
        for (i, m) in p.models.iter().enumerate() {
            if !seen.insert(m.name()) {
                return Err(ParamError::field(format!("models.{i}.name"), format!("`{}` is named twice", m.name())));
            }
        }
        for (i, m) in p.models.iter().enumerate() {
            if let Some(b) = m.base() {
                if !seen.contains(b) || b == m.name() {
                    return Err(ParamError::field(
                        format!("models.{i}.base"),
                        format!("no other model is named `{b}`"),
                    ));
                }
            }
        }
        for (i, m) in p.models.iter().enumerate() {
            if let Some(f) = m.from() {
                if !p.models[..i].iter().any(|e| e.name() == f) {
                    return Err(ParamError::field(
                        format!("models.{i}.from"),
                        format!("no earlier model is named `{f}` (its tokenizer and template are needed first)"),
                    ));
                }
            }
        }
        if let Some(b) = &p.baseline {
            if !seen.contains(b.as_str()) {
                return Err(ParamError::field("baseline", format!("no model is named `{b}`")));
            }
        }
        if !(p.temperature >= 0.0 && p.temperature.is_finite()) {
            return Err(ParamError::field("temperature", "must be a number ≥ 0"));
        }
        if !(p.top_p > 0.0 && p.top_p <= 1.0) {
            return Err(ParamError::field("top_p", "must be in (0, 1]"));
        }
        if p.max_new_tokens == 0 {
            return Err(ParamError::field("max_new_tokens", "must be at least 1"));
        }
        let mut names = BTreeSet::new();
        for (i, c) in p.criteria.iter().enumerate() {
            if c.trim().is_empty() || !names.insert(c.as_str()) || RESERVED.contains(&c.as_str()) {
                return Err(ParamError::field(
                    format!("criteria.{i}"),
                    format!("`{c}` is empty, repeated or a sheet column of its own"),
                ));
            }
        }
        if p.batch_size == 0 {
            return Err(ParamError::field("batch_size", "must be at least 1"));
        }
        if let Some(t) = &p.template {
            t.resolve().map_err(|e| ParamError::field("template", e))?;
        }
        p.device.check()
    }

    /// Whether a questions file follows the eval file.
    pub fn has_questions(&self, deps: usize) -> bool {
        deps == self.models.len() + 2
    }

    /// The baseline's index.
    pub fn baseline_index(&self) -> usize {
        self.baseline.as_ref().and_then(|b| self.models.iter().position(|m| m.name() == b)).unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dvx_stage_api::parse_params;
    use serde_json::json;

    #[test]
    fn entries_and_errors() {
        let parse = |v: &serde_json::Value, deps| {
            let p: BenchParams = parse_params(v)?;
            p.check(deps).map(|()| p)
        };
        let p = parse(&json!({"models": ["base", {"name": "p5", "base": "base"}], "baseline": "p5"}), 3).unwrap();
        assert_eq!(p.models[1].base(), Some("base"));
        assert_eq!(p.baseline_index(), 1);
        assert!(p.deterministic);
        let field = |v, deps| parse(&v, deps).unwrap_err().field;
        assert_eq!(field(json!({"models": ["a"]}), 4).as_deref(), Some("models"));
        assert!(parse(&json!({"models": ["a"]}), 3).unwrap().has_questions(3));
        assert_eq!(field(json!({"models": ["a"], "criteria": ["notes"]}), 2).as_deref(), Some("criteria.0"));
        assert_eq!(field(json!({"models": ["a"], "temperature": -1}), 2).as_deref(), Some("temperature"));
        assert_eq!(field(json!({"models": ["a", "a"]}), 3).as_deref(), Some("models.1.name"));
        assert_eq!(field(json!({"models": ["a", {"name": "b", "base": "c"}]}), 3).as_deref(), Some("models.1.base"));
        assert_eq!(field(json!({"models": ["a"], "baseline": "z"}), 2).as_deref(), Some("baseline"));
        assert_eq!(field(json!({"models": ["a"], "task": "qa"}), 2).as_deref(), Some("task"));
        assert_eq!(field(json!({"models": ["a"], "tolerance": {"acc": 1}}), 2).as_deref(), Some("tolerance.acc"));
        assert_eq!(field(json!({"models": [{"name": "a", "bse": "b"}]}), 2).as_deref(), Some("models.0"));
    }
}
