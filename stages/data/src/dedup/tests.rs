//! Stage-level tests: exact outputs on small hand-made inputs.

use std::path::{Path, PathBuf};

use dvx_stage_api::{Metrics, ParamError, Stage, StageContext, StageFailure, StageShape, Typed};
use serde_json::{json, Value};

use super::{Dedup, MinhashIndex};
use crate::seeded::SplitMix64;

struct Run {
    metrics: Metrics,
    outs: Vec<String>,
    log: String,
}

fn write(dir: &Path, name: &str, lines: &[Value]) -> PathBuf {
    let path = dir.join(name);
    let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
    std::fs::write(&path, text).unwrap();
    path
}

fn run_kind(
    stage: &dyn Stage,
    dir: &Path,
    deps: &[&str],
    outs: &[&str],
    params: Value,
    threads: usize,
) -> Result<Run, StageFailure> {
    run_memo(stage, dir, deps, outs, params, threads, &dvx_stage_api::NoMemo)
}

fn run_memo(
    stage: &dyn Stage,
    dir: &Path,
    deps: &[&str],
    outs: &[&str],
    params: Value,
    threads: usize,
    memo: &dyn dvx_stage_api::Memo,
) -> Result<Run, StageFailure> {
    let deps: Vec<PathBuf> = deps.iter().map(|d| dir.join(d)).collect();
    let outs: Vec<PathBuf> = outs.iter().map(|o| dir.join(o)).collect();
    let shape = StageShape { params: &params, deps: deps.len(), outs: outs.len(), cmd: None };
    stage.check(&shape).map_err(|e| StageFailure::new(format!("{e:?}")))?;
    let mut log = Vec::new();
    let mut ctx = StageContext::new("t", dir, &deps, &outs, &params, &mut log).with_threads(threads).with_memo(memo);
    let metrics = stage.execute(&mut ctx)?;
    let outs = outs.iter().map(|o| String::from_utf8_lossy(&std::fs::read(o).unwrap()).into_owned()).collect();
    Ok(Run { metrics, outs, log: String::from_utf8(log).unwrap() })
}

fn dedup(dir: &Path, deps: &[&str], outs: &[&str], params: Value) -> Run {
    run_kind(&Typed::new(Dedup), dir, deps, outs, params, 2).unwrap()
}

fn metric(r: &Run, name: &str) -> u64 {
    r.metrics[name].as_u64().unwrap_or_else(|| panic!("metric {name}"))
}

fn lines(text: &str) -> Vec<Value> {
    text.lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

/// `w0 w1 ... w59` with the words at `changed` replaced.
fn words60(changed: &[usize]) -> String {
    (0..60).map(|i| if changed.contains(&i) { format!("x{i}") } else { format!("w{i}") }).collect::<Vec<_>>().join(" ")
}

fn check_err(params: Value, deps: usize, outs: usize) -> ParamError {
    let shape = StageShape { params: &params, deps, outs, cmd: None };
    Typed::new(Dedup).check(&shape).unwrap_err()
}

#[test]
fn exact_mode_keeps_first_of_each_text() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "in.jsonl",
        &[
            json!({"text": "Hello   World"}),
            json!({"text": "hello world"}),
            json!({"text": "something else entirely"}),
            json!({"text": " HELLO WORLD\n"}),
        ],
    );
    let r =
        dedup(dir.path(), &["in.jsonl"], &["out.jsonl", "clusters.jsonl", "lineage.jsonl"], json!({"mode": "exact"}));
    assert_eq!(r.outs[0], "{\"text\":\"Hello   World\"}\n{\"text\":\"something else entirely\"}\n");
    assert_eq!(r.outs[1], "{\"kept\":0,\"dropped\":[1,3],\"jaccard\":[1.0,1.0]}\n");
    assert_eq!(
        lines(&r.outs[2])[1],
        json!({"index": 3, "source": "in.jsonl", "line": 4, "match": "exact", "jaccard": 1.0,
               "duplicate_of": {"source": "in.jsonl", "line": 1, "index": 0}})
    );
    assert_eq!(
        r.metrics,
        json!({"input": 4, "reference": 0, "exact_dups": 2, "near_dups": 0, "reference_dups": 0, "empty_texts": 0, "kept": 2,
               "clusters": 1, "candidate_pairs": 0, "confirmed_pairs": 0, "bands": 0, "rows": 0})
        .as_object()
        .unwrap()
        .clone()
    );
}

