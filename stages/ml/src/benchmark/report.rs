//! Benchmark rows, regression marking against the baseline, and the
//! Markdown and JSON renderings.

use std::collections::BTreeMap;
use std::fmt::Write;

use serde::Serialize;

use super::checks::{Counts, Flags};
use super::params::Tolerance;
use super::stats;

/// One generated answer.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Sample {
    /// Line of the record in the eval file.
    pub line: usize,
    /// Expected label, when the record has one.
    pub label: Option<String>,
    /// Pattern the classifier saw in the answer (`truncated` when the
    /// answer was cut before showing one).
    pub predicted: String,
    /// The model's generated answer.
    pub text: String,
    /// The automatic checks.
    pub flags: Flags,
}

/// One answer to a question of the questions file.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct QuestionAnswer {
    /// The question's `id` field, else its line.
    pub id: String,
    /// The question as asked.
    pub question: String,
    /// The model's answer.
    pub text: String,
    /// The automatic checks.
    pub flags: Flags,
}

/// Accuracy on one label class.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ClassScore {
    /// Prompts of this class.
    pub n: usize,
    /// Answered with the right pattern.
    pub correct: usize,
    /// Answers cut before showing a pattern.
    pub truncated: usize,
    /// `correct / n`.
    pub accuracy: f64,
    /// Wilson 95% interval of the accuracy.
    pub ci95: [f64; 2],
}

impl ClassScore {
    /// Scores of `correct` out of `n`, `truncated` of them cut.
    pub fn new(n: usize, correct: usize, truncated: usize) -> Self {
        let (lo, hi) = stats::wilson(correct, n);
        ClassScore { n, correct, truncated, accuracy: r4(ratio(correct, n)), ci95: [r4(lo), r4(hi)] }
    }
}

fn ratio(k: usize, n: usize) -> f64 {
    if n == 0 {
        0.0
    } else {
        k as f64 / n as f64
    }
}

fn r4(x: f64) -> f64 {
    (x * 1e4).round() / 1e4
}

/// Measured times (not reproducible).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Timing {
    /// Reading config, weights and tokenizer.
    pub load_s: f64,
    /// Generated tokens per second.
    pub gen_tokens_per_s: f64,
    /// Seconds spent generating.
    pub gen_s: f64,
    /// Seconds computing the valid loss.
    pub eval_s: f64,
}

/// One model's results.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Row {
    /// The `models:` entry's name, as report tables show it.
    pub name: String,
    /// `model` or `adapter`.
    pub kind: String,
    /// Base entry, for adapters.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub base: Option<String>,
    /// Parameters (base included for adapters).
    pub params: usize,
    /// Bytes of the folder's weights (the adapter alone for adapters).
    pub size_bytes: u64,
    /// Mean loss per assistant token on the eval set.
    pub valid_loss: f64,
    /// `exp(valid_loss)`.
    pub perplexity: f64,
    /// Fraction of labelled prompts answered with the right pattern.
    pub accuracy: Option<f64>,
    /// Prompts answered with the right pattern.
    pub correct: usize,
    /// Prompts with a label.
    pub labelled: usize,
    /// Wilson 95% interval of the accuracy.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub accuracy_ci95: Option<[f64; 2]>,
    /// Accuracy per expected label.
    pub per_class: BTreeMap<String, ClassScore>,
    /// Labelled prompts whose answer was cut before showing a pattern.
    pub truncated: usize,
    /// Automatic checks over every answer (eval prompts and questions).
    pub checks: Counts,
    /// Fraction of prompts whose answer equals `exact_match_field`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exact_match: Option<f64>,
    /// Tokens generated over all prompts.
    pub generated_tokens: usize,
    /// Timings, left out in deterministic mode.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timing: Option<Timing>,
    /// What got worse than the baseline beyond the tolerance.
    pub regressions: Vec<String>,
    /// Differences from the baseline too small to call (inside the interval).
    pub within_noise: Vec<String>,
    /// The answers.
    pub samples: Vec<Sample>,
    /// Answers to the questions file.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub questions: Vec<QuestionAnswer>,
}

/// Regressions of `row` against `base`, and drops too small to call: an
/// accuracy drop is a regression when its whole 95% interval (Newcombe's,
/// for two proportions) lies above `tol.accuracy_pts` points, so a
/// difference the sample size cannot tell from chance is not flagged; a
/// valid-loss rise beyond `tol.loss_pct` percent is one (the loss averages
/// over every assistant token, so its noise is small).
pub fn regressions(base: &Row, row: &Row, tol: &Tolerance) -> (Vec<String>, Vec<String>) {
    let (mut out, mut noise) = (Vec::new(), Vec::new());
    if let (Some(b), Some(r)) = (base.accuracy, row.accuracy) {
        let drop = (b - r) * 100.0;
        let (lo, hi) = stats::difference(base.correct, base.labelled, row.correct, row.labelled);
        let what = format!(
            "accuracy -{drop:.1} pts ({:.1}% -> {:.1}%; 95% interval of the drop {:.1} to {:.1} pts)",
            b * 100.0,
            r * 100.0,
            lo * 100.0,
            hi * 100.0
        );
        if lo * 100.0 > tol.accuracy_pts + 1e-9 {
            out.push(what);
        } else if drop > tol.accuracy_pts + 1e-9 {
            noise.push(what);
        }
    }
    if base.valid_loss.is_finite() && row.valid_loss.is_finite() && base.valid_loss > 0.0 {
        let rise = (row.valid_loss - base.valid_loss) / base.valid_loss * 100.0;
        if rise > tol.loss_pct + 1e-9 {
            out.push(format!("valid loss +{rise:.1}% ({:.4} -> {:.4})", base.valid_loss, row.valid_loss));
        }
    }
    (out, noise)
}

