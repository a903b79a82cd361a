//! No silent data loss on a typo: a field named in params that no record
//! has fails the stage with the closest name; a comparison on a value of the
//! wrong type is its own reject reason; `kind:` with `cmd:` is a spec error;
//! a param written out at its default is the same key as one left out.

use insta::assert_snapshot;

use crate::support::{Project, Redact};

const DATA: &str = r#"{"id":1,"category":"crud","text":"alpha beta","quality_score":9,"meta":{"source":"a"}}
{"id":2,"category":"crud","text":"beta gamma","quality_score":"8.5","meta":{"source":"b"}}
{"id":3,"category":"auth","text":"gamma delta"}
{"id":4,"category":"auth","text":"delta alpha","quality_score":2}
"#;

/// A project whose one stage `s` reads `data.jsonl`.
fn one_stage(kind: &str, params: &str, outs: &str) -> Project {
    let p = Project::new();
    p.write("data.jsonl", DATA);
    p.write(
        "dvx.yaml",
        &format!("name: typos\nstages:\n  s:\n    kind: {kind}\n    deps: [data.jsonl]\n    outs: {outs}\n    params: {params}\n"),
    );
    p
}

#[test]
fn a_typo_in_each_field_naming_param_fails_with_a_suggestion() {
    // (kind, params, outs, the param named, the field given, the suggestion)
    type Case = (&'static str, &'static str, &'static str, &'static str, &'static str, Option<&'static str>);
    let cases: &[Case] = &[
        ("balance", "{category_field: categroy, cap: 1}", "[o.jsonl]", "category_field", "categroy", Some("category")),
        (
            "filter",
            "{rules: {crud: {field: qualityscore, ge: 5}}}",
            "[o.jsonl]",
            "rules.crud.field",
            "qualityscore",
            Some("quality_score"),
        ),
        ("filter", "{category_field: cat, rules: {crud: {min_len: 1}}}", "[o.jsonl]", "category_field", "cat", None),
        ("filter", "{text_fields: [txt], default: {min_len: 1}}", "[o.jsonl]", "text_fields.0", "txt", Some("text")),
        (
            "filter",
            "{default: {all: [{field: meta.sourse, contains: a}]}}",
            "[o.jsonl]",
            "default.all.0.field",
            "meta.sourse",
            Some("meta.source"),
        ),
        (
            "split",
            "{stratify_by: categroy, ratio: [0.5, 0.5]}",
            "[t.jsonl, v.jsonl]",
            "stratify_by",
            "categroy",
            Some("category"),
        ),
        ("split", "{hash_fields: [idd], ratio: [0.5, 0.5]}", "[t.jsonl, v.jsonl]", "hash_fields.0", "idd", Some("id")),
        (
            "score",
            "{features: [{feature: field, field: quality_scor, default: 0}]}",
            "[o.jsonl]",
            "features.0.field",
            "quality_scor",
            Some("quality_score"),
        ),
        (
            "score",
            "{features: [{feature: chars}], text_fields: [txt]}",
            "[o.jsonl]",
            "text_fields.0",
            "txt",
            Some("text"),
        ),
        ("merge", "{dedup_key: idd}", "[o.jsonl]", "dedup_key", "idd", Some("id")),
        ("merge", "{dedup_key: text, text_fields: [tex]}", "[o.jsonl]", "text_fields.0", "tex", Some("text")),
        ("dedup", "{fields: [txt]}", "[o.jsonl]", "fields.0", "txt", Some("text")),
        ("dedup", "{score_field: quality}", "[o.jsonl]", "score_field", "quality", Some("quality_score")),
        ("minhash-index", "{fields: [txt]}", "[o.sig]", "fields.0", "txt", Some("text")),
        ("validate", "{text_fields: [txt]}", "[r.json]", "text_fields.0", "txt", Some("text")),
        ("validate", "{category_field: categry}", "[r.json]", "category_field", "categry", Some("category")),
        (
            "multiply",
            "{base: [{prompt: \"say {text}\", answer: ok}], keep: [idd]}",
            "[o.jsonl]",
            "keep.0",
            "idd",
            Some("id"),
        ),
    ];
    for (kind, params, outs, param, field, hint) in cases {
        let p = one_stage(kind, params, outs);
        let r = p.dvx(&["run"]);
        let hint = hint.map(|h| format!(" (did you mean `{h}`?)")).unwrap_or_default();
        let want = format!("params.{param}: no input record has a field `{field}`{hint}");
        assert_eq!(r.code(), 1, "{kind} {params}: {}\n{}", r.stdout(), r.stderr());
        let all = r.stdout() + &r.stderr();
        assert!(all.contains(&want), "{kind} {params}: want `{want}` in\n{all}");
        assert!(all.contains("the records have the fields: category, id, meta"), "{kind} {params}:\n{all}");
        assert!(!all.contains("panicked"), "{all}");
    }
}

