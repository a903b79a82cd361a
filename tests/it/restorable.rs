//! Issue 10: every version dvx prints can be restored, whatever happened to
//! the cache around it (a new empty cache, a concurrent gc, a corrupt or
//! missing object), and the workspace is safe from what a run restores.

use std::path::Path;

use crate::support::Project;

fn pipeline(x: u32) -> String {
    format!(
        r#"stages:
  gen:
    deps: [in.txt]
    params: {{x: {x}}}
    outs: [gen.txt, parts]
    cmd: echo gen >> runs.log && cat in.txt > gen.txt && echo ${{params.x}} >> gen.txt && mkdir -p parts && cp gen.txt parts/a.txt && echo part-${{params.x}} > parts/b.txt
  use:
    deps: [gen.txt, parts]
    outs: [use.txt]
    cmd: cat gen.txt parts/b.txt > use.txt
"#
    )
}

fn object(cache: &Path, bytes: &[u8]) -> std::path::PathBuf {
    let h = blake3::hash(bytes).to_hex().to_string();
    cache.join("objects-v1").join(&h[..2]).join(&h[2..])
}

#[test]
fn switching_to_an_empty_cache_stores_the_workspace_outputs() {
    let p = Project::new();
    let first = tempfile::tempdir().unwrap();
    let empty = tempfile::tempdir().unwrap();
    p.write("in.txt", "hello\n").write("dvx.yaml", &pipeline(1));
    let c1 = first.path().to_str().unwrap();
    let c2 = empty.path().to_str().unwrap();
    let v1 = p.dvx(&["--cache", c1, "run"]).ok().version();

    // The workspace holds every output; the new cache holds nothing.
    let run = p.dvx(&["--cache", c2, "run", "--json"]).ok();
    assert!(run.statuses().iter().all(|(_, s)| s == "cached"), "{}", run.stdout());
    assert_eq!(p.count("runs.log"), 1, "no stage re-ran: their bytes were still in the workspace");
    let v2: serde_json::Value = serde_json::from_str(&run.stdout()).unwrap();
    let v2 = v2["version"].as_str().unwrap().to_string();
    assert_eq!(v1, v2);

    // The printed version is restorable from the new cache alone.
    let to = p.path("restored");
    p.dvx(&["--cache", c2, "checkout", &v2, "--to", to.to_str().unwrap()]).ok();
    assert_eq!(std::fs::read_to_string(to.join("use.txt")).unwrap(), p.read("use.txt"));
    assert_eq!(std::fs::read_to_string(to.join("parts/b.txt")).unwrap(), "part-1\n");
    let verify = p.dvx(&["--cache", c2, "cache", "verify"]);
    assert_eq!(verify.code(), 0, "{}", verify.stdout());
    assert!(verify.stdout().contains("cache is clean"));
}

/// Set every file under `dir` an hour back, as if written long before gc starts.
fn age(dir: &Path) {
    let old = std::time::SystemTime::now() - std::time::Duration::from_secs(3600);
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        if e.file_type().unwrap().is_dir() {
            age(&e.path());
        } else {
            let _ = std::fs::File::open(e.path()).and_then(|f| f.set_modified(old));
        }
    }
}

