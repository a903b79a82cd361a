//! A version is self-contained: its sources include what stages read from
//! outside the graph (a `clone`'s bundle), the pipeline files and their
//! imports, so `reproduce` and `checkout --to` work from the version alone.

use std::path::Path;

use crate::support::{Project, Run};

/// `pipelines/sc.yaml` (wdir: the project) importing `pipelines/clone.yaml`:
/// clone a shipped bundle, extract AST examples, count them.
fn clone_project() -> Project {
    let p = Project::new();
    let bundle = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/repos/webkit.bundle");
    std::fs::create_dir_all(p.path("bundles")).unwrap();
    std::fs::copy(bundle, p.path("bundles/webkit.bundle")).unwrap();
    p.write(
        "pipelines/clone.yaml",
        "name: sc_clone\nwdir: ..\nstages:\n  repos:\n    kind: clone\n    outs: [data/repos]\n    params:\n      repos:\n        - { name: webkit, url: bundles/webkit.bundle, rev: v1.0 }\n",
    );
    p.write(
        "pipelines/sc.yaml",
        "name: sc\nwdir: ..\nimports: [clone.yaml]\nstages:\n  ast:\n    kind: ast-extract\n    deps: [data/repos]\n    outs: [data/examples.jsonl]\n    params:\n      counts: { grep: 4, read: 3, direct: 3 }\n  count:\n    deps: [data/examples.jsonl]\n    outs: [data/count.txt]\n    cmd: wc -l < data/examples.jsonl > data/count.txt\n",
    );
    p
}

/// Version and stage statuses of a `run --json`.
fn json_run(r: &Run) -> (String, Vec<(String, String)>) {
    let v: serde_json::Value = serde_json::from_str(&r.stdout()).expect("json output");
    (v["version"].as_str().expect("a version").to_string(), r.statuses())
}

/// Every stage line of a reproduce report says `identical`.
#[track_caller]
fn all_identical(r: &Run, stages: &[&str]) {
    let out = r.stdout();
    for s in stages {
        assert!(out.lines().any(|l| l.starts_with(s) && l.ends_with(" identical")), "{s} not identical:\n{out}");
    }
    assert!(out.contains("reproduced: every stage identical"), "{out}\n{}", r.stderr());
}

#[test]
fn reproduce_a_clone_pipeline_from_its_version() {
    let p = clone_project();
    let (v, statuses) = json_run(&p.dvx(&["run", "pipelines/sc.yaml", "--json"]).ok());
    assert!(statuses.iter().all(|(_, s)| s == "ran"), "{statuses:?}");
    let show = p.dvx(&["show", &v, "--pipeline", "pipelines/sc.yaml"]).ok().stdout();
    for source in ["bundles/webkit.bundle", "pipelines/sc.yaml", "pipelines/clone.yaml"] {
        assert!(show.lines().any(|l| l.ends_with(&format!("  {source}"))), "{source} not a source:\n{show}");
    }
    // Nothing outside the version is needed: the bundle may go.
    std::fs::remove_file(p.path("bundles/webkit.bundle")).unwrap();
    let r = p.dvx(&["reproduce", &v, "--pipeline", "pipelines/sc.yaml"]).ok();
    all_identical(&r, &["repos", "ast", "count"]);
    // Progress on stderr: each stage starts and finishes, with seconds.
    let err = r.stderr();
    for s in ["repos", "ast", "count"] {
        assert!(err.contains(&format!("reproduce {s}: running")), "{err}");
        assert!(
            err.lines().any(|l| l.starts_with(&format!("reproduce {s}: identical (")) && l.ends_with("s)")),
            "{err}"
        );
    }
}

#[test]
fn checkout_to_a_folder_then_run_there_gives_the_same_version_from_cache() {
    let p = clone_project();
    let (v, _) = json_run(&p.dvx(&["run", "pipelines/sc.yaml", "--json"]).ok());
    let cache = p.dvx(&["cache", "dir", "pipelines/sc.yaml"]).ok().stdout().trim().to_string();

    let elsewhere = tempfile::tempdir().unwrap();
    let to = elsewhere.path().join("copy");
    p.dvx(&["checkout", &v, "--to", to.to_str().unwrap(), "--pipeline", "pipelines/sc.yaml"]).ok();
    for f in ["pipelines/sc.yaml", "pipelines/clone.yaml", "bundles/webkit.bundle", "data/count.txt"] {
        assert!(to.join(f).is_file(), "{f} not restored");
    }
    let toml = std::fs::read_to_string(to.join("dvx.toml")).unwrap();
    let cache_abs = Path::new(&cache).canonicalize().unwrap();
    assert!(toml.contains(&format!("cache = \"{}\"", cache_abs.display())), "{toml}");

    // The copy uses the same cache: every stage is restored, the version is the same.
    let r = p.dvx_in(&to, &["run", "pipelines/sc.yaml", "--json"]).ok();
    let (v2, statuses) = json_run(&r);
    assert_eq!(v2, v, "{}", r.stderr());
    assert!(statuses.iter().all(|(_, s)| s == "cached"), "{statuses:?}");
    assert_eq!(std::fs::read_to_string(to.join("data/count.txt")).unwrap(), p.read("data/count.txt"));

    // And the version reproduces from there.
    let r = p.dvx_in(&to, &["reproduce", &v[..8], "--pipeline", "pipelines/sc.yaml"]).ok();
    all_identical(&r, &["repos", "ast", "count"]);
}

#[test]
fn reproduce_skips_the_dependents_of_a_failing_stage() {
    let p = Project::new();
    let outside = tempfile::tempdir().unwrap();
    let secret = outside.path().join("secret.txt");
    std::fs::write(&secret, "x\n").unwrap();
    p.write("in.txt", "a\n");
    p.write(
        "dvx.yaml",
        &format!(
            "stages:\n  first:\n    outs: [a.txt]\n    cmd: cat {} > a.txt\n  second:\n    deps: [a.txt]\n    outs: [b.txt]\n    cmd: cat a.txt a.txt > b.txt\n  third:\n    deps: [b.txt]\n    outs: [c.txt]\n    cmd: cat b.txt > c.txt\n  other:\n    deps: [in.txt]\n    outs: [d.txt]\n    cmd: cat in.txt > d.txt\n",
            secret.display()
        ),
    );
    let v = p.dvx(&["run"]).ok().version();
    // `first` read a file no version can hold: without it, it fails.
    std::fs::remove_file(&secret).unwrap();
    let r = p.dvx(&["reproduce", &v]);
    assert_eq!(r.code(), 1, "{}\n{}", r.stdout(), r.stderr());
    let out = r.stdout();
    let line = |s: &str| out.lines().find(|l| l.starts_with(&format!("{s} "))).unwrap_or_default().to_string();
    assert!(line("first").contains("failed:"), "{out}");
    assert!(line("second").contains("skipped (upstream first failed)"), "{out}");
    assert!(line("third").contains("skipped (upstream first failed)"), "{out}");
    assert!(line("other").ends_with(" identical"), "{out}");
    assert!(!out.contains("differs"), "{out}");
    assert!(out.contains("not reproduced"), "{out}");
}