fn size(bytes: u64) -> String {
    let mb = bytes as f64 / 1e6;
    if mb >= 1000.0 {
        format!("{:.2} GB", mb / 1000.0)
    } else if mb >= 1.0 {
        format!("{mb:.2} MB")
    } else {
        format!("{:.1} kB", bytes as f64 / 1e3)
    }
}

/// The comparison table.
pub fn markdown(rows: &[Row], baseline: usize, timings: bool) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "# Benchmark\n\nBaseline: `{}`.\n", rows[baseline].name);
    s.push_str("| model | kind | size | valid loss | perplexity | accuracy |");
    if timings {
        s.push_str(" load s | gen tok/s |");
    }
    s.push_str(" vs baseline |\n|---|---|---:|---:|---:|---:|");
    if timings {
        s.push_str("---:|---:|");
    }
    s.push_str("---|\n");
    for (i, r) in rows.iter().enumerate() {
        let acc = match (r.accuracy, r.accuracy_ci95) {
            (Some(a), Some([lo, hi])) => {
                format!("{:.1}% ({}/{}, 95% CI {:.1}–{:.1})", a * 100.0, r.correct, r.labelled, lo * 100.0, hi * 100.0)
            }
            _ => "-".into(),
        };
        let verdict = if i == baseline {
            "baseline".to_string()
        } else if r.regressions.is_empty() && !r.within_noise.is_empty() {
            "ok (difference inside the 95% interval)".to_string()
        } else if r.regressions.is_empty() {
            "ok".to_string()
        } else {
            format!("**REGRESSION**: {}", r.regressions.join("; "))
        };
        let _ = write!(
            s,
            "| {} | {} | {} | {:.4} | {:.3} | {} |",
            r.name,
            r.kind,
            size(r.size_bytes),
            r.valid_loss,
            r.perplexity,
            acc
        );
        if timings {
            match &r.timing {
                Some(t) => {
                    let _ = write!(s, " {:.2} | {:.1} |", t.load_s, t.gen_tokens_per_s);
                }
                None => s.push_str(" - | - |"),
            }
        }
        let _ = writeln!(s, " {verdict} |");
    }
    per_class_table(&mut s, rows);
    checks_table(&mut s, rows);
    let flagged: Vec<&Row> = rows.iter().filter(|r| !r.regressions.is_empty()).collect();
    if flagged.is_empty() {
        s.push_str("\nNo regressions against the baseline.\n");
    } else {
        let _ = writeln!(s, "\n## Regressions\n");
        for r in flagged {
            let _ = writeln!(s, "- `{}`: {}", r.name, r.regressions.join("; "));
        }
    }
    let noisy: Vec<&Row> = rows.iter().filter(|r| !r.within_noise.is_empty()).collect();
    if !noisy.is_empty() {
        let _ = writeln!(s, "\n## Not flagged: inside the 95% interval\n");
        for r in noisy {
            let _ = writeln!(s, "- `{}`: {}", r.name, r.within_noise.join("; "));
        }
    }
    s
}

/// Accuracy per expected label, with Wilson intervals.
fn per_class_table(s: &mut String, rows: &[Row]) {
    let classes: std::collections::BTreeSet<&String> = rows.iter().flat_map(|r| r.per_class.keys()).collect();
    if classes.is_empty() {
        return;
    }
    s.push_str("\n## Accuracy per class (95% Wilson interval)\n\n| model |");
    for c in &classes {
        let _ = write!(s, " {c} |");
    }
    s.push_str(" truncated |\n|---|");
    s.push_str(&"---:|".repeat(classes.len() + 1));
    s.push('\n');
    for r in rows {
        let _ = write!(s, "| {} |", r.name);
        for c in &classes {
            match r.per_class.get(*c) {
                Some(k) => {
                    let _ = write!(
                        s,
                        " {}/{} {:.0}% [{:.0}–{:.0}] |",
                        k.correct,
                        k.n,
                        k.accuracy * 100.0,
                        k.ci95[0] * 100.0,
                        k.ci95[1] * 100.0
                    );
                }
                None => s.push_str(" - |"),
            }
        }
        let _ = writeln!(s, " {}/{} |", r.truncated, r.labelled);
    }
}

