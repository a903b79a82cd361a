//! The resolved pipeline kept in `.dvx/` (engine/src/spec/cached.rs): used
//! only while everything resolving read is as it was; what resolving
//! checks on the filesystem is checked on every load; a damaged or
//! foreign file is a parse, never a wrong pipeline.

use std::path::PathBuf;

use crate::support::{Project, Run};

const HIT: &str = "resolved pipeline from .dvx/";

/// `dvx -vv ARGS`, whose debug log tells whether the pipeline came from `.dvx/`.
fn verbose(p: &Project, args: &[&str]) -> Run {
    let mut all = vec!["-vv"];
    all.extend_from_slice(args);
    p.dvx(&all)
}

fn hit(r: &Run) -> bool {
    r.stderr().contains(HIT)
}

/// The cache files in `.dvx/`.
fn kept(p: &Project) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(p.path(".dvx"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|f| f.file_name().unwrap().to_string_lossy().starts_with("pipeline-"))
        .collect();
    v.sort();
    v
}

/// A project whose pipeline is kept: run once (making `.dvx/`), then
/// loaded once more (keeping it), and the next load a hit.
fn warm(p: &Project) {
    p.dvx(&["run"]).ok();
    let r = verbose(p, &["status"]).ok();
    assert!(!hit(&r), "nothing kept yet:\n{}", r.stderr());
    assert_eq!(kept(p).len(), 1);
    let r = verbose(p, &["status"]).ok();
    assert!(hit(&r), "kept:\n{}", r.stderr());
}

#[test]
fn an_edit_is_seen_and_a_hit_gives_the_same_answers() {
    let p = Project::new();
    p.write("src/a.txt", "a\n");
    p.write("dvx.yaml", "stages:\n  s:\n    deps: [src/a.txt]\n    outs: [out/s.txt]\n    cmd: echo one > out/s.txt\n");
    warm(&p);
    let before = p.dvx(&["status", "--json"]).ok().stdout();
    let r = verbose(&p, &["run", "--json"]).ok();
    assert!(hit(&r));
    assert_eq!(r.status_of("s"), "cached");
    assert_eq!(p.dvx(&["status", "--json"]).ok().stdout(), before);

    // The same length, other bytes: parsed again, the new command run.
    p.write("dvx.yaml", "stages:\n  s:\n    deps: [src/a.txt]\n    outs: [out/s.txt]\n    cmd: echo two > out/s.txt\n");
    let r = verbose(&p, &["run", "--json"]).ok();
    assert!(!hit(&r), "{}", r.stderr());
    assert_eq!(r.status_of("s"), "ran");
    assert_eq!(p.read("out/s.txt"), "two\n");
}

#[test]
fn an_imported_file_edited_or_swapped_behind_a_symlink_is_seen() {
    let p = Project::new();
    p.write("one.yaml", "stages:\n  s:\n    outs: [o.txt]\n    cmd: echo one > o.txt\n");
    p.write("two.yaml", "stages:\n  s:\n    outs: [o.txt]\n    cmd: echo two > o.txt\n");
    std::os::unix::fs::symlink("one.yaml", p.path("part.yaml")).unwrap();
    p.write("dvx.yaml", "imports: [part.yaml]\nstages: {}\n");
    warm(&p);
    assert_eq!(p.read("o.txt"), "one\n");

    // The importing file's bytes are the same; the import is another file.
    std::fs::remove_file(p.path("part.yaml")).unwrap();
    std::os::unix::fs::symlink("two.yaml", p.path("part.yaml")).unwrap();
    let r = verbose(&p, &["run"]).ok();
    assert!(!hit(&r), "{}", r.stderr());
    assert_eq!(p.read("o.txt"), "two\n");

    // The imported file edited in place.
    p.dvx(&["status"]).ok();
    p.write("two.yaml", "stages:\n  s:\n    outs: [o.txt]\n    cmd: echo 2wo > o.txt\n");
    p.dvx(&["run"]).ok();
    assert_eq!(p.read("o.txt"), "2wo\n");
}

