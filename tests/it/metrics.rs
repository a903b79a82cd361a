//! `metrics:` files of any stage (a `cmd` wrapping an external trainer
//! here) and the commands that compare versions by them: `show`, `diff`,
//! `metrics show|diff`, `params diff`, `log --table`, with tolerances.

use insta::assert_snapshot;

use crate::support::{Project, Redact};

/// A stand-in for an external trainer: its loss and accuracy depend on the
/// learning rate it is given; it writes a metrics file with a nested
/// per-class table.
const TRAIN_SH: &str = r#"lr=$1
case $lr in
  0.1) loss=5.5067; acc=0.81;;
  0.05) loss=5.5088; acc=0.812;;
  *) loss=0.31; acc=0.9;;
esac
printf '{"loss": %s, "accuracy": %s, "epochs": 3, "per_class": {"cat": {"precision": 0.8, "recall": 0.7}, "dog": {"precision": 0.9, "recall": %s}}}\n' $loss $acc $acc > metrics.json
echo "weights for lr=$lr" > model.bin
"#;

fn pipeline(lr: &str) -> String {
    format!(
        r#"name: trainer
stages:
  prep:
    deps: [raw.txt]
    outs: [data.txt]
    cmd: sort raw.txt > data.txt
  train:
    deps: [data.txt, train.sh]
    outs: [model.bin]
    metrics: [metrics.json]
    params: {{lr: {lr}, batch: 8}}
    cmd: sh train.sh ${{params.lr}}
"#
    )
}

fn project(lr: &str) -> Project {
    let p = Project::new();
    p.write("raw.txt", "b\na\n").write("train.sh", TRAIN_SH).write("dvx.yaml", &pipeline(lr));
    p
}


/// Two versions, lr 0.1 then lr 0.01: (v1, v2).
fn two_learning_rates() -> (Project, String, String) {
    let p = project("0.1");
    let v1 = p.dvx(&["run"]).ok().version();
    p.write("dvx.yaml", &pipeline("0.01"));
    let v2 = p.dvx(&["run"]).ok().version();
    (p, v1, v2)
}

#[track_caller]
fn snap(p: &Project, r: &mut Redact, args: &[&str]) -> String {
    let run = p.dvx(args);
    assert_eq!(run.code(), 0, "stdout:\n{}\nstderr:\n{}", run.stdout(), run.stderr());
    run.snapshot(r)
}

