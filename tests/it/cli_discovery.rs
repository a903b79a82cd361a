//! Finding the project like git and DVC do: the cache alone for the commands
//! that only need it, the project found upward from a subfolder, one way to
//! name the pipeline across commands, and `dvx repro` explained.

use std::path::Path;
use std::process::Command;

use crate::support::{Project, Run};

/// `dvx` in `cwd` with `DVX_CACHE_DIR` set to `cache`.
fn dvx_env(cwd: &Path, cache: &Path, args: &[&str]) -> Run {
    let out = Command::new(env!("CARGO_BIN_EXE_dvx"))
        .args(args)
        .current_dir(cwd)
        .env("DVX_CACHE_DIR", cache)
        .env_remove("RUST_LOG")
        .env("NO_COLOR", "1")
        .output()
        .expect("dvx runs");
    Run { out }
}

fn pipeline(p: &Project, rel: &str, factor: u32) {
    // A pipeline in a subfolder works in the project's root.
    let wdir = if rel.contains('/') { "wdir: ..\n" } else { "" };
    p.write(
        rel,
        &format!(
            "name: disc\n{wdir}stages:\n  mul:\n    deps: [data/in.txt]\n    params: {{factor: {factor}}}\n    outs: [data/out.txt]\n    cmd: for i in $(seq ${{params.factor}}); do cat data/in.txt; done > data/out.txt\n"
        ),
    );
}

/// Two versions of the project in `p`, made with `args` before `run`.
fn two_versions(p: &Project, rel: &str, args: &[&str]) -> (String, String) {
    p.write("data/in.txt", "ab\n");
    pipeline(p, rel, 1);
    let v1 = p.dvx(&[args, &["run", rel]].concat()).ok().version();
    pipeline(p, rel, 2);
    let v2 = p.dvx(&[args, &["run", rel]].concat()).ok().version();
    assert_ne!(v1, v2);
    (v1, v2)
}

#[test]
fn cache_only_commands_work_with_the_cache_alone() {
    let p = Project::new();
    let cache = tempfile::tempdir().unwrap();
    let c = cache.path().to_str().unwrap();
    let (v1, v2) = two_versions(&p, "dvx.yaml", &["--cache", c]);
    // A folder with no pipeline and no dvx.toml, anywhere above it.
    let empty = tempfile::tempdir().unwrap();
    let e = empty.path();
    for (how, run) in [
        ("--cache", &(|args: &[&str]| p.dvx_in(e, &[&["--cache", c], args].concat())) as &dyn Fn(&[&str]) -> Run),
        ("DVX_CACHE_DIR", &|args: &[&str]| dvx_env(e, cache.path(), args)),
    ] {
        let log = run(&["log"]).ok().stdout();
        assert!(log.contains(&v1) && log.contains(&v2), "{how}: {log}");
        let show = run(&["show", &v1[..8]]).ok().stdout();
        assert!(show.contains("mul (cmd)"), "{how}: {show}");
        let diff = run(&["diff", &v1[..8], &v2[..8]]).ok().stdout();
        assert!(diff.contains("mul"), "{how}: {diff}");
        let stats = run(&["cache", "stats"]).ok().stdout();
        assert!(stats.contains("versions: 2"), "{how}: {stats}");
        run(&["cache", "verify"]).ok();
        let dir = run(&["cache", "dir"]).ok().stdout();
        assert_eq!(Path::new(dir.trim()), cache.path(), "{how}");
        let gc = run(&["gc", "--all-workspaces", "--dry-run"]).ok().stdout();
        assert!(gc.contains("would remove"), "{how}: {gc}");
        let rep = run(&["reproduce", &v2[..8]]);
        assert_eq!(rep.code(), 0, "{how}: {}{}", rep.stdout(), rep.stderr());
        assert!(rep.stdout().contains("reproduced"), "{how}: {}", rep.stdout());
    }
    // gc with no project and nothing to keep would empty the cache: refused.
    let gc = p.dvx_in(e, &["--cache", c, "gc"]);
    assert_eq!(gc.code(), 2, "{}", gc.stderr());
    assert!(gc.stderr().contains("--keep-last"), "{}", gc.stderr());
    assert!(p.dvx_in(e, &["--cache", c, "log"]).ok().stdout().contains(&v1));
    // checkout with no project restores the version, sources included, here.
    let co = dvx_env(e, cache.path(), &["checkout", &v1[..8]]).ok().stdout();
    assert!(co.contains("restored"), "{co}");
    assert_eq!(std::fs::read_to_string(e.join("data/out.txt")).unwrap(), "ab\n");
    assert_eq!(std::fs::read_to_string(e.join("data/in.txt")).unwrap(), "ab\n");
}

