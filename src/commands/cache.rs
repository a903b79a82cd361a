//! `dvx cache dir | verify | stats`.

use std::process::ExitCode;

use dvx_engine::{EngineError, WorkspaceState};
use miette::Result;

use super::Store;

pub fn dir(l: Store) -> Result<ExitCode> {
    println!("{}", l.ws.cache.root().display());
    eprintln!("(from {})", l.ws.cache_origin);
    Ok(ExitCode::SUCCESS)
}

pub fn verify(l: Store, repair: bool) -> Result<ExitCode> {
    let r = l.ws.cache.verify(repair).map_err(EngineError::Cache)?;
    let fixed = |what: &str| if repair { format!(": {what}") } else { String::new() };
    let memo = if r.memo > 0 { format!(", {} memo entries", r.memo) } else { String::new() };
    println!("checked {} objects, {} run entries, {} versions{memo}", r.objects, r.runs, r.versions);
    for (name, actual) in &r.corrupt {
        println!("corrupt object {name} (bytes hash to {actual}){}", fixed("quarantined"));
    }
    for (hash, why) in &r.damaged {
        println!("damaged object {hash}: {why}{}", fixed("chunk list quarantined"));
    }
    for key in &r.dangling_runs {
        println!("run entry {key} needs a missing or corrupt object{}", fixed("removed"));
    }
    for (hash, why) in &r.broken_versions {
        println!("version {hash} cannot be restored ({why}){}", fixed("removed"));
    }
    for (path, why) in &r.bad_records {
        println!("bad record {}: {why}{}", path.display(), fixed("removed"));
    }
    for (path, why) in &r.bad_memo {
        println!("bad memo entry {}: {why}{}", path.display(), fixed("quarantined"));
    }
    if r.temp_leftovers > 0 {
        println!("{} temp files left by interrupted writers (harmless; gc removes them)", r.temp_leftovers);
    }
    if r.is_clean() {
        println!("cache is clean");
        Ok(ExitCode::SUCCESS)
    } else {
        println!("cache has problems{}", if repair { " (repaired)" } else { ": run `dvx cache verify --repair`" });
        Ok(ExitCode::from(1))
    }
}

pub fn stats(l: Store) -> Result<ExitCode> {
    let (objects, bytes) = l.ws.cache.object_stats().map_err(EngineError::Cache)?;
    let versions = l.ws.cache.version_hashes().map_err(EngineError::Cache)?.len();
    let state = if l.wdir.is_some() { WorkspaceState::load(&l.ws.state_dir) } else { WorkspaceState::default() };
    println!("cache:    {}", l.ws.cache.root().display());
    println!("objects:  {objects}");
    println!("bytes:    {bytes}");
    println!("versions: {versions}");
    match state.last_hit_rate {
        Some(r) => println!("last run hit rate: {:.1}%", r * 100.0),
        None => println!("last run hit rate: n/a"),
    }
    Ok(ExitCode::SUCCESS)
}