#[test]
fn near_duplicates_confirmed_by_exact_jaccard() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "in.jsonl",
        &[
            json!({"text": words60(&[])}),
            json!({"text": words60(&[30])}), // 51 of 61 shingles shared: J = 0.836
            json!({"text": words60(&[10, 30, 50])}), // J = 41/71 = 0.577
            json!({"text": "an unrelated record"}),
            json!({"text": words60(&[])}), // exact copy of the first
        ],
    );
    let r = dedup(dir.path(), &["in.jsonl"], &["out.jsonl", "clusters.jsonl", "lineage.jsonl"], json!({}));
    let kept: Vec<String> = lines(&r.outs[0]).iter().map(|v| v["text"].as_str().unwrap().to_string()).collect();
    assert_eq!(kept, vec![words60(&[]), words60(&[10, 30, 50]), "an unrelated record".to_string()]);
    assert_eq!(r.outs[1], "{\"kept\":0,\"dropped\":[1,4],\"jaccard\":[0.8361,1.0]}\n");
    let lineage = lines(&r.outs[2]);
    assert_eq!(lineage[0]["match"], "near");
    assert_eq!(lineage[1]["match"], "exact");
    assert_eq!((metric(&r, "exact_dups"), metric(&r, "near_dups"), metric(&r, "kept")), (1, 1, 3));
    assert_eq!((metric(&r, "bands"), metric(&r, "rows")), (13, 8));
    // The identical copy is merged before LSH; the 0.836 pair is confirmed,
    // the 0.577 pair (if it met at all) rejected.
    assert_eq!(metric(&r, "confirmed_pairs"), 1);
    assert!(r.log.contains("13 bands × 8 rows"), "{}", r.log);

    // `near` labels the identical copy as near too; the kept set is the same.
    let near = dedup(dir.path(), &["in.jsonl"], &["near.jsonl"], json!({"mode": "near"}));
    assert_eq!(near.outs[0], r.outs[0]);
    assert_eq!((metric(&near, "exact_dups"), metric(&near, "near_dups")), (0, 2));

    // A threshold above 0.836 keeps the variant.
    let strict = dedup(dir.path(), &["in.jsonl"], &["strict.jsonl"], json!({"threshold": 0.9}));
    assert_eq!((metric(&strict, "near_dups"), metric(&strict, "kept")), (0, 4));
}

#[test]
fn short_and_empty_records_are_compared_too() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "in.jsonl",
        &[
            json!({"text": "hi"}),
            json!({"text": ""}),
            json!({"text": "Hi"}),
            json!({"text": "hello there"}),
            json!({"text": "hello there friend"}),
            json!({"other": 1}),
        ],
    );
    let r = dedup(dir.path(), &["in.jsonl"], &["out.jsonl", "clusters.jsonl"], json!({"mode": "near"}));
    // "Hi" duplicates "hi"; the record without text has the same (empty) text as "".
    assert_eq!(
        r.outs[1],
        "{\"kept\":0,\"dropped\":[2],\"jaccard\":[1.0]}\n{\"kept\":1,\"dropped\":[5],\"jaccard\":[1.0]}\n"
    );
    assert_eq!((metric(&r, "near_dups"), metric(&r, "kept"), metric(&r, "empty_texts")), (2, 4, 2));
    assert!(r.log.contains("warning: 2 input records have an empty text"), "{}", r.log);
}

