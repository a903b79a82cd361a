//! One cache shared by many processes and users: locks, atomic writes,
//! verify, gc, cache location rules, shared group mode.

use std::process::{Command, Stdio};
use std::time::Duration;

use crate::support::Project;

const SLOW_PIPELINE: &str = r#"name: team
stages:
  prep:
    deps: [in.txt]
    outs: [prep.txt]
    cmd: echo prep >> "$COUNT_DIR/prep" && sleep 0.3 && tr a-z A-Z < in.txt > prep.txt
  left:
    deps: [prep.txt]
    outs: [left]
    cmd: echo left >> "$COUNT_DIR/left" && sleep 0.2 && mkdir -p left && cp prep.txt left/a.txt && rev prep.txt > left/b.txt
  right:
    deps: [prep.txt]
    outs: [right.txt]
    cmd: echo right >> "$COUNT_DIR/right" && sleep 0.2 && cat prep.txt prep.txt > right.txt
  join:
    deps: [left, right.txt]
    outs: [join.txt]
    cmd: echo join >> "$COUNT_DIR/join" && cat left/a.txt left/b.txt right.txt > join.txt
"#;

fn workspace(cache: &std::path::Path) -> Project {
    let p = Project::new();
    p.write("in.txt", "team cache\n");
    p.write("dvx.yaml", &format!("cache: {}\n{SLOW_PIPELINE}", cache.display()));
    p
}

fn dvx_cmd(p: &Project, count_dir: &std::path::Path, args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_dvx"));
    c.args(args).current_dir(p.dir.path()).env("COUNT_DIR", count_dir).env_remove("DVX_CACHE_DIR");
    c
}

fn version_of(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("version: ").map(str::to_string))
        .unwrap_or_else(|| panic!("no version: {}", String::from_utf8_lossy(&out.stderr)))
}

#[test]
fn four_processes_one_cache_each_stage_once() {
    let cache = tempfile::tempdir().unwrap();
    let counts = tempfile::tempdir().unwrap();
    let clones: Vec<Project> = (0..4).map(|_| workspace(cache.path())).collect();
    let children: Vec<_> = clones
        .iter()
        .map(|p| {
            dvx_cmd(p, counts.path(), &["run", "-j", "2"])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let outs: Vec<_> = children.into_iter().map(|c| c.wait_with_output().unwrap()).collect();
    for o in &outs {
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }
    let versions: Vec<String> = outs.iter().map(version_of).collect();
    assert!(versions.iter().all(|v| v == &versions[0]), "{versions:?}");
    for stage in ["prep", "left", "right", "join"] {
        let n = std::fs::read_to_string(counts.path().join(stage)).unwrap().lines().count();
        assert_eq!(n, 1, "stage {stage} executed {n} times");
    }
    for p in &clones {
        assert_eq!(p.read("join.txt"), "TEAM CACHE\nEHCAC MAET\nTEAM CACHE\nTEAM CACHE\n");
    }
}

/// Small deterministic pseudo-random delays (no RNG crate needed).
fn delays(n: usize) -> Vec<u64> {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x % 900
        })
        .collect()
}