#[test]
fn an_out_folder_made_a_symlink_since_the_last_parse_is_still_refused() {
    let p = Project::new();
    std::fs::create_dir(p.path("link")).unwrap();
    p.write("dvx.yaml", "stages:\n  a:\n    outs: [link/x]\n    cmd: touch link/x\n");
    warm(&p);

    let outside = tempfile::tempdir().unwrap();
    std::fs::remove_dir_all(p.path("link")).unwrap();
    std::os::unix::fs::symlink(outside.path(), p.path("link")).unwrap();
    for args in [&["run"][..], &["status"]] {
        let r = p.dvx(args);
        assert_eq!(r.code(), 2, "{args:?}: {}", r.stderr());
        assert!(r.stderr().contains("out `link/x` escapes the pipeline's folder through a symlink"), "{}", r.stderr());
    }
    assert!(!outside.path().join("x").exists());
}

#[test]
fn a_wdir_made_a_symlink_since_the_last_parse_is_still_refused() {
    let p = Project::new();
    std::fs::create_dir_all(p.path("proj/work")).unwrap();
    p.write("proj/dvx.yaml", "wdir: work\nstages:\n  a:\n    outs: [x]\n    cmd: touch x\n");
    let pipeline = p.path("proj/dvx.yaml");
    let pipeline = pipeline.to_str().unwrap();
    p.dvx(&["run", pipeline]).ok();
    p.dvx(&["status", pipeline]).ok();
    assert!(hit(&verbose(&p, &["status", pipeline]).ok()));

    let elsewhere = tempfile::tempdir().unwrap();
    std::fs::remove_dir_all(p.path("proj/work")).unwrap();
    std::os::unix::fs::symlink(elsewhere.path(), p.path("proj/work")).unwrap();
    let r = p.dvx(&["run", pipeline]);
    assert_eq!(r.code(), 2, "{}", r.stderr());
    assert!(r.stderr().contains("wdir `work` leads outside the pipeline's folder through a symlink"), "{}", r.stderr());
    assert!(!elsewhere.path().join("x").exists());
}

#[test]
fn a_config_that_appears_where_an_out_is_is_seen() {
    let p = Project::new();
    std::fs::create_dir(p.path(".dvx")).unwrap();
    // No dvx.toml yet: an out by that name is the stage's to write.
    p.write("dvx.yaml", "stages:\n  a:\n    outs: [dvx.toml]\n    cmd: touch dvx.toml\n");
    p.dvx(&["status"]).ok();
    assert!(hit(&verbose(&p, &["status"]).ok()));
    // The user writes a config; the pipeline's bytes did not change.
    p.write("dvx.toml", "");
    let r = p.dvx(&["status"]);
    assert_eq!(r.code(), 2, "{}", r.stderr());
    assert!(r.stderr().contains("out `dvx.toml` is the project's config"), "{}", r.stderr());
}

#[test]
fn a_mistake_is_never_kept_and_errors_found_later_point_into_the_yaml_on_a_hit() {
    let p = Project::new();
    std::fs::create_dir(p.path(".dvx")).unwrap();
    // A mistake resolving finds: reported every time, nothing kept.
    p.write("dvx.yaml", "stages:\n  a:\n    outs: [o]\n    cmd: echo ${params.m} > o\n");
    for _ in 0..2 {
        let r = p.dvx(&["status"]);
        assert_eq!(r.code(), 2);
        assert!(r.stderr().contains("unknown name `params.m` in `cmd`"), "{}", r.stderr());
        assert!(kept(&p).is_empty());
    }
    // One the graph finds after loading (two stages in a cycle): the
    // pipeline loads, is kept, and the error read from it points at the
    // same line on a hit.
    p.write(
        "dvx.yaml",
        "stages:\n  a:\n    deps: [b.txt]\n    outs: [a.txt]\n    cmd: cp b.txt a.txt\n  b:\n    deps: [a.txt]\n    outs: [b.txt]\n    cmd: cp a.txt b.txt\n",
    );
    let first = verbose(&p, &["status"]);
    let second = verbose(&p, &["status"]);
    assert!(!hit(&first) && hit(&second), "{}\n{}", first.stderr(), second.stderr());
    for r in [&first, &second] {
        assert_eq!(r.code(), 2);
        assert!(r.stderr().contains("the stages form a cycle"), "{}", r.stderr());
        assert!(r.stderr().contains("[dvx.yaml:2:3]"), "{}", r.stderr());
    }
    let plain = |r: &Run| r.stderr().lines().filter(|l| !l.contains("DEBUG")).collect::<Vec<_>>().join("\n");
    assert_eq!(plain(&first), plain(&second));
}

