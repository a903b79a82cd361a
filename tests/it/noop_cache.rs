//! The stat cache a no-op run reads (`.dvx/stat-v4.txt`) is untrusted: a
//! damaged, cut or old-format file means files are hashed again, never a
//! wrong hash, a panic or a stage wrongly kept.

use crate::support::Project;

/// A pipeline of 3 stages over 3 source folders, run once, past the racy window.
fn project() -> Project {
    let p = Project::new();
    let mut yaml = String::from("stages:\n");
    for i in 0..3 {
        for j in 0..3 {
            p.write(&format!("src/d{i}/f{j}.txt"), &format!("{i} {j}\n"));
        }
        yaml += &format!(
            "  s{i}:\n    deps: [src/d{i}]\n    outs: [out/o{i}.txt]\n    cmd: cat src/d{i}/* > out/o{i}.txt\n"
        );
    }
    p.write("dvx.yaml", &yaml);
    // Sources and outputs older than the stat cache's racy window.
    std::thread::sleep(std::time::Duration::from_millis(250));
    p.dvx(&["run"]).ok();
    std::thread::sleep(std::time::Duration::from_millis(250));
    p.dvx(&["run"]).ok();
    p
}

/// `dvx run` with its debug log: (stage statuses, files whose contents it read).
fn run_counting(p: &Project) -> (Vec<(String, String)>, usize) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_dvx"))
        .args(["run", "--json"])
        .current_dir(p.dir.path())
        .env("RUST_LOG", "dvx_engine=debug")
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    let run = crate::support::Run { out };
    let log = run.stderr();
    assert_eq!(run.code(), 0, "{log}");
    let line = log.lines().find(|l| l.contains("file contents read for hashing")).expect("hash count logged");
    (run.statuses(), line.rsplit("files=").next().unwrap().trim().parse().unwrap())
}

fn stat_file(p: &Project) -> std::path::PathBuf {
    p.path(".dvx/stat-v4.txt")
}

#[test]
fn a_no_op_reads_nothing_with_a_good_stat_cache() {
    let p = project();
    assert!(stat_file(&p).is_file());
    let (statuses, read) = run_counting(&p);
    assert!(statuses.iter().all(|(_, s)| s == "cached"), "{statuses:?}");
    assert_eq!(read, 0);
}

#[test]
fn a_damaged_or_cut_stat_cache_is_hashed_again_not_trusted() {
    let p = project();
    let good = std::fs::read(stat_file(&p)).unwrap();
    let flipped = {
        let mut b = good.clone();
        let i = b.len() / 2;
        b[i] ^= 0x01;
        b
    };
    let damaged: [(&str, Vec<u8>); 4] = [
        ("cut in half", good[..good.len() / 2].to_vec()),
        ("one bit flipped", flipped),
        ("empty", Vec::new()),
        ("not text", vec![0xff; 64]),
    ];
    for (k, (what, bytes)) in damaged.into_iter().enumerate() {
        std::fs::write(stat_file(&p), &bytes).unwrap();
        // An edit the damaged file must not hide: same size, same second,
        // new each time (else its run is restored from the run cache).
        let edit = format!("1 {}\n", k + 5);
        p.write("src/d1/f0.txt", &edit);
        std::thread::sleep(std::time::Duration::from_millis(250));
        let (statuses, read) = run_counting(&p);
        assert_eq!(statuses.iter().filter(|(_, s)| s == "ran").count(), 1, "{what}: {statuses:?}");
        assert!(read >= 9, "{what}: every source read again, {read} read");
        assert_eq!(p.read("out/o1.txt"), format!("{edit}1 1\n1 2\n"), "{what}");
        // Rewritten whole: the next no-op reads nothing (once the new out
        // has left the racy window; it is read once more before that).
        std::thread::sleep(std::time::Duration::from_millis(250));
        run_counting(&p);
        assert_eq!(run_counting(&p).1, 0, "{what}");
        p.write("src/d1/f0.txt", "1 0\n");
        std::thread::sleep(std::time::Duration::from_millis(250));
        run_counting(&p);
    }
}

#[test]
fn an_old_format_stat_cache_is_not_read_and_is_removed() {
    let p = project();
    std::fs::remove_file(stat_file(&p)).unwrap();
    // The earlier format, with a wrong hash for a file that is there: not believed.
    let f = p.path("src/d0/f0.txt").canonicalize().unwrap();
    let m = std::fs::metadata(&f).unwrap();
    use std::os::unix::fs::MetadataExt;
    let line = format!(
        "dvx-stat-v3\n{}\t{}\t{}\t{}\t{}\t{}\t{}\n",
        m.len(),
        m.mtime() as i128 * 1_000_000_000 + m.mtime_nsec() as i128,
        m.ctime() as i128 * 1_000_000_000 + m.ctime_nsec() as i128,
        m.ino(),
        m.dev(),
        "0".repeat(64),
        f.display()
    );
    std::fs::write(p.path(".dvx/stat-v3.txt"), line).unwrap();
    let (statuses, read) = run_counting(&p);
    assert!(statuses.iter().all(|(_, s)| s == "cached"), "{statuses:?}");
    assert!(read >= 9, "sources read again: {read}");
    assert!(!p.path(".dvx/stat-v3.txt").exists(), "the old file is removed once the new one is written");
    assert_eq!(run_counting(&p).1, 0);
}

#[test]
fn a_folder_hash_changed_in_the_stat_cache_is_not_believed() {
    let p = project();
    // Change the manifest hash recorded for `src/d2`, leaving the checksum
    // as it was: believed, it would make s2's dep look changed.
    let text = std::fs::read_to_string(stat_file(&p)).unwrap();
    let d2 = p.path("src/d2").canonicalize().unwrap().display().to_string();
    let edited: String = text
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            if f.len() == 4 && f[0] == "D" && f[3] == d2 {
                let flipped = if f[2].starts_with('0') { "1" } else { "0" };
                format!("D\t{}\t{flipped}{}\t{}\n", f[1], &f[2][1..], f[3])
            } else {
                format!("{l}\n")
            }
        })
        .collect();
    assert_ne!(edited, text, "the folder line is there");
    std::fs::write(stat_file(&p), edited).unwrap();
    let (statuses, read) = run_counting(&p);
    assert!(statuses.iter().all(|(_, s)| s == "cached"), "{statuses:?}");
    assert!(read >= 9, "sources read again: {read}");
}
