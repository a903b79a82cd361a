//! Work proportional to the change (docs/incremental.md): after an append,
//! a deletion in the middle or an edit of one record, a record-wise stage
//! (`filter`, `score`, `validate`, `dedup`, `multiply`, `convert`)
//! processes only the new or changed records, and its outputs (and the
//! version) are byte-identical to a full run from scratch on the same input.

use crate::support::Project;

// `near-stable` has its own seed: with the same sketch settings as `near` it
// would reuse `near`'s sketches (the memo is shared by kind), and how many
// depends on which of the two runs first.
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
  rank:
    kind: score
    deps: [data.jsonl]
    outs: [ranked.jsonl]
    params:
      features: [{feature: words}, {feature: field, field: score, weight: 3}, {feature: questions}]
      top_k: 5000
      score_field: total
  best:
    kind: score
    deps: [data.jsonl]
    outs: [best.jsonl]
    params:
      features: [{feature: keyword_hits, keywords: [good]}, {feature: chars, scale: 7}]
      min_score: 4.5
  check:
    kind: validate
    deps: [data.jsonl]
    outs: [report.json, report.md]
    params: {required_fields: [instruction, output], types: {score: number}, score_field: score}
  near:
    kind: dedup
    deps: [data.jsonl]
    outs: [deduped.jsonl, clusters.jsonl, lineage.jsonl]
    params: {fields: [instruction, output], shingle: {unit: chars, size: 4}, threshold: 0.6}
  near-stable:
    kind: dedup
    deps: [data.jsonl]
    outs: [stable.jsonl]
    params: {fields: [instruction, output], shingle: {unit: chars, size: 4}, threshold: 0.6, stable: true, seed: 7}
  variants:
    kind: multiply
    deps: [data.jsonl]
    outs: [variants.jsonl]
    params: {base: ['Do {instruction}', {prompt: 'Again: {instruction}', answer: '{output}!'}], answer: '{output}', keep: [category]}
  chat:
    kind: convert
    deps: [data.jsonl]
    outs: [chat.jsonl]
    params: {to: messages}
";

/// The outs the reference run compares, and the record-wise stages.
const OUTS: [&str; 12] = [
    "kept.jsonl",
    "rejected.jsonl",
    "ranked.jsonl",
    "best.jsonl",
    "report.json",
    "report.md",
    "deduped.jsonl",
    "clusters.jsonl",
    "lineage.jsonl",
    "stable.jsonl",
    "variants.jsonl",
    "chat.jsonl",
];
const STAGES: [&str; 8] = ["keep", "rank", "best", "check", "near", "near-stable", "variants", "chat"];

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
fn reference(lines: &[String]) -> (Vec<String>, String) {
    let r = Project::new();
    r.write("dvx.yaml", PIPELINE);
    write_data(&r, lines);
    let v = r.dvx(&["run"]).ok().version();
    for s in STAGES {
        assert_eq!(processed(&r, s), lines.len(), "{s}");
    }
    (OUTS.iter().map(|o| r.read(o)).collect(), v)
}

#[test]
fn record_wise_kinds_process_only_changed_records_and_match_a_full_run() {
    let p = Project::new();
    p.write("dvx.yaml", PIPELINE);
    let mut lines: Vec<String> = (0..9000).map(record).collect();
    write_data(&p, &lines);
    p.dvx(&["run"]).ok();
    for s in STAGES {
        assert_eq!(processed(&p, s), 9000, "{s}");
    }

    let check = |lines: &[String], changed: usize, what: &str| {
        write_data(&p, lines);
        let v = p.dvx(&["run"]).ok().version();
        for s in STAGES {
            assert_eq!(processed(&p, s), changed, "{what}: {s}");
        }
        let (outs, version) = reference(lines);
        for (o, expected) in OUTS.iter().zip(outs) {
            assert!(p.read(o) == expected, "{what}: {o} differs from a full run");
        }
        assert_eq!(v, version, "{what}");
    };
    lines.extend((9000..9300).map(record));
    check(&lines, 300, "append");
    lines.remove(4321);
    check(&lines, 0, "delete in the middle");
    lines[2222] = record(100_000);
    check(&lines, 1, "edit one record");
    assert!(p.read("lineage.jsonl").lines().count() > 100, "the dedup stages see duplicates");
}

