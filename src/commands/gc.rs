//! `dvx gc`: as `dvc gc`, nothing goes without an explicit scope, and on a
//! terminal nothing goes without a yes.

use std::collections::BTreeSet;
use std::io::{BufRead, IsTerminal, Write};
use std::process::ExitCode;

use dvx_cache::{GcOptions, GcReport};
use dvx_engine::{EngineError, WorkspaceState};
use indicatif::HumanBytes;
use miette::{miette, IntoDiagnostic, Result};

use super::Store;

/// What to keep, from the command line.
pub struct Scope {
    pub keep_last: Option<usize>,
    pub keep: Vec<String>,
    pub keep_since: Option<String>,
    pub all_workspaces: bool,
}

const SCOPES: &str = "say what to keep: `--keep-last N` (the N newest versions), `--keep HASH` (repeatable), \
                      `--keep-since DATE` (YYYY-MM-DD or RFC 3339), or `--all-workspaces` (only what the \
                      workspaces using this cache hold); the version each workspace holds is always kept. \
                      Add `--dry-run` to see what would go. `--memo-older-than AGE` alone evicts only memo entries";

pub fn gc(l: Store, scope: Scope, memo_older_than: Option<String>, dry_run: bool, force: bool) -> Result<ExitCode> {
    let Scope { keep_last, keep, keep_since, all_workspaces } = scope;
    let versions_scoped = !keep.is_empty() || keep_last.is_some() || keep_since.is_some() || all_workspaces;
    if !versions_scoped && memo_older_than.is_none() {
        return Err(miette!(help = SCOPES, "gc needs a scope: which versions to keep besides those workspaces hold"));
    }
    let memo_age = memo_older_than
        .map(|a| humantime::parse_duration(&a).map_err(|e| miette!("--memo-older-than `{a}`: {e} (use e.g. 30d or 12h)")))
        .transpose()?;
    // In a dry run the versions that would go are still there: the memo entries only they used count as going.
    let going = if versions_scoped {
        version_gc(&l, keep_last, &keep, keep_since.as_deref(), dry_run, force)?
    } else {
        BTreeSet::new()
    };
    if let Some(age) = memo_age {
        memo_gc(&l.ws.cache, age, &going, dry_run, force)?;
    }
    Ok(ExitCode::SUCCESS)
}

/// Remove the versions outside the scope and what only they need; in a
/// dry run, returns the versions that would go (none are gone).
fn version_gc(
    l: &Store,
    keep_last: Option<usize>,
    keep: &[String],
    keep_since: Option<&str>,
    dry_run: bool,
    force: bool,
) -> Result<BTreeSet<dvx_cache::Hash>> {
    let cache = &l.ws.cache;
    let versions = cache.versions().map_err(EngineError::Cache)?; // newest first
    let mut kept = BTreeSet::new();
    for k in keep {
        kept.insert(cache.resolve_version(k).map_err(EngineError::Cache)?);
    }
    if let Some(n) = keep_last {
        kept.extend(versions.iter().take(n).map(|v| v.hash.clone()));
    }
    if let Some(since) = keep_since {
        let t = humantime::parse_rfc3339_weak(since)
            .or_else(|_| humantime::parse_rfc3339_weak(&format!("{since} 00:00:00")))
            .map_err(|e| miette!("--keep-since `{since}`: {e} (use YYYY-MM-DD or RFC 3339)"))?;
        let secs = t.duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
        kept.extend(versions.iter().filter(|v| v.meta.created >= secs).map(|v| v.hash.clone()));
    }
    // This workspace's versions, even from runs made before workspaces registered themselves.
    if l.wdir.is_some() {
        kept.extend(WorkspaceState::load(&l.ws.state_dir).last_version.into_values());
    }

    let plan = cache.gc(&GcOptions { keep: kept.clone(), dry_run: true }).map_err(EngineError::Cache)?;
    print_kept_workspaces(&plan);
    if dry_run || nothing_to_remove(&plan) {
        print_report(&plan, if dry_run { "would remove" } else { "removed" });
        return Ok(plan.versions.iter().map(|v| v.hash.clone()).collect());
    }
    if !force {
        print_report(&plan, "would remove");
        confirm(&format!(
            "remove {} versions and {} objects ({})?",
            plan.versions.len(),
            plan.objects,
            HumanBytes(plan.bytes)
        ))?;
    }
    let report = cache.gc(&GcOptions { keep: kept, dry_run: false }).map_err(EngineError::Cache)?;
    print_report(&report, "removed");
    Ok(BTreeSet::new())
}

