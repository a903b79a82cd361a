//! The shared cache is a trust boundary (issue 10 §3): every path in a run
//! entry, folder manifest or version record must stay inside the workspace
//! (or the checkout target) before a file is touched; records are checked
//! against their own hashes; a malformed record is skipped and reported,
//! never a panic.
//!
//! Layout of every test: a temp root holding `project/` (pipeline, cache at
//! `project/.dvx/cache`) and `victim/` beside it, whose bytes must never change.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::support::{Project, Run};

const PIPELINE: &str = r#"name: trust
stages:
  make:
    deps: [in.txt]
    outs: [out.txt, outdir]
    cmd: echo x >> ../count && tr a-z A-Z < in.txt > out.txt && mkdir -p outdir && rev in.txt > outdir/f.txt
"#;

const IN: &str = "hello trust\n";
const OUT: &str = "HELLO TRUST\n";
const OUT_F: &str = "tsurt olleh\n";

/// A root with `project/` (run once) and `victim/`.
struct Setup {
    p: Project,
    version: String,
}

impl Setup {
    fn new() -> Setup {
        let p = Project::new();
        p.write("project/in.txt", IN);
        p.write("project/dvx.yaml", PIPELINE);
        p.write("victim/a.txt", "victim a\n");
        p.write("victim/dir/b.txt", "victim b\n");
        let version = p.dvx_in(&p.path("project"), &["run"]).ok().version();
        Setup { p, version }
    }
    fn root(&self) -> PathBuf {
        self.p.dir.path().to_path_buf()
    }
    fn cache(&self) -> PathBuf {
        self.p.path("project/.dvx/cache")
    }
    fn victim(&self) -> PathBuf {
        self.p.path("victim")
    }
    fn dvx(&self, args: &[&str]) -> Run {
        let r = self.p.dvx_in(&self.p.path("project"), args);
        assert_ne!(r.code(), 101, "dvx {args:?} panicked\nstdout:\n{}\nstderr:\n{}", r.stdout(), r.stderr());
        assert!(r.out.status.code().is_some(), "dvx {args:?} killed by a signal: {:?}\n{}", r.out.status, r.stderr());
        r
    }
    /// Times `make` executed.
    fn executions(&self) -> usize {
        self.p.count("count")
    }
    /// The single run-cache entry: (file, key, JSON).
    fn run_entry(&self) -> (PathBuf, String, serde_json::Value) {
        let mut files = Vec::new();
        for shard in std::fs::read_dir(self.cache().join("runs-v1")).unwrap() {
            for f in std::fs::read_dir(shard.unwrap().path()).unwrap() {
                files.push(f.unwrap().path());
            }
        }
        assert_eq!(files.len(), 1, "{files:?}");
        let f = files.remove(0);
        let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&f).unwrap()).unwrap();
        let key = v["key"].as_str().unwrap().to_string();
        (f, key, v)
    }
    fn version_path(&self, hash: &str) -> PathBuf {
        self.cache().join("versions-v1").join(format!("{hash}.json"))
    }
    fn version_record(&self) -> serde_json::Value {
        serde_json::from_slice(&std::fs::read(self.version_path(&self.version)).unwrap()).unwrap()
    }
    fn object_path(&self, hash: &str) -> PathBuf {
        self.cache().join("objects-v1").join(&hash[..2]).join(&hash[2..])
    }
    /// Store bytes as an object under their true name; returns the hash.
    fn put_object(&self, bytes: &[u8]) -> String {
        let h = blake3::hash(bytes).to_hex().to_string();
        let p = self.object_path(&h);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, bytes).unwrap();
        h
    }
    /// Write a version record under the hash of its (canonical) body, as a
    /// well-behaved but malicious writer would; returns the hash.
    fn put_version(&self, mut rec: serde_json::Value) -> String {
        let h = blake3::hash(&canonical_json(&rec["body"])).to_hex().to_string();
        rec["hash"] = serde_json::Value::String(h.clone());
        std::fs::write(self.version_path(&h), serde_json::to_vec_pretty(&rec).unwrap()).unwrap();
        h
    }
    /// Remove a workspace output (restored outputs may be read-only).
    fn remove_output(&self, rel: &str) {
        let p = self.p.path("project").join(rel);
        make_writable(&p);
        if p.is_dir() {
            std::fs::remove_dir_all(&p).unwrap();
        } else {
            std::fs::remove_file(&p).unwrap();
        }
    }
}