#[test]
fn keeps_the_highest_score_then_the_first() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "in.jsonl",
        &[
            json!({"text": "same", "meta": {"q": 3}}),
            json!({"text": "same", "meta": {"q": "9"}}),
            json!({"text": "same", "meta": {"q": 9.0}}),
            json!({"text": "same"}),
        ],
    );
    let r = dedup(dir.path(), &["in.jsonl"], &["out.jsonl", "clusters.jsonl"], json!({"score_field": "meta.q"}));
    assert_eq!(r.outs[0], "{\"text\":\"same\",\"meta\":{\"q\":\"9\"}}\n");
    assert_eq!(r.outs[1], "{\"kept\":1,\"dropped\":[0,2,3],\"jaccard\":[1.0,1.0,1.0]}\n");
    // Without scores (the default field, absent) the first copy stays.
    let r = dedup(dir.path(), &["in.jsonl"], &["first.jsonl"], json!({}));
    assert_eq!(r.outs[0], "{\"text\":\"same\",\"meta\":{\"q\":3}}\n");
    // A score field named on purpose must be somewhere.
    let e = run_kind(&Typed::new(Dedup), dir.path(), &["in.jsonl"], &["x.jsonl"], json!({"score_field": "meta.qq"}), 1)
        .err()
        .expect("a score field in no record fails");
    assert!(e
        .message
        .starts_with("params.score_field: no input record has a field `meta.qq` (did you mean `meta.q`?)\n"));
}

fn reference_fixture(dir: &Path) {
    write(
        dir,
        "in.jsonl",
        &[
            json!({"text": words60(&[30]), "score": 1}),
            json!({"text": "new record one"}),
            json!({"text": "seen before"}),
            json!({"text": words60(&[30, 33])}), // 0.75 to the reference, 0.836 to record 0
            json!({"text": "new record two"}),
        ],
    );
    write(
        dir,
        "ref.jsonl",
        &[json!({"text": "filler"}), json!({"text": words60(&[])}), json!({"text": "Seen before"})],
    );
}

#[test]
fn reference_records_drop_inputs_and_are_never_output() {
    let dir = tempfile::tempdir().unwrap();
    reference_fixture(dir.path());
    let r = dedup(
        dir.path(),
        &["in.jsonl", "ref.jsonl"],
        &["out.jsonl", "clusters.jsonl", "lineage.jsonl"],
        json!({"reference": 1}),
    );
    assert_eq!(r.outs[0], "{\"text\":\"new record one\"}\n{\"text\":\"new record two\"}\n");
    assert_eq!(
        lines(&r.outs[1]),
        vec![
            json!({"kept": null, "reference": {"source": "ref.jsonl", "line": 2}, "dropped": [0, 3], "jaccard": [0.8361, 0.75]}),
            json!({"kept": null, "reference": {"source": "ref.jsonl", "line": 3}, "dropped": [2], "jaccard": [1.0]}),
        ]
    );
    assert_eq!(
        lines(&r.outs[2])[0],
        json!({"index": 0, "source": "in.jsonl", "line": 1, "match": "near", "jaccard": 0.8361,
               "duplicate_of": {"source": "ref.jsonl", "line": 2, "reference": true}})
    );
    assert_eq!((metric(&r, "input"), metric(&r, "reference"), metric(&r, "reference_dups")), (5, 3, 3));
    assert_eq!((metric(&r, "exact_dups"), metric(&r, "near_dups"), metric(&r, "kept")), (1, 2, 2));
}

#[test]
fn signature_file_reference_gives_the_same_outputs() {
    let dir = tempfile::tempdir().unwrap();
    reference_fixture(dir.path());
    let outs = ["a.jsonl", "a.clusters", "a.lineage"];
    let jsonl = dedup(dir.path(), &["in.jsonl", "ref.jsonl"], &outs, json!({"reference": 1}));
    let idx = run_kind(&Typed::new(MinhashIndex), dir.path(), &["ref.jsonl"], &["ref.mhsig"], json!({}), 2).unwrap();
    assert_eq!((idx.metrics["records"].as_u64(), idx.metrics["distinct"].as_u64()), (Some(3), Some(3)));
    let outs = ["b.jsonl", "b.clusters", "b.lineage"];
    let sig = dedup(dir.path(), &["in.jsonl", "ref.mhsig"], &outs, json!({"reference": 1}));
    assert_eq!(sig.outs, jsonl.outs);
    assert_eq!(sig.metrics, jsonl.metrics);
}