/// Evict memo entries unused for `age` (`--memo-older-than`) that no run of
/// a kept version used (`going`: versions this gc removes in a dry run).
fn memo_gc(
    cache: &dvx_cache::Cache,
    age: std::time::Duration,
    going: &BTreeSet<dvx_cache::Hash>,
    dry_run: bool,
    force: bool,
) -> Result<()> {
    let plan = cache.memo_gc(age, going, true).map_err(EngineError::Cache)?;
    let unused = humantime::format_duration(age);
    let kept = |r: &dvx_cache::MemoGcReport| {
        if r.kept_used > 0 {
            format!("; kept {} older ones that kept versions used", r.kept_used)
        } else {
            String::new()
        }
    };
    if dry_run || plan.entries == 0 {
        let verb = if dry_run { "would remove" } else { "removed" };
        println!("{verb} {} memo entries ({}) unused for {unused}{}", plan.entries, HumanBytes(plan.bytes), kept(&plan));
        return Ok(());
    }
    if !force {
        confirm(&format!("remove {} memo entries ({}) unused for {unused}?", plan.entries, HumanBytes(plan.bytes)))?;
    }
    let memo = cache.memo_gc(age, going, false).map_err(EngineError::Cache)?;
    println!("removed {} memo entries ({}) unused for {unused}{}", memo.entries, HumanBytes(memo.bytes), kept(&memo));
    Ok(())
}

fn nothing_to_remove(r: &GcReport) -> bool {
    r.versions.is_empty() && r.runs == 0 && r.objects == 0 && r.chunks == 0 && r.temps == 0
}

/// Ask on the terminal; refuse without one (`--force` skips this).
fn confirm(question: &str) -> Result<()> {
    if !std::io::stdin().is_terminal() || !std::io::stderr().is_terminal() {
        return Err(miette!(
            help = "run it on a terminal to be asked, or pass `--force` (`-f`) to delete without asking; \
                    `--dry-run` lists what would go",
            "gc deletes for good and there is no terminal to ask: nothing removed"
        ));
    }
    eprint!("{question} [y/N] ");
    std::io::stderr().flush().into_diagnostic()?;
    let mut answer = String::new();
    std::io::stdin().lock().read_line(&mut answer).into_diagnostic()?;
    if matches!(answer.trim(), "y" | "Y" | "yes" | "Yes" | "YES") {
        Ok(())
    } else {
        Err(miette!("gc cancelled: nothing removed"))
    }
}

fn print_kept_workspaces(r: &GcReport) {
    for w in &r.workspaces {
        println!("keeping version {} held by workspace {}", w.version.short(), w.path);
    }
}

fn print_report(r: &GcReport, verb: &str) {
    for v in &r.versions {
        let when = if v.created == 0 { "?".to_string() } else { super::versions::when(v.created) };
        println!("{verb} version {}  {when}  {}  {}", v.hash, HumanBytes(v.bytes), v.pipeline_file);
    }
    println!(
        "{verb} {} versions, {} run entries, {} objects{} ({}), {} temp files; kept {} versions",
        r.versions.len(),
        r.runs,
        r.objects,
        if r.chunks > 0 { format!(" and {} chunks of large objects", r.chunks) } else { String::new() },
        HumanBytes(r.bytes),
        r.temps,
        r.kept
    );
}
