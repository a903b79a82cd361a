//! `dvx metrics show [A]`, `dvx metrics diff [A [B]]`, `dvx params diff
//! [A [B]]`: DVC's names. B defaults to the workspace's version (the one
//! checked out, else the newest its runs wrote, else the newest in the
//! cache) and A to the version its pipeline made before B.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::process::ExitCode;
use std::sync::Arc;

use dvx_cache::Hash;
use dvx_engine::diff::{self, Better, DiffOptions, MetricChange, MetricRow, StageMetrics, Tolerance};
use dvx_engine::{ops, EngineError};
use miette::{miette, Result};
use serde_json::{json, Value};

use super::table::{self, Format, Table};
use super::{metric_direction, print_json, Store};
use crate::cli::{CompareArgs, FormatArgs};

/// The table format asked for (JSON is handled apart).
pub fn format_of(f: &FormatArgs) -> Format {
    if f.md {
        Format::Md
    } else {
        Format::Plain
    }
}

/// A version named on the command line.
pub fn resolve(l: &Store, prefix: &str) -> Result<Hash> {
    Ok(l.ws.cache.resolve_version(prefix).map_err(EngineError::Cache)?)
}

/// The workspace's version, else the newest in the cache.
pub fn current(l: &Store) -> Result<Hash> {
    if let Some(v) = ops::workspace_version(&l.ws.cache, &l.ws.state_dir) {
        return Ok(v);
    }
    let newest = l.ws.cache.versions().map_err(EngineError::Cache)?.into_iter().next();
    newest.map(|r| r.hash).ok_or_else(|| miette!("no versions yet: `dvx run` makes one"))
}

/// A and B from what was named: see the module doc.
pub fn pair(l: &Store, a: Option<&str>, b: Option<&str>) -> Result<(Hash, Hash)> {
    let b = match b {
        Some(b) => resolve(l, b)?,
        None => current(l)?,
    };
    let a = match a {
        Some(a) => resolve(l, a)?,
        None => ops::previous_version(&l.ws.cache, &b)?.ok_or_else(|| {
            miette!(
                help = "name the version to compare with: `dvx metrics diff A B` (`dvx log` lists them)",
                "version {} has no earlier version of its pipeline to compare with",
                b.short()
            )
        })?,
    };
    Ok((a, b))
}

/// Diff options from `--tolerance`, `--higher`, `--lower`: the naming
/// convention, overridden by the names given (matched like tolerances).
pub fn compare_options(c: &CompareArgs, stage: Option<String>) -> Result<DiffOptions> {
    let mut tolerance = Tolerance::default();
    for t in &c.tolerance {
        let (name, value) = match t.rsplit_once('=') {
            Some((n, v)) => (Some(n.trim()), v),
            None => (None, t.as_str()),
        };
        let tol: f64 = value
            .trim()
            .parse()
            .ok()
            .filter(|x: &f64| x.is_finite() && *x >= 0.0)
            .ok_or_else(|| miette!("--tolerance `{t}`: `{value}` is not a number ≥ 0 (e.g. 0.01 for 1%)"))?;
        match name {
            Some(n) if !n.is_empty() => {
                tolerance.per_metric.insert(n.to_string(), tol);
            }
            Some(_) => return Err(miette!("--tolerance `{t}`: the metric name before `=` is empty")),
            None => tolerance.default = tol,
        }
    }
    let mut given = BTreeMap::new();
    for n in &c.higher {
        given.insert(n.clone(), Better::Higher);
    }
    for n in &c.lower {
        given.insert(n.clone(), Better::Lower);
    }
    let direction: diff::Direction = Arc::new(move |stage: &str, name: &str| {
        diff::per_metric(&given, stage, name).copied().or_else(|| metric_direction::by_name(name))
    });
    Ok(DiffOptions { stage, tolerance, direction: Some(direction) })
}