/// The automatic checks per model.
fn checks_table(s: &mut String, rows: &[Row]) {
    s.push_str("\n## Automatic checks\n\n| model | answers | truncated | template bleeding | agent-like opening |\n");
    s.push_str("|---|---:|---:|---:|---:|\n");
    for r in rows {
        let c = &r.checks;
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} |",
            r.name, c.answers, c.truncated, c.template_bleed, c.agent_opening
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(name: &str, acc: f64, loss: f64) -> Row {
        Row {
            name: name.into(),
            kind: "adapter".into(),
            base: Some("base".into()),
            params: 1_100_000_000,
            size_bytes: 130_000_000,
            valid_loss: loss,
            perplexity: loss.exp(),
            accuracy: Some(acc),
            accuracy_ci95: {
                let (lo, hi) = stats::wilson((acc * 100.0).round() as usize, 100);
                Some([r4(lo), r4(hi)])
            },
            correct: (acc * 100.0).round() as usize,
            labelled: 100,
            per_class: BTreeMap::new(),
            truncated: 0,
            checks: Counts::default(),
            exact_match: None,
            generated_tokens: 0,
            timing: None,
            regressions: vec![],
            within_noise: vec![],
            samples: vec![],
            questions: vec![],
        }
    }

    #[test]
    fn seed_003_regression_is_marked() {
        // Seed 003: v2.1 scored 8.2/10 (loss ~1.805), v2.3 4.5/10 with a final loss of 2.2643.
        let tol = Tolerance::default();
        let v21 = row("v2.1", 0.82, 1.805);
        let mut v23 = row("v2.3", 0.45, 2.2643);
        (v23.regressions, v23.within_noise) = regressions(&v21, &v23, &tol);
        assert_eq!(
            v23.regressions,
            vec![
                "accuracy -37.0 pts (82.0% -> 45.0%; 95% interval of the drop 24.0 to 48.3 pts)",
                "valid loss +25.4% (1.8050 -> 2.2643)"
            ]
        );
        // A one-point drop on 100 prompts is noise: reported, not flagged.
        let near = row("v2.2", 0.81, 1.83);
        let (flagged, noise) = regressions(&v21, &near, &tol);
        assert!(flagged.is_empty(), "{flagged:?}");
        assert_eq!(noise, vec!["accuracy -1.0 pts (82.0% -> 81.0%; 95% interval of the drop -9.8 to 11.8 pts)"]);
        // Nor when the tolerance covers it.
        let (flagged, noise) = regressions(&v21, &near, &Tolerance { accuracy_pts: 2.0, loss_pct: 2.0 });
        assert!(flagged.is_empty() && noise.is_empty());
        // Better is never a regression.
        assert_eq!(regressions(&v23, &v21, &tol), (vec![], vec![]));
        let md = markdown(&[v21.clone(), v23.clone()], 0, false);
        assert!(
            md.contains(
                "| v2.1 | adapter | 130.00 MB | 1.8050 | 6.080 | 82.0% (82/100, 95% CI 73.3–88.3) | baseline |"
            ),
            "{md}"
        );
        assert!(
            md.contains(
                "| v2.3 | adapter | 130.00 MB | 2.2643 | 9.624 | 45.0% (45/100, 95% CI 35.6–54.8) | **REGRESSION**: accuracy -37.0 pts"
            ),
            "{md}"
        );
        assert!(md.contains("## Regressions\n\n- `v2.3`: accuracy -37.0 pts"), "{md}");
        assert!(!md.contains("gen tok/s"));
        let mut v22 = near.clone();
        v22.within_noise = regressions(&v21, &near, &tol).1;
        let md = markdown(&[v21.clone(), v22], 0, false);
        assert!(md.contains("| ok (difference inside the 95% interval) |"), "{md}");
        assert!(md.contains("No regressions against the baseline.\n\n## Not flagged: inside the 95% interval\n\n- `v2.2`: accuracy -1.0 pts"), "{md}");
        let mut timed = v23;
        timed.timing = Some(Timing { load_s: 0.68, gen_tokens_per_s: 31.25, gen_s: 1.0, eval_s: 0.1 });
        let md = markdown(&[v21, timed], 0, true);
        assert!(md.contains("| - | - | baseline |"), "{md}");
        assert!(md.contains("| 0.68 | 31.2 | **REGRESSION**"), "{md}");
    }

    #[test]
    fn per_class_and_checks_tables() {
        let mut r = row("p7", 0.5, 1.0);
        r.per_class.insert("grep".into(), ClassScore::new(6, 6, 0));
        r.per_class.insert("read".into(), ClassScore::new(3, 0, 2));
        r.truncated = 2;
        r.checks = Counts { answers: 12, truncated: 2, template_bleed: 1, agent_opening: 0 };
        let md = markdown(&[r], 0, false);
        assert!(md.contains("| model | grep | read | truncated |\n|---|---:|---:|---:|\n| p7 | 6/6 100% [61–100] | 0/3 0% [0–56] | 2/100 |"), "{md}");
        assert!(md.contains("| p7 | 12 | 2 | 1 | 0 |"), "{md}");
    }
}