#[test]
fn gc_racing_runs_never_loses_a_printed_version() {
    // `gen` is restored from the run-cache; while `slow` runs, a gc that keeps
    // only the workspace's version removes everything else.
    let slow = "  slow:\n    deps: [gen.txt]\n    outs: [slow.txt]\n    cmd: touch started && sleep 1 && cat gen.txt > slow.txt\n";
    let yaml = |x: u32| format!("{}{slow}", pipeline(x));
    let p = Project::new();
    p.write("in.txt", "race\n");
    let trials = 10;
    let mut restorable = 0;
    let mut failures = Vec::new();
    for i in 0..trials {
        let (a, b) = (2 * i, 2 * i + 1);
        // A's results exist but B is the workspace's last version, so gc does not keep A.
        p.write("dvx.yaml", &yaml(a)).dvx(&["run"]).ok();
        p.write("dvx.yaml", &yaml(b)).dvx(&["run"]).ok();
        age(&p.path(".dvx/cache"));
        p.write("dvx.yaml", &yaml(a));
        let gc = std::thread::spawn({
            let dir = p.dir.path().to_path_buf();
            move || {
                // Once `slow` runs, `gen` has been restored.
                while !dir.join("started").exists() {
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
                std::fs::remove_file(dir.join("started")).unwrap();
                std::process::Command::new(env!("CARGO_BIN_EXE_dvx"))
                    .args(["gc", "--all-workspaces", "-f"])
                    .current_dir(dir)
                    .output()
                    .unwrap()
            }
        });
        let run = std::process::Command::new(env!("CARGO_BIN_EXE_dvx"))
            .args(["run", "--force", "slow"])
            .current_dir(p.dir.path())
            .env_remove("DVX_CACHE_DIR")
            .output()
            .unwrap();
        let gc = gc.join().unwrap();
        assert!(gc.status.success(), "gc: {}", String::from_utf8_lossy(&gc.stderr));
        assert!(run.status.success(), "run: {}", String::from_utf8_lossy(&run.stderr));
        let v = String::from_utf8_lossy(&run.stdout)
            .lines()
            .find_map(|l| l.strip_prefix("version: ").map(str::to_string))
            .unwrap();
        let to = p.path(&format!("checkout-{i}"));
        let co = p.dvx(&["checkout", &v, "--to", to.to_str().unwrap()]);
        if co.code() == 0 {
            assert_eq!(std::fs::read_to_string(to.join("parts/b.txt")).unwrap(), format!("part-{a}\n"));
            restorable += 1;
        } else {
            failures.push(format!("trial {i}: version {v} printed but not restorable: {}", co.stderr()));
        }
    }
    println!("{trials} trials with gc during the run: {trials} versions printed, {restorable} restorable");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert_eq!(p.dvx(&["cache", "verify"]).code(), 0);
}

#[test]
fn verify_checks_that_versions_can_be_restored() {
    let p = Project::new();
    p.write("in.txt", "v\n").write("dvx.yaml", &pipeline(7));
    let v = p.dvx(&["run"]).ok().version();
    let cache = p.path(".dvx/cache");
    let obj = object(&cache, p.read("use.txt").as_bytes());
    std::fs::remove_file(&obj).unwrap();

    let verify = p.dvx(&["cache", "verify"]);
    assert_eq!(verify.code(), 1, "{}", verify.stdout());
    assert!(verify.stdout().contains(&format!("version {v}")), "{}", verify.stdout());
    assert!(verify.stdout().contains("use.txt"), "{}", verify.stdout());

    let repair = p.dvx(&["cache", "verify", "--repair"]);
    assert!(repair.stdout().contains("removed"), "{}", repair.stdout());
    assert_eq!(p.dvx(&["cache", "verify"]).code(), 0);
    assert!(!cache.join("versions-v1").join(format!("{v}.json")).exists());
    // The next run rebuilds what was lost and the version is whole again.
    std::fs::remove_file(p.path("use.txt")).unwrap();
    assert_eq!(p.dvx(&["run"]).ok().version(), v);
    let to = p.path("again");
    p.dvx(&["checkout", &v, "--to", to.to_str().unwrap()]).ok();
}

#[test]
fn a_corrupt_object_is_replaced_when_the_stage_reproduces_it() {
    let p = Project::new();
    p.write("in.txt", "c\n").write("dvx.yaml", &pipeline(3));
    let v = p.dvx(&["run"]).ok().version();
    let want = p.read("gen.txt");
    let obj = object(&p.path(".dvx/cache"), want.as_bytes());
    let mut bytes = std::fs::read(&obj).unwrap();
    bytes[0] ^= 1;
    std::fs::remove_file(&obj).unwrap();
    std::fs::write(&obj, &bytes).unwrap();

    std::fs::remove_file(p.path("gen.txt")).unwrap();
    p.dvx(&["run"]).ok();
    assert_eq!(p.count("runs.log"), 2, "the corrupt object was not restored: the stage ran again");
    assert_eq!(p.read("gen.txt"), want);
    // No repair needed: the good bytes replaced the corrupt copy.
    assert_eq!(std::fs::read(&obj).unwrap(), want.as_bytes());
    let to = p.path("co");
    p.dvx(&["checkout", &v, "--to", to.to_str().unwrap()]).ok();
    assert_eq!(std::fs::read_to_string(to.join("gen.txt")).unwrap(), want);
}

#[test]
fn a_local_restore_failure_keeps_the_shared_entry() {
    let cache = tempfile::tempdir().unwrap();
    let yaml = format!(
        "cache: {}\nstages:\n  a:\n    deps: [in.txt]\n    outs: [sub/o.txt]\n    cmd: echo ran >> runs.log && mkdir -p sub && cp in.txt sub/o.txt\n",
        cache.path().display()
    );
    let a = Project::new();
    a.write("in.txt", "shared\n").write("dvx.yaml", &yaml);
    a.dvx(&["run"]).ok();
    let entries = || walkdir(cache.path().join("runs-v1"));
    assert_eq!(entries(), 1);

    // A teammate whose workspace cannot take the output (here `sub` is a file).
    let b = Project::new();
    b.write("in.txt", "shared\n").write("dvx.yaml", &yaml).write("sub", "in the way\n");
    let run = b.dvx(&["run"]);
    assert_eq!(run.code(), 1, "{}\n{}", run.stdout(), run.stderr());
    assert_eq!(entries(), 1, "the shared run entry must survive a local failure");

    // A third workspace still restores instead of executing.
    let c = Project::new();
    c.write("in.txt", "shared\n").write("dvx.yaml", &yaml);
    c.dvx(&["run"]).ok();
    assert_eq!(c.count("runs.log"), 0);
    assert_eq!(c.read("sub/o.txt"), "shared\n");
}

fn walkdir(dir: std::path::PathBuf) -> usize {
    let mut n = 0;
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        if e.file_type().unwrap().is_dir() {
            n += walkdir(e.path());
        } else {
            n += 1;
        }
    }
    n
}