fn make_writable(p: &Path) {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(m) = std::fs::symlink_metadata(p) {
        if m.is_dir() {
            let _ = std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o755));
            for e in std::fs::read_dir(p).unwrap().flatten() {
                make_writable(&e.path());
            }
        }
    }
}

/// What a version's name is the blake3 of: forging a valid record takes the
/// same function dvx uses.
pub use dvx_cache::canonical_json;

/// Every file and folder under `dir`: relative path → (bytes or `None` for
/// a folder, mtime, mode).
type Snapshot = BTreeMap<String, (Option<Vec<u8>>, std::time::SystemTime, u32)>;

pub fn snapshot(dir: &Path) -> Snapshot {
    use std::os::unix::fs::PermissionsExt;
    fn walk(base: &Path, dir: &Path, out: &mut Snapshot) {
        let Ok(rd) = std::fs::read_dir(dir) else { return };
        for e in rd.flatten() {
            let p = e.path();
            let rel = p.strip_prefix(base).unwrap().to_string_lossy().into_owned();
            let m = std::fs::symlink_metadata(&p).unwrap();
            let mtime = m.modified().unwrap();
            let mode = m.permissions().mode();
            if m.is_dir() {
                out.insert(rel, (None, mtime, mode));
                walk(base, &p, out);
            } else {
                out.insert(rel, (Some(std::fs::read(&p).unwrap_or_default()), mtime, mode));
            }
        }
    }
    let mut out = Snapshot::new();
    if let Ok(m) = std::fs::metadata(dir) {
        out.insert(".".into(), (None, m.modified().unwrap(), 0));
    }
    walk(dir, dir, &mut out);
    out
}

#[track_caller]
fn assert_victim_unchanged(before: &Snapshot, s: &Setup, what: &str) {
    let after = snapshot(&s.victim());
    if &after != before {
        let gone: Vec<&String> = before.keys().filter(|k| !after.contains_key(*k)).collect();
        let new: Vec<&String> = after.keys().filter(|k| !before.contains_key(*k)).collect();
        let changed: Vec<&String> = before.keys().filter(|k| after.get(*k).is_some_and(|a| a != &before[*k])).collect();
        panic!("{what}: victim/ changed outside the workspace: gone {gone:?}, new {new:?}, changed {changed:?}");
    }
}

/// The run must either execute `make` again and leave correct outputs, or
/// fail naming the record.
#[track_caller]
fn reexecuted_or_named(s: &Setup, r: &Run, before_execs: usize, record: &str) {
    if r.code() == 0 {
        assert_eq!(s.executions(), before_execs + 1, "the stage was not re-executed\n{}", r.stderr());
        assert_eq!(s.p.read("project/out.txt"), OUT);
        assert_eq!(s.p.read("project/outdir/f.txt"), OUT_F);
    } else {
        let all = format!("{}{}", r.stdout(), r.stderr());
        assert!(all.contains(record), "the failure does not name the record {record}:\n{all}");
    }
}

// ---------------------------------------------------------------- run entries

fn edit_run_entry(s: &Setup, f: impl FnOnce(&mut serde_json::Value)) -> String {
    let (file, key, mut v) = s.run_entry();
    f(&mut v);
    std::fs::write(file, serde_json::to_vec_pretty(&v).unwrap()).unwrap();
    key
}

#[test]
fn run_entry_with_absolute_output_path_never_touches_victim() {
    let s = Setup::new();
    let target = s.victim().join("a.txt");
    let key = edit_run_entry(&s, |v| v["outputs"][0]["path"] = target.to_str().unwrap().into());
    let before = snapshot(&s.victim());
    let execs = s.executions();
    s.remove_output("out.txt");
    let r = s.dvx(&["run"]);
    assert_victim_unchanged(&before, &s, "dvx run with an absolute path in a run entry");
    assert_eq!(std::fs::read_to_string(&target).unwrap(), "victim a\n");
    reexecuted_or_named(&s, &r, execs, &key[..12]);
}

