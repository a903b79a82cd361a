//! `dvx diff`: stages, JSONL records per category, errors.

use crate::support::Project;

const DATA: &str = r#"{"id":1,"category":"crud","text":"alpha"}
{"id":2,"category":"crud","text":"beta"}
{"id":3,"category":"auth","text":"alpha"}
{"id":4,"category":"auth","text":"gamma"}
{"id":5,"category":"ws","text":"beta"}
{"id":6,"category":"ws","text":"alpha"}
{"id":7,"category":"ws","text":"delta"}
{"id":8,"category":"crud","text":"gamma"}
"#;

/// `filter` keeps the lines matching a pattern; `split` writes one file per
/// category into a folder; `head` does not depend on the pattern; `extra`
/// only exists in the second version.
fn pipeline(p: &Project, pattern: &str, extra: bool) {
    let mut yaml = format!(
        r#"name: diffs
stages:
  filter:
    deps: [data.jsonl]
    params: {{pattern: "{pattern}"}}
    outs: [kept.jsonl]
    cmd: grep -E '${{params.pattern}}' data.jsonl > kept.jsonl
  split:
    deps: [kept.jsonl]
    outs: [parts]
    cmd: mkdir -p parts && for c in crud auth ws; do grep "\"$c\"" kept.jsonl > parts/$c.jsonl || true; done
  head:
    deps: [data.jsonl]
    outs: [first.jsonl]
    cmd: head -n 2 data.jsonl > first.jsonl
"#
    );
    if extra {
        yaml.push_str(
            "  extra:\n    deps: [kept.jsonl]\n    outs: [count.txt]\n    cmd: wc -l < kept.jsonl > count.txt\n",
        );
    }
    p.write("dvx.yaml", &yaml);
}

fn two_versions() -> (Project, String, String) {
    let p = Project::new();
    p.write("data.jsonl", DATA);
    pipeline(&p, "alpha|beta", false);
    let v1 = p.dvx(&["run"]).ok().version();
    pipeline(&p, "alpha|gamma", true);
    let v2 = p.dvx(&["run"]).ok().version();
    (p, v1, v2)
}

fn file<'a>(d: &'a serde_json::Value, path: &str) -> &'a serde_json::Value {
    d["files"].as_array().unwrap().iter().find(|f| f["path"] == path).unwrap_or_else(|| panic!("no {path} in {d:#}"))
}

fn counts(f: &serde_json::Value) -> [u64; 5] {
    ["before", "after", "added", "removed", "kept"].map(|k| f[k].as_u64().unwrap())
}

/// (category, before, after, added, removed) rows.
fn categories(f: &serde_json::Value) -> Vec<(String, u64, u64, u64, u64)> {
    f["categories"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            let n = |k: &str| c[k].as_u64().unwrap();
            (c["name"].as_str().unwrap().to_string(), n("before"), n("after"), n("added"), n("removed"))
        })
        .collect()
}

