//! `dvx log`, `show`, `checkout`, `reproduce`.

use std::path::Path;
use std::process::ExitCode;

use dvx_engine::{ops, EngineError};
use miette::{IntoDiagnostic, Result};

use super::Store;

fn when(secs: u64) -> String {
    humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs)).to_string()
}

pub fn log(l: Store) -> Result<ExitCode> {
    let versions = l.ws.cache.versions().map_err(EngineError::Cache)?;
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
        for o in &s.outputs {
            println!("    out {}  {}", &o.hash.as_str()[..12], o.path);
        }
        if let Some(serde_json::Value::Object(m)) = rec.meta.metrics.get(&s.name) {
            for (k, v) in m {
                let text = match v {
                    serde_json::Value::Object(_) | serde_json::Value::Array(_) => {
                        serde_json::to_string(v).into_diagnostic()?
                    }
                    other => other.to_string(),
                };
                println!("    {k}: {text}");
            }
        }
    }
    Ok(ExitCode::SUCCESS)
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
    println!("restored {n} paths of version {} into {}", hash.short(), base.display());
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
        ops::Progress::Started { name } => eprintln!("reproduce {name}: running"),
        ops::Progress::Finished(r) => eprintln!("reproduce {}: {} ({:.1}s)", r.name, outcome(r), r.seconds),
    };
    let report = ops::reproduce(&l.ws.cache, &l.registry, &hash, fresh, &mut progress)?;
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