#[test]
fn run_entry_with_dotdot_output_path_never_touches_victim() {
    let s = Setup::new();
    let key = edit_run_entry(&s, |v| v["outputs"][0]["path"] = "../victim/a.txt".into());
    let before = snapshot(&s.victim());
    let execs = s.executions();
    s.remove_output("out.txt");
    let r = s.dvx(&["run"]);
    assert_victim_unchanged(&before, &s, "dvx run with `../victim/a.txt` in a run entry");
    reexecuted_or_named(&s, &r, execs, &key[..12]);

    // A path to a file that does not exist yet must not create it either.
    let s = Setup::new();
    let key = edit_run_entry(&s, |v| v["outputs"][0]["path"] = "sub/../../victim/new.txt".into());
    let before = snapshot(&s.victim());
    let execs = s.executions();
    s.remove_output("out.txt");
    let r = s.dvx(&["run"]);
    assert!(!s.victim().join("new.txt").exists(), "dvx run created victim/new.txt");
    assert_victim_unchanged(&before, &s, "dvx run with `sub/../../victim/new.txt` in a run entry");
    reexecuted_or_named(&s, &r, execs, &key[..12]);
}

#[test]
fn run_entry_with_dir_output_at_victim_dir_never_deletes_it() {
    let s = Setup::new();
    let target = s.victim().join("dir");
    let key = edit_run_entry(&s, |v| v["outputs"][1]["path"] = target.to_str().unwrap().into());
    let before = snapshot(&s.victim());
    let execs = s.executions();
    s.remove_output("outdir");
    let r = s.dvx(&["run"]);
    assert_eq!(std::fs::read_to_string(target.join("b.txt")).unwrap_or_default(), "victim b\n", "victim/dir/b.txt");
    assert!(!target.join("f.txt").exists(), "dvx restored a folder output into victim/dir");
    assert_victim_unchanged(&before, &s, "dvx run with a dir output at victim/dir");
    reexecuted_or_named(&s, &r, execs, &key[..12]);

    // The same through `..`.
    let s = Setup::new();
    let key = edit_run_entry(&s, |v| v["outputs"][1]["path"] = "../victim/dir".into());
    let before = snapshot(&s.victim());
    let execs = s.executions();
    s.remove_output("outdir");
    let r = s.dvx(&["run"]);
    assert_victim_unchanged(&before, &s, "dvx run with a dir output at ../victim/dir");
    reexecuted_or_named(&s, &r, execs, &key[..12]);
}

// ---------------------------------------------------------- folder manifests

fn evil_manifest(s: &Setup) -> String {
    let inner = blake3::hash(OUT_F.as_bytes()).to_hex().to_string();
    let abs = s.victim().join("evil-abs.txt");
    let manifest = serde_json::json!({
        "dvx_tree": 1,
        "entries": [
            {"path": "../../victim/evil.txt", "exec": false, "hash": inner},
            {"path": "../../evil-root.txt", "exec": false, "hash": inner},
            {"path": abs.to_str().unwrap(), "exec": false, "hash": inner},
            {"path": "f.txt", "exec": false, "hash": inner},
        ]
    });
    s.put_object(&serde_json::to_vec(&manifest).unwrap())
}

#[track_caller]
fn assert_no_escape(s: &Setup, before: &Snapshot, what: &str) {
    for p in ["victim/evil.txt", "victim/evil-abs.txt", "evil-root.txt", "project/evil-root.txt"] {
        assert!(!s.p.path(p).exists(), "{what}: a manifest entry was written to {p}");
    }
    assert_victim_unchanged(before, s, what);
}

#[test]
fn manifest_with_escaping_entries_is_not_restored_outside_the_folder() {
    let s = Setup::new();
    let m = evil_manifest(&s);
    let key = edit_run_entry(&s, |v| v["outputs"][1]["hash"] = m.clone().into());
    let before = snapshot(&s.victim());
    let execs = s.executions();
    s.remove_output("outdir");
    let r = s.dvx(&["run"]);
    assert_no_escape(&s, &before, "dvx run restoring a manifest with `../` and absolute entries");
    let all = format!("{}{}", r.stdout(), r.stderr());
    if r.code() == 0 {
        assert_eq!(s.executions(), execs + 1, "the stage was not re-executed");
        assert_eq!(s.p.read("project/outdir/f.txt"), OUT_F);
    } else {
        assert!(all.contains(&key[..12]) || all.contains(&m[..12]), "failure names neither record:\n{all}");
    }
}

