//! `dvx diff A B [STAGE]`: what changed between two versions — stages in
//! pipeline order, params, JSONL records per category, metrics (nested
//! ones as tables, moves within tolerance not regressions).

use std::fmt::Write as _;
use std::process::ExitCode;

use dvx_engine::diff::{self, StageChangeKind, VersionDiff};
use dvx_engine::{ops, EngineError};
use miette::{IntoDiagnostic, Result};

use super::metrics::{changes_section, compare_options, params_table, regressions_line};
use super::records_diff::{diff_records, FileDiff, Records};
use super::table::{self, Format, Table};
use super::Store;
use crate::cli::CompareArgs;

pub fn diff(
    l: Store,
    a: &str,
    b: &str,
    stage: Option<String>,
    category_field: Option<String>,
    json: bool,
    compare: &CompareArgs,
) -> Result<ExitCode> {
    let ha = l.ws.cache.resolve_version(a).map_err(EngineError::Cache)?;
    let hb = l.ws.cache.resolve_version(b).map_err(EngineError::Cache)?;
    let d = diff::diff_versions(&l.ws.cache, &ha, &hb, &compare_options(compare, stage.clone())?)?;
    let body = |h| -> Result<_> { Ok(ops::body_of(&l.ws.cache.get_version(h).map_err(EngineError::Cache)?)?) };
    let records = diff_records(&l.ws.cache, &body(&ha)?, &body(&hb)?, stage.as_deref(), category_field.as_deref())?;
    let text = if json {
        let mut v = serde_json::to_value(&d).into_diagnostic()?;
        let r = serde_json::to_value(&records).into_diagnostic()?;
        if let (Some(v), serde_json::Value::Object(r)) = (v.as_object_mut(), r) {
            v.extend(r);
        }
        let mut s = serde_json::to_string_pretty(&v).into_diagnostic()?;
        s.push('\n');
        s
    } else {
        render(&d, &records, compare.changed)
    };
    super::write_out(&text)
}

/// The diff as Markdown.
fn render(d: &VersionDiff, records: &Records, changed: bool) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "diff {} → {}", d.a.short(), d.b.short());

    let stages: Vec<_> = d.stages.iter().filter(|s| !changed || s.state != StageChangeKind::Same).collect();
    if !stages.is_empty() {
        out.push_str("\n## stages\n\n");
        let mut t = Table::new(&["stage", "kind", "change", "key A", "key B"], &[false; 5]);
        for s in stages {
            let state = match s.state {
                StageChangeKind::OnlyInA => "only in A",
                StageChangeKind::OnlyInB => "only in B",
                StageChangeKind::Changed => "changed",
                StageChangeKind::Same => "same",
            };
            let key = |k: &Option<dvx_cache::StageKey>| k.as_ref().map(|k| k.short().to_string()).unwrap_or("-".into());
            t.push(vec![s.name.clone(), s.kind.clone(), state.into(), key(&s.key_a), key(&s.key_b)]);
        }
        out.push_str(&t.render(Format::Md));
    }

    let params: Vec<_> = d.params.iter().filter(|p| p.changed).collect();
    if !params.is_empty() {
        out.push_str("\n## params\n\n");
        out.push_str(&params_table(&params).render(Format::Md));
    }

    for f in records.files.iter().filter(|f| !changed || !f.identical) {
        render_file(&mut out, f);
    }
    for (side, files) in [("A", &records.files_only_in_a), ("B", &records.files_only_in_b)] {
        if !files.is_empty() {
            let _ = writeln!(out, "\nJSONL only in {side}: {}", files.join(", "));
        }
    }

    for m in &d.metrics {
        out.push_str(&changes_section(m, changed, Format::Md, &m.stage));
    }
    out.push_str(&regressions_line(d.regressions, &d.tolerance));
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
        let mut t = Table::new(
            &["category", "before", "after", "Δ", "added", "removed"],
            &[false, true, true, true, true, true],
        );
        for c in &f.categories {
            t.push(vec![
                c.name.clone(),
                c.before.to_string(),
                c.after.to_string(),
                table::signed_int(c.after as i64 - c.before as i64),
                table::signed_int(c.added as i64),
                table::signed_int(-(c.removed as i64)),
            ]);
        }
        out.push_str(&t.render(Format::Md));
    }
}