#[test]
fn a_cmd_stages_metrics_file_is_in_every_version_command() {
    let (p, v1, v2) = two_learning_rates();
    let mut r = Redact::new(&p);

    // Stored with the version, and shown by it.
    let show = p.dvx(&["show", &v2]).ok().stdout();
    assert!(show.contains("    param lr: 0.01\n"), "{show}");
    assert!(show.contains("metrics.json"), "{show}");
    assert!(show.contains("  loss       0.31\n"), "{show}");

    // DVC's defaults: B the workspace's version, A the one before it.
    assert_snapshot!("metrics_show", snap(&p, &mut r, &["metrics", "show"]));
    assert_snapshot!("metrics_diff", snap(&p, &mut r, &["metrics", "diff"]));
    assert_eq!(
        p.dvx(&["metrics", "diff", &v1[..8], &v2[..8]]).ok().stdout(),
        p.dvx(&["metrics", "diff"]).ok().stdout()
    );
    assert_snapshot!("params_diff", snap(&p, &mut r, &["params", "diff"]));
    assert_snapshot!("params_diff_all_md", snap(&p, &mut r, &["params", "diff", "--all", "--md"]));
    assert_snapshot!("diff_learning_rates", snap(&p, &mut r, &["diff", &v1[..8], &v2[..8], "--changed"]));
    assert_snapshot!("log_table", snap(&p, &mut r, &["log", "--table", "--metrics", "loss,accuracy,train:epochs"]));
    assert_snapshot!("log_table_md", snap(&p, &mut r, &["log", "--md", "--metrics", "loss"]));
    assert_snapshot!("log_table_csv", snap(&p, &mut r, &["log", "--csv", "--metrics", "loss"]));

    // JSON carries the values themselves.
    let json = |args: &[&str]| -> serde_json::Value { serde_json::from_str(&p.dvx(args).ok().stdout()).unwrap() };
    let shown = json(&["metrics", "show", "--json"]);
    assert_eq!(shown["version"], v2.as_str());
    assert_eq!(shown["metrics"]["train"]["loss"], 0.31);
    assert_eq!(shown["metrics"]["train"]["per_class"]["dog"]["recall"], 0.9);
    let d = json(&["metrics", "diff", "--json"]);
    let loss = d["metrics"][0]["rows"].as_array().unwrap().iter().find(|r| r["name"] == "loss").unwrap().clone();
    assert_eq!((loss["a"].as_f64(), loss["b"].as_f64()), (Some(5.5067), Some(0.31)));
    assert_eq!((loss["better"].as_str(), loss["regression"].as_bool()), (Some("lower"), Some(false)));
    let params = json(&["params", "diff", "--json"]);
    assert_eq!(
        params["params"],
        serde_json::json!([{"stage": "train", "name": "lr", "a": 0.1, "b": 0.01, "changed": true}])
    );
    let table = json(&["log", "--json", "--metrics", "loss"]);
    assert_eq!(table[0]["version"], v2.as_str());
    assert_eq!(table[0]["params"], serde_json::json!({"train.lr": 0.01}));
    assert_eq!(table[1]["metrics"], serde_json::json!({"loss": 5.5067}));
    let plain_diff = json(&["diff", &v1, &v2, "--json"]);
    assert_eq!(plain_diff["regressions"], 0);

    // The metrics file is an out: cached, and restored when it goes.
    std::fs::remove_file(p.path("metrics.json")).unwrap();
    let run = p.dvx(&["run", "--json"]).ok();
    assert_eq!(run.status_of("train"), "cached");
    assert!(p.read("metrics.json").contains("\"loss\": 0.31"));
}

#[test]
fn moves_within_tolerance_are_not_regressions() {
    let p = project("0.1");
    let v1 = p.dvx(&["run"]).ok().version();
    p.write("dvx.yaml", &pipeline("0.05"));
    let v2 = p.dvx(&["run"]).ok().version();
    let mut r = Redact::new(&p);

    // 5.5067 → 5.5088 is +0.04%; 0.81 → 0.812 +0.25%: within the default 1%.
    assert_snapshot!("metrics_diff_within_tolerance", snap(&p, &mut r, &["metrics", "diff"]));
    // A tolerance of its own for `loss` makes its move a regression; only what moved is shown.
    assert_snapshot!(
        "metrics_diff_tight_tolerance_changed",
        snap(&p, &mut r, &["metrics", "diff", &v1[..8], &v2[..8], "--tolerance", "loss=0.0001", "--changed"])
    );
    let regressions = |args: &[&str]| -> u64 {
        let out = p.dvx(args).ok().stdout();
        serde_json::from_str::<serde_json::Value>(&out).unwrap()["regressions"].as_u64().unwrap()
    };
    assert_eq!(regressions(&["metrics", "diff", "--json"]), 0);
    // With no tolerance the loss's rise is one; accuracy and recall rose.
    assert_eq!(regressions(&["metrics", "diff", "--json", "--tolerance", "0"]), 1);
    // Saying lower accuracy is better makes its rise one too; higher loss better clears the loss.
    assert_eq!(regressions(&["metrics", "diff", "--json", "--tolerance", "0", "--lower", "accuracy"]), 2);
    assert_eq!(regressions(&["metrics", "diff", "--json", "--tolerance", "train:loss=0"]), 1);
    assert_eq!(regressions(&["metrics", "diff", "--json", "--tolerance", "0", "--higher", "loss"]), 0);

    let bad = p.dvx(&["metrics", "diff", "--tolerance", "loss=lots"]);
    assert_eq!(bad.code(), 2);
    assert!(bad.stderr().contains("--tolerance `loss=lots`: `lots` is not a number"), "{}", bad.stderr());
}