#[test]
fn reuse_false_processes_every_record() {
    let p = Project::new();
    let pipeline = "stages:\n  keep:\n    kind: filter\n    deps: [data.jsonl]\n    outs: [kept.jsonl]\n    \
                    params:\n      rules: {a: {contains: good}}\n";
    p.write("dvx.yaml", pipeline);
    write_data(&p, &(0..3000).map(record).collect::<Vec<_>>());
    p.dvx(&["run"]).ok();
    let kept = p.read("kept.jsonl");
    p.write("dvx.yaml", &format!("{pipeline}      reuse: false\n"));
    p.dvx(&["run"]).ok();
    assert_eq!(processed(&p, "keep"), 3000);
    assert!(p.read("kept.jsonl") == kept);
}

#[test]
fn stable_stratified_split_moves_no_record_on_append() {
    let p = Project::new();
    p.write(
        "dvx.yaml",
        "stages:\n  split:\n    kind: split\n    deps: [data.jsonl]\n    outs: [train.jsonl, valid.jsonl]\n    \
         params: {ratio: [0.9, 0.1], seed: 7, stratify_by: category, stable: true}\n",
    );
    let mut lines: Vec<String> = (0..5000).map(record).collect();
    write_data(&p, &lines);
    p.dvx(&["run"]).ok();
    let (train, valid) = (p.read("train.jsonl"), p.read("valid.jsonl"));
    lines.extend((5000..6000).map(record));
    write_data(&p, &lines);
    p.dvx(&["run"]).ok();
    let (train2, valid2) = (p.read("train.jsonl"), p.read("valid.jsonl"));
    let has = |text: &str, line: &str| text.lines().any(|l| l == line);
    assert!(train.lines().all(|l| has(&train2, l)), "a train record moved");
    assert!(valid.lines().all(|l| has(&valid2, l)), "a valid record moved");
    let n = valid2.lines().count();
    assert!((450..750).contains(&n), "valid has {n} of 6000");
}

#[test]
fn stable_dedup_balance_split_never_move_a_record_on_append() {
    let p = Project::new();
    p.write(
        "dvx.yaml",
        "stages:\n  dedup:\n    kind: dedup\n    deps: [data.jsonl]\n    outs: [deduped.jsonl]\n    \
         params: {fields: [instruction, output], shingle: {unit: chars, size: 4}, threshold: 0.6, stable: true}\n  \
         balance:\n    kind: balance\n    deps: [deduped.jsonl]\n    outs: [balanced.jsonl]\n    \
         params: {cap: 1200, stable: true}\n  \
         split:\n    kind: split\n    deps: [balanced.jsonl]\n    outs: [train.jsonl, valid.jsonl]\n    \
         params: {ratio: [0.9, 0.1], seed: 7, stratify_by: category, stable: true}\n",
    );
    let mut lines: Vec<String> = (0..5000).map(record).collect();
    write_data(&p, &lines);
    p.dvx(&["run"]).ok();
    let (train, valid) = (p.read("train.jsonl"), p.read("valid.jsonl"));
    lines.extend((5000..6000).map(record));
    write_data(&p, &lines);
    p.dvx(&["run"]).ok();
    assert_eq!(processed(&p, "dedup"), 1000);
    let (train2, valid2) = (p.read("train.jsonl"), p.read("valid.jsonl"));
    let has = |text: &str, line: &str| text.lines().any(|l| l == line);
    assert!(train.lines().all(|l| has(&train2, l)), "a train record moved or dropped");
    assert!(valid.lines().all(|l| has(&valid2, l)), "a valid record moved or dropped");
    assert!(valid2.lines().count() > valid.lines().count(), "the append added valid records");
}