#[test]
fn records_added_removed_kept_per_category() {
    let (p, v1, v2) = two_versions();
    let run = p.dvx(&["diff", &v1[..8], &v2[..8], "--json"]).ok();
    let d: serde_json::Value = serde_json::from_str(&run.stdout()).expect("json");
    assert_eq!(d["a"], v1.as_str());
    assert_eq!(d["b"], v2.as_str());

    let stages: Vec<(&str, &str)> = d["stages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["name"].as_str().unwrap(), s["state"].as_str().unwrap()))
        .collect();
    assert_eq!(stages, [("filter", "changed"), ("split", "changed"), ("head", "same"), ("extra", "only_in_b")]);

    // alpha|beta keeps 1,2,3,5,6; alpha|gamma keeps 1,3,4,6,8.
    let kept = file(&d, "kept.jsonl");
    assert_eq!(kept["stage"], "filter");
    assert_eq!(kept["category_field"], "category");
    assert_eq!(kept["identical"], false);
    assert_eq!(counts(kept), [5, 5, 2, 2, 3]);
    assert_eq!(categories(kept), [("auth".into(), 1, 2, 1, 0), ("crud".into(), 2, 2, 1, 1), ("ws".into(), 2, 1, 0, 1)]);

    // Files inside a folder output are compared by relative path.
    assert_eq!(counts(file(&d, "parts/ws.jsonl")), [2, 1, 0, 1, 1]);
    assert_eq!(counts(file(&d, "parts/auth.jsonl")), [1, 2, 1, 0, 1]);
    assert_eq!(file(&d, "parts/crud.jsonl")["stage"], "split");

    let head = file(&d, "first.jsonl");
    assert_eq!(head["identical"], true);
    assert_eq!(counts(head), [2, 2, 0, 0, 2]);
    assert_eq!(categories(head), [("crud".into(), 2, 2, 0, 0)]);

    // cmd stages write no metrics.
    assert_eq!(d["metrics"], serde_json::json!([]));
    assert_eq!(d["regressions"], 0);
}

#[test]
fn text_tables() {
    let (p, v1, v2) = two_versions();
    let out = p.dvx(&["diff", &v1, &v2, "filter"]).ok().stdout();
    let expected = format!(
        "diff {} → {}

## stages

| stage  | kind | change  | key A        | key B        |
| ------ | ---- | ------- | ------------ | ------------ |
| filter | cmd  | changed | {} | {} |

## params

| stage  | param   | A           | B            |
| ------ | ------- | ----------- | ------------ |
| filter | pattern | alpha\\|beta | alpha\\|gamma |

## records: kept.jsonl (stage `filter`, category field `category`)

5 → 5 records: +2 added, -2 removed, 3 kept

| category | before | after |   Δ | added | removed |
| -------- | -----: | ----: | --: | ----: | ------: |
| auth     |      1 |     2 |  +1 |    +1 |       0 |
| crud     |      2 |     2 |   0 |    +1 |      -1 |
| ws       |      2 |     1 |  -1 |     0 |      -1 |

no regressions (tolerance 1%)
",
        &v1[..12],
        &v2[..12],
        key_of(&p, &v1, "filter"),
        key_of(&p, &v2, "filter"),
    );
    assert_eq!(out, expected);
}

fn key_of(p: &Project, version: &str, stage: &str) -> String {
    let show = p.dvx(&["show", version]).ok().stdout();
    let line = show.lines().find(|l| l.trim_start().starts_with(&format!("{stage} ("))).expect("stage line");
    line.rsplit("key ").next().unwrap().trim().to_string()
}

#[test]
fn category_field_override_and_nested_detection() {
    let p = Project::new();
    p.write(
        "data.jsonl",
        "{\"meta\":{\"category\":\"a\"},\"t\":1}\n{\"meta\":{\"category\":\"b\"},\"t\":2}\n\n{\"t\":3}\nnot json\n",
    );
    p.write(
        "dvx.yaml",
        "stages:\n  copy:\n    deps: [data.jsonl]\n    outs: [out.jsonl]\n    cmd: cat data.jsonl > out.jsonl\n",
    );
    let v1 = p.dvx(&["run"]).ok().version();
    // Same records, reformatted (keys reordered, spaces): kept. One dropped, one added.
    p.write(
        "data.jsonl",
        "{ \"t\": 1, \"meta\": {\"category\": \"a\"} }\n{\"t\":3}\n{\"meta\":{\"category\":\"c\"},\"t\":4}\nnot json\n",
    );
    let v2 = p.dvx(&["run"]).ok().version();

    let d: serde_json::Value = serde_json::from_str(&p.dvx(&["diff", &v1, &v2, "--json"]).ok().stdout()).unwrap();
    let f = file(&d, "out.jsonl");
    assert_eq!(f["category_field"], "meta.category");
    assert_eq!(counts(f), [4, 4, 1, 1, 3]);
    assert_eq!((f["invalid_a"].as_u64(), f["invalid_b"].as_u64()), (Some(1), Some(1)));
    assert_eq!(
        categories(f),
        [("(none)".into(), 2, 2, 0, 0), ("a".into(), 1, 1, 0, 0), ("b".into(), 1, 0, 0, 1), ("c".into(), 0, 1, 1, 0)]
    );

    let d: serde_json::Value =
        serde_json::from_str(&p.dvx(&["diff", &v1, &v2, "--json", "--category-field", "t"]).ok().stdout()).unwrap();
    let f = file(&d, "out.jsonl");
    assert_eq!(f["category_field"], "t");
    assert_eq!(categories(f)[0], ("(none)".into(), 1, 1, 0, 0));
    assert_eq!(categories(f)[1..].iter().map(|c| c.0.as_str()).collect::<Vec<_>>(), ["1", "2", "3", "4"]);
}

#[test]
fn unknown_version_and_stage() {
    let (p, v1, v2) = two_versions();
    let bad = p.dvx(&["diff", "zzzz", &v2]);
    assert_eq!(bad.code(), 2);
    assert!(bad.stderr().contains("no version starts with `zzzz`"), "{}", bad.stderr());
    let bad = p.dvx(&["diff", &v1, &v2, "filtre"]);
    assert_eq!(bad.code(), 2);
    assert!(bad.stderr().contains("no stage `filtre` in either version (did you mean `filter`?)"), "{}", bad.stderr());
}
