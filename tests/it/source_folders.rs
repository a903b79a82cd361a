//! Source folders are listed by the source check without being stated
//! first (engine/src/run.rs `checked_sources`): whatever a source became
//! between runs is still seen, as when it was stated.

use crate::support::Project;

fn project() -> Project {
    let p = Project::new();
    p.write("src/d/a.txt", "a\n");
    p.write("src/d/sub/b.txt", "b\n");
    p.write("other/c.txt", "c\n");
    p.write(
        "dvx.yaml",
        "stages:\n  s:\n    deps: [src/d]\n    outs: [out.txt]\n    cmd: (cat src/d/a.txt 2>/dev/null || cat src/d) > out.txt; echo x >> runs\n",
    );
    p.dvx(&["run"]).ok();
    // Once more, so the next run's answers come from the stat cache.
    assert_eq!(p.dvx(&["run", "--json"]).ok().status_of("s"), "cached");
    p
}

#[test]
fn a_source_folder_edited_inside_emptied_or_swapped_is_seen() {
    let p = project();
    p.write("src/d/sub/b.txt", "B\n");
    let r = p.dvx(&["run", "--json"]).ok();
    assert_eq!(r.status_of("s"), "ran");

    // A file added deep inside.
    p.write("src/d/sub/deeper/n.txt", "n\n");
    assert_eq!(p.dvx(&["run", "--json"]).ok().status_of("s"), "ran");

    // Made a symlink to another folder: its bytes are the dep's now.
    std::fs::remove_dir_all(p.path("src/d")).unwrap();
    std::os::unix::fs::symlink(p.path("other"), p.path("src/d")).unwrap();
    assert_eq!(p.dvx(&["run", "--json"]).ok().status_of("s"), "ran");
    assert_eq!(p.dvx(&["run", "--json"]).ok().status_of("s"), "cached");
    assert_eq!(p.count("runs"), 4);
}

#[test]
fn a_source_folder_made_a_file_or_removed_is_seen() {
    let p = project();
    std::fs::remove_dir_all(p.path("src/d")).unwrap();
    p.write("src/d", "now a file\n");
    let r = p.dvx(&["run", "--json"]).ok();
    assert_eq!(r.status_of("s"), "ran");
    assert_eq!(p.read("out.txt"), "now a file\n");

    std::fs::remove_file(p.path("src/d")).unwrap();
    let r = p.dvx(&["run"]);
    assert_eq!(r.code(), 2, "{}", r.stderr());
    assert!(r.stderr().contains("dep `src/d` of stage `s` does not exist and no stage produces it"), "{}", r.stderr());
}

#[test]
fn a_source_folder_made_a_fifo_is_refused() {
    let p = project();
    std::fs::remove_dir_all(p.path("src/d")).unwrap();
    let status = std::process::Command::new("mkfifo").arg(p.path("src/d")).status().unwrap();
    assert!(status.success());
    let r = p.dvx(&["run"]);
    assert_eq!(r.code(), 2, "{}", r.stderr());
    assert!(r.stderr().contains("dep `src/d` of stage `s` is a FIFO, not a file or folder"), "{}", r.stderr());
}