#[test]
fn a_field_in_some_records_or_an_empty_input_is_not_a_typo() {
    // `quality_score` is missing from one record, `meta.source` from two.
    let p = one_stage("filter", "{rules: {crud: {field: meta.source, contains: a}}}", "[o.jsonl]");
    p.dvx(&["run"]).ok();
    let p = one_stage("balance", "{category_field: categroy, cap: 1}", "[o.jsonl]");
    p.write("data.jsonl", "");
    p.dvx(&["run"]).ok();
    // An `exists` rule may look for a field that no record has.
    let p = one_stage("filter", "{default: {field: secret, exists: false}}", "[o.jsonl]");
    p.dvx(&["run"]).ok();
    assert_eq!(p.read("o.jsonl").lines().count(), 4);
}

#[test]
fn typo_errors_in_full() {
    for (name, kind, params, outs) in [
        ("typo_balance", "balance", "{category_field: categroy, cap: 1}", "[o.jsonl]"),
        ("typo_filter", "filter", "{rules: {crud: {field: qualityscore, ge: 5}}}", "[o.jsonl]"),
        ("typo_split", "split", "{stratify_by: categroy, ratio: [0.5, 0.5]}", "[t.jsonl, v.jsonl]"),
    ] {
        let p = one_stage(kind, params, outs);
        let mut r = Redact::new(&p);
        let run = p.dvx(&["run"]);
        assert_eq!(run.code(), 1, "{}", run.stderr());
        assert_snapshot!(name, run.snapshot(&mut r));
    }
}

#[test]
fn wrong_types_are_their_own_reject_reason_counted_apart() {
    let p = one_stage(
        "filter",
        "{category_field: category, rules: {crud: {field: quality_score, ge: 5}, auth: {field: quality_score, ge: 1}}}",
        "[kept.jsonl, rejected.jsonl]",
    );
    let run = p.dvx(&["run"]).ok();
    let reasons: Vec<String> = p
        .read("rejected.jsonl")
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["_rejected_by"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        reasons,
        [r#"rules.crud: quality_score is not a number: "8.5""#, "rules.auth: quality_score is missing"]
    );
    let kept: Vec<&str> = DATA.lines().filter(|l| l.contains("\"id\":1,") || l.contains("\"id\":4,")).collect();
    assert_eq!(p.read("kept.jsonl").lines().count(), kept.len());
    // The counts keep the two apart from records that fail the rule.
    let show = p.dvx(&["show", &run.version()]).ok().stdout();
    assert!(show.contains("rules.crud: quality_score is not a number"), "{show}");
    assert!(show.contains("rules.auth: quality_score is missing"), "{show}");
}

#[test]
fn a_built_in_kind_with_a_cmd_is_a_spec_error() {
    let p = Project::new();
    p.write("data.jsonl", DATA);
    p.write(
        "dvx.yaml",
        "name: typos\nstages:\n  s:\n    kind: dedup\n    deps: [data.jsonl]\n    outs: [o.jsonl]\n    cmd: python dedup.py\n",
    );
    let mut r = Redact::new(&p);
    let run = p.dvx(&["run"]);
    assert_eq!(run.code(), 2, "{}", run.stderr());
    assert_snapshot!("kind_with_cmd", run.snapshot(&mut r));
    // `kind: cmd` with a `cmd` is what `cmd` is for.
    p.write("dvx.yaml", "name: typos\nstages:\n  s:\n    kind: cmd\n    deps: [data.jsonl]\n    outs: [o.jsonl]\n    cmd: cp data.jsonl o.jsonl\n");
    p.dvx(&["run"]).ok();
}

#[test]
fn a_param_written_at_its_default_is_the_same_key() {
    let pipeline = |extra: &str| {
        format!(
            "name: keys\nstages:\n  s:\n    kind: split\n    deps: [data.jsonl]\n    outs: [t.jsonl, v.jsonl]\n    params: {{ratio: [0.5, 0.5]{extra}}}\n"
        )
    };
    let p = Project::new();
    p.write("data.jsonl", DATA).write("dvx.yaml", &pipeline(""));
    let first = p.dvx(&["run", "--json"]).ok();
    assert_eq!(first.status_of("s"), "ran");
    // `seed: 0`, `hash_fields: []` and `on_error: fail` are the defaults.
    p.write("dvx.yaml", &pipeline(", seed: 0, hash_fields: [], on_error: fail"));
    let again = p.dvx(&["run", "--json"]).ok();
    assert_eq!(again.status_of("s"), "cached");
    // The version differs (the pipeline file is one of its sources); the key does not.
    let key = |r: &crate::support::Run| {
        serde_json::from_str::<serde_json::Value>(&r.stdout()).unwrap()["stages"][0]["key"].clone()
    };
    assert_eq!(key(&again), key(&first), "the same stage, the same key");
    let status = p.dvx(&["status"]).ok().stdout();
    assert!(!status.contains("changed"), "{status}");
    // A value other than the default is another key.
    p.write("dvx.yaml", &pipeline(", seed: 1"));
    assert_eq!(p.dvx(&["run", "--json"]).ok().status_of("s"), "ran");
}