#[test]
fn signature_file_with_other_settings_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    reference_fixture(dir.path());
    run_kind(&Typed::new(MinhashIndex), dir.path(), &["ref.jsonl"], &["ref.mhsig"], json!({"num_perm": 64}), 1)
        .unwrap();
    let err =
        run_kind(&Typed::new(Dedup), dir.path(), &["in.jsonl", "ref.mhsig"], &["o.jsonl"], json!({"reference": 1}), 1)
            .err()
            .unwrap();
    assert!(err.message.contains("was built with other settings: num_perm = 64 (this stage: 128)"), "{}", err.message);
    // Exact mode needs only the text settings to agree.
    let r = dedup(dir.path(), &["in.jsonl", "ref.mhsig"], &["o.jsonl"], json!({"reference": 1, "mode": "exact"}));
    assert_eq!(metric(&r, "reference_dups"), 1);
    // A signature file is no input.
    let err = run_kind(&Typed::new(Dedup), dir.path(), &["ref.mhsig"], &["o.jsonl"], json!({}), 1).err().unwrap();
    assert!(err.message.contains("is a signature file"), "{}", err.message);
}

/// A corpus with planted near-duplicates, for determinism checks.
fn planted(n: usize) -> Vec<Value> {
    let mut rng = SplitMix64::new(9);
    let mut docs: Vec<String> = Vec::new();
    for i in 0..n {
        let copy = i > 10 && rng.next_u64().is_multiple_of(3);
        let text = if copy {
            let mut words: Vec<String> =
                docs[(rng.next_u64() % docs.len() as u64) as usize].split(' ').map(str::to_string).collect();
            let at = (rng.next_u64() % words.len() as u64) as usize;
            words[at] = format!("edit{i}");
            words.join(" ")
        } else {
            let len = 20 + rng.next_u64() % 60;
            (0..len).map(|_| format!("v{}", rng.next_u64() % 5000)).collect::<Vec<_>>().join(" ")
        };
        docs.push(text);
    }
    docs.into_iter().enumerate().map(|(i, t)| json!({"text": t, "score": i % 7})).collect()
}

#[test]
fn same_bytes_with_one_or_four_threads() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "in.jsonl", &planted(3000));
    let one =
        run_kind(&Typed::new(Dedup), dir.path(), &["in.jsonl"], &["1.jsonl", "1.c", "1.l"], json!({}), 1).unwrap();
    let four =
        run_kind(&Typed::new(Dedup), dir.path(), &["in.jsonl"], &["4.jsonl", "4.c", "4.l"], json!({}), 4).unwrap();
    assert_eq!(one.outs, four.outs);
    assert_eq!(one.metrics, four.metrics);
    assert!(metric(&one, "near_dups") > 500, "{:?}", one.metrics);
    let a = run_kind(&Typed::new(MinhashIndex), dir.path(), &["in.jsonl"], &["1.mhsig"], json!({}), 1).unwrap();
    let b = run_kind(&Typed::new(MinhashIndex), dir.path(), &["in.jsonl"], &["4.mhsig"], json!({}), 4).unwrap();
    assert_eq!(a.metrics, b.metrics);
    assert_eq!(std::fs::read(dir.path().join("1.mhsig")).unwrap(), std::fs::read(dir.path().join("4.mhsig")).unwrap());
}

/// The `candidates: N input texts ...` figure of a dedup log.
fn candidates_read(r: &Run) -> usize {
    let line = r.log.lines().find(|l| l.starts_with("candidates: ")).unwrap_or_else(|| panic!("{}", r.log));
    line["candidates: ".len()..].split(' ').next().unwrap().parse().unwrap()
}

