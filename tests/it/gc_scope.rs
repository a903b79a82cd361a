//! gc as `dvc gc`: an explicit scope, a question before deleting (refused
//! without a terminal unless `--force`), the version every workspace using
//! the cache holds always kept, and `--dry-run` with sizes.

use crate::support::Project;

/// A project whose `dvx.yaml` makes `out.txt` from `word`.
fn write_pipeline(p: &Project, word: &str) {
    p.write("dvx.yaml", &yaml(word));
}

fn yaml(word: &str) -> String {
    format!("name: g\nstages:\n  make:\n    cmd: echo {word} > out.txt\n    outs: [out.txt]\n")
}

/// Three versions; returns them oldest first.
fn three_versions(p: &Project) -> Vec<String> {
    let mut v = Vec::new();
    for word in ["one", "two", "three"] {
        write_pipeline(p, word);
        v.push(p.dvx(&["run"]).ok().version());
    }
    v
}

fn logged(p: &Project) -> String {
    p.dvx(&["log"]).ok().stdout()
}

#[test]
fn gc_needs_a_scope_and_a_yes() {
    let p = Project::new();
    let v = three_versions(&p);
    p.age_cache();

    let r = p.dvx(&["gc"]);
    assert_eq!(r.code(), 2);
    // As one line: the help wraps.
    let flat = r.stderr().split_whitespace().collect::<Vec<_>>().join(" ");
    for choice in ["--keep-last N", "--keep HASH", "--keep-since DATE", "--all-workspaces", "--dry-run"] {
        assert!(flat.contains(choice), "the error does not offer {choice}:\n{}", r.stderr());
    }

    // Dry run: what would go, each version with its size; nothing goes.
    let dry = p.dvx(&["gc", "--keep-last", "1", "--dry-run"]).ok().stdout();
    for (old, word) in v[..2].iter().zip(["one", "two"]) {
        let line = dry.lines().find(|l| l.starts_with(&format!("would remove version {old}"))).unwrap_or_else(|| {
            panic!("{old} not listed:\n{dry}");
        });
        // The bytes only it needs: its output and its pipeline file.
        let bytes = format!("{word}\n").len() + yaml(word).len();
        assert!(line.contains(&format!("  {bytes} B  ")), "{line}");
    }
    assert!(dry.contains("would remove 2 versions"), "{dry}");
    assert!(dry.contains("kept 1 versions"), "{dry}");
    assert!(dry.contains(&format!("keeping version {} held by workspace", &v[2][..12])), "{dry}");
    assert_eq!(logged(&p).lines().count(), 3);

    // No terminal to ask: refused, nothing removed.
    let r = p.dvx(&["gc", "--keep-last", "1"]);
    assert_eq!(r.code(), 2, "{}", r.stdout());
    assert!(r.stderr().contains("no terminal") && r.stderr().contains("--force"), "{}", r.stderr());
    assert_eq!(logged(&p).lines().count(), 3);

    // --keep is repeatable; --force deletes without asking.
    let r = p.dvx(&["gc", "--keep", &v[0][..8], "--keep", &v[1][..8], "-f"]).ok().stdout();
    assert!(r.contains("removed 0 versions"), "{r}");
    let r = p.dvx(&["gc", "--keep", &v[0][..8], "--force"]).ok().stdout();
    assert!(r.contains(&format!("removed version {}", v[1])), "{r}");
    let log = logged(&p);
    assert!(log.contains(&v[0]) && !log.contains(&v[1]) && log.contains(&v[2]), "{log}");
}

#[test]
fn keep_since_keeps_what_is_newer() {
    let p = Project::new();
    three_versions(&p);
    p.age_cache();
    let all = p.dvx(&["gc", "--keep-since", "2000-01-01", "--dry-run"]).ok().stdout();
    assert!(all.contains("would remove 0 versions"), "{all}");
    let none = p.dvx(&["gc", "--keep-since", "2999-01-01", "--dry-run"]).ok().stdout();
    // Only the workspace's version stays.
    assert!(none.contains("would remove 2 versions") && none.contains("kept 1 versions"), "{none}");
    let r = p.dvx(&["gc", "--keep-since", "yesterday"]);
    assert_eq!(r.code(), 2);
    assert!(r.stderr().contains("--keep-since `yesterday`"), "{}", r.stderr());
}

#[test]
fn the_version_each_workspace_holds_is_kept() {
    let a = Project::new();
    let v = three_versions(&a);
    // The workspace goes back to the first version: that one is now held.
    a.dvx(&["checkout", &v[0][..8]]).ok();
    // A second workspace on the same cache, with a version of its own.
    let b = Project::new();
    let cache = a.path(".dvx/cache");
    b.write("dvx.toml", &format!("cache = \"{}\"\n", cache.display()));
    write_pipeline(&b, "bee");
    let vb = b.dvx(&["run"]).ok().version();
    a.age_cache();

    let dry = a.dvx(&["gc", "--all-workspaces", "--dry-run"]).ok().stdout();
    assert!(dry.contains(&format!("keeping version {} held by workspace", &v[0][..12])), "{dry}");
    assert!(dry.contains(&format!("keeping version {} held by workspace", &vb[..12])), "{dry}");
    // The newest version of `a` is in its state as its last run's, so it stays too.
    let gone = a.dvx(&["gc", "--all-workspaces", "-f"]).ok().stdout();
    assert!(gone.contains(&format!("removed version {}", v[1])), "{gone}");
    let log = logged(&a);
    for kept in [&v[0], &v[2], &vb] {
        assert!(log.contains(kept.as_str()), "{kept} was removed:\n{log}");
    }
    // `--keep-last 1` from either workspace still keeps what the other holds.
    b.dvx(&["gc", "--keep-last", "1", "-f"]).ok();
    assert!(logged(&a).contains(&v[0]));
    b.dvx(&["checkout", &vb[..8]]).ok();
    assert_eq!(b.read("out.txt"), "bee\n");
    a.dvx(&["checkout", &v[0][..8]]).ok();
    assert_eq!(a.read("out.txt"), "one\n");
}

#[test]
fn workspace_records_are_untrusted() {
    let p = Project::new();
    write_pipeline(&p, "one");
    let v = p.dvx(&["run"]).ok().version();
    let dir = p.path(".dvx/cache/workspaces-v1");
    let records: Vec<_> = std::fs::read_dir(&dir).unwrap().flatten().map(|e| e.path()).collect();
    assert_eq!(records.len(), 1);
    let rec: serde_json::Value = serde_json::from_slice(&std::fs::read(&records[0]).unwrap()).unwrap();
    assert_eq!(rec["version"], v.as_str());
    assert_eq!(rec["path"], p.dir.path().canonicalize().unwrap().display().to_string());
    // Junk, and a record under another path's name.
    std::fs::write(dir.join("junk.json"), b"{\"path\": 1}").unwrap();
    std::fs::copy(&records[0], dir.join(format!("{}.json", "0".repeat(64)))).unwrap();

    let gc = p.dvx(&["gc", "--all-workspaces", "--dry-run"]).ok();
    assert!(gc.stderr().contains("skipping workspace record"), "{}", gc.stderr());
    let verify = p.dvx(&["cache", "verify"]);
    assert_ne!(verify.code(), 0);
    assert!(verify.stdout().contains("junk.json") || verify.stderr().contains("junk.json"), "{}", verify.stdout());
    p.dvx(&["cache", "verify", "--repair"]);
    p.dvx(&["cache", "verify"]).ok();
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 1);
}
