//! Stages planned in batches (engine/src/run/schedule.rs) and paths stated
//! once a run (engine/src/stated.rs): every stage still has its `start` and
//! end line, in order, downstream after upstream; `-j 1` still does one
//! stage at a time; and what the load and the source check read of an out
//! or a source is what the planner decides on, so a change made between
//! runs is seen.

use crate::support::{Project, Run};

/// Stage lines of a run's stderr, in order: (what, stage).
fn stage_lines(text: &str) -> Vec<(String, String)> {
    text.lines()
        .filter_map(|l| {
            let (time, rest) = l.split_once(' ')?;
            if !(time.len() == 24 && time.ends_with('Z')) {
                return None;
            }
            let what = rest.get(..8)?.trim().to_string();
            let stage = rest.get(9..)?.split("  ").next()?.to_string();
            Some((what, stage))
        })
        .collect()
}

/// `n` stages in chains of 3 (each after the first reads the one before's
/// out), each over a source folder of its own, run once and past the stat
/// cache's racy window.
fn chains(n: usize) -> Project {
    let p = Project::new();
    let mut yaml = String::from("stages:\n");
    for i in 0..n {
        p.write(&format!("src/d{i}/f.txt"), &format!("{i}\n"));
        let mut deps = vec![format!("src/d{i}")];
        if i % 3 != 0 {
            deps.push(format!("out/o{}.txt", i - 1));
        }
        yaml += &format!(
            "  s{i}:\n    deps: [{}]\n    outs: [out/o{i}.txt]\n    cmd: cat src/d{i}/* > out/o{i}.txt 2>/dev/null || cat src/d{i} > out/o{i}.txt\n",
            deps.join(", ")
        );
    }
    p.write("dvx.yaml", &yaml);
    std::thread::sleep(std::time::Duration::from_millis(250));
    p.dvx(&["run"]).ok();
    std::thread::sleep(std::time::Duration::from_millis(250));
    p
}

/// Each of `n` stages has one `start` and one end line, the start first,
/// and a stage starts after the stage it reads ended; the end words, by stage.
fn check_lines(run: &Run, n: usize) -> Vec<String> {
    let lines = stage_lines(&run.stderr());
    let mut start = vec![None; n];
    let mut end: Vec<Option<(usize, String)>> = vec![None; n];
    for (at, (what, stage)) in lines.iter().enumerate() {
        let i: usize = stage.trim_start_matches('s').parse().unwrap();
        if what == "start" {
            assert!(start[i].replace(at).is_none(), "two starts of {stage}:\n{}", run.stderr());
        } else {
            assert!(start[i].is_some_and(|s| s < at), "{stage} ended before it started:\n{}", run.stderr());
            assert!(end[i].replace((at, what.clone())).is_none(), "two ends of {stage}:\n{}", run.stderr());
        }
    }
    for i in 0..n {
        let (s, (e, _)) = (start[i].expect("started"), end[i].clone().expect("ended"));
        assert!(s < e);
        if i % 3 != 0 {
            let up_end = end[i - 1].as_ref().unwrap().0;
            assert!(up_end < s, "s{i} started before s{} ended:\n{}", i - 1, run.stderr());
        }
    }
    end.into_iter().map(|e| e.unwrap().1).collect()
}

#[test]
fn every_stage_has_its_lines_in_order_in_a_no_op_and_a_partial_run() {
    let n = 600;
    let p = chains(n);
    let run = p.dvx(&["run"]).ok();
    assert!(check_lines(&run, n).iter().all(|w| w == "cached"), "{}", run.stderr());
    assert!(run.stdout().contains("version: "), "{}", run.stdout());

    // One stage in the middle of a chain changes: it and the one after it run, in order.
    p.write("src/d301/f.txt", "changed\n");
    let run = p.dvx(&["run"]).ok();
    let ends = check_lines(&run, n);
    for (i, w) in ends.iter().enumerate() {
        let want = if i == 301 || i == 302 { "ran" } else { "cached" };
        assert_eq!(w, want, "s{i}:\n{}", run.stderr());
    }
    assert_eq!(p.read("out/o301.txt"), "changed\n");
}

#[test]
fn one_job_does_one_stage_at_a_time() {
    let n = 12;
    let p = chains(n);
    for i in [1, 4, 9] {
        p.write(&format!("src/d{i}/f.txt"), &format!("new {i}\n"));
    }
    let run = p.dvx(&["run", "-j", "1"]).ok();
    check_lines(&run, n);
    // Each `start` is followed by the same stage's end.
    let lines = stage_lines(&run.stderr());
    for pair in lines.chunks(2) {
        assert_eq!(pair[0].0, "start", "{}", run.stderr());
        assert_eq!(pair[0].1, pair[1].1, "stages overlapped with -j 1:\n{}", run.stderr());
    }
}

#[test]
fn outs_and_sources_changed_between_runs_are_seen() {
    let n = 9;
    let p = chains(n);
    p.dvx(&["run"]).ok();
    let before = p.read("out/o4.txt");

    // An out removed, one edited, one made a symlink to other bytes, a
    // source folder made a file: each is seen by the next run.
    std::fs::remove_file(p.path("out/o3.txt")).unwrap();
    p.write("out/o4.txt", "edited\n");
    std::fs::remove_file(p.path("out/o5.txt")).unwrap();
    std::os::unix::fs::symlink(p.path("out/o3.txt.other"), p.path("out/o5.txt")).unwrap();
    p.write("out/o3.txt.other", "not it\n");
    std::fs::remove_dir_all(p.path("src/d6")).unwrap();
    p.write("src/d6", "a file now\n");

    let text = p.dvx(&["status"]).ok().stdout();
    let named: Vec<&str> = text.lines().filter_map(|l| l.split_once(':').map(|(s, _)| s)).collect();
    // s7 reads s6's out, which would change, and s8 reads s7's.
    assert_eq!(named, ["s3", "s4", "s5", "s6", "s7", "s8"], "{text}");
    let run = p.dvx(&["run"]).ok();
    let ends = check_lines(&run, n);
    let want = ["cached", "cached", "cached", "cached", "cached", "cached", "ran", "ran", "cut off"];
    assert_eq!(ends, want, "{}", run.stderr());
    assert_eq!(p.read("out/o6.txt"), "a file now\n");
    assert_eq!(p.read("out/o3.txt"), "3\n");
    assert_eq!(p.read("out/o4.txt"), before);
    assert_eq!(p.read("out/o5.txt"), "5\n");
    assert!(!p.path("out/o5.txt").is_symlink());
    // And a no-op after it is one.
    let run = p.dvx(&["run"]).ok();
    assert!(check_lines(&run, n).iter().all(|w| w == "cached"), "{}", run.stderr());
}