#[test]
fn only_candidates_are_read_again_and_spilling_gives_the_same_bytes() {
    use std::sync::atomic::Ordering;
    let dir = tempfile::tempdir().unwrap();
    let docs = planted(3000);
    write(dir.path(), "in.jsonl", &docs);
    for params in [json!({}), json!({"stable": true}), json!({"mode": "near"})] {
        let outs = ["m.jsonl", "m.c", "m.l"];
        let held = run_kind(&Typed::new(Dedup), dir.path(), &["in.jsonl"], &outs, params.clone(), 2).unwrap();
        // Other tests running meanwhile spill too; their outputs must not change either.
        let budgets =
            (super::bands::BUDGET.swap(0, Ordering::Relaxed), super::shingles::BUDGET.swap(0, Ordering::Relaxed));
        let outs = ["s.jsonl", "s.c", "s.l"];
        let spilled = run_kind(&Typed::new(Dedup), dir.path(), &["in.jsonl"], &outs, params.clone(), 2);
        super::bands::BUDGET.store(budgets.0, Ordering::Relaxed);
        super::shingles::BUDGET.store(budgets.1, Ordering::Relaxed);
        let spilled = spilled.unwrap();
        assert!(spilled.log.contains("band hashes and shingles spilled to disk"), "{}", spilled.log);
        assert!(held.outs == spilled.outs, "{params}: spilling changed the outputs");
        assert_eq!(held.metrics, spilled.metrics);
        // A third of the records are planted copies: they and their
        // originals meet in buckets; the unrelated rest is never read again.
        let read = candidates_read(&held);
        assert_eq!(read, candidates_read(&spilled));
        let dropped = (metric(&held, "exact_dups") + metric(&held, "near_dups")) as usize;
        assert!(read > dropped && read < docs.len() * 3 / 4, "{read} of {} read again: {}", docs.len(), held.log);
    }
    // Exact mode sketches nothing and reads nothing again.
    let exact = dedup(dir.path(), &["in.jsonl"], &["e.jsonl"], json!({"mode": "exact"}));
    assert!(!exact.log.contains("candidates: "), "{}", exact.log);
}

#[test]
fn a_bucket_of_mutual_duplicates_needs_one_check_per_record() {
    let dir = tempfile::tempdir().unwrap();
    let docs: Vec<Value> = (0..400).map(|i| json!({"text": format!("{} u{i}", words60(&[]))})).collect();
    write(dir.path(), "in.jsonl", &docs);
    let r = dedup(dir.path(), &["in.jsonl"], &["out.jsonl"], json!({"mode": "near"}));
    assert_eq!((metric(&r, "kept"), metric(&r, "clusters")), (1, 1));
    assert_eq!((metric(&r, "candidate_pairs"), metric(&r, "confirmed_pairs")), (399, 399));
}

#[test]
fn bad_params_name_the_field() {
    let field = |p: Value| check_err(p, 1, 1).field;
    assert_eq!(field(json!({"tresh": 0.8})), Some("tresh".into()));
    assert_eq!(field(json!({"mode": "fuzzy"})), Some("mode".into()));
    assert_eq!(field(json!({"threshold": 1.5})), Some("threshold".into()));
    assert_eq!(field(json!({"threshold": "high"})), Some("threshold".into()));
    assert_eq!(field(json!({"bands": 4})), Some("rows".into()));
    assert_eq!(field(json!({"bands": 20, "rows": 8})), Some("bands".into()));
    assert_eq!(field(json!({"num_perm": 0})), Some("num_perm".into()));
    assert_eq!(field(json!({"num_perm": 2, "threshold": 0.5})), Some("num_perm".into()));
    assert_eq!(field(json!({"normalize": {"lowercse": true}})), Some("normalize.lowercse".into()));
    assert_eq!(field(json!({"shingle": {"unit": "words", "size": 0}})), Some("shingle.size".into()));
    assert_eq!(field(json!({"shingle": {"unit": "lines"}})), Some("shingle.unit".into()));
    assert_eq!(field(json!({"reference": 1})), Some("reference".into()));
    assert_eq!(check_err(json!({}), 1, 4).field, None);
    assert_eq!(check_err(json!({}), 0, 1).field, None);
    let shape = StageShape { params: &json!({"reference": 1}), deps: 2, outs: 3, cmd: None };
    assert_eq!(Typed::new(Dedup).check(&shape), Ok(()));
    let shape = StageShape { params: &json!({}), deps: 1, outs: 2, cmd: None };
    assert!(Typed::new(MinhashIndex).check(&shape).is_err());
}

