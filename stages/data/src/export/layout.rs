//! The folder each trainer reads: which files, in which record shape, and
//! the registry file that tells the trainer about them.

use serde::Deserialize;
use serde_json::{json, Map, Value};

use crate::convert::shapes::{RecordShape, RoleNames};

/// A trainer's folder layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Layout {
    /// mlx-lm's `--data` folder: `train.jsonl`, `valid.jsonl`, `test.jsonl`.
    MlxLm,
    /// Data files plus a `dataset_info.json` registry.
    LlamaFactory,
    /// Data files plus `axolotl.yaml`, a `datasets:` snippet.
    Axolotl,
    /// `data/<split>-00000-of-00001.parquet` plus a dataset card.
    Hub,
}

impl Layout {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Layout::MlxLm => "mlx_lm",
            Layout::LlamaFactory => "llama_factory",
            Layout::Axolotl => "axolotl",
            Layout::Hub => "hub",
        }
    }

    /// The formats the layout writes, the default first.
    pub(crate) fn formats(self) -> &'static [&'static str] {
        match self {
            Layout::MlxLm => &["chat", "completions", "text"],
            Layout::LlamaFactory => &["sharegpt", "messages", "alpaca"],
            Layout::Axolotl => &["chat_template", "alpaca", "completion"],
            Layout::Hub => &["records", "messages", "sharegpt", "alpaca", "prompt_completion", "text"],
        }
    }

    /// The record shape a format names; `None` writes records as they are.
    pub(crate) fn shape(format: &str) -> Option<RecordShape> {
        match format {
            "chat" | "chat_template" | "messages" => Some(RecordShape::Messages),
            "completions" | "prompt_completion" => Some(RecordShape::PromptCompletion),
            "text" | "completion" => Some(RecordShape::Text),
            "sharegpt" => Some(RecordShape::Sharegpt),
            "alpaca" => Some(RecordShape::Alpaca),
            _ => None,
        }
    }

    /// ShareGPT `from` names: LLaMA-Factory calls tool results `observation`.
    pub(crate) fn roles(self) -> RoleNames {
        match self {
            Layout::LlamaFactory => RoleNames { tool: "observation".into(), ..RoleNames::default() },
            _ => RoleNames::default(),
        }
    }

    /// The data file of a split, relative to the folder.
    pub(crate) fn file(self, split: Split) -> String {
        match self {
            // mlx-lm looks for exactly these names.
            Layout::MlxLm => format!("{}.jsonl", split.short()),
            Layout::LlamaFactory | Layout::Axolotl => format!("{}.jsonl", split.name()),
            // The Hub's shard naming, which its default config globs.
            Layout::Hub => format!("data/{}-00000-of-00001.parquet", split.name()),
        }
    }
}

/// A split of the exported dataset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Split {
    Train,
    #[serde(alias = "valid", alias = "val", alias = "dev")]
    Validation,
    Test,
}

impl Split {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Split::Train => "train",
            Split::Validation => "validation",
            Split::Test => "test",
        }
    }

    fn short(self) -> &'static str {
        match self {
            Split::Validation => "valid",
            other => other.name(),
        }
    }

    /// The split a dep's file name says it is (`train.jsonl`,
    /// `data/val.parquet`, `valid-shard.jsonl.gz`), if it says.
    pub(crate) fn from_file_name(name: &str) -> Option<Split> {
        let stem = name.split('.').next().unwrap_or(name).to_lowercase();
        let words: Vec<&str> = stem.split(|c: char| !c.is_ascii_alphanumeric()).collect();
        let has = |w: &[&str]| words.iter().any(|x| w.contains(x));
        if has(&["train", "training"]) {
            Some(Split::Train)
        } else if has(&["valid", "validation", "val", "dev", "eval"]) {
            Some(Split::Validation)
        } else if has(&["test"]) {
            Some(Split::Test)
        } else {
            None
        }
    }
}

/// LLaMA-Factory's `dataset_info.json`: one entry per split, named
/// `<name>` for train and `<name>_<split>` for the others, each with the
/// `formatting`, `columns` and (for ShareGPT-style data) `tags` its data
/// README documents.
pub(crate) fn llama_factory_info(name: &str, format: &str, splits: &[Split], has_system: bool) -> Value {
    let (formatting, columns, tags) = match format {
        "alpaca" => {
            let mut c = json!({"prompt": "instruction", "query": "input", "response": "output"});
            if has_system {
                c["system"] = json!("system");
            }
            ("alpaca", c, None)
        }
        "messages" => (
            "sharegpt",
            json!({"messages": "messages"}),
            Some(json!({"role_tag": "role", "content_tag": "content", "user_tag": "user",
                        "assistant_tag": "assistant", "observation_tag": "tool", "system_tag": "system"})),
        ),
        _ => (
            "sharegpt",
            json!({"messages": "conversations"}),
            Some(json!({"role_tag": "from", "content_tag": "value", "user_tag": "human",
                        "assistant_tag": "gpt", "observation_tag": "observation", "system_tag": "system"})),
        ),
    };
    let mut info = Map::new();
    for &s in splits {
        let key = if s == Split::Train { name.to_string() } else { format!("{name}_{}", s.name()) };
        let mut e = Map::new();
        e.insert("file_name".into(), json!(Layout::LlamaFactory.file(s)));
        e.insert("formatting".into(), json!(formatting));
        e.insert("columns".into(), columns.clone());
        if let Some(t) = &tags {
            e.insert("tags".into(), t.clone());
        }
        info.insert(key, Value::Object(e));
    }
    Value::Object(info)
}

/// axolotl's `datasets:` (train) and `test_datasets:` (the validation
/// split, else the test split) for the files, as its dataset docs give
/// them for local JSONL: `ds_type: json`, and `split: train` because a
/// single JSON file loads as a `train` split.
pub(crate) fn axolotl_config(format: &str, splits: &[Split], prefix: &str) -> Value {
    let entry = |s: Split, eval: bool| {
        let mut e = Map::new();
        e.insert("path".into(), json!(format!("{prefix}{}", Layout::Axolotl.file(s))));
        e.insert("ds_type".into(), json!("json"));
        if eval {
            e.insert("split".into(), json!("train"));
        }
        match format {
            "alpaca" => {
                e.insert("type".into(), json!("alpaca"));
            }
            "completion" => {
                e.insert("type".into(), json!("completion"));
                e.insert("field".into(), json!("text"));
            }
            _ => {
                e.insert("type".into(), json!("chat_template"));
                e.insert("field_messages".into(), json!("messages"));
                e.insert("message_property_mappings".into(), json!({"role": "role", "content": "content"}));
            }
        }
        Value::Object(e)
    };
    let mut cfg = Map::new();
    if splits.contains(&Split::Train) {
        cfg.insert("datasets".into(), json!([entry(Split::Train, false)]));
    }
    let eval = [Split::Validation, Split::Test].into_iter().find(|s| splits.contains(s));
    if let Some(s) = eval {
        cfg.insert("test_datasets".into(), json!([entry(s, true)]));
    }
    Value::Object(cfg)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_names_from_files() {
        assert_eq!(Split::from_file_name("train.jsonl"), Some(Split::Train));
        assert_eq!(Split::from_file_name("seed_val.parquet"), Some(Split::Validation));
        assert_eq!(Split::from_file_name("valid-00.jsonl.gz"), Some(Split::Validation));
        assert_eq!(Split::from_file_name("test.jsonl"), Some(Split::Test));
        assert_eq!(Split::from_file_name("contest.jsonl"), None);
        assert_eq!(Split::from_file_name("kept.jsonl"), None);
    }
}