#[test]
fn a_damaged_cut_or_foreign_file_is_a_parse_never_a_wrong_pipeline() {
    let p = Project::new();
    p.write("dvx.yaml", "stages:\n  s:\n    outs: [o.txt]\n    cmd: echo mine > o.txt\n");
    warm(&p);
    let file = kept(&p).pop().unwrap();
    let good = std::fs::read(&file).unwrap();
    let expected = p.dvx(&["status", "--json"]).ok().stdout();

    // Another project's pipeline, kept under this one's name.
    let q = Project::new();
    q.write("dvx.yaml", "stages:\n  t:\n    outs: [o.txt]\n    cmd: echo theirs > o.txt\n");
    warm(&q);
    let foreign = std::fs::read(kept(&q).pop().unwrap()).unwrap();

    let mut flipped = good.clone();
    let mid = flipped.len() / 2;
    flipped[mid] ^= 0x10;
    let mut lying = good.clone();
    let last = lying.len() - 1;
    lying[last] ^= 1; // the body changed, the checksum not
    let cases: [(&str, Vec<u8>); 6] = [
        ("a flipped bit", flipped),
        ("a body that does not match its checksum", lying),
        ("cut in half", good[..good.len() / 2].to_vec()),
        ("empty", Vec::new()),
        ("not dvx's", b"\x00\x01garbage".repeat(100)),
        ("another project's", foreign),
    ];
    for (what, bytes) in cases {
        std::fs::write(&file, &bytes).unwrap();
        let r = verbose(&p, &["status", "--json"]).ok();
        assert!(!hit(&r), "{what}");
        assert_eq!(r.stdout(), expected, "{what}");
        // Written back whole: the next load is a hit again.
        assert!(hit(&verbose(&p, &["status"]).ok()), "{what}");
    }
}

#[test]
fn another_current_folder_names_files_as_seen_from_it() {
    let p = Project::new();
    // Two stages writing one out: an error the graph finds after loading.
    p.write(
        "ok/dvx.yaml",
        "stages:\n  a:\n    outs: [a.txt]\n    cmd: touch a.txt\n  b:\n    outs: [a.txt]\n    cmd: touch a.txt\n",
    );
    std::fs::create_dir(p.path("ok/.dvx")).unwrap();
    // Loaded (and kept) from the project's folder, then from `ok/`: the
    // error names the file as seen from where dvx runs.
    for _ in 0..2 {
        let r = p.dvx(&["status", "ok/dvx.yaml"]);
        assert_eq!(r.code(), 2);
        assert!(r.stderr().contains("[ok/dvx.yaml:3:12]"), "{}", r.stderr());
    }
    for _ in 0..2 {
        let r = p.dvx_in(&p.path("ok"), &["status", "dvx.yaml"]);
        assert_eq!(r.code(), 2);
        assert!(r.stderr().contains("[dvx.yaml:3:12]"), "{}", r.stderr());
    }
}

#[test]
fn a_kind_whose_params_depend_on_its_outs_plans_the_same_on_a_hit() {
    // `split` prepares its params for its outs when the stage is checked;
    // a hit checks it too, so its fingerprint sees three outs, not the
    // fewest it takes.
    let p = Project::new();
    let seed: String = (1..=24).map(|i| format!("{{\"id\": {i}, \"text\": \"t{i}\"}}\n")).collect();
    p.write("seed.jsonl", &seed);
    p.write(
        "dvx.yaml",
        "stages:\n  split:\n    kind: split\n    deps: [seed.jsonl]\n    outs: [train.jsonl, val.jsonl, test.jsonl]\n    params: {ratio: [0.6, 0.2, 0.2], seed: 1}\n",
    );
    warm(&p);
    let r = verbose(&p, &["run", "--json"]).ok();
    assert!(hit(&r));
    assert_eq!(r.status_of("split"), "cached");
}