#[test]
fn kill_9_at_random_instants_leaves_a_clean_cache() {
    let counts = tempfile::tempdir().unwrap();
    let cache = tempfile::tempdir().unwrap();
    let p = workspace(cache.path());
    // The uninterrupted reference, on its own cache (`--cache` wins over the
    // pipeline's `cache:`). Same workspace: the pipeline file, which names
    // the cache, is a source of the version.
    let ref_cache = tempfile::tempdir().unwrap();
    let ref_arg = ref_cache.path().to_str().unwrap();
    let expected = version_of(&dvx_cmd(&p, counts.path(), &["--cache", ref_arg, "run"]).output().unwrap());
    for (i, delay) in delays(30).into_iter().enumerate() {
        // Vary the input so most iterations have real work to interrupt.
        p.write("in.txt", &format!("team cache {}\n", i % 4));
        let mut child =
            dvx_cmd(&p, counts.path(), &["run"]).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
        std::thread::sleep(Duration::from_millis(delay));
        let _ = child.kill(); // SIGKILL
        let _ = child.wait();
        let verify = p.dvx(&["cache", "verify"]);
        assert_eq!(verify.code(), 0, "iteration {i}: {}", verify.stdout());
        assert!(verify.stdout().contains("cache is clean"), "{}", verify.stdout());
    }
    p.write("in.txt", "team cache\n");
    let out = dvx_cmd(&p, counts.path(), &["run"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(version_of(&out), expected);
}

#[test]
fn flipped_byte_is_reported_and_never_restored() {
    let cache = tempfile::tempdir().unwrap();
    let counts = tempfile::tempdir().unwrap();
    let p = workspace(cache.path());
    assert!(dvx_cmd(&p, counts.path(), &["run"]).status().unwrap().success());
    let want = p.read("join.txt");
    // Find the object holding join.txt's bytes and flip one byte in it.
    let hash = blake3::hash(want.as_bytes()).to_hex().to_string();
    let obj = cache.path().join("objects-v1").join(&hash[..2]).join(&hash[2..]);
    let mut bytes = std::fs::read(&obj).unwrap();
    bytes[0] ^= 0x20;
    let mut perm = std::fs::metadata(&obj).unwrap().permissions();
    #[allow(clippy::permissions_set_readonly_false)]
    perm.set_readonly(false);
    std::fs::set_permissions(&obj, perm).unwrap();
    std::fs::write(&obj, &bytes).unwrap();

    let verify = p.dvx(&["cache", "verify"]);
    assert_eq!(verify.code(), 1);
    assert!(verify.stdout().contains(&format!("corrupt object {hash}")), "{}", verify.stdout());

    // A fresh clone on the same cache must not get the bad bytes: the stage re-runs.
    let other = workspace(cache.path());
    let out = dvx_cmd(&other, counts.path(), &["run"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(other.read("join.txt"), want);
    assert_eq!(std::fs::read_to_string(counts.path().join("join")).unwrap().lines().count(), 2);

    let repaired = p.dvx(&["cache", "verify", "--repair"]);
    assert!(repaired.stdout().contains("quarantined") || repaired.code() == 0, "{}", repaired.stdout());
    assert_eq!(p.dvx(&["cache", "verify"]).code(), 0);
}

#[test]
fn gc_keep_last_one() {
    let cache = tempfile::tempdir().unwrap();
    let counts = tempfile::tempdir().unwrap();
    let p = workspace(cache.path());
    let mut versions = Vec::new();
    for text in ["one\n", "two\n", "three\n"] {
        p.write("in.txt", text);
        versions.push(version_of(&dvx_cmd(&p, counts.path(), &["run"]).output().unwrap()));
    }
    crate::support::age_cache_at(cache.path());
    // An unreferenced object being written right now must survive gc.
    let fresh = b"written during gc";
    let fresh_hash = blake3::hash(fresh).to_hex().to_string();
    let fresh_path = cache.path().join("objects-v1").join(&fresh_hash[..2]).join(&fresh_hash[2..]);
    std::fs::create_dir_all(fresh_path.parent().unwrap()).unwrap();
    std::fs::write(&fresh_path, fresh).unwrap();

    let dry = p.dvx(&["gc", "--keep-last", "1", "--dry-run"]).ok().stdout();
    assert!(dry.contains("would remove 2 versions"), "{dry}");
    assert_eq!(p.dvx(&["log"]).ok().stdout().lines().count(), 3);
    let gc = p.dvx(&["gc", "--keep-last", "1", "--force"]).ok().stdout();
    assert!(gc.contains("removed 2 versions"), "{gc}");
    let log = p.dvx(&["log"]).ok().stdout();
    assert_eq!(log.lines().count(), 1);
    assert!(log.contains(&versions[2]));
    assert!(fresh_path.exists(), "an object written during gc was removed");
    // The kept version is fully restorable; the old one's data is gone.
    let to = tempfile::tempdir().unwrap();
    p.dvx(&["checkout", &versions[2], "--to", to.path().to_str().unwrap()]).ok();
    assert_eq!(std::fs::read_to_string(to.path().join("prep.txt")).unwrap(), "THREE\n");
    let old = blake3::hash(b"ONE\n").to_hex().to_string();
    assert!(!cache.path().join("objects-v1").join(&old[..2]).join(&old[2..]).exists());
    assert_eq!(p.dvx(&["cache", "verify"]).code(), 0);
}

#[test]
fn cache_location_precedence() {
    let p = Project::new();
    p.write("in.txt", "x\n");
    p.write("dvx.yaml", "stages:\n  a:\n    deps: [in.txt]\n    outs: [o]\n    cmd: cp in.txt o\n");
    let dir = |r: crate::support::Run| r.ok().stdout().trim().to_string();
    let default = p.path(".dvx/cache").canonicalize().unwrap_or(p.path(".dvx/cache"));
    assert_eq!(
        std::path::PathBuf::from(dir(p.dvx(&["cache", "dir"]))).canonicalize().unwrap(),
        default.canonicalize().unwrap()
    );
    p.write("dvx.toml", "cache = \"team-cache\"\n");
    assert!(dir(p.dvx(&["cache", "dir"])).ends_with("team-cache"));
    p.write("dvx.yaml", "cache: from-yaml\nstages:\n  a:\n    deps: [in.txt]\n    outs: [o]\n    cmd: cp in.txt o\n");
    assert!(dir(p.dvx(&["cache", "dir"])).ends_with("from-yaml"));
    let env = std::process::Command::new(env!("CARGO_BIN_EXE_dvx"))
        .args(["cache", "dir"])
        .current_dir(p.dir.path())
        .env("DVX_CACHE_DIR", p.path("from-env"))
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&env.stdout).trim().ends_with("from-env"));
    assert!(dir(p.dvx(&["--cache", p.path("from-flag").to_str().unwrap(), "cache", "dir"])).ends_with("from-flag"));
}

#[test]
fn edited_restored_output_is_detected() {
    let p = Project::new();
    p.write("in.txt", "x\n");
    p.write(
        "dvx.yaml",
        "link: copy\nstages:\n  a:\n    deps: [in.txt]\n    outs: [o]\n    cmd: cp in.txt o && echo a >> runs.log\n",
    );
    p.dvx(&["run"]).ok();
    std::fs::remove_file(p.path("o")).unwrap();
    p.dvx(&["run"]).ok(); // restored by copy
    assert_eq!(p.count("runs.log"), 1);
    p.write("o", "edited\n");
    let s = p.dvx(&["status"]).ok().stdout();
    assert_eq!(s, "a: would restore: output modified in workspace (o)\n");
    p.dvx(&["run"]).ok();
    assert_eq!(p.read("o"), "x\n");
    assert_eq!(p.count("runs.log"), 1);
}

#[test]
fn hardlinked_restores_are_read_only() {
    use std::os::unix::fs::PermissionsExt;
    let p = Project::new();
    p.write("in.txt", "x\n");
    p.write("dvx.yaml", "link: hardlink\nstages:\n  a:\n    deps: [in.txt]\n    outs: [o]\n    cmd: cp in.txt o\n");
    p.dvx(&["run"]).ok();
    std::fs::remove_file(p.path("o")).unwrap();
    p.dvx(&["run"]).ok();
    let restored = std::fs::metadata(p.path("o")).unwrap();
    if unsafe { libc::geteuid() } == 0 {
        // Modes do not stop root: a link would let a write reach the cache object, so it is a copy.
        use std::os::unix::fs::MetadataExt;
        let h = blake3::hash(b"x\n").to_hex().to_string();
        let obj = std::fs::metadata(p.path(".dvx/cache/objects-v1").join(&h[..2]).join(&h[2..])).unwrap();
        assert_ne!(restored.ino(), obj.ino(), "as root a restore must not alias the cache object");
    } else {
        let mode = restored.permissions().mode();
        assert_eq!(mode & 0o222, 0, "restored file is writable: {mode:o}");
    }
    assert_eq!(p.read("o"), "x\n");
}

#[test]
fn stats_report_hit_rate() {
    let p = Project::new();
    p.write("in.txt", "x\n");
    p.write("dvx.yaml", "stages:\n  a:\n    deps: [in.txt]\n    outs: [o]\n    cmd: cp in.txt o\n");
    p.dvx(&["run"]).ok();
    assert!(p.dvx(&["cache", "stats"]).ok().stdout().contains("last run hit rate: 0.0%"));
    p.dvx(&["run"]).ok();
    let s = p.dvx(&["cache", "stats"]).ok().stdout();
    assert!(s.contains("last run hit rate: 100.0%"), "{s}");
    assert!(s.contains("versions: 1"), "{s}");
}

/// A second Unix user of the same group uses a shared-mode cache the first filled.
#[test]
fn second_user_in_group_shares_the_cache() {
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped: creating a second user needs root");
        return;
    }
    let run = |args: &[&str]| Command::new(args[0]).args(&args[1..]).status().map(|s| s.success()).unwrap_or(false);
    if !run(&["sh", "-c", "getent group dvxteam >/dev/null || groupadd dvxteam"])
        || !run(&["sh", "-c", "id dvxmate >/dev/null 2>&1 || useradd -m -G dvxteam dvxmate"])
    {
        eprintln!("skipped: useradd/groupadd not available");
        return;
    }
    let base = tempfile::Builder::new().prefix("dvx-shared-").tempdir_in("/tmp").unwrap();
    let root = base.path();
    std::fs::set_permissions(root, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    // The binary where the other user can run it.
    let bin = root.join("dvx");
    std::fs::copy(env!("CARGO_BIN_EXE_dvx"), &bin).unwrap();
    let cache = root.join("cache");
    std::fs::create_dir(&cache).unwrap();
    assert!(run(&["chgrp", "dvxteam", cache.to_str().unwrap()]));
    assert!(run(&["chmod", "2775", cache.to_str().unwrap()]));
    let yaml = "stages:\n  a:\n    deps: [in.txt]\n    params: {n: 1}\n    outs: [o]\n    cmd: cp in.txt o && echo ${params.n} >> o\n";
    for who in ["first", "second"] {
        let ws = root.join(who);
        std::fs::create_dir(&ws).unwrap();
        std::fs::write(ws.join("in.txt"), "shared\n").unwrap();
        std::fs::write(ws.join("dvx.yaml"), yaml).unwrap();
        std::fs::write(ws.join("dvx.toml"), format!("cache = \"{}\"\nshared = \"group\"\n", cache.display())).unwrap();
    }
    assert!(run(&["chown", "-R", "dvxmate", root.join("second").to_str().unwrap()]));
    let first = Command::new(&bin).arg("run").current_dir(root.join("first")).output().unwrap();
    assert!(first.status.success(), "{}", String::from_utf8_lossy(&first.stderr));
    let as_mate = |args: &str| {
        Command::new("runuser")
            .args([
                "-u",
                "dvxmate",
                "--",
                "sh",
                "-c",
                &format!("cd {} && {} {args}", root.join("second").display(), bin.display()),
            ])
            .output()
            .unwrap()
    };
    let second = as_mate("run --json");
    assert!(second.status.success(), "{}", String::from_utf8_lossy(&second.stderr));
    assert!(
        String::from_utf8_lossy(&second.stdout).contains("\"cached\""),
        "{}",
        String::from_utf8_lossy(&second.stdout)
    );
    // The second user can also write new results into the shared cache.
    std::fs::write(root.join("second/dvx.yaml"), yaml.replace("n: 1", "n: 2")).unwrap();
    let third = as_mate("run --json");
    assert!(third.status.success(), "{}", String::from_utf8_lossy(&third.stderr));
    assert!(String::from_utf8_lossy(&third.stdout).contains("\"ran\""));
    let verify = Command::new(&bin).args(["cache", "verify"]).current_dir(root.join("first")).output().unwrap();
    assert!(verify.status.success(), "{}", String::from_utf8_lossy(&verify.stdout));
}