#[test]
fn bad_input_names_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("in.jsonl"), "{\"text\":\"a\"}\n\n{oops\n").unwrap();
    let err = run_kind(&Typed::new(Dedup), dir.path(), &["in.jsonl"], &["o.jsonl"], json!({}), 1).err().unwrap();
    assert!(
        err.message.ends_with("in.jsonl:3: malformed JSON: key must be a string at line 1 column 2"),
        "{}",
        err.message
    );
    std::fs::write(dir.path().join("s.jsonl"), "{\"text\":\"a\",\"score\":[1]}\n").unwrap();
    let err = run_kind(&Typed::new(Dedup), dir.path(), &["s.jsonl"], &["o.jsonl"], json!({}), 1).err().unwrap();
    assert!(err.message.ends_with("s.jsonl:1: score field `score` is not a number: [1]"), "{}", err.message);
    std::fs::write(dir.path().join("n.jsonl"), "[1]\n").unwrap();
    let err = run_kind(&Typed::new(Dedup), dir.path(), &["n.jsonl"], &["o.jsonl"], json!({}), 1).err().unwrap();
    assert!(err.message.ends_with("n.jsonl:1: not a JSON object"), "{}", err.message);
}

/// The `records processed: N` figure of a dedup log.
fn processed(r: &Run) -> usize {
    let line = r.log.lines().find(|l| l.starts_with("records processed: ")).unwrap_or_else(|| panic!("{}", r.log));
    line["records processed: ".len()..].split(',').next().unwrap().parse().unwrap()
}

#[test]
fn a_rerun_sketches_only_new_and_changed_records_and_writes_what_a_full_run_does() {
    let dir = tempfile::tempdir().unwrap();
    let memo = dvx_stage_api::MemoryMemo::default();
    let outs = ["o.jsonl", "c.jsonl", "l.jsonl"];
    let docs = planted(6000);
    for stable in [false, true] {
        let params = json!({"stable": stable});
        let memo = dvx_stage_api::MemoryMemo::default();
        let step = |docs: &[Value], what: &str, expect: usize| {
            write(dir.path(), "in.jsonl", docs);
            let inc = run_memo(&Typed::new(Dedup), dir.path(), &["in.jsonl"], &outs, params.clone(), 2, &memo).unwrap();
            let full = run_kind(&Typed::new(Dedup), dir.path(), &["in.jsonl"], &outs, params.clone(), 2).unwrap();
            assert_eq!(processed(&inc), expect, "{what}: {}", inc.log);
            assert_eq!(processed(&full), docs.len(), "{what}");
            assert!(inc.outs == full.outs, "{what}: outputs differ from a full run");
            assert_eq!(inc.metrics, full.metrics, "{what}");
            // Pairs judged before are not judged again: unchanged input
            // reads no text again, changed input fewer than a full run.
            let (read, read_full) = (candidates_read(&inc), candidates_read(&full));
            if what == "no change" {
                assert_eq!(read, 0, "{what}: {}", inc.log);
            } else if what != "first run" {
                assert!(read < read_full / 2, "{what}: {read} texts read again, {read_full} in a full run");
            }
        };
        let mut docs = docs.clone();
        step(&docs, "first run", docs.len());
        step(&docs, "no change", 0);
        docs.extend(planted(6300).into_iter().skip(6000));
        step(&docs, "append", 300);
        docs.remove(2500);
        step(&docs, "delete in the middle", 0);
        docs[4000] = json!({"text": words60(&[3]), "score": 1});
        docs[10] = docs[4000].clone();
        step(&docs, "edit two records", 2);
    }
    // `reuse: false` processes every record and writes the same bytes.
    write(dir.path(), "in.jsonl", &docs);
    let a = run_memo(&Typed::new(Dedup), dir.path(), &["in.jsonl"], &outs, json!({}), 2, &memo).unwrap();
    let b = run_memo(&Typed::new(Dedup), dir.path(), &["in.jsonl"], &outs, json!({"reuse": false}), 2, &memo).unwrap();
    let c = run_memo(&Typed::new(Dedup), dir.path(), &["in.jsonl"], &outs, json!({"reuse": false}), 2, &memo).unwrap();
    assert_eq!((processed(&b), processed(&c)), (6000, 6000));
    assert!(a.outs == b.outs);
}