#[test]
fn metrics_files_in_every_format() {
    let p = Project::new();
    p.write(
        "dvx.yaml",
        r#"name: formats
stages:
  yaml:
    cmd: "printf 'loss: 0.5\nsplit:\n  train: 10\n  test: 2\n' > m.yaml"
    metrics: [m.yaml]
  toml:
    cmd: "printf 'loss = 0.25\n[eval]\nacc = 0.75\n' > m.toml"
    metrics: [m.toml]
  wide:
    cmd: "printf 'loss,accuracy\n0.125,0.875\n' > wide.csv"
    metrics: [wide.csv]
  long:
    cmd: "printf 'metric,value\nloss,2\nnote,ok\n' > long.csv"
    metrics: [long.csv]
  both:
    kind: filter
    deps: [in.jsonl]
    outs: [kept.jsonl, rejected.jsonl]
    metrics: [extra.json]
    params: {rules: {a: {contains: x}}}
"#,
    );
    p.write("in.jsonl", "{\"t\": \"x\", \"category\": \"a\"}\n{\"t\": \"y\", \"category\": \"b\"}\n");
    // A built-in kind writes its outs; a metrics file beside them needs a writer,
    // so `both` fails, naming the file, and the others still ran.
    let run = p.dvx(&["run"]);
    assert_eq!(run.code(), 1, "{}", run.stderr());
    assert!(
        run.stderr().contains("declared metrics file `extra.json` was not created by the stage"),
        "{}",
        run.stderr()
    );
    p.write("dvx.yaml", &p.read("dvx.yaml").replace("    metrics: [extra.json]\n", ""));
    let v = p.dvx(&["run"]).ok().version();
    let out = p.dvx(&["metrics", "show", &v, "--json"]).ok().stdout();
    let m: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(m["metrics"]["yaml"], serde_json::json!({"loss": 0.5, "split": {"train": 10, "test": 2}}));
    assert_eq!(m["metrics"]["toml"], serde_json::json!({"loss": 0.25, "eval": {"acc": 0.75}}));
    assert_eq!(m["metrics"]["wide"], serde_json::json!({"loss": 0.125, "accuracy": 0.875}));
    assert_eq!(m["metrics"]["long"], serde_json::json!({"loss": 2, "note": "ok"}));
    // The built-in kind's own metrics are there too.
    assert_eq!(m["metrics"]["both"]["total"], 2);
}

#[test]
fn a_missing_or_malformed_metrics_file_fails_the_stage_naming_it() {
    let p = Project::new();
    p.write(
        "dvx.yaml",
        "name: bad\nstages:\n  broken:\n    cmd: \"echo '{\\\"loss\\\": ' > m.json\"\n    metrics: [m.json]\n  \
         absent:\n    cmd: \"true\"\n    metrics: [nowhere.yaml]\n  listy:\n    cmd: \"echo '[1, 2]' > l.json\"\n    \
         metrics: [l.json]\n",
    );
    // --keep-going: every failing stage gets its say.
    let run = p.dvx(&["run", "--keep-going"]);
    assert_eq!(run.code(), 1);
    let err = run.stderr();
    assert!(err.contains("stage `broken` failed: metrics file `m.json` of stage `broken`: not valid JSON"), "{err}");
    assert!(err.contains("stage `absent` failed: declared metrics file `nowhere.yaml` was not created"), "{err}");
    assert!(err.contains("metrics file `l.json` of stage `listy`: the top level is a list, not a map"), "{err}");
    assert!(run.stdout().contains("no version written") || err.contains("no version written"), "{err}");
}

#[test]
fn a_metrics_file_listed_under_outs_too_is_an_error() {
    let p = Project::new();
    p.write(
        "dvx.yaml",
        "name: twice\nstages:\n  s:\n    cmd: touch m.json\n    outs: [m.json]\n    metrics: [m.json]\n",
    );
    let mut r = Redact::new(&p);
    let run = p.dvx(&["status"]);
    assert_eq!(run.code(), 2);
    assert_snapshot!("metrics_also_under_outs", run.snapshot(&mut r));
}