#[test]
fn writing_to_a_restored_file_never_changes_the_cache() {
    for link in ["auto", "hardlink", "symlink"] {
        let p = Project::new();
        p.write("in.txt", "x\n");
        p.write(
            "dvx.yaml",
            &format!("link: {link}\nstages:\n  a:\n    deps: [in.txt]\n    outs: [o]\n    cmd: cp in.txt o\n"),
        );
        p.dvx(&["run"]).ok();
        std::fs::remove_file(p.path("o")).unwrap();
        p.dvx(&["run"]).ok();
        // As root the read-only mode does not stop this write; it must land
        // in a private copy then, never in the shared object.
        let appended = std::fs::OpenOptions::new()
            .append(true)
            .open(p.path("o"))
            .and_then(|mut f| std::io::Write::write_all(&mut f, b"tampered\n"));
        let obj = object(&p.path(".dvx/cache"), b"x\n");
        assert_eq!(
            std::fs::read(&obj).unwrap(),
            b"x\n",
            "link: {link}: the cache object was changed (append: {appended:?})"
        );
        let verify = p.dvx(&["cache", "verify"]);
        assert_eq!(verify.code(), 0, "link: {link}: {}", verify.stdout());
    }
}

#[test]
fn symlinks_in_an_out_folder_stay_links_or_are_refused() {
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(outside.path().join("secret.txt"), "not yours\n").unwrap();
    let p = Project::new();
    p.write("in.txt", "l\n");
    p.write(
        "dvx.yaml",
        &format!(
            "stages:\n  inside:\n    deps: [in.txt]\n    outs: [tree]\n    cmd: mkdir -p tree/sub && cp in.txt tree/a.txt && ln -s ../a.txt tree/sub/up && ln -s sub tree/down\n  escape:\n    deps: [in.txt]\n    outs: [leak]\n    cmd: mkdir -p leak && ln -s {} leak/docs\n",
            outside.path().display()
        ),
    );
    let run = p.dvx(&["run"]);
    assert_eq!(run.code(), 1, "{}", run.stdout());
    let all = format!("{}{}", run.stdout(), run.stderr());
    assert!(all.contains("docs") && all.contains("leaves its folder"), "{all}");
    assert!(!object(&p.path(".dvx/cache"), b"not yours\n").exists(), "a file outside the workspace was stored");

    // Links that stay inside are restored as links.
    std::fs::remove_dir_all(p.path("tree")).unwrap();
    p.dvx(&["run", "dvx.yaml", "inside"]).ok();
    assert_eq!(std::fs::read_link(p.path("tree/sub/up")).unwrap(), Path::new("../a.txt"));
    assert_eq!(std::fs::read_link(p.path("tree/down")).unwrap(), Path::new("sub"));
    assert_eq!(p.read("tree/sub/up"), "l\n");
}

#[test]
fn an_existing_file_dvx_did_not_write_is_never_deleted() {
    let p = Project::new();
    p.write("raw.jsonl", "{\"only\": \"copy\"}\n");
    p.write(
        "dvx.yaml",
        "stages:\n  prep:\n    outs: [raw.jsonl, prep.txt]\n    cmd: echo x > raw.jsonl && echo y > prep.txt\n",
    );
    let run = p.dvx(&["run"]);
    assert_eq!(run.code(), 1, "{}", run.stdout());
    let all = format!("{}{}", run.stdout(), run.stderr());
    assert!(all.contains("raw.jsonl") && all.contains("did not write"), "{all}");
    assert_eq!(p.read("raw.jsonl"), "{\"only\": \"copy\"}\n");

    // Once it is out of the way the stage runs, and later runs may replace what dvx wrote.
    std::fs::rename(p.path("raw.jsonl"), p.path("kept.jsonl")).unwrap();
    p.dvx(&["run"]).ok();
    assert_eq!(p.read("raw.jsonl"), "x\n");
    p.dvx(&["run", "--force", "prep"]).ok();
}

#[test]
fn a_same_size_edit_with_its_mtime_put_back_is_seen() {
    let p = Project::new();
    p.write("in.txt", "aaaa\n")
        .write("dvx.yaml", "stages:\n  a:\n    deps: [in.txt]\n    outs: [o]\n    cmd: cp in.txt o\n");
    // Old enough that its stat-cache entry is not racy.
    let old = std::time::SystemTime::now() - std::time::Duration::from_secs(3600);
    let set_mtime = |t| std::fs::File::options().write(true).open(p.path("in.txt")).unwrap().set_modified(t).unwrap();
    set_mtime(old);
    p.dvx(&["run"]).ok();
    p.dvx(&["run"]).ok();
    // Edit in place (same inode, same size), then put the mtime back, as `touch -d` or `cp -p` do.
    std::fs::write(p.path("in.txt"), "bbbb\n").unwrap();
    set_mtime(old);
    let status = p.dvx(&["status"]);
    assert!(status.stdout().contains("in.txt"), "status missed the edit:\n{}", status.stdout());
    p.dvx(&["run"]).ok();
    assert_eq!(p.read("o"), "bbbb\n");
}
