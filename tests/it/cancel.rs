//! Cancellation, end to end: a failing stage stops the run early (unless
//! `--keep-going`), SIGINT stops it cleanly, and nothing cancelled is cached.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::Project;

/// `boom` fails after a second; `slow` sleeps 30 s unless `quick` exists,
/// noting its shell's pid (its process group) first.
fn boom_and_slow(p: &Project, boom: &str) {
    p.write(
        "dvx.yaml",
        &format!(
            r#"stages:
  boom:
    kind: cmd
    cmd: "{boom}"
  slow:
    kind: cmd
    outs: [slow.txt]
    cmd: echo $$ > slow.pid; if [ ! -e quick ]; then sleep 30; fi; echo done > slow.txt
"#
        ),
    );
}

/// Whether any process of group `pgid` is still there after a few seconds
/// (a killed orphan takes a moment to be reaped by init).
fn group_alive(pgid: i32) -> bool {
    let t0 = Instant::now();
    // SAFETY: signal 0 only checks that the group exists.
    while unsafe { libc::kill(-pgid, 0) } == 0 {
        if t0.elapsed() > Duration::from_secs(5) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

fn pid_in(p: &Project, rel: &str) -> i32 {
    p.read(rel).trim().parse().unwrap()
}

#[test]
fn a_failure_cancels_the_stages_in_flight_and_they_are_not_cached() {
    let p = Project::new();
    boom_and_slow(&p, "sleep 1; exit 1");
    let t0 = Instant::now();
    let r = p.dvx(&["run", "--json", "-j", "2"]);
    let took = t0.elapsed();
    assert_eq!(r.code(), 1, "{}", r.stderr());
    assert!(took < Duration::from_secs(15), "the run took {took:?}: `slow` ran to its end");
    assert_eq!(r.status_of("boom"), "failed");
    assert_eq!(r.status_of("slow"), "cancelled", "{}", r.stdout());
    let v: serde_json::Value = serde_json::from_str(&r.stdout()).unwrap();
    assert_eq!(v["stopped"], "stage `boom` failed");
    assert_eq!(v["version"], serde_json::Value::Null);
    assert!(!p.path("slow.txt").exists());
    assert!(!group_alive(pid_in(&p, "slow.pid")), "`slow`'s sleep was left running");

    // Not cached: fixed, the next run executes `slow` (quickly now).
    boom_and_slow(&p, "true");
    p.write("quick", "");
    let r = p.dvx(&["run", "--json"]).ok();
    assert_eq!(r.status_of("slow"), "ran");
    assert_eq!(p.read("slow.txt"), "done\n");
}

#[test]
fn the_table_names_cancelled_stages() {
    let p = Project::new();
    boom_and_slow(&p, "sleep 1; exit 1");
    let r = p.dvx(&["run", "-j", "2"]);
    assert_eq!(r.code(), 1);
    assert!(r.stdout().contains("slow                         cancelled"), "{}", r.stdout());
    assert!(
        r.stderr().contains("cancelled (stage `boom` failed): `slow` (not cached; the next run executes them)"),
        "{}",
        r.stderr()
    );
    assert!(r.stderr().contains("stage `boom` failed: command failed (exit code 1)"), "{}", r.stderr());
}

#[test]
fn keep_going_lets_the_other_stages_finish() {
    let p = Project::new();
    p.write(
        "dvx.yaml",
        r#"stages:
  boom:
    kind: cmd
    cmd: exit 1
  slow:
    kind: cmd
    outs: [slow.txt]
    cmd: sleep 2; echo done > slow.txt
"#,
    );
    let r = p.dvx(&["run", "--json", "-j", "2", "--keep-going"]);
    assert_eq!(r.code(), 1);
    assert_eq!(r.status_of("boom"), "failed");
    assert_eq!(r.status_of("slow"), "ran");
    assert_eq!(p.read("slow.txt"), "done\n");
}

#[test]
fn sigint_stops_the_run_cleanly() {
    let p = Project::new();
    p.write(
        "dvx.yaml",
        r#"stages:
  first:
    kind: cmd
    outs: [first.txt]
    cmd: echo one > first.txt
  slow:
    kind: cmd
    deps: [first.txt]
    outs: [slow.txt]
    cmd: echo $$ > slow.pid; sleep 30; echo done > slow.txt
"#,
    );
    let child = Command::new(env!("CARGO_BIN_EXE_dvx"))
        .args(["run"])
        .current_dir(p.dir.path())
        .env_remove("DVX_CACHE_DIR")
        .env_remove("RUST_LOG")
        .env("NO_COLOR", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let t0 = Instant::now();
    while !p.path("slow.pid").exists() || p.read("slow.pid").trim().is_empty() {
        assert!(t0.elapsed() < Duration::from_secs(30), "`slow` never started");
        std::thread::sleep(Duration::from_millis(50));
    }
    let pgid = pid_in(&p, "slow.pid");
    // SAFETY: a signal to the child we started.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let t1 = Instant::now();
    let out = child.wait_with_output().unwrap();
    assert!(t1.elapsed() < Duration::from_secs(15), "dvx took {:?} to stop", t1.elapsed());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "{stderr}");
    assert!(stderr.contains("dvx: SIGINT: stopping"), "{stderr}");
    assert!(stderr.contains("cancelled (interrupted by SIGINT): `slow`"), "{stderr}");
    assert!(stderr.contains("interrupted by SIGINT; no version written"), "{stderr}");
    assert!(!group_alive(pgid), "`slow`'s sleep was left running");

    // The cache is sound and this process left no lease behind.
    p.dvx(&["cache", "verify"]).ok();
    let leases = std::fs::read_dir(p.path(".dvx/cache/leases-v1"))
        .map(|d| d.flatten().filter(|e| e.file_name().to_string_lossy().ends_with(".lease")).count())
        .unwrap_or(0);
    assert_eq!(leases, 0, "a lease was left in the cache");

    // What finished stays cached; the cancelled stage runs again.
    let r = p.dvx(&["run", "--json", "--dry-run"]).ok();
    let v: serde_json::Value = serde_json::from_str(&r.stdout()).unwrap();
    let action = |name: &str| {
        v["stages"].as_array().unwrap().iter().find(|s| s["name"] == name).unwrap()["action"].clone()
    };
    assert_eq!(action("first"), "up-to-date");
    assert_eq!(action("slow"), "run");
}
