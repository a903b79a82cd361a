//! Benchmark rows, regression marking against the baseline, and the
//! Markdown and JSON renderings.

use std::fmt::Write;

use serde::Serialize;

use super::params::Tolerance;

/// One generated answer.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Sample {
    /// Line of the record in the eval file.
    pub line: usize,
    /// Expected label, when the record has one.
    pub label: Option<String>,
    /// Pattern the classifier saw in the answer.
    pub predicted: String,
    /// The model's generated answer.
    pub text: String,
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
    /// The answers.
    pub samples: Vec<Sample>,
}

/// Regressions of `row` against `base`: an accuracy drop beyond
/// `tol.accuracy_pts` points, a valid-loss rise beyond `tol.loss_pct` percent.
pub fn regressions(base: &Row, row: &Row, tol: &Tolerance) -> Vec<String> {
    let mut out = Vec::new();
    if let (Some(b), Some(r)) = (base.accuracy, row.accuracy) {
        let drop = (b - r) * 100.0;
        if drop > tol.accuracy_pts + 1e-9 {
            out.push(format!("accuracy -{drop:.1} pts ({:.1}% -> {:.1}%)", b * 100.0, r * 100.0));
        }
    }
    if base.valid_loss.is_finite() && row.valid_loss.is_finite() && base.valid_loss > 0.0 {
        let rise = (row.valid_loss - base.valid_loss) / base.valid_loss * 100.0;
        if rise > tol.loss_pct + 1e-9 {
            out.push(format!("valid loss +{rise:.1}% ({:.4} -> {:.4})", base.valid_loss, row.valid_loss));
        }
    }
    out
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
        let acc = match r.accuracy {
            Some(a) => format!("{:.1}% ({}/{})", a * 100.0, r.correct, r.labelled),
            None => "-".into(),
        };
        let verdict = if i == baseline {
            "baseline".to_string()
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
    let flagged: Vec<&Row> = rows.iter().filter(|r| !r.regressions.is_empty()).collect();
    if flagged.is_empty() {
        s.push_str("\nNo regressions against the baseline.\n");
    } else {
        let _ = writeln!(s, "\n## Regressions\n");
        for r in flagged {
            let _ = writeln!(s, "- `{}`: {}", r.name, r.regressions.join("; "));
        }
    }
    s
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
            correct: (acc * 100.0).round() as usize,
            labelled: 100,
            exact_match: None,
            generated_tokens: 0,
            timing: None,
            regressions: vec![],
            samples: vec![],
        }
    }

    #[test]
    fn seed_003_regression_is_marked() {
        // Seed 003: v2.1 scored 8.2/10 (loss ~1.805), v2.3 4.5/10 with a final loss of 2.2643.
        let tol = Tolerance::default();
        let v21 = row("v2.1", 0.82, 1.805);
        let mut v23 = row("v2.3", 0.45, 2.2643);
        v23.regressions = regressions(&v21, &v23, &tol);
        assert_eq!(
            v23.regressions,
            vec!["accuracy -37.0 pts (82.0% -> 45.0%)", "valid loss +25.4% (1.8050 -> 2.2643)"]
        );
        // Within tolerance: not marked.
        let near = row("v2.2", 0.81, 1.83);
        assert!(regressions(&v21, &near, &Tolerance { accuracy_pts: 2.0, loss_pct: 2.0 }).is_empty());
        assert_eq!(regressions(&v21, &near, &tol), vec!["accuracy -1.0 pts (82.0% -> 81.0%)"]);
        // Better is never a regression.
        assert!(regressions(&v23, &v21, &tol).is_empty());
        let md = markdown(&[v21.clone(), v23.clone()], 0, false);
        assert!(md.contains("| v2.1 | adapter | 130.00 MB | 1.8050 | 6.080 | 82.0% (82/100) | baseline |"), "{md}");
        assert!(
            md.contains(
                "| v2.3 | adapter | 130.00 MB | 2.2643 | 9.624 | 45.0% (45/100) | **REGRESSION**: accuracy -37.0 pts"
            ),
            "{md}"
        );
        assert!(md.contains("## Regressions\n\n- `v2.3`: accuracy -37.0 pts"), "{md}");
        assert!(!md.contains("gen tok/s"));
        let mut timed = v23;
        timed.timing = Some(Timing { load_s: 0.68, gen_tokens_per_s: 31.25, gen_s: 1.0, eval_s: 0.1 });
        let md = markdown(&[v21, timed], 0, true);
        assert!(md.contains("| - | - | baseline |"), "{md}");
        assert!(md.contains("| 0.68 | 31.2 | **REGRESSION**"), "{md}");
    }
}