#[test]
fn manifest_with_escaping_entries_in_a_version_is_refused_by_checkout() {
    let s = Setup::new();
    let m = evil_manifest(&s);
    let mut rec = s.version_record();
    rec["body"]["stages"][0]["outputs"][1]["hash"] = m.clone().into();
    let h = s.put_version(rec);
    let before = snapshot(&s.victim());

    let r = s.dvx(&["checkout", &h]);
    assert_no_escape(&s, &before, "dvx checkout of a version with an escaping manifest");
    assert_ne!(r.code(), 0, "checkout of a version with an escaping manifest succeeded:\n{}", r.stdout());

    let to = s.root().join("to");
    let r = s.dvx(&["checkout", &h, "--to", to.to_str().unwrap()]);
    assert_no_escape(&s, &before, "dvx checkout --to of a version with an escaping manifest");
    assert!(!s.root().join("evil-root.txt").exists());
    assert_ne!(r.code(), 0, "checkout --to of a version with an escaping manifest succeeded:\n{}", r.stdout());
    let all = format!("{}{}", r.stdout(), r.stderr());
    assert!(all.contains(&h[..12]) || all.contains(&m[..12]), "the refusal names neither record:\n{all}");
}

// ------------------------------------------------------------ version records

#[test]
fn version_with_dotdot_paths_is_refused_by_checkout() {
    let s = Setup::new();
    let mut rec = s.version_record();
    rec["body"]["stages"][0]["outputs"][0]["path"] = "../victim/a.txt".into();
    rec["body"]["stages"][0]["outputs"][1]["path"] = "../victim/dir".into();
    let h = s.put_version(rec);
    let before = snapshot(&s.victim());

    let r = s.dvx(&["checkout", &h]);
    assert_victim_unchanged(&before, &s, "dvx checkout of a version with `../` outputs");
    assert_ne!(r.code(), 0, "checkout of a version with `../` paths succeeded:\n{}", r.stdout());
    let all = format!("{}{}", r.stdout(), r.stderr());
    assert!(all.contains(&h[..12]), "the refusal does not name version {h}:\n{all}");
}

#[test]
fn version_with_dotdot_paths_is_refused_by_checkout_to() {
    let s = Setup::new();
    let mut rec = s.version_record();
    // Relative to the --to folder, `../victim/…` is the victim.
    rec["body"]["stages"][0]["outputs"][0]["path"] = "../victim/new-out.txt".into();
    rec["body"]["sources"][0]["path"] = "../victim/a.txt".into();
    let h = s.put_version(rec);
    let before = snapshot(&s.victim());
    let to = s.root().join("to");

    let r = s.dvx(&["checkout", &h, "--to", to.to_str().unwrap()]);
    assert!(!s.victim().join("new-out.txt").exists(), "checkout --to wrote victim/new-out.txt");
    assert_victim_unchanged(&before, &s, "dvx checkout --to of a version with `../` paths");
    assert_ne!(r.code(), 0, "checkout --to of a version with `../` paths succeeded:\n{}", r.stdout());
    assert_ne!(r.code(), 101);
    let all = format!("{}{}", r.stdout(), r.stderr());
    assert!(all.contains(&h[..12]), "the refusal does not name version {h}:\n{all}");
}

#[test]
fn version_with_absolute_output_path_never_touches_victim() {
    let s = Setup::new();
    let mut rec = s.version_record();
    let target = s.victim().join("a.txt");
    rec["body"]["stages"][0]["outputs"][0]["path"] = target.to_str().unwrap().into();
    let h = s.put_version(rec);
    let before = snapshot(&s.victim());
    s.dvx(&["checkout", &h]);
    let to = s.root().join("to");
    s.dvx(&["checkout", &h, "--to", to.to_str().unwrap()]);
    assert_victim_unchanged(&before, &s, "dvx checkout of a version with an absolute output path");
}

#[test]
fn version_edited_in_place_is_refused_and_reported() {
    let s = Setup::new();
    let path = s.version_path(&s.version);
    let mut rec = s.version_record();
    // Point out.txt at other (valid) bytes without renaming the record.
    let other = s.put_object(b"TAMPERED\n");
    rec["body"]["stages"][0]["outputs"][0]["hash"] = other.into();
    std::fs::write(&path, serde_json::to_vec_pretty(&rec).unwrap()).unwrap();
    let short = &s.version[..12];

    let r = s.dvx(&["checkout", &s.version]);
    assert_ne!(r.code(), 0, "checkout of a tampered version succeeded:\n{}", r.stdout());
    assert_eq!(s.p.read("project/out.txt"), OUT, "checkout restored the tampered bytes");
    let all = format!("{}{}", r.stdout(), r.stderr());
    assert!(all.contains(short), "the refusal does not name version {short}:\n{all}");

    let to = s.root().join("to");
    let r = s.dvx(&["checkout", &s.version, "--to", to.to_str().unwrap()]);
    assert_ne!(r.code(), 0, "checkout --to of a tampered version succeeded");
    assert!(std::fs::read_to_string(to.join("out.txt")).map(|t| t != "TAMPERED\n").unwrap_or(true));

    let r = s.dvx(&["cache", "verify"]);
    assert_eq!(r.code(), 1, "verify did not report the tampered version:\n{}", r.stdout());
    assert!(r.stdout().contains(short), "verify does not name version {short}:\n{}", r.stdout());
}