#[test]
fn a_keeper_linked_through_another_gets_its_jaccard_from_texts_read_late() {
    // B ~ C, then A (the best score) arrives ~ B but far from C: C is
    // dropped for A through B, and the Jaccard of C to A was never judged
    // (C's text is not read with the candidates when A and C share no
    // bucket): it is read after linking, and the lineage equals a full run's.
    let dir = tempfile::tempdir().unwrap();
    let memo = dvx_stage_api::MemoryMemo::default();
    let outs = ["o.jsonl", "c.jsonl", "l.jsonl"];
    // Two words changed per step: Jaccard 0.806 a step, 0.647 for A to C
    // (these words happen to put A and C in no common bucket).
    let b = json!({"text": words60(&[3, 4]), "score": 2});
    let c = json!({"text": words60(&[3, 4, 30, 31]), "score": 1});
    let a = json!({"text": words60(&[]), "score": 3});
    let filler: Vec<Value> = (0..50).map(|i| json!({"text": format!("unrelated text number {i}")})).collect();
    let mut docs = filler.clone();
    docs.extend([b, c]);
    write(dir.path(), "in.jsonl", &docs);
    run_memo(&Typed::new(Dedup), dir.path(), &["in.jsonl"], &outs, json!({}), 2, &memo).unwrap();
    docs.push(a);
    write(dir.path(), "in.jsonl", &docs);
    let inc = run_memo(&Typed::new(Dedup), dir.path(), &["in.jsonl"], &outs, json!({}), 2, &memo).unwrap();
    let full = run_kind(&Typed::new(Dedup), dir.path(), &["in.jsonl"], &outs, json!({}), 2).unwrap();
    assert!(inc.outs == full.outs, "outputs differ from a full run:\n{}\n{}", inc.outs[2], full.outs[2]);
    let lineage: Vec<Value> = inc.outs[2].lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert!(inc.log.contains("candidates: 1 more texts read after linking"), "{}", inc.log);
    let of_c = lineage.iter().find(|l| l["index"] == 51).expect("C is dropped");
    assert_eq!(of_c["duplicate_of"]["index"], 52, "{of_c}");
    assert!(of_c["jaccard"].as_f64().unwrap() < 0.8, "{of_c}");
}

/// Group `k`'s 60-word text with word `change` (if any) replaced.
fn group_text(k: usize, change: Option<usize>) -> String {
    (0..60).map(|j| if Some(j) == change { format!("x{k}") } else { format!("g{k}w{j}") }).collect::<Vec<_>>().join(" ")
}

/// `n` records from `from` on: every tenth starts a group, the ninth after
/// it is a near copy in that group, the others are unique.
fn growing(n: usize, from: usize) -> Vec<Value> {
    (from..from + n)
        .map(|i| match i % 10 {
            0 => json!({"text": group_text(i / 10, None), "score": i}),
            9 => json!({"text": group_text(i / 10, Some(i % 60)), "score": i}),
            _ => json!({"text": format!("u{i} {}", group_text(100_000 + i, None)), "score": i}),
        })
        .collect()
}

#[test]
fn stable_mode_never_drops_a_kept_record_on_append() {
    let dir = tempfile::tempdir().unwrap();
    let first = growing(3000, 0);
    let mut all = first.clone();
    // The append holds, for records kept before, near copies scoring higher.
    all.extend((0..300).map(|k| json!({"text": group_text(k, Some(k % 50 + 5)), "score": 100_000 + k})));
    let kept_lines = |r: &Run| r.outs[0].lines().map(str::to_string).collect::<std::collections::HashSet<_>>();
    for (stable, expect_loss) in [(false, true), (true, false)] {
        let params = json!({"stable": stable});
        write(dir.path(), "in.jsonl", &first);
        let before = dedup(dir.path(), &["in.jsonl"], &["a.jsonl"], params.clone());
        write(dir.path(), "in.jsonl", &all);
        let after = dedup(dir.path(), &["in.jsonl"], &["b.jsonl"], params.clone());
        let lost = kept_lines(&before).difference(&kept_lines(&after)).count();
        assert_eq!(lost > 0, expect_loss, "stable: {stable}, {lost} previously kept records dropped");
        if stable {
            // The appended copies are dropped in favour of the records kept
            // before them (but for the few pairs LSH misses, p = 0.03 at J = 0.84).
            assert!(metric(&after, "kept") - metric(&before, "kept") < 30, "{:?}", after.metrics);
        } else {
            assert!(lost >= 200, "{lost}");
        }
    }
}

