//! Versions: log, show, checkout, reproduce.

use crate::support::Project;

fn pipeline(p: &Project, factor: u32) {
    p.write(
        "dvx.yaml",
        &format!(
            "name: ver\nstages:\n  mul:\n    deps: [in.txt]\n    params: {{factor: {factor}}}\n    outs: [out.txt]\n    cmd: for i in $(seq ${{params.factor}}); do cat in.txt; done > out.txt\n"
        ),
    );
}

#[test]
fn checkout_restores_older_bytes() {
    let p = Project::new();
    p.write("in.txt", "ab\n");
    pipeline(&p, 1);
    let v1 = p.dvx(&["run"]).ok().version();
    pipeline(&p, 3);
    let v2 = p.dvx(&["run"]).ok().version();
    assert_ne!(v1, v2);
    assert_eq!(p.read("out.txt"), "ab\nab\nab\n");
    p.dvx(&["checkout", &v1[..8]]).ok();
    assert_eq!(p.read("out.txt"), "ab\n");
    // --to restores outputs and sources into another folder.
    let to = p.path("elsewhere");
    p.dvx(&["checkout", &v2, "--to", to.to_str().unwrap()]).ok();
    assert_eq!(p.read("elsewhere/out.txt"), "ab\nab\nab\n");
    assert_eq!(p.read("elsewhere/in.txt"), "ab\n");

    let log = p.dvx(&["log"]).ok().stdout();
    assert_eq!(log.lines().count(), 2, "{log}");
    assert!(log.contains(&v1) && log.contains(&v2));
    let show = p.dvx(&["show", &v2[..10]]).ok().stdout();
    assert!(show.contains("mul (cmd)"), "{show}");
    assert!(show.contains("out.txt"), "{show}");

    let bad = p.dvx(&["show", "zzzz"]);
    assert_eq!(bad.code(), 2);
    assert!(bad.stderr().contains("no version starts with `zzzz`"), "{}", bad.stderr());
}

#[test]
fn same_data_same_version_hash() {
    let a = Project::new();
    let b = Project::new();
    for p in [&a, &b] {
        p.write("in.txt", "ab\n");
        pipeline(p, 2);
    }
    assert_eq!(a.dvx(&["run"]).ok().version(), b.dvx(&["run"]).ok().version());
}

#[test]
fn reproduce_identical_and_differs() {
    let p = Project::new();
    p.write("in.txt", "ab\n");
    pipeline(&p, 2);
    let v = p.dvx(&["run"]).ok().version();
    let r = p.dvx(&["reproduce", &v]).ok().stdout();
    assert!(r.contains("mul") && r.contains("identical"), "{r}");
    assert!(r.contains("reproduced: every stage identical"));

    let q = Project::new();
    q.write("dvx.yaml", "stages:\n  clock:\n    outs: [now.txt]\n    cmd: date +%s%N > now.txt\n");
    let v = q.dvx(&["run"]).ok().version();
    let r = q.dvx(&["reproduce", &v]);
    assert_eq!(r.code(), 1);
    assert!(r.stdout().contains("differs (now.txt)"), "{}", r.stdout());
}
