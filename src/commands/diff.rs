//! `dvx diff A B [STAGE]`: what changed between two versions.

use std::fmt::Write as _;
use std::io::Write as _;
use std::process::ExitCode;

use dvx_engine::diff::{self, DiffOptions, FileDiff, MetricChange, MetricRow, StageChangeKind, VersionDiff};
use dvx_engine::EngineError;
use miette::{IntoDiagnostic, Result};
use serde_json::Value;

use super::Store;

pub fn diff(
    l: Store,
    a: &str,
    b: &str,
    stage: Option<String>,
    category_field: Option<String>,
    json: bool,
) -> Result<ExitCode> {
    let ha = l.ws.cache.resolve_version(a).map_err(EngineError::Cache)?;
    let hb = l.ws.cache.resolve_version(b).map_err(EngineError::Cache)?;
    let d = diff::diff_versions(&l.ws.cache, &ha, &hb, &DiffOptions { stage, category_field })?;
    let text = if json {
        let mut s = serde_json::to_string_pretty(&d).into_diagnostic()?;
        s.push('\n');
        s
    } else {
        render(&d)
    };
    // A closed pipe (`dvx diff … | head`) is not an error.
    match std::io::stdout().lock().write_all(text.as_bytes()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e).into_diagnostic()?,
        _ => {}
    }
    Ok(ExitCode::SUCCESS)
}

/// The diff as Markdown-like text.
fn render(d: &VersionDiff) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "diff {} → {}", d.a.short(), d.b.short());

    if !d.stages.is_empty() {
        out.push_str("\n## stages\n\n");
        let rows = d
            .stages
            .iter()
            .map(|s| {
                let state = match s.state {
                    StageChangeKind::OnlyInA => "only in A",
                    StageChangeKind::OnlyInB => "only in B",
                    StageChangeKind::Changed => "changed",
                    StageChangeKind::Same => "same",
                };
                let key =
                    |k: &Option<dvx_cache::StageKey>| k.as_ref().map(|k| k.short().to_string()).unwrap_or("-".into());
                vec![s.name.clone(), s.kind.clone(), state.into(), key(&s.key_a), key(&s.key_b)]
            })
            .collect();
        out.push_str(&table(&["stage", "kind", "change", "key A", "key B"], &[false; 5], rows));
    }

    for f in &d.files {
        render_file(&mut out, f);
    }
    for (side, files) in [("A", &d.files_only_in_a), ("B", &d.files_only_in_b)] {
        if !files.is_empty() {
            let _ = writeln!(out, "\nJSONL only in {side}: {}", files.join(", "));
        }
    }

    for m in &d.metrics {
        let _ = writeln!(out, "\n## metrics: {}\n", m.stage);
        let rows = m.rows.iter().map(metric_cells).collect();
        out.push_str(&table(&["metric", "A", "B", "Δ", "%", ""], &[false, true, true, true, true, false], rows));
    }

    let _ = match d.regressions {
        0 => writeln!(out, "\nno regressions"),
        1 => writeln!(out, "\n⚠ 1 regression"),
        n => writeln!(out, "\n⚠ {n} regressions"),
    };
    out
}

fn render_file(out: &mut String, f: &FileDiff) {
    let field = f.category_field.as_deref().map(|c| format!(", category field `{c}`")).unwrap_or_default();
    let _ = writeln!(out, "\n## records: {} (stage `{}`{field})\n", f.path, f.stage);
    if f.identical {
        let _ = writeln!(out, "identical: {} records", f.before);
    } else {
        let _ = writeln!(
            out,
            "{} → {} records: +{} added, -{} removed, {} kept",
            f.before, f.after, f.added, f.removed, f.kept
        );
    }
    if f.invalid_a + f.invalid_b > 0 {
        let _ = writeln!(out, "lines that are not JSON: {} in A, {} in B", f.invalid_a, f.invalid_b);
    }
    if !f.categories.is_empty() {
        out.push('\n');
        let rows = f
            .categories
            .iter()
            .map(|c| {
                vec![
                    c.name.clone(),
                    c.before.to_string(),
                    c.after.to_string(),
                    signed_int(c.after as i64 - c.before as i64),
                    signed_int(c.added as i64),
                    signed_int(-(c.removed as i64)),
                ]
            })
            .collect();
        out.push_str(&table(
            &["category", "before", "after", "Δ", "added", "removed"],
            &[false, true, true, true, true, true],
            rows,
        ));
    }
}

