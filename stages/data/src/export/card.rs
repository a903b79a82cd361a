//! The dataset card (`README.md`) of a Hub export: a YAML header the Hub
//! reads (licence, configs, features, splits), then record counts per
//! split and category and where the records came from.
//!
//! The card cannot name the dvx version that holds it: a version's hash is
//! computed from its outputs after every stage has run, this card among
//! them. It names what the stage can know and what identifies the data
//! instead: each input's blake3 (the object hash dvx stores a file dep
//! under, so `dvx` can find the object in the cache), and the stage's name.

use std::collections::BTreeMap;
use std::fmt::Write;

use serde_json::{json, Value};

use super::layout::{Layout, Split};

/// What the card says about one split.
pub(crate) struct SplitFacts {
    pub(crate) split: Split,
    pub(crate) records: usize,
    pub(crate) categories: BTreeMap<String, usize>,
    /// The dep's file name and its blake3 (none for a folder dep).
    pub(crate) source: (String, Option<String>),
}

/// Everything the card is made of.
pub(crate) struct Card<'a> {
    pub(crate) name: &'a str,
    pub(crate) stage: &'a str,
    pub(crate) license: &'a str,
    pub(crate) format: &'a str,
    pub(crate) category_field: &'a str,
    pub(crate) features: Value,
    pub(crate) splits: &'a [SplitFacts],
}

impl Card<'_> {
    /// The YAML header as a value (serialized by the caller).
    fn header(&self) -> Value {
        let data_files: Vec<Value> = self
            .splits
            .iter()
            .map(|s| json!({"split": s.split.name(), "path": format!("data/{}-*", s.split.name())}))
            .collect();
        let splits: Vec<Value> =
            self.splits.iter().map(|s| json!({"name": s.split.name(), "num_examples": s.records})).collect();
        json!({
            "license": self.license,
            "pretty_name": self.name,
            "configs": [{"config_name": "default", "data_files": data_files}],
            "dataset_info": {"features": self.features, "splits": splits},
            "tags": ["dvx"],
        })
    }

    /// The whole `README.md`.
    pub(crate) fn render(&self) -> Result<String, String> {
        let yaml = serde_saphyr::to_string(&self.header()).map_err(|e| format!("cannot write the card header: {e}"))?;
        let mut s = String::new();
        let _ = write!(s, "---\n{yaml}");
        if !yaml.ends_with('\n') {
            s.push('\n');
        }
        let _ = writeln!(s, "---\n\n# {}\n", self.name);
        let total: usize = self.splits.iter().map(|x| x.records).sum();
        let _ = writeln!(
            s,
            "{total} records in {} split(s), as Parquet ({}). Exported by dvx (stage `{}`, `kind: export`, layout `{}`).\n",
            self.splits.len(),
            if self.format == "records" { "records as they are".to_string() } else { format!("`{}` records", self.format) },
            self.stage,
            Layout::Hub.name()
        );
        s.push_str("## Splits\n\n| split | records | file |\n|---|---:|---|\n");
        for x in self.splits {
            let _ = writeln!(s, "| {} | {} | `{}` |", x.split.name(), x.records, Layout::Hub.file(x.split));
        }
        self.categories(&mut s);
        s.push_str("\n## Provenance\n\n| split | made from | blake3 |\n|---|---|---|\n");
        for x in self.splits {
            let hash = x.source.1.as_deref().unwrap_or("(a folder)");
            let _ = writeln!(s, "| {} | `{}` | `{hash}` |", x.split.name(), x.source.0);
        }
        s.push_str(
            "\nEach blake3 is the dvx object hash of the input file. The dvx version that holds this folder \
             is named by a hash of all its outputs, this card among them, so the card cannot state it; \
             `dvx log` lists it.\n",
        );
        Ok(s)
    }

    /// Records per category and split, when any record has the category field.
    fn categories(&self, s: &mut String) {
        let mut all: BTreeMap<&str, ()> = BTreeMap::new();
        for x in self.splits {
            all.extend(x.categories.keys().map(|k| (k.as_str(), ())));
        }
        if all.keys().all(|k| *k == crate::support::NO_CATEGORY) {
            let _ = writeln!(s, "\nNo record has a `{}` field.", self.category_field);
            return;
        }
        let _ = write!(s, "\n## Records per `{}`\n\n| {} |", self.category_field, self.category_field);
        for x in self.splits {
            let _ = write!(s, " {} |", x.split.name());
        }
        s.push_str("\n|---|");
        s.push_str(&"---:|".repeat(self.splits.len()));
        s.push('\n');
        for cat in all.keys() {
            let _ = write!(s, "| {} |", cat.replace('|', "\\|"));
            for x in self.splits {
                let _ = write!(s, " {} |", x.categories.get(*cat).copied().unwrap_or(0));
            }
            s.push('\n');
        }
    }
}
