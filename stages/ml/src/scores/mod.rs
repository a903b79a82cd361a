//! `kind: scores` — seed 003's comparison across versions from human scores:
//! each dep is a scoring sheet the `benchmark` kind wrote and a person filled
//! in (so the scores are part of the pipeline's version); the stage prints
//! score /10, dataset size and type, the automatic checks and regressions
//! per version, like `v2.0 7.4 → v2.1 8.2 → v2.3 4.5`.
//!
//! deps: one filled sheet (`.csv`) per `versions` entry, oldest first.
//! outs: `[table.md, (scores.json)]`.

pub(crate) mod sheet;

#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};

use dvx_stage_api::{Count, Metrics, ParamDoc, ParamError, ParamsDoc, Shape, StageContext, StageFailure, TypedStage};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

/// The `scores` stage kind.
pub struct Scores;

/// One version: a filled sheet and what it was trained on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Version {
    /// Shown in the table (`v2.1`).
    pub name: String,
    /// The sheet's `model` rows to read; needed when it holds several.
    #[serde(default)]
    pub model: Option<String>,
    /// Training examples of this version's dataset.
    #[serde(default)]
    pub dataset_size: Option<u64>,
    /// What the dataset was (`curated + synthetic`).
    #[serde(default)]
    pub dataset_type: Option<String>,
}

/// All of `scores`' params.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScoresParams {
    /// One entry per sheet dep, oldest first.
    pub versions: Vec<Version>,
    /// A score drop from the previous version larger than this (out of 10)
    /// is a regression.
    #[serde(default = "d_tolerance")]
    pub tolerance: f64,
}

fn d_tolerance() -> f64 {
    0.5
}

impl ParamsDoc for ScoresParams {
    fn doc() -> Vec<ParamDoc> {
        vec![
            ParamDoc::new(
                "versions",
                "list of {name, model, dataset_size, dataset_type}",
                "required",
                "One entry per filled sheet, oldest first; `model` picks the sheet's rows when it holds several models.",
            ),
            ParamDoc::new(
                "tolerance",
                "number",
                "0.5",
                "A score drop (out of 10) from the previous version beyond this is a regression.",
            ),
        ]
    }
}

/// What one version scored.
#[derive(Debug, Clone, PartialEq, Serialize)]
struct VersionScore {
    name: String,
    /// Mean over answers of the mean over criteria, out of 10.
    score: f64,
    /// Mean per criterion.
    criteria: Vec<(String, f64)>,
    answers: usize,
    truncated: usize,
    template_bleed: usize,
    agent_opening: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    dataset_size: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    dataset_type: Option<String>,
    regressions: Vec<String>,
}

impl TypedStage for Scores {
    const KIND: &'static str = "scores";
    const VERSION: u32 = 1;
    const DEPS: Count = Count::AtLeast(1);
    const OUTS: Count = Count::Between(1, 2);
    const DEPS_ARE: &'static str = "one filled scoring sheet (.csv, from `benchmark`) per `versions` entry";
    const OUTS_ARE: &'static str = "table.md, then optionally scores.json";
    type Params = ScoresParams;
    type Prepared = ScoresParams;

    fn prepare(&self, p: ScoresParams, shape: Shape) -> Result<ScoresParams, ParamError> {
        if p.versions.len() != shape.deps {
            return Err(ParamError::field(
                "versions",
                format!(
                    "{} versions named but {} deps: give one filled sheet per version",
                    p.versions.len(),
                    shape.deps
                ),
            ));
        }
        let mut seen = std::collections::BTreeSet::new();
        for (i, v) in p.versions.iter().enumerate() {
            if !seen.insert(v.name.as_str()) {
                return Err(ParamError::field(format!("versions.{i}.name"), format!("`{}` is named twice", v.name)));
            }
        }
        if !(p.tolerance >= 0.0 && p.tolerance.is_finite()) {
            return Err(ParamError::field("tolerance", "must be a number ≥ 0"));
        }
        Ok(p)
    }

    fn execute(&self, p: &ScoresParams, ctx: &mut StageContext<'_>) -> Result<Metrics, StageFailure> {
        execute(p, ctx.deps, ctx.outs, ctx.log)
    }
}

fn execute(
    p: &ScoresParams,
    deps: &[PathBuf],
    outs: &[PathBuf],
    log: &mut dyn std::io::Write,
) -> Result<Metrics, StageFailure> {
    let mut scored: Vec<VersionScore> = Vec::new();
    for (v, path) in p.versions.iter().zip(deps) {
        let mut s = score_one(v, path)?;
        if let Some(prev) = scored.last() {
            s.regressions = regressions(prev, &s, p.tolerance);
        }
        writeln!(
            log,
            "{}: {:.1}/10 over {} answers; {} truncated, {} template bleeding, {} agent-like{}",
            s.name,
            s.score,
            s.answers,
            s.truncated,
            s.template_bleed,
            s.agent_opening,
            if s.regressions.is_empty() {
                String::new()
            } else {
                format!("; REGRESSION: {}", s.regressions.join("; "))
            }
        )?;
        scored.push(s);
    }
    let trajectory = scored.iter().map(|s| format!("{} {:.1}", s.name, s.score)).collect::<Vec<_>>().join(" → ");
    write(&outs[0], markdown(&scored, &trajectory).as_bytes())?;
    if let Some(out) = outs.get(1) {
        let mut bytes = serde_json::to_vec_pretty(&json!({"trajectory": trajectory, "versions": scored}))
            .map_err(|e| StageFailure::new(e.to_string()))?;
        bytes.push(b'\n');
        write(out, &bytes)?;
    }
    let mut m = Metrics::new();
    m.insert("trajectory".into(), json!(trajectory));
    m.insert("regressions".into(), json!(scored.iter().filter(|s| !s.regressions.is_empty()).count()));
    let per: serde_json::Map<String, Value> = scored
        .iter()
        .map(|s| {
            (
                s.name.clone(),
                json!({"score": s.score, "answers": s.answers, "truncated": s.truncated,
                "template_bleed": s.template_bleed, "agent_opening": s.agent_opening,
                "dataset_size": s.dataset_size, "regressed": !s.regressions.is_empty()}),
            )
        })
        .collect();
    m.insert("versions".into(), Value::Object(per));
    Ok(m)
}