/// `dvx metrics show [A]`.
pub fn show(l: Store, rev: Option<&str>, format: &FormatArgs) -> Result<ExitCode> {
    let hash = match rev {
        Some(r) => resolve(&l, r)?,
        None => current(&l)?,
    };
    let rec = l.ws.cache.get_version(&hash).map_err(EngineError::Cache)?;
    let body = ops::body_of(&rec)?;
    let stages: Vec<&str> = body.stages.iter().map(|s| s.name.as_str()).collect();
    if format.json {
        let metrics: serde_json::Map<String, Value> = stages
            .iter()
            .filter_map(|s| {
                let m = diff::metrics_of(&rec, s);
                (!m.is_empty()).then(|| (s.to_string(), Value::Object(m)))
            })
            .collect();
        print_json(&json!({ "version": hash, "pipeline": body.pipeline, "metrics": metrics }))?;
        return Ok(ExitCode::SUCCESS);
    }
    let mut out = format!("version {} ({})\n", hash.short(), body.pipeline);
    let mut any = false;
    for s in stages {
        let m = diff::flattened(&Value::Object(diff::metrics_of(&rec, s)));
        if m.is_empty() {
            continue;
        }
        any = true;
        out.push_str(&values_section(s, &m, format_of(format)));
    }
    if !any {
        out.push_str("\nno metrics\n");
    }
    super::write_out(&out)
}

/// One stage's metrics: its flat ones in one table, nested ones in a table each.
pub fn values_section(stage: &str, m: &BTreeMap<String, Value>, format: Format) -> String {
    let mut out = String::new();
    let (flat, nested) = table::nest(m.keys().map(String::as_str));
    let heading = |out: &mut String, title: &str| {
        let _ = match format {
            Format::Md => writeln!(out, "\n## {title}\n"),
            _ => writeln!(out, "\n{title}"),
        };
    };
    if !flat.is_empty() {
        heading(&mut out, stage);
        let mut t = Table::new(&["metric", "value"], &[false, true]);
        for n in flat {
            t.push(vec![n.to_string(), table::cell(m.get(n))]);
        }
        out.push_str(&t.render(format));
    }
    for n in nested {
        heading(&mut out, &format!("{stage}: {}", n.prefix));
        let mut headers = vec![row_header(n.prefix)];
        headers.extend(&n.columns);
        let mut t =
            Table::new(&headers, &std::iter::once(false).chain(n.columns.iter().map(|_| true)).collect::<Vec<_>>());
        for r in &n.rows {
            let mut row = vec![r.to_string()];
            row.extend(n.columns.iter().map(|c| table::cell(m.get(&n.name(r, c)))));
            t.push(row);
        }
        out.push_str(&t.render(format));
    }
    out
}

/// `dvx metrics diff [A [B]]`.
pub fn diff(l: Store, a: Option<&str>, b: Option<&str>, c: &CompareArgs, format: &FormatArgs) -> Result<ExitCode> {
    let (a, b) = pair(&l, a, b)?;
    let d = diff::diff_versions(&l.ws.cache, &a, &b, &compare_options(c, None)?)?;
    if format.json {
        print_json(&json!({
            "a": d.a, "b": d.b, "tolerance": d.tolerance, "metrics": d.metrics, "regressions": d.regressions,
        }))?;
        return Ok(ExitCode::SUCCESS);
    }
    let mut out = format!("metrics {} → {}\n", d.a.short(), d.b.short());
    for m in &d.metrics {
        out.push_str(&changes_section(m, c.changed, format_of(format), &m.stage));
    }
    if d.metrics.is_empty() {
        out.push_str("\nno metrics in either version\n");
    }
    out.push_str(&regressions_line(d.regressions, &d.tolerance));
    super::write_out(&out)
}

/// The closing line of a metrics comparison.
pub fn regressions_line(n: usize, t: &Tolerance) -> String {
    let tol = format!("tolerance {}%", table::number(t.default * 100.0));
    match n {
        0 => format!("\nno regressions ({tol})\n"),
        1 => format!("\n⚠ 1 regression ({tol})\n"),
        n => format!("\n⚠ {n} regressions ({tol})\n"),
    }
}

