//! `dvx gc`.

use std::collections::BTreeSet;
use std::process::ExitCode;

use dvx_cache::GcOptions;
use dvx_engine::{EngineError, WorkspaceState};
use miette::{miette, Result};

use super::Store;

pub fn gc(
    l: Store,
    keep_last: Option<usize>,
    keep: Vec<String>,
    keep_since: Option<String>,
    memo_older_than: Option<String>,
    dry_run: bool,
) -> Result<ExitCode> {
    let cache = &l.ws.cache;
    let memo_age = memo_older_than
        .map(|a| humantime::parse_duration(&a).map_err(|e| miette!("--memo-older-than `{a}`: {e} (use e.g. 30d or 12h)")))
        .transpose()?;
    let versions = cache.versions().map_err(EngineError::Cache)?; // newest first
    let mut kept = BTreeSet::new();
    for k in &keep {
        kept.insert(cache.resolve_version(k).map_err(EngineError::Cache)?);
    }
    if let Some(n) = keep_last {
        kept.extend(versions.iter().take(n).map(|v| v.hash.clone()));
    }
    if let Some(since) = &keep_since {
        let t = humantime::parse_rfc3339_weak(since)
            .or_else(|_| humantime::parse_rfc3339_weak(&format!("{since} 00:00:00")))
            .map_err(|e| miette!("--keep-since `{since}`: {e} (use YYYY-MM-DD or RFC 3339)"))?;
        let secs = t.duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
        kept.extend(versions.iter().filter(|v| v.meta.created >= secs).map(|v| v.hash.clone()));
    }
    if keep.is_empty() && keep_last.is_none() && keep_since.is_none() {
        // Default: everything the workspace's last versions reference.
        if l.wdir.is_some() {
            let state = WorkspaceState::load(&l.ws.state_dir);
            kept.extend(state.last_version.values().cloned());
        } else if !dry_run {
            // The cache alone: no workspace says what to keep, so this would remove every version.
            return Err(miette!(
                help =
                    "say what to keep (`--keep-last N`, `--keep HASH`, `--keep-since DATE`), or run dvx in the project",
                "gc with the cache alone and no project would remove every version"
            ));
        }
    }
    let report = cache.gc(&GcOptions { keep: kept.clone(), dry_run }).map_err(EngineError::Cache)?;
    let verb = if dry_run { "would remove" } else { "removed" };
    for v in &report.versions {
        println!("{verb} version {v}");
    }
    println!(
        "{verb} {} versions, {} run entries, {} objects ({} bytes), {} temp files; kept {} versions",
        report.versions.len(),
        report.runs,
        report.objects,
        report.bytes,
        report.temps,
        kept.len()
    );
    if let Some(age) = memo_age {
        let memo = cache.memo_gc(age, dry_run).map_err(EngineError::Cache)?;
        println!(
            "{verb} {} memo entries ({} bytes) unused for {}",
            memo.entries,
            memo.bytes,
            humantime::format_duration(age)
        );
    }
    Ok(ExitCode::SUCCESS)
}