/// An out of at least 1 MiB is kept aside before its stage re-runs, and the
/// stage writes over it only from the first byte that differs
/// (`RecordWriter::create_over`): an append costs a read of the unchanged
/// part, not a write. The bytes must be a full run's, and a file with a
/// second link (maybe a cache object) must never be written through.
#[test]
fn outs_written_over_in_place_match_a_full_run_and_a_hard_link_keeps_its_bytes() {
    const OVER: &str = "\
stages:
  keep:
    kind: filter
    deps: [data.jsonl]
    outs: [kept.jsonl, rejected.jsonl]
    params: {rules: {a: {contains: good}}}
  near:
    kind: dedup
    deps: [kept.jsonl]
    outs: [deduped.jsonl]
    params: {mode: exact, fields: [instruction, output]}
  split:
    kind: split
    deps: [deduped.jsonl]
    outs: [train.jsonl, valid.jsonl]
    params: {ratio: [0.5, 0.5], seed: 7}
";
    use std::os::unix::fs::MetadataExt;
    // Long enough that train and valid pass 4 MiB, where outs are stored as
    // chunks (and their stores take the writers' kept prefixes).
    let padded = |i: usize| record(i).replacen('{', &format!("{{\"pad\":\"{}\",", "p".repeat(2400 + i % 7)), 1);
    let run = |p: &Project, lines: &[String]| {
        p.write("dvx.yaml", OVER);
        p.write("data.jsonl", &lines.iter().map(|l| format!("{l}\n")).collect::<String>());
        let version = p.dvx(&["run"]).ok().version();
        // A no-op run once the outs are no longer "racy" (written under
        // 100 ms before they were hashed) records their identities, so the
        // next run's stores take their writers' kept prefixes.
        std::thread::sleep(std::time::Duration::from_millis(150));
        assert_eq!(p.dvx(&["run"]).ok().version(), version);
        version
    };
    let outs = ["kept.jsonl", "rejected.jsonl", "deduped.jsonl", "train.jsonl", "valid.jsonl"];
    let p = Project::new();
    let mut lines: Vec<String> = (0..12_000).map(padded).collect();
    run(&p, &lines);
    for o in ["kept.jsonl", "deduped.jsonl", "train.jsonl", "valid.jsonl"] {
        assert!(p.read(o).len() > 4 << 20, "{o} is large enough to be kept aside and stored as chunks");
    }
    let inode = |rel: &str| std::fs::metadata(p.path(rel)).unwrap().ino();
    let inodes = [inode("kept.jsonl"), inode("train.jsonl")];
    std::fs::hard_link(p.path("deduped.jsonl"), p.path("linked.jsonl")).unwrap();
    let linked = p.read("linked.jsonl");

    let check = |lines: &[String], what: &str| {
        let version = run(&p, lines);
        let r = Project::new();
        assert_eq!(version, run(&r, lines), "{what}: the version of a full run");
        for o in outs {
            assert!(p.read(o) == r.read(o), "{what}: {o} differs from a full run");
        }
        let left: Vec<_> = std::fs::read_dir(p.path(".")).unwrap().flatten().map(|e| e.file_name()).collect();
        assert!(!left.iter().any(|n| n.to_string_lossy().ends_with(".dvx-prev")), "{what}: {left:?}");
        // Every object stored from a kept prefix is named by its bytes.
        p.dvx(&["cache", "verify"]).ok();
    };
    lines.extend((12_000..12_400).map(padded));
    check(&lines, "append");
    assert_eq!([inode("kept.jsonl"), inode("train.jsonl")], inodes, "the earlier outs were written over, not replaced");
    assert!(p.read("linked.jsonl") == linked, "a hard-linked out was written through");
    lines.remove(5000);
    lines[7000] = padded(99_999);
    check(&lines, "delete and edit in the middle");
    lines.truncate(9000);
    check(&lines, "cut short");
}