#[test]
fn stable_mode_judges_each_record_against_the_records_kept_before_it() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "in.jsonl",
        &[
            json!({"text": words60(&[]), "score": 1}),
            json!({"text": words60(&[30]), "score": 9}), // J = 0.836 to the first
            json!({"text": words60(&[]), "score": 5}),   // exact copy of the first
            json!({"text": words60(&[30, 32]), "score": 9}), // J = 0.778 to the first, 0.836 to the second
        ],
    );
    let outs = ["out.jsonl", "c.jsonl", "l.jsonl"];
    let r = dedup(dir.path(), &["in.jsonl"], &outs, json!({"stable": true}));
    // The first copy stays whatever the scores; the last record is kept: the
    // only record it duplicates was dropped (duplicates do not chain).
    assert_eq!(
        lines(&r.outs[0]),
        vec![json!({"text": words60(&[]), "score": 1}), json!({"text": words60(&[30, 32]), "score": 9})]
    );
    assert_eq!(r.outs[1], "{\"kept\":0,\"dropped\":[1,2],\"jaccard\":[0.8361,1.0]}\n");
    assert_eq!(lines(&r.outs[2])[1]["match"], "exact");
    // The default mode keeps the best score.
    let d = dedup(dir.path(), &["in.jsonl"], &["d.jsonl"], json!({}));
    assert_eq!(lines(&d.outs[0])[0], json!({"text": words60(&[30]), "score": 9}));
}

#[test]
fn plain_jsonl_with_crlf_bom_and_blank_lines_gives_the_readers_lines() {
    // Kept lines and candidates are found by the plain-JSONL scan; every
    // line rule of the reader must hold there: the byte-order mark, `\r\n`,
    // blank lines (not records, but counted as lines), spacing kept as is.
    let dir = tempfile::tempdir().unwrap();
    let docs = planted(3000);
    write(dir.path(), "clean.jsonl", &docs);
    let mut text = String::from("\u{feff}");
    let mut want_lines = Vec::new();
    for (i, d) in docs.iter().enumerate() {
        let line = if i % 5 == 0 { serde_json::to_string_pretty(d).unwrap().replace('\n', " ") } else { d.to_string() };
        text += &line;
        text += if i % 7 == 0 { "\r\n" } else { "\n" };
        if i % 11 == 0 {
            text += "  \n\r\n";
        }
        want_lines.push(line);
    }
    std::fs::write(dir.path().join("in.jsonl"), text).unwrap();
    let outs = ["k.jsonl", "k.c", "k.l"];
    let twisted = dedup(dir.path(), &["in.jsonl"], &outs, json!({}));
    let clean = dedup(dir.path(), &["clean.jsonl"], &["c.jsonl", "c.c", "c.l"], json!({}));
    assert_eq!(twisted.outs[1], clean.outs[1], "the same clusters");
    assert!(metric(&twisted, "near_dups") > 500, "{:?}", twisted.metrics);
    let dropped: std::collections::HashSet<u64> =
        lines(&twisted.outs[2]).iter().map(|l| l["index"].as_u64().unwrap()).collect();
    let want: String = want_lines
        .iter()
        .enumerate()
        .filter(|(i, _)| !dropped.contains(&(*i as u64)))
        .map(|(_, l)| format!("{l}\n"))
        .collect();
    assert_eq!(twisted.outs[0], want);
    // Lines are numbered as the reader numbers them: blank lines count.
    let first = lines(&twisted.outs[2])[0].clone();
    let i = first["index"].as_u64().unwrap() as usize;
    assert_eq!(first["line"].as_u64().unwrap() as usize, i + 1 + 2 * i.div_ceil(11));
}