fn metric_cells(r: &MetricRow) -> Vec<String> {
    let show = |v: &Option<Value>| v.as_ref().map(value_text).unwrap_or_else(|| "-".into());
    let ints = |v: &Option<Value>| v.as_ref().is_some_and(|v| v.is_i64() || v.is_u64());
    let delta = match (r.change, r.delta) {
        (MetricChange::Same, _) => String::new(),
        (_, Some(d)) if ints(&r.a) && ints(&r.b) => signed_int(d as i64),
        (_, Some(d)) => signed(d),
        (MetricChange::Changed, None) => "changed".into(),
        (MetricChange::OnlyInA, _) => "only in A".into(),
        (MetricChange::OnlyInB, _) => "only in B".into(),
        _ => String::new(),
    };
    let pct = match (r.change, r.pct) {
        (MetricChange::Same, _) | (_, None) => String::new(),
        (_, Some(p)) => format!("{p:+.1}%"),
    };
    let mark = if r.regression { "⚠ regression" } else { "" };
    vec![r.name.clone(), show(&r.a), show(&r.b), delta, pct, mark.into()]
}

/// A metric value for a table cell: numbers short, strings bare, the rest as
/// compact JSON, cut at 40 characters.
fn value_text(v: &Value) -> String {
    let s = match v {
        Value::Number(n) if n.is_f64() => number(n.as_f64().unwrap_or(f64::NAN)),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    if s.chars().count() > 40 {
        format!("{}…", s.chars().take(39).collect::<String>())
    } else {
        s
    }
}

/// A float with at most 4 decimals, trailing zeros dropped; tiny ones in
/// scientific notation.
fn number(x: f64) -> String {
    if x != 0.0 && x.abs() < 1e-3 {
        return format!("{x:.2e}");
    }
    let s = format!("{x:.4}");
    let s = if s.contains('.') { s.trim_end_matches('0').trim_end_matches('.').to_string() } else { s };
    if s == "-0" {
        "0".into()
    } else {
        s
    }
}

fn signed(x: f64) -> String {
    let s = number(x);
    if x > 0.0 {
        format!("+{s}")
    } else {
        s
    }
}

fn signed_int(x: i64) -> String {
    if x > 0 {
        format!("+{x}")
    } else {
        x.to_string()
    }
}

/// A Markdown table with padded columns; `right` aligns a column right.
fn table(headers: &[&str], right: &[bool], rows: Vec<Vec<String>>) -> String {
    let width = |s: &str| s.chars().count();
    let mut widths: Vec<usize> = headers.iter().map(|h| width(h).max(3)).collect();
    for r in &rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(width(c));
        }
    }
    let line = |cells: Vec<&str>| {
        let mut s = String::from("|");
        for ((c, w), r) in cells.iter().zip(&widths).zip(right) {
            let pad = " ".repeat(w - width(c));
            if *r {
                let _ = write!(s, " {pad}{c} |");
            } else {
                let _ = write!(s, " {c}{pad} |");
            }
        }
        s.push('\n');
        s
    };
    let mut out = line(headers.to_vec());
    out.push('|');
    for (w, r) in widths.iter().zip(right) {
        let dashes = "-".repeat(*w);
        let _ = if *r { write!(out, " {}: |", &dashes[1..]) } else { write!(out, " {dashes} |") };
    }
    out.push('\n');
    for r in &rows {
        out.push_str(&line(r.iter().map(String::as_str).collect()));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_short() {
        assert_eq!(number(0.627), "0.627");
        assert_eq!(number(2.26431), "2.2643");
        assert_eq!(number(3.0), "3");
        assert_eq!(number(-0.00001), "-1.00e-5");
        assert_eq!(signed(4.5 - 8.2), "-3.7");
        assert_eq!(signed(0.25), "+0.25");
    }

    #[test]
    fn tables_pad_and_align() {
        let t = table(
            &["name", "n"],
            &[false, true],
            vec![vec!["a".into(), "10".into()], vec!["long name".into(), "2".into()]],
        );
        assert_eq!(t, "| name      |   n |\n| --------- | --: |\n| a         |  10 |\n| long name |   2 |\n");
    }
}