// ------------------------------------------------------------ malformed records

/// Every read-only command survives the damage without a panic; verify
/// reports it naming `record`, `--repair` removes `file` and says so, and
/// verify is clean afterwards.
fn survive_report_repair(s: &Setup, record: &str, file: &Path) {
    for args in [
        vec!["show", &s.version[..12]],
        vec!["log"],
        vec!["status"],
        vec!["gc", "--all-workspaces", "--dry-run"],
        vec!["checkout", &s.version[..12], "--to", "../to"],
    ] {
        let r = s.dvx(&args);
        assert!(r.code() == 0 || r.code() == 1 || r.code() == 2, "dvx {args:?}: exit {}", r.code());
    }
    let r = s.dvx(&["cache", "verify"]);
    assert_eq!(r.code(), 1, "verify did not report {record}:\n{}\n{}", r.stdout(), r.stderr());
    assert!(r.stdout().contains(record), "verify does not name {record}:\n{}", r.stdout());

    let r = s.dvx(&["cache", "verify", "--repair"]);
    assert!(r.code() == 0 || r.code() == 1, "verify --repair: exit {}\n{}", r.code(), r.stderr());
    assert!(r.stdout().contains(record), "verify --repair does not name {record}:\n{}", r.stdout());
    assert!(
        r.stdout().contains("removed") || r.stdout().contains("quarantined"),
        "verify --repair does not say what it did:\n{}",
        r.stdout()
    );
    assert!(!file.exists(), "verify --repair left {}", file.display());

    let r = s.dvx(&["cache", "verify"]);
    assert_eq!(r.code(), 0, "verify after --repair is not clean:\n{}\n{}", r.stdout(), r.stderr());
    let r = s.dvx(&["gc", "--all-workspaces", "--force"]);
    assert_eq!(r.code(), 0, "gc after repair: {}", r.stderr());
    s.dvx(&["run"]).ok();
}

/// `dvx run` on the damaged cache skips the record with a warning naming it
/// and executes the stage.
fn run_skips_with_warning(s: &Setup, record: &str) {
    let execs = s.executions();
    s.remove_output("out.txt");
    let r = s.dvx(&["run"]);
    assert_eq!(r.code(), 0, "dvx run on a damaged record failed:\n{}\n{}", r.stdout(), r.stderr());
    assert_eq!(s.p.read("project/out.txt"), OUT);
    assert_eq!(s.executions(), execs + 1, "the stage was not executed");
    assert!(r.stderr().contains(record), "no warning naming {record}:\n{}", r.stderr());
}

#[test]
fn run_entry_with_non_hash_is_skipped_and_repaired() {
    let s = Setup::new();
    let key = edit_run_entry(&s, |v| v["outputs"][0]["hash"] = "x".into());
    let (file, _, _) = s.run_entry();
    survive_report_repair(&s, &key[..12], &file);

    let s = Setup::new();
    let key = edit_run_entry(&s, |v| v["outputs"][0]["hash"] = "x".into());
    run_skips_with_warning(&s, &key[..12]);
}

#[test]
fn stray_run_file_is_skipped_and_repaired() {
    let s = Setup::new();
    let (_, _, v) = s.run_entry();
    let stray = s.cache().join("runs-v1/zz/x.json");
    std::fs::create_dir_all(stray.parent().unwrap()).unwrap();
    std::fs::write(&stray, serde_json::to_vec(&v).unwrap()).unwrap();
    survive_report_repair(&s, "x.json", &stray);

    let s = Setup::new();
    let stray = s.cache().join("runs-v1/zz/x.json");
    std::fs::create_dir_all(stray.parent().unwrap()).unwrap();
    std::fs::write(&stray, b"{}").unwrap();
    let r = s.dvx(&["run"]);
    assert_eq!(r.code(), 0, "{}", r.stderr());
    let r = s.dvx(&["gc", "--all-workspaces", "--force"]);
    assert_eq!(r.code(), 0, "gc with a stray run file: {}", r.stderr());
}

