//! `dvx log` (and `log --table`), `show`, `checkout`, `reproduce`.

use std::path::Path;
use std::process::ExitCode;

use std::collections::BTreeMap;

use dvx_engine::{diff, ops, EngineError};
use miette::{IntoDiagnostic, Result};

use super::{table, Store};

pub fn when(secs: u64) -> String {
    humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs)).to_string()
}

pub fn log(l: Store, limit: Option<usize>) -> Result<ExitCode> {
    let mut versions = l.ws.cache.versions().map_err(EngineError::Cache)?;
    versions.truncate(limit.unwrap_or(usize::MAX));
    if versions.is_empty() {
        println!("no versions yet");
    }
    for v in versions {
        let mut counts = std::collections::BTreeMap::<String, usize>::new();
        for s in v.meta.statuses.values() {
            *counts.entry(s.as_str().unwrap_or("?").to_string()).or_default() += 1;
        }
        let counts: Vec<String> = counts.iter().map(|(k, n)| format!("{n} {k}")).collect();
        let name = v.body.get("pipeline").and_then(|p| p.as_str()).unwrap_or("?");
        println!("{}  {}  {:<16} {}", v.hash, when(v.meta.created), name, counts.join(", "));
    }
    Ok(ExitCode::SUCCESS)
}