#[test]
fn the_project_is_found_from_a_subfolder() {
    let p = Project::new();
    let (v1, v2) = two_versions(&p, "dvx.yaml", &[]);
    let sub = p.path("data");
    let st = p.dvx_in(&sub, &["status"]).ok().stdout();
    assert!(st.contains("up to date"), "{st}");
    let log = p.dvx_in(&sub, &["log"]).ok().stdout();
    assert!(log.contains(&v1) && log.contains(&v2), "{log}");
    assert!(p.dvx_in(&sub, &["show", &v2[..8]]).ok().stdout().contains("mul (cmd)"));
    p.dvx_in(&sub, &["diff", &v1[..8], &v2[..8]]).ok();
    p.dvx_in(&sub, &["dag"]).ok();
    p.dvx_in(&sub, &["cache", "verify"]).ok();
    assert!(p.dvx_in(&sub, &["cache", "stats"]).ok().stdout().contains("versions: 2"));
    let dir = p.dvx_in(&sub, &["cache", "dir"]).ok().stdout();
    assert!(dir.trim().ends_with(".dvx/cache"), "{dir}");
    // checkout from a subfolder restores into the project, not the subfolder.
    p.dvx_in(&sub, &["checkout", &v1[..8]]).ok();
    assert_eq!(p.read("data/out.txt"), "ab\n");
    assert!(!p.path("data/data").exists());
    // run takes stage names, not a pipeline, when they are not files.
    let run = p.dvx_in(&sub, &["run", "mul"]).ok();
    assert_eq!(run.version(), v2);
    assert_eq!(p.read("data/out.txt"), "ab\nab\n");
    let gc = p.dvx_in(&sub, &["gc", "--all-workspaces", "--dry-run"]).ok().stdout();
    assert!(gc.contains(&format!("keeping version {} held by workspace", &v2[..12])), "{gc}");
    let rep = p.dvx_in(&sub, &["reproduce", &v2[..8]]).ok().stdout();
    assert!(rep.contains("reproduced"), "{rep}");

    // The version commands from the subfolder with only DVX_CACHE_DIR set.
    let cache = p.path(".dvx/cache");
    assert!(dvx_env(&sub, &cache, &["log"]).ok().stdout().contains(&v1));
    assert!(dvx_env(&sub, &cache, &["show", &v1[..8]]).ok().stdout().contains("mul (cmd)"));
    dvx_env(&sub, &cache, &["diff", &v1[..8], &v2[..8]]).ok();
    dvx_env(&sub, &cache, &["checkout", &v2[..8]]).ok();
    assert_eq!(p.read("data/out.txt"), "ab\nab\n");
    dvx_env(&sub, &cache, &["reproduce", &v1[..8]]).ok();
    dvx_env(&sub, &cache, &["gc", "--all-workspaces", "--dry-run"]).ok();
    dvx_env(&sub, &cache, &["cache", "stats"]).ok();
    dvx_env(&sub, &cache, &["cache", "verify"]).ok();
}

