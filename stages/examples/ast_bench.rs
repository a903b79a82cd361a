//! Benchmark of `ast-extract`'s parser-and-extraction core: every `.py` file
//! under a folder is read into memory, then parsed and its definitions,
//! imports, decorators, signatures and docstrings extracted, once on one
//! thread and once on all threads (rayon). Prints one JSON object.
//!
//! `cargo run --release -p dvx-stages --example ast_bench -- DIR`

use std::time::Instant;

use dvx_stages::ast_extract::extract;
use rayon::prelude::*;

fn main() {
    let Some(root) = std::env::args().nth(1) else {
        eprintln!("usage: ast_bench DIR");
        std::process::exit(2);
    };
    // The standard library folder also holds site-packages: leave it out.
    let mut paths: Vec<_> = walkdir::WalkDir::new(&root)
        .into_iter()
        .filter_entry(|e| e.file_name() != "site-packages")
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_file() && e.path().extension().is_some_and(|x| x == "py"))
        .map(|e| e.into_path())
        .collect();
    paths.sort();
    // Same input set as the Python side: files that are valid UTF-8.
    let sources: Vec<String> = paths.iter().filter_map(|p| String::from_utf8(std::fs::read(p).ok()?).ok()).collect();
    let lines: usize = sources.iter().map(|s| s.lines().count()).sum();

    let run_once = |parallel: bool| {
        let start = Instant::now();
        let results: Vec<_> = if parallel {
            sources.par_iter().map(|s| extract(s)).collect()
        } else {
            sources.iter().map(|s| extract(s)).collect()
        };
        let secs = start.elapsed().as_secs_f64();
        let defs: usize = results.iter().filter_map(|r| r.as_ref().ok()).map(|f| f.defs.len()).sum();
        let imports: usize = results.iter().filter_map(|r| r.as_ref().ok()).map(|f| f.imports.len()).sum();
        let docstrings: usize = results
            .iter()
            .filter_map(|r| r.as_ref().ok())
            .map(|f| f.defs.iter().filter(|d| d.docstring.is_some()).count())
            .sum();
        let failed = results.iter().filter(|r| r.is_err()).count();
        (secs, defs, imports, docstrings, failed)
    };
    // Best of three, like the Python side.
    let best = |parallel: bool| (0..3).map(|_| run_once(parallel)).min_by(|a, b| a.0.total_cmp(&b.0)).unwrap();
    let (t1, defs, imports, docs, failed) = best(false);
    let (tn, ..) = best(true);
    println!(
        "{{\"files\": {}, \"lines\": {lines}, \"seconds_1_thread\": {t1:.4}, \"seconds_all_threads\": {tn:.4}, \"threads\": {}, \"definitions\": {defs}, \"imports\": {imports}, \"docstrings\": {docs}, \"failed\": {failed}}}",
        sources.len(),
        rayon::current_num_threads()
    );
}
