//! Bad input: each error names the file, line and column and never panics.

use crate::support::Project;

/// Run `dvx run` on `yaml` and return stderr, asserting exit code 2.
fn error_of(yaml: &str) -> String {
    let p = Project::new();
    p.write("in.txt", "x\n");
    p.write("dvx.yaml", yaml);
    let r = p.dvx(&["run"]);
    assert_eq!(r.code(), 2, "stdout:\n{}\nstderr:\n{}", r.stdout(), r.stderr());
    assert!(!r.stderr().contains("panicked"), "{}", r.stderr());
    r.stderr()
}

#[test]
fn yaml_syntax_error_points_at_line() {
    let e = error_of("name: x\nstages:\n  a:\n    cmd: [unclosed\n");
    assert!(e.contains("[dvx.yaml:5:1]") || e.contains("[dvx.yaml:4:"), "{e}");
}

#[test]
fn unknown_stage_key_suggests() {
    let e = error_of("stages:\n  a:\n    kind: cmd\n    depz: [in.txt]\n    cmd: echo\n");
    assert!(e.contains("unknown key `depz`"), "{e}");
    assert!(e.contains("[dvx.yaml:4:5]"), "{e}");
    assert!(e.contains("did you mean `deps`?"), "{e}");
}

#[test]
fn unknown_top_level_key_suggests() {
    let e = error_of("stagez:\n  a:\n    cmd: echo\n");
    assert!(e.contains("unknown key `stagez`"), "{e}");
    assert!(e.contains("did you mean `stages`?"), "{e}");
}

#[test]
fn unknown_kind_suggests() {
    let e = error_of("stages:\n  a:\n    kind: cdm\n    cmd: echo\n");
    assert!(e.contains("unknown stage kind `cdm`"), "{e}");
    assert!(e.contains("[dvx.yaml:3:11]"), "{e}");
    assert!(e.contains("did you mean `cmd`?"), "{e}");
}

#[test]
fn missing_dep() {
    let e = error_of("stages:\n  a:\n    deps: [in.txt, nope.txt]\n    outs: [o]\n    cmd: touch o\n");
    assert!(e.contains("dep `nope.txt` of stage `a` does not exist and no stage produces it"), "{e}");
    assert!(e.contains("[dvx.yaml:3:20]"), "{e}");
}

#[test]
fn two_writers_of_one_out() {
    let e = error_of("stages:\n  a:\n    outs: [o]\n    cmd: touch o\n  b:\n    outs: [o]\n    cmd: touch o\n");
    assert!(e.contains("`o` is an out of both `a` and `b`"), "{e}");
    assert!(e.contains(" 6 │     outs: [o]"), "{e}");
    assert!(e.contains("second writer") && e.contains("first writer"), "{e}");
}

#[test]
fn cycle_is_printed() {
    let e = error_of(
        "stages:\n  a:\n    deps: [c.txt]\n    outs: [a.txt]\n    cmd: cp c.txt a.txt\n  b:\n    deps: [a.txt]\n    outs: [b.txt]\n    cmd: cp a.txt b.txt\n  c:\n    deps: [b.txt]\n    outs: [c.txt]\n    cmd: cp b.txt c.txt\n",
    );
    assert!(e.contains("the stages form a cycle: a → b → c → a"), "{e}");
    assert!(e.contains("[dvx.yaml:2:3]"), "{e}");
}

#[test]
fn outs_that_escape() {
    let e = error_of("stages:\n  a:\n    outs: [../x]\n    cmd: touch ../x\n");
    assert!(e.contains("out `../x` escapes the pipeline's folder"), "{e}");
    assert!(e.contains("[dvx.yaml:3:12]"), "{e}");
    let e = error_of("stages:\n  a:\n    outs: [/tmp/x]\n    cmd: touch /tmp/x\n");
    assert!(e.contains("escapes the pipeline's folder (absolute path)"), "{e}");

    let p = Project::new();
    let outside = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(outside.path(), p.path("link")).unwrap();
    p.write("dvx.yaml", "stages:\n  a:\n    outs: [link/x]\n    cmd: touch link/x\n");
    let r = p.dvx(&["run"]);
    assert_eq!(r.code(), 2);
    assert!(r.stderr().contains("out `link/x` escapes the pipeline's folder through a symlink"), "{}", r.stderr());
}

#[test]
fn unknown_interpolation() {
    let e = error_of("stages:\n  a:\n    params: {n: 1}\n    outs: [o]\n    cmd: echo ${params.m} > o\n");
    assert!(e.contains("unknown name `params.m` in `cmd`"), "{e}");
    assert!(e.contains("[dvx.yaml:5:15]"), "{e}");
    assert!(e.contains("params of `a`: n"), "{e}");
}

#[test]
fn missing_declared_out_after_success() {
    let p = Project::new();
    p.write("dvx.yaml", "stages:\n  a:\n    outs: [o.txt]\n    cmd: echo done\n");
    let r = p.dvx(&["run"]);
    assert_eq!(r.code(), 1);
    assert!(
        r.stderr().contains("stage `a` failed: declared out `o.txt` was not created by the stage"),
        "{}",
        r.stderr()
    );
}

#[test]
fn every_shipped_pipeline_parses() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut checked = Vec::new();
    for dir in ["pipelines", "examples"] {
        for entry in walk(&root.join(dir)) {
            // Relative to the repository, so where it is cloned does not count.
            let rel = entry.strip_prefix(root).unwrap().display().to_string();
            if entry.extension().is_some_and(|e| e == "yaml" || e == "yml") && rel.contains("pipelines") {
                let r = std::process::Command::new(env!("CARGO_BIN_EXE_dvx"))
                    .args(["dag", entry.to_str().unwrap()])
                    .output()
                    .unwrap();
                assert!(r.status.success(), "{}: {}", entry.display(), String::from_utf8_lossy(&r.stderr));
                checked.push(rel);
            }
        }
    }
    // The walk must have reached every shipped pipeline (README, "Shipped
    // pipelines"), not passed vacuously over an empty or moved folder.
    checked.sort();
    let shipped = [
        "pipelines/phase0.yaml",
        "pipelines/phase5.yaml",
        "pipelines/phase6.yaml",
        "pipelines/phase7-github.yaml",
        "pipelines/phase7.yaml",
        "pipelines/v5_8_curated.yaml",
    ];
    // A new pipeline goes into that README section and into this list.
    assert_eq!(checked, shipped, "the pipelines checked are not the shipped ones");
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(walk(&p));
            } else {
                out.push(p);
            }
        }
    }
    out
}