/// One stage's metric changes: a table of the flat ones (A, B, Δ, %, a
/// mark), and one table per nested group with `A → B` cells. `changed`
/// leaves out what did not move.
pub fn changes_section(m: &StageMetrics, changed: bool, format: Format, title: &str) -> String {
    let rows: BTreeMap<&str, &MetricRow> = m.rows.iter().map(|r| (r.name.as_str(), r)).collect();
    let (flat, nested) = table::nest(m.rows.iter().map(|r| r.name.as_str()));
    let moved = |r: &MetricRow| r.change != MetricChange::Same;
    let mut out = String::new();
    let heading = |out: &mut String, title: &str| {
        let _ = match format {
            Format::Md => writeln!(out, "\n## {title}\n"),
            _ => writeln!(out, "\n{title}"),
        };
    };
    let flat: Vec<&MetricRow> = flat.iter().map(|n| rows[n]).filter(|r| !changed || moved(r)).collect();
    if !flat.is_empty() {
        heading(&mut out, &format!("metrics: {title}"));
        let mut t = Table::new(&["metric", "A", "B", "Δ", "%", ""], &[false, true, true, true, true, false]);
        for r in flat {
            t.push(cells(r));
        }
        out.push_str(&t.render(format));
    }
    for n in nested {
        let keep: Vec<&&str> = n
            .rows
            .iter()
            .filter(|r| !changed || n.columns.iter().any(|c| rows.get(n.name(r, c).as_str()).is_some_and(|x| moved(x))))
            .collect();
        if keep.is_empty() {
            continue;
        }
        heading(&mut out, &format!("metrics: {title}: {}", n.prefix));
        let mut headers = vec![row_header(n.prefix)];
        headers.extend(&n.columns);
        let right: Vec<bool> = std::iter::once(false).chain(n.columns.iter().map(|_| true)).collect();
        let mut t = Table::new(&headers, &right);
        for r in keep {
            let mut row = vec![r.to_string()];
            for c in &n.columns {
                row.push(match rows.get(n.name(r, c).as_str()) {
                    None => String::new(),
                    Some(x) if x.change == MetricChange::Same => table::cell(x.b.as_ref()),
                    Some(x) => {
                        let mark = if x.regression { " ⚠" } else { "" };
                        format!("{} → {}{mark}", table::cell(x.a.as_ref()), table::cell(x.b.as_ref()))
                    }
                });
            }
            t.push(row);
        }
        out.push_str(&t.render(format));
    }
    out
}

/// The first column of a nested table: the group's last name part.
fn row_header(prefix: &str) -> &str {
    prefix.rsplit('.').next().unwrap_or(prefix)
}

fn cells(r: &MetricRow) -> Vec<String> {
    let ints = |v: &Option<Value>| v.as_ref().is_some_and(|v| v.is_i64() || v.is_u64());
    let delta = match (r.change, r.delta) {
        (MetricChange::Same, _) => String::new(),
        (_, Some(d)) if ints(&r.a) && ints(&r.b) => table::signed_int(d as i64),
        (_, Some(d)) => table::signed(d),
        (MetricChange::Changed, None) => "changed".into(),
        (MetricChange::OnlyInA, _) => "only in A".into(),
        (MetricChange::OnlyInB, _) => "only in B".into(),
        _ => String::new(),
    };
    let pct = match (r.change, r.pct) {
        (MetricChange::Same, _) | (_, None) => String::new(),
        (_, Some(p)) => format!("{p:+.1}%"),
    };
    let mark = if r.regression {
        "⚠ regression"
    } else if r.within_tolerance {
        "within tolerance"
    } else {
        ""
    };
    vec![r.name.clone(), table::cell(r.a.as_ref()), table::cell(r.b.as_ref()), delta, pct, mark.into()]
}

/// `dvx params diff [A [B]]`.
pub fn params_diff(l: Store, a: Option<&str>, b: Option<&str>, all: bool, format: &FormatArgs) -> Result<ExitCode> {
    let (a, b) = pair(&l, a, b)?;
    let d = diff::diff_versions(&l.ws.cache, &a, &b, &DiffOptions::default())?;
    let rows: Vec<&diff::ParamRow> = d.params.iter().filter(|p| all || p.changed).collect();
    if format.json {
        print_json(&json!({ "a": d.a, "b": d.b, "params": rows }))?;
        return Ok(ExitCode::SUCCESS);
    }
    let mut out = format!("params {} → {}\n\n", d.a.short(), d.b.short());
    if rows.is_empty() {
        out.push_str(if all { "no params\n" } else { "no params differ\n" });
    } else {
        out.push_str(&params_table(&rows).render(format_of(format)));
    }
    super::write_out(&out)
}

/// Params side by side: stage, param, A, B.
pub fn params_table(rows: &[&diff::ParamRow]) -> Table {
    let mut t = Table::new(&["stage", "param", "A", "B"], &[false; 4]);
    for p in rows {
        t.push(vec![p.stage.clone(), p.name.clone(), table::cell(p.a.as_ref()), table::cell(p.b.as_ref())]);
    }
    t
}
