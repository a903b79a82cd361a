//! Work proportional to the change (docs/incremental.md): after an append,
//! a deletion in the middle or an edit of one record, a record-wise stage
//! processes only the new or changed records, and its outputs (and the
//! version) are byte-identical to a full run from scratch on the same input.

use crate::support::Project;

const PIPELINE: &str = "\
stages:
  keep:
    kind: filter
    deps: [data.jsonl]
    outs: [kept.jsonl, rejected.jsonl]
    params:
      rules:
        a: {contains: good}
        b: {field: score, ge: 0.5}
      default: {min_len: 20}
";

/// `n` records in three categories, some written with spaces (so their
/// compact form is not the input line), some failing their rule.
fn record(i: usize) -> String {
    let cat = ["a", "b", "c"][i % 3];
    let word = if i % 4 == 0 { "bad" } else { "good" };
    let score = (i * 37 % 100) as f64 / 100.0;
    if i % 5 == 0 {
        format!("{{\"category\": \"{cat}\", \"instruction\": \"task {i} é\", \"output\": \"{word} answer {i}\", \"score\": {score}}}")
    } else {
        format!(r#"{{"category":"{cat}","instruction":"task {i}","output":"{word} answer {i}","score":{score}}}"#)
    }
}

fn write_data(p: &Project, lines: &[String]) {
    p.write("data.jsonl", &lines.iter().map(|l| format!("{l}\n")).collect::<String>());
}

/// The `records processed: N` figure from a stage's log.
fn processed(p: &Project, stage: &str) -> usize {
    let log = p.dvx(&["logs", stage]).ok().stdout();
    let line = log.lines().find(|l| l.starts_with("records processed: ")).unwrap_or_else(|| panic!("no figure in {log}"));
    line["records processed: ".len()..].split(',').next().unwrap().parse().unwrap()
}

/// The outputs and version of a full run on `lines` in a fresh project (its own cache).
fn reference(lines: &[String]) -> (String, String, String) {
    let r = Project::new();
    r.write("dvx.yaml", PIPELINE);
    write_data(&r, lines);
    let v = r.dvx(&["run"]).ok().version();
    assert_eq!(processed(&r, "keep"), lines.len());
    (r.read("kept.jsonl"), r.read("rejected.jsonl"), v)
}

#[test]
fn filter_processes_only_changed_records_and_matches_a_full_run() {
    let p = Project::new();
    p.write("dvx.yaml", PIPELINE);
    let mut lines: Vec<String> = (0..9000).map(record).collect();
    write_data(&p, &lines);
    p.dvx(&["run"]).ok();
    assert_eq!(processed(&p, "keep"), 9000);

    let check = |lines: &[String], changed: usize, what: &str| {
        write_data(&p, lines);
        let v = p.dvx(&["run"]).ok().version();
        assert_eq!(processed(&p, "keep"), changed, "{what}");
        let (kept, rejected, version) = reference(lines);
        assert!(p.read("kept.jsonl") == kept, "{what}: kept differs from a full run");
        assert!(p.read("rejected.jsonl") == rejected, "{what}: rejected differs from a full run");
        assert_eq!(v, version, "{what}");
    };
    lines.extend((9000..9300).map(record));
    check(&lines, 300, "append");
    lines.remove(4321);
    check(&lines, 0, "delete in the middle");
    lines[2222] = record(100_000);
    check(&lines, 1, "edit one record");
}

#[test]
fn reuse_false_processes_every_record() {
    let p = Project::new();
    p.write("dvx.yaml", PIPELINE);
    write_data(&p, &(0..3000).map(record).collect::<Vec<_>>());
    p.dvx(&["run"]).ok();
    let kept = p.read("kept.jsonl");
    p.write("dvx.yaml", &format!("{PIPELINE}      reuse: false\n"));
    p.dvx(&["run"]).ok();
    assert_eq!(processed(&p, "keep"), 3000);
    assert!(p.read("kept.jsonl") == kept);
}