#[test]
fn version_with_short_hash_is_skipped_and_repaired() {
    let s = Setup::new();
    let mut rec = s.version_record();
    rec["body"]["stages"][0]["outputs"][0]["hash"] = "abc".into();
    rec["body"]["stages"][0]["key"] = "abc".into();
    let h = s.put_version(rec);
    let file = s.version_path(&h);
    for args in [vec!["show", &h[..12]], vec!["checkout", &h[..12]], vec!["log"]] {
        let r = s.dvx(&args);
        assert!(r.code() == 0 || r.code() == 2, "dvx {args:?}: exit {}", r.code());
    }
    let r = s.dvx(&["show", &h[..12]]);
    assert_ne!(r.code(), 0, "show of a version with a short hash succeeded:\n{}", r.stdout());
    assert!(r.stderr().contains(&h[..12]), "{}", r.stderr());
    survive_report_repair(&s, &h[..12], &file);
}

#[test]
fn version_file_with_short_name_is_skipped_and_repaired() {
    let s = Setup::new();
    let rec = s.version_record();
    let file = s.cache().join("versions-v1/abcd.json");
    std::fs::write(&file, serde_json::to_vec(&rec).unwrap()).unwrap();
    survive_report_repair(&s, "abcd.json", &file);
}

#[test]
fn truncated_run_entry_is_skipped_and_repaired() {
    let s = Setup::new();
    let (file, key, _) = s.run_entry();
    let bytes = std::fs::read(&file).unwrap();
    std::fs::write(&file, &bytes[..bytes.len() / 2]).unwrap();
    survive_report_repair(&s, &key[..12], &file);

    let s = Setup::new();
    let (file, key, _) = s.run_entry();
    let bytes = std::fs::read(&file).unwrap();
    std::fs::write(&file, &bytes[..bytes.len() / 2]).unwrap();
    run_skips_with_warning(&s, &key[..12]);
}

#[test]
fn truncated_version_record_is_skipped_and_repaired() {
    let s = Setup::new();
    // A second, intact version, so log has something to list.
    s.p.write("project/in.txt", "second\n");
    let second = s.dvx(&["run"]).ok().version();
    let file = s.version_path(&s.version);
    let bytes = std::fs::read(&file).unwrap();
    std::fs::write(&file, &bytes[..bytes.len() / 2]).unwrap();

    let r = s.dvx(&["log"]);
    assert_eq!(r.code(), 0, "log with one truncated version failed:\n{}", r.stderr());
    assert!(r.stdout().contains(&second), "log does not list the intact version:\n{}", r.stdout());
    assert!(r.stderr().contains(&s.version[..12]), "log does not warn about the truncated version:\n{}", r.stderr());
    let r = s.dvx(&["gc", "--all-workspaces", "--dry-run"]);
    assert_eq!(r.code(), 0, "gc --dry-run with a truncated version failed:\n{}", r.stderr());
    let r = s.dvx(&["show", &s.version[..12]]);
    assert_eq!(r.code(), 2);
    assert!(r.stderr().contains(&s.version[..12]), "{}", r.stderr());

    let s2 = Setup::new();
    let file = s2.version_path(&s2.version);
    let bytes = std::fs::read(&file).unwrap();
    std::fs::write(&file, &bytes[..bytes.len() / 2]).unwrap();
    survive_report_repair(&s2, &s2.version[..12], &file);
}

// ---------------------------------------------------------------- verify

#[test]
fn verify_reports_a_version_whose_object_is_missing() {
    let s = Setup::new();
    // in.txt's bytes are named only by the version (as a source).
    let src = blake3::hash(IN.as_bytes()).to_hex().to_string();
    let obj = s.object_path(&src);
    assert!(obj.exists());
    std::fs::remove_file(&obj).unwrap();
    let r = s.dvx(&["cache", "verify"]);
    assert_eq!(r.code(), 1, "verify missed a version with a missing object:\n{}", r.stdout());
    assert!(r.stdout().contains(&s.version[..12]), "verify does not name version {}:\n{}", s.version, r.stdout());
}