pub fn show(l: Store, prefix: &str) -> Result<ExitCode> {
    let hash = l.ws.cache.resolve_version(prefix).map_err(EngineError::Cache)?;
    let rec = l.ws.cache.get_version(&hash).map_err(EngineError::Cache)?;
    let body = ops::body_of(&rec)?;
    println!("version:  {hash}");
    println!("pipeline: {} ({})", body.pipeline, rec.meta.pipeline_file);
    println!("created:  {}", when(rec.meta.created));
    if !body.sources.is_empty() {
        println!("sources:");
        for s in &body.sources {
            println!("  {}  {}", &s.hash.as_str()[..12], s.path);
        }
    }
    println!("stages:");
    for s in &body.stages {
        println!("  {} ({})  key {}", s.name, s.kind, s.key.as_ref().map(|k| k.short()).unwrap_or("-"));
        for (k, v) in diff::flattened(&s.params) {
            println!("    param {k}: {}", table::value_text(&v));
        }
        for o in &s.outputs {
            let what = if s.metrics.contains(&o.path) { "metrics" } else { "out" };
            println!("    {what} {}  {}", &o.hash.as_str()[..12], o.path);
        }
    }
    let mut metrics = String::new();
    for s in &body.stages {
        let m = diff::flattened(&serde_json::Value::Object(diff::metrics_of(&rec, &s.name)));
        if !m.is_empty() {
            metrics.push_str(&super::metrics::values_section(&s.name, &m, table::Format::Plain));
        }
    }
    if !metrics.is_empty() {
        println!("metrics:");
        for line in metrics.trim_start_matches('\n').lines() {
            println!("{}", if line.is_empty() { String::new() } else { format!("  {line}") });
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub fn logs(l: Store, stage: &str, prefix: Option<&str>) -> Result<ExitCode> {
    let cache = &l.ws.cache;
    let hash = match prefix {
        Some(p) => cache.resolve_version(p).map_err(EngineError::Cache)?,
        None => dvx_engine::logs::current_version(cache, l.wdir.as_deref(), &l.ws.state_dir)?
            .ok_or_else(|| miette::miette!("no versions in {} yet: run the pipeline first", cache.root().display()))?,
    };
    let Some(mut reader) = dvx_engine::logs::stage_log(cache, &hash, stage)? else {
        eprintln!("stage `{stage}` wrote nothing to its log in version {}", hash.short());
        return Ok(ExitCode::SUCCESS);
    };
    // Streamed: a log may be large. A mismatch with its name shows at the end, as an error.
    let mut out = std::io::stdout().lock();
    if let Err(e) = std::io::copy(&mut reader, &mut out) {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            return Ok(ExitCode::SUCCESS);
        }
        return Err(EngineError::Cache(reader.error(e)).into());
    }
    Ok(ExitCode::SUCCESS)
}

/// `dvx log --table`: one row per version (newest first) with its hash,
/// time and pipeline, a column for each param (`STAGE.NAME`) whose value
/// differs between the versions listed, and a column for each metric asked
/// for (`NAME` is looked up in every stage, `STAGE:NAME` in one).
pub fn log_table(
    l: Store,
    wanted: &[String],
    limit: Option<usize>,
    json: bool,
    format: table::Format,
) -> Result<ExitCode> {
    let mut versions = l.ws.cache.versions().map_err(EngineError::Cache)?;
    versions.truncate(limit.unwrap_or(usize::MAX));
    struct Row {
        hash: String,
        created: String,
        pipeline: String,
        params: BTreeMap<String, serde_json::Value>,
        metrics: Vec<Option<serde_json::Value>>,
    }
    let mut rows = Vec::new();
    for v in &versions {
        let body = ops::body_of(v)?;
        let mut params = BTreeMap::new();
        for s in &body.stages {
            for (k, x) in diff::flattened(&s.params) {
                params.insert(format!("{}.{k}", s.name), x);
            }
        }
        let metrics = wanted.iter().map(|w| metric_value(v, &body, w)).collect();
        rows.push(Row {
            hash: v.hash.to_string(),
            created: when(v.meta.created),
            pipeline: body.pipeline,
            params,
            metrics,
        });
    }
    // Only the params whose values differ between the versions listed.
    let mut names: Vec<&String> = rows.iter().flat_map(|r| r.params.keys()).collect();
    names.sort();
    names.dedup();
    let differing: Vec<String> = names
        .into_iter()
        .filter(|n| rows.iter().any(|r| r.params.get(*n) != rows[0].params.get(*n)))
        .cloned()
        .collect();
    if json {
        let v: Vec<serde_json::Value> = rows
            .iter()
            .map(|r| {
                let params: serde_json::Map<String, serde_json::Value> =
                    differing.iter().map(|n| (n.clone(), r.params.get(n).cloned().unwrap_or_default())).collect();
                let metrics: serde_json::Map<String, serde_json::Value> =
                    wanted.iter().zip(&r.metrics).map(|(n, m)| (n.clone(), m.clone().unwrap_or_default())).collect();
                serde_json::json!({
                    "version": r.hash, "created": r.created, "pipeline": r.pipeline,
                    "params": params, "metrics": metrics,
                })
            })
            .collect();
        super::print_json(&serde_json::Value::Array(v))?;
        return Ok(ExitCode::SUCCESS);
    }
    let mut headers = vec!["version", "created", "pipeline"];
    headers.extend(differing.iter().map(String::as_str));
    headers.extend(wanted.iter().map(String::as_str));
    let right: Vec<bool> = (0..headers.len()).map(|i| i >= 3).collect();
    let mut t = table::Table::new(&headers, &right);
    for r in &rows {
        // CSV is for other programs: the whole hash; tables: the short one.
        let hash = if format == table::Format::Csv { r.hash.clone() } else { r.hash[..12].to_string() };
        let mut cells = vec![hash, r.created.clone(), r.pipeline.clone()];
        cells.extend(differing.iter().map(|n| table::cell(r.params.get(n))));
        cells.extend(r.metrics.iter().map(|m| table::cell(m.as_ref())));
        t.push(cells);
    }
    if rows.is_empty() {
        return super::write_out("no versions yet\n");
    }
    super::write_out(&t.render(format))
}

/// A metric of a version by the name asked for: `STAGE:NAME` in that
/// stage, else `NAME` (dotted) in the first stage that has it.
fn metric_value(rec: &dvx_cache::VersionRecord, body: &ops::VersionBody, wanted: &str) -> Option<serde_json::Value> {
    let (stage, name) = match wanted.split_once(':') {
        Some((s, n)) => (Some(s), n),
        None => (None, wanted),
    };
    body.stages
        .iter()
        .filter(|s| stage.is_none_or(|st| st == s.name))
        .find_map(|s| diff::flattened(&serde_json::Value::Object(diff::metrics_of(rec, &s.name))).remove(name))
}

pub fn checkout(l: Store, prefix: &str, to: Option<&Path>) -> Result<ExitCode> {
    let hash = l.ws.cache.resolve_version(prefix).map_err(EngineError::Cache)?;
    let (base, with_sources) = match (to, &l.wdir) {
        (Some(dir), _) => (dir.to_path_buf(), true),
        (None, Some(wdir)) => (wdir.clone(), false),
        // The cache alone, no project: as `--to .`, sources included.
        (None, None) => (std::env::current_dir().into_diagnostic()?, true),
    };
    let n = ops::checkout(&l.ws.cache, &hash, &base, l.ws.link, with_sources)?;
    // The workspace now holds this version: gc keeps it from now on. (A
    // `--to` folder is an export until a run there registers it.)
    if to.is_none() {
        if let Some(wdir) = &l.wdir {
            let at = wdir.canonicalize().unwrap_or_else(|_| wdir.clone());
            if let Err(e) = l.ws.cache.register_workspace(&at, &hash) {
                tracing::warn!("cannot register {} with the cache: {e}", at.display());
            }
        }
    }
    println!("restored {n} paths of version {} into {}", hash.short(), base.display());
    if to.is_none() && l.wdir.is_some() {
        // The workspace now holds this version: its state says so, for `status`.
        let rec = l.ws.cache.get_version(&hash).map_err(EngineError::Cache)?;
        ops::adopt_checkout(&l.ws.state_dir, &rec, &l.registry)?;
    }
    if with_sources {
        if let Some(f) = ops::write_checkout_config(&base, &l.ws.cache)? {
            println!("wrote {} (cache = {})", f.display(), l.ws.cache.root().display());
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub fn reproduce(l: Store, prefix: &str, fresh: bool) -> Result<ExitCode> {
    let hash = l.ws.cache.resolve_version(prefix).map_err(EngineError::Cache)?;
    let mut progress = |p: ops::Progress<'_>| match p {
        ops::Progress::Restoring { sources } => {
            let plural = if sources == 1 { "" } else { "s" };
            eprintln!("reproduce: restoring {sources} source{plural} into a scratch folder")
        }
        ops::Progress::Started { name, kind, step, of, nondeterministic } => {
            let how = match (nondeterministic, fresh) {
                (false, _) => String::new(),
                (true, false) => ", non-deterministic: answered from the memo where it can be".to_string(),
                (true, true) => ", non-deterministic: asked again (--fresh)".to_string(),
            };
            eprintln!("reproduce {name}: running (stage {step}/{of}, {kind}{how})")
        }
        ops::Progress::Finished(r) => eprintln!("reproduce {}: {} ({:.1}s)", r.name, outcome(r), r.seconds),
    };
    let http = dvx_stages_net::http::Client::standard();
    let report = ops::reproduce(&l.ws.cache, &l.registry, &hash, fresh, Some(&http), &mut progress)?;
    let mut all_same = true;
    for r in &report {
        all_same &= r.reproduced();
        println!("{:<28} {}", r.name, outcome(r));
    }
    let expected = report.iter().filter(|r| r.nondeterministic && !r.differs.is_empty()).count();
    println!(
        "{}",
        match (all_same, expected) {
            (false, _) => "not reproduced: some stages differ".to_string(),
            (true, 0) => "reproduced: every stage identical".to_string(),
            (true, n) =>
                format!("reproduced: every deterministic stage identical ({n} of a non-deterministic kind differ)"),
        }
    );
    Ok(if all_same { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

/// One stage's result, as printed.
fn outcome(r: &ops::Reproduced) -> String {
    match (&r.error, &r.skipped) {
        (Some(e), _) => match r.error_kind.and_then(|k| k.label()) {
            Some(l) => format!("failed ({l}): {e}"),
            None => format!("failed: {e}"),
        },
        (None, Some(up)) => format!("skipped (upstream {up} failed)"),
        (None, None) if r.differs.is_empty() => "identical".to_string(),
        (None, None) if r.nondeterministic => "differs (non-deterministic kind)".to_string(),
        (None, None) => format!("differs ({})", r.differs.join(", ")),
    }
}
