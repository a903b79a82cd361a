use super::*;
use crate::testkit::{jsonl, run, Run};

fn seed(i: &str, r: &str, cat: &str) -> Value {
    json!({"instruction": i, "response": r, "source": "alpaca", "quality_score": 0.9, "category": cat})
}

fn three_splits() -> [String; 3] {
    [
        jsonl(&[seed("q1", "a1", "qa"), seed("q2", "a2", "code"), seed("q3", "a3", "qa")]),
        jsonl(&[seed("v1", "b1", "qa")]),
        jsonl(&[seed("t1", "c1", "code")]),
    ]
}

fn export(params: Value) -> Result<Run, String> {
    let [tr, va, te] = three_splits();
    run(Export, &[&tr, &va, &te], &["exp"], params, 2)
}

fn file(r: &Run, rel: &str) -> String {
    std::fs::read_to_string(r.outs[0].join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

fn lines(r: &Run, rel: &str) -> Vec<Value> {
    file(r, rel).lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

fn listing(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut all: Vec<_> = walkdir::WalkDir::new(dir)
        .into_iter()
        .map(Result::unwrap)
        .filter(|e| e.file_type().is_file())
        .map(|e| (e.path().strip_prefix(dir).unwrap().display().to_string(), std::fs::read(e.path()).unwrap()))
        .collect();
    all.sort();
    all
}

const SPLITS: [&str; 3] = ["train", "validation", "test"];

#[test]
fn mlx_lm_chat_completions_and_text() {
    let r = export(json!({"layout": "mlx_lm", "splits": SPLITS})).unwrap();
    // mlx-lm's chat format: one `messages` list per line, nothing else.
    assert_eq!(
        lines(&r, "train.jsonl")[0],
        json!({"messages": [{"role": "user", "content": "q1"}, {"role": "assistant", "content": "a1"}]})
    );
    assert_eq!(lines(&r, "valid.jsonl").len(), 1);
    assert_eq!(lines(&r, "test.jsonl").len(), 1);
    assert_eq!(r.metric("records"), &json!({"train": 3, "validation": 1, "test": 1}));
    assert_eq!(r.metric("categories")["train"], json!({"code": 1, "qa": 2}));
    let names: Vec<String> = listing(&r.outs[0]).into_iter().map(|(n, _)| n).collect();
    assert_eq!(names, ["test.jsonl", "train.jsonl", "valid.jsonl"]);

    let c = export(json!({"layout": "mlx_lm", "format": "completions", "splits": SPLITS})).unwrap();
    assert_eq!(lines(&c, "train.jsonl")[1], json!({"prompt": "q2", "completion": "a2"}));
    let t = export(json!({"layout": "mlx_lm", "format": "text", "splits": SPLITS})).unwrap();
    assert_eq!(lines(&t, "test.jsonl")[0], json!({"text": "t1\n\nc1"}));
    // Already-text records stay as they are.
    let text = jsonl(&[json!({"text": "plain", "id": 1})]);
    let t = run(Export, &[&text], &["exp"], json!({"layout": "mlx_lm", "format": "text"}), 1).unwrap();
    assert_eq!(lines(&t, "train.jsonl"), vec![json!({"text": "plain"})]);
    assert!(t.log.contains("WARNING: no validation split"), "{}", t.log);
}

#[test]
fn llama_factory_registry_matches_its_data_readme() {
    let r = export(json!({"layout": "llama_factory", "splits": SPLITS, "name": "seed"})).unwrap();
    let info: Value = serde_json::from_str(&file(&r, "dataset_info.json")).unwrap();
    let tags = json!({"role_tag": "from", "content_tag": "value", "user_tag": "human", "assistant_tag": "gpt",
                      "observation_tag": "observation", "system_tag": "system"});
    assert_eq!(
        info,
        json!({
            "seed": {"file_name": "train.jsonl", "formatting": "sharegpt", "columns": {"messages": "conversations"}, "tags": tags},
            "seed_validation": {"file_name": "validation.jsonl", "formatting": "sharegpt", "columns": {"messages": "conversations"}, "tags": tags},
            "seed_test": {"file_name": "test.jsonl", "formatting": "sharegpt", "columns": {"messages": "conversations"}, "tags": tags},
        })
    );
    // Every column and tag the entry names is in the data: human at odd
    // positions, gpt at even ones.
    for rec in lines(&r, "train.jsonl") {
        let turns = rec["conversations"].as_array().unwrap();
        assert_eq!(turns[0]["from"], "human");
        assert_eq!(turns[1]["from"], "gpt");
        assert!(turns.iter().all(|t| t["value"].is_string()));
    }
    // Alpaca: `system` is a column only when some record has one.
    let a = export(json!({"layout": "llama_factory", "format": "alpaca", "splits": SPLITS, "name": "seed",
                          "system_prompt": "Be brief."}))
    .unwrap();
    let info: Value = serde_json::from_str(&file(&a, "dataset_info.json")).unwrap();
    assert_eq!(
        info["seed"],
        json!({"file_name": "train.jsonl", "formatting": "alpaca",
               "columns": {"prompt": "instruction", "query": "input", "response": "output", "system": "system"}})
    );
    assert_eq!(
        lines(&a, "train.jsonl")[0],
        json!({"instruction": "q1", "input": "", "output": "a1", "system": "Be brief."})
    );
    // OpenAI messages, declared through the sharegpt formatting's tags.
    let m = export(json!({"layout": "llama_factory", "format": "messages", "splits": SPLITS, "name": "seed"})).unwrap();
    let info: Value = serde_json::from_str(&file(&m, "dataset_info.json")).unwrap();
    assert_eq!(info["seed"]["columns"], json!({"messages": "messages"}));
    assert_eq!(info["seed"]["tags"]["role_tag"], "role");
    assert_eq!(lines(&m, "train.jsonl")[0]["messages"][1], json!({"role": "assistant", "content": "a1"}));
}

#[test]
fn axolotl_snippet_names_files_and_types() {
    let r = export(json!({"layout": "axolotl", "splits": SPLITS, "path_prefix": "exp/"})).unwrap();
    let text = file(&r, "axolotl.yaml");
    let cfg: Value = serde_saphyr::from_str(&text).unwrap();
    assert_eq!(
        cfg,
        json!({
            "datasets": [{"path": "exp/train.jsonl", "ds_type": "json", "type": "chat_template", "field_messages": "messages",
                          "message_property_mappings": {"role": "role", "content": "content"}}],
            "test_datasets": [{"path": "exp/validation.jsonl", "ds_type": "json", "split": "train", "type": "chat_template",
                               "field_messages": "messages", "message_property_mappings": {"role": "role", "content": "content"}}],
        })
    );
    assert!(lines(&r, "train.jsonl")[0]["messages"].is_array());
    let a = export(json!({"layout": "axolotl", "format": "alpaca", "splits": SPLITS})).unwrap();
    let cfg: Value = serde_saphyr::from_str(&file(&a, "axolotl.yaml")).unwrap();
    assert_eq!(cfg["datasets"][0]["type"], "alpaca");
    assert_eq!(lines(&a, "train.jsonl")[0], json!({"instruction": "q1", "input": "", "output": "a1"}));
    let c = export(json!({"layout": "axolotl", "format": "completion", "splits": SPLITS})).unwrap();
    let cfg: Value = serde_saphyr::from_str(&file(&c, "axolotl.yaml")).unwrap();
    assert_eq!((cfg["datasets"][0]["type"].clone(), cfg["datasets"][0]["field"].clone()), (json!("completion"), json!("text")));
}

#[test]
fn hub_folder_has_parquet_and_a_card() {
    let r = export(json!({"layout": "hub", "splits": SPLITS, "name": "Seed 002", "license": "apache-2.0"})).unwrap();
    let names: Vec<String> = listing(&r.outs[0]).into_iter().map(|(n, _)| n).collect();
    assert_eq!(
        names,
        ["README.md", "data/test-00000-of-00001.parquet", "data/train-00000-of-00001.parquet", "data/validation-00000-of-00001.parquet"]
    );
    let back = crate::records::read_all(&r.outs[0].join("data/train-00000-of-00001.parquet")).unwrap();
    assert_eq!(Value::Object(back[0].clone()), seed("q1", "a1", "qa"));
    let card = file(&r, "README.md");
    let header = card.strip_prefix("---\n").unwrap().split("\n---\n").next().unwrap();
    let yaml: Value = serde_saphyr::from_str(header).unwrap();
    assert_eq!(yaml["license"], "apache-2.0");
    assert_eq!(
        yaml["configs"],
        json!([{"config_name": "default", "data_files": [
            {"split": "train", "path": "data/train-*"}, {"split": "validation", "path": "data/validation-*"},
            {"split": "test", "path": "data/test-*"}]}])
    );
    assert_eq!(
        yaml["dataset_info"]["features"],
        json!([{"name": "instruction", "dtype": "string"}, {"name": "response", "dtype": "string"},
               {"name": "source", "dtype": "string"}, {"name": "quality_score", "dtype": "float64"},
               {"name": "category", "dtype": "string"}])
    );
    assert_eq!(
        yaml["dataset_info"]["splits"],
        json!([{"name": "train", "num_examples": 3}, {"name": "validation", "num_examples": 1}, {"name": "test", "num_examples": 1}])
    );
    assert!(card.contains("| code | 1 | 0 | 1 |\n| qa | 2 | 1 | 0 |"), "{card}");
    let train_hash = blake3::hash(three_splits()[0].as_bytes()).to_hex().to_string();
    assert!(card.contains(&format!("| train | `in0.jsonl` | `{train_hash}` |")), "{card}");
    // Same records, same bytes, file for file.
    let again = export(json!({"layout": "hub", "splits": SPLITS, "name": "Seed 002", "license": "apache-2.0"})).unwrap();
    assert_eq!(listing(&r.outs[0]), listing(&again.outs[0]));
}

#[test]
fn bad_params_and_records_are_named() {
    let err = export(json!({"layout": "hub", "splits": SPLITS})).unwrap_err();
    assert!(err.starts_with("license: the Hub asks every dataset for a licence"), "{err}");
    let err = export(json!({"layout": "mlx_lm", "format": "alpaca", "splits": SPLITS})).unwrap_err();
    assert_eq!(err, "format: layout `mlx_lm` writes chat, completions, text, not `alpaca`");
    let err = export(json!({"layout": "mlx_lm", "splits": ["train", "train", "test"]})).unwrap_err();
    assert_eq!(err, "splits: two deps are the `train` split");
    let err = export(json!({"layout": "mlx_lm"})).unwrap_err();
    assert!(err.starts_with("cannot tell which split `in0.jsonl` is"), "{err}");
    let no_answer = jsonl(&[seed("q", "a", "c"), json!({"instruction": "only a question"})]);
    let err = run(Export, &[&no_answer], &["exp"], json!({"layout": "mlx_lm"}), 1).unwrap_err();
    assert_eq!(
        err,
        "in0.jsonl: record 2: cannot export as mlx_lm `chat`: no answer field (one of output, response, completion, answer)"
    );
    let err = run(Export, &[&no_answer], &["exp.jsonl"], json!({"layout": "mlx_lm"}), 1).unwrap_err();
    assert!(err.starts_with("outs.0: `exp.jsonl`: export writes a folder"), "{err}");
}

#[test]
fn splits_come_from_file_names() {
    let p = |n: &str| std::path::PathBuf::from(format!("/x/{n}"));
    assert_eq!(
        splits_from_names(&[p("val.jsonl"), p("train.jsonl")]).unwrap(),
        vec![Split::Validation, Split::Train]
    );
    assert_eq!(splits_from_names(&[p("kept.jsonl")]).unwrap(), vec![Split::Train]);
    assert!(splits_from_names(&[p("train.jsonl"), p("train-2.jsonl")]).unwrap_err().message.contains("two deps"));
}