#[test]
fn a_dvx_toml_alone_marks_the_project_and_names_the_cache() {
    let p = Project::new();
    p.write("dvx.toml", "cache = \"store\"\n");
    let (v1, _) = two_versions(&p, "pipelines/disc.yaml", &[]);
    assert!(p.path("store").is_dir());
    let sub = p.path("data");
    // The cache commands find dvx.toml's cache with no dvx.yaml around.
    assert!(p.dvx_in(&sub, &["log"]).ok().stdout().contains(&v1));
    let dir = p.dvx_in(&sub, &["cache", "dir"]).ok().stdout();
    assert!(dir.trim().ends_with("store"), "{dir}");
    // A command that needs a pipeline says which is missing and how to name one.
    let st = p.dvx_in(&sub, &["status"]);
    assert_eq!(st.code(), 2);
    assert!(st.stderr().contains("has no dvx.yaml beside it"), "{}", st.stderr());
    assert!(st.stderr().contains("dvx status PIPELINE"), "{}", st.stderr());
    assert!(st.stderr().contains("--pipeline FILE"), "{}", st.stderr());
    p.dvx_in(&sub, &["status", "../pipelines/disc.yaml"]).ok();
}

#[test]
fn every_command_takes_the_pipeline_both_ways() {
    let p = Project::new();
    let pl = "pipelines/phase7.yaml";
    let (v1, v2) = two_versions(&p, pl, &[]);
    {
        for form in [&[pl][..], &["--pipeline", pl][..]] {
            let log = p.dvx(&[&["log"], form].concat()).ok().stdout();
            assert!(log.contains(&v1), "{form:?}: {log}");
            p.dvx(&[&["status"], form].concat()).ok();
            p.dvx(&[&["dag"], form].concat()).ok();
            p.dvx(&[&["show", &v1[..8]], form].concat()).ok();
            let d = p.dvx(&[&["diff", &v1[..8], &v2[..8]], form].concat()).ok().stdout();
            assert!(d.contains("mul"), "{form:?}: {d}");
            p.dvx(&[&["gc", "--all-workspaces", "--dry-run"], form].concat()).ok();
            for c in ["dir", "stats", "verify"] {
                p.dvx(&[&["cache", c], form].concat()).ok();
            }
            p.dvx(&[&["reproduce", &v2[..8]], form].concat()).ok();
            p.dvx(&[&["checkout", &v2[..8]], form].concat()).ok();
        }
    }
    // run: --pipeline, then every positional is a stage.
    assert_eq!(p.dvx(&["run", "--pipeline", pl, "mul"]).ok().version(), v2);
    assert_eq!(p.dvx(&["run", pl, "mul"]).ok().version(), v2);
    // diff with a stage and a pipeline.
    p.dvx(&["diff", &v1[..8], &v2[..8], "mul", "--pipeline", pl]).ok();
    // Both forms at once is an error.
    let both = p.dvx(&["log", pl, "--pipeline", pl]);
    assert_eq!(both.code(), 2, "{}", both.stderr());
    // No dvx.yaml here or above: the error says how to name one.
    let st = p.dvx(&["status"]);
    assert_eq!(st.code(), 2);
    assert!(st.stderr().contains("no dvx.yaml or dvx.toml in this folder"), "{}", st.stderr());
    assert!(st.stderr().contains("dvx status PIPELINE"), "{}", st.stderr());
    let log = p.dvx(&["log"]);
    assert_eq!(log.code(), 2);
    assert!(log.stderr().contains("--cache DIR"), "{}", log.stderr());
    assert!(log.stderr().contains("dvx log PIPELINE"), "{}", log.stderr());
}

#[test]
fn repro_explains_the_mapping() {
    let p = Project::new();
    let r = p.dvx(&["repro"]);
    assert_eq!(r.code(), 2);
    let err = r.stderr();
    assert!(err.contains("`dvc repro` ≈ `dvx run`"), "{err}");
    assert!(err.contains("`dvx reproduce HASH` re-executes a past version"), "{err}");
    assert!(!err.contains("similar subcommand"), "{err}");
    // Other typos keep clap's suggestion.
    let r = p.dvx(&["reproduc"]);
    assert!(r.stderr().contains("reproduce"), "{}", r.stderr());
}