fn score_one(v: &Version, path: &Path) -> Result<VersionScore, StageFailure> {
    let sheet = sheet::read(path).map_err(StageFailure::new)?;
    let models: std::collections::BTreeSet<&str> = sheet.rows.iter().map(|r| r.model.as_str()).collect();
    let want = match (&v.model, models.len()) {
        (Some(m), _) if models.contains(m.as_str()) => m.clone(),
        (Some(m), _) => {
            return Err(StageFailure::new(format!(
                "{}: no rows of model `{m}` (the sheet has {})",
                path.display(),
                models.iter().map(|m| format!("`{m}`")).collect::<Vec<_>>().join(", ")
            )))
        }
        (None, 1) => models.first().expect("one").to_string(),
        (None, 0) => return Err(StageFailure::new(format!("{}: the sheet has no rows", path.display()))),
        (None, _) => {
            return Err(StageFailure::new(format!(
                "{}: the sheet holds several models ({}): set `model` on version `{}`",
                path.display(),
                models.iter().map(|m| format!("`{m}`")).collect::<Vec<_>>().join(", "),
                v.name
            )))
        }
    };
    let rows: Vec<&sheet::SheetRow> = sheet.rows.iter().filter(|r| r.model == want).collect();
    let n = rows.len() as f64;
    let criteria: Vec<(String, f64)> = sheet
        .criteria
        .iter()
        .enumerate()
        .map(|(j, c)| (c.clone(), r2(rows.iter().map(|r| r.scores[j].unwrap_or(0.0)).sum::<f64>() / n)))
        .collect();
    let score = rows
        .iter()
        .map(|r| r.scores.iter().map(|s| s.unwrap_or(0.0)).sum::<f64>() / r.scores.len() as f64)
        .sum::<f64>()
        / n;
    let count = |i: usize| rows.iter().filter(|r| r.flags[i]).count();
    Ok(VersionScore {
        name: v.name.clone(),
        score: r2(score),
        criteria,
        answers: rows.len(),
        truncated: count(0),
        template_bleed: count(1),
        agent_opening: count(2),
        dataset_size: v.dataset_size,
        dataset_type: v.dataset_type.clone(),
        regressions: Vec::new(),
    })
}

/// What got worse from `prev` to `cur`: the score beyond `tol`, and any
/// automatic check that fires more often.
fn regressions(prev: &VersionScore, cur: &VersionScore, tol: f64) -> Vec<String> {
    let mut out = Vec::new();
    if prev.score - cur.score > tol + 1e-9 {
        out.push(format!("score {:.1} → {:.1}", prev.score, cur.score));
    }
    for (what, a, b) in [
        ("truncated", prev.truncated, cur.truncated),
        ("template bleeding", prev.template_bleed, cur.template_bleed),
        ("agent-like openings", prev.agent_opening, cur.agent_opening),
    ] {
        if b > a {
            out.push(format!("{what} {a} → {b}"));
        }
    }
    out
}

fn markdown(scored: &[VersionScore], trajectory: &str) -> String {
    use std::fmt::Write;
    let mut s = format!("# Human scores across versions\n\n{trajectory}\n\n");
    s.push_str("| version | score /10 | dataset size | dataset type | answers | truncated | template bleeding | agent-like | regressions |\n");
    s.push_str("|---|---:|---:|---|---:|---:|---:|---:|---|\n");
    for v in scored {
        let _ = writeln!(
            s,
            "| {} | {:.1} | {} | {} | {} | {} | {} | {} | {} |",
            v.name,
            v.score,
            v.dataset_size.map_or("-".to_string(), |n| n.to_string()),
            v.dataset_type.as_deref().unwrap_or("-"),
            v.answers,
            v.truncated,
            v.template_bleed,
            v.agent_opening,
            if v.regressions.is_empty() { "-".to_string() } else { format!("**{}**", v.regressions.join("; ")) }
        );
    }
    if let Some(first) = scored.first() {
        s.push_str("\n## Per criterion\n\n| version |");
        for (c, _) in &first.criteria {
            let _ = write!(s, " {c} |");
        }
        s.push_str("\n|---|");
        s.push_str(&"---:|".repeat(first.criteria.len()));
        s.push('\n');
        for v in scored {
            let _ = write!(s, "| {} |", v.name);
            for (_, m) in &v.criteria {
                let _ = write!(s, " {m:.1} |");
            }
            s.push('\n');
        }
    }
    s
}

fn r2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

fn write(path: &Path, bytes: &[u8]) -> Result<(), StageFailure> {
    std::fs::write(path, bytes).map_err(|e| StageFailure::new(format!("cannot write {}: {e}", path.display())))
}
