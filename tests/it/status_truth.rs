//! `dvx status` tells the truth (issue 12 §7): a stage whose last run
//! failed says so; after `dvx checkout OLD` it says the workspace holds OLD
//! and what differs from the pipeline as written; a source that grew says
//! by how many bytes and lines.

use insta::assert_snapshot;

use crate::support::{Project, Redact};

fn pipeline(suffix: &str, fail: bool) -> String {
    let tail = if fail { "; echo 'no GPU found' >&2; exit 3" } else { "" };
    format!(
        r#"name: truth
stages:
  clean:
    deps: [raw.jsonl]
    outs: [clean.jsonl]
    params: {{suffix: "{suffix}"}}
    cmd: grep -v '^#' raw.jsonl > clean.jsonl && echo ${{params.suffix}} >> clean.jsonl{tail}
  count:
    deps: [clean.jsonl]
    outs: [count.txt]
    cmd: wc -l < clean.jsonl > count.txt
"#
    )
}

fn project() -> Project {
    let p = Project::new();
    p.write("raw.jsonl", "{\"a\": 1}\n{\"a\": 2}\n# note\n").write("dvx.yaml", &pipeline("x", false));
    p
}

#[track_caller]
fn status(p: &Project, r: &mut Redact) -> String {
    let run = p.dvx(&["status"]);
    assert_eq!(run.code(), 0, "{}", run.stderr());
    run.snapshot(r)
}

#[test]
fn a_stage_whose_last_run_failed_says_so() {
    let p = project();
    p.write("dvx.yaml", &pipeline("x", true));
    let mut r = Redact::new(&p);
    assert_eq!(p.dvx(&["run"]).code(), 1);
    assert_snapshot!("status_failed_last_run", status(&p, &mut r));
    let json: serde_json::Value = serde_json::from_str(&p.dvx(&["status", "--json"]).ok().stdout()).unwrap();
    assert_eq!(
        json["stages"][0]["reasons"][0],
        serde_json::json!({"reason": "failed_last_run", "message": "command failed (exit code 3)"})
    );
    // Fixed, it runs and the failure is forgotten.
    p.write("dvx.yaml", &pipeline("x", false));
    p.dvx(&["run"]).ok();
    assert_eq!(p.dvx(&["status"]).ok().stdout(), "everything is up to date\n");
}

#[test]
fn after_checkout_status_names_the_version_and_what_differs() {
    let p = project();
    let v1 = p.dvx(&["run"]).ok().version();
    p.write("dvx.yaml", &pipeline("y", false));
    p.dvx(&["run"]).ok();
    let mut r = Redact::new(&p);

    p.dvx(&["checkout", &v1[..8]]).ok();
    // Not "output modified in workspace" for every stage: the param that differs.
    assert_snapshot!("status_after_checkout_old", status(&p, &mut r));
    // Back to the pipeline as written, then status is plain again.
    p.dvx(&["run"]).ok();
    assert_eq!(p.dvx(&["status"]).ok().stdout(), "everything is up to date\n");

    // Checking out the version the pipeline as written makes: nothing differs.
    p.write("dvx.yaml", &pipeline("x", false));
    p.dvx(&["checkout", &v1[..8]]).ok();
    assert_snapshot!("status_after_checkout_same", status(&p, &mut r));
}

#[test]
fn appended_records_are_counted() {
    let p = project();
    p.dvx(&["run"]).ok();
    let mut r = Redact::new(&p);
    let mut raw = p.read("raw.jsonl");
    raw.push_str("{\"a\": 3}\n{\"a\": 4}\n{\"a\": 5}\n");
    p.write("raw.jsonl", &raw);
    assert_snapshot!("status_appended_records", status(&p, &mut r));
    let json: serde_json::Value = serde_json::from_str(&p.dvx(&["status", "--json"]).ok().stdout()).unwrap();
    assert_eq!(
        json["stages"][0]["reasons"][0]["size"],
        serde_json::json!({"old_bytes": 25, "new_bytes": 52, "lines": [3, 6]})
    );
}
