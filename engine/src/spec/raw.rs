//! The YAML as written, with locations, before resolution.

use std::collections::BTreeMap;
use std::fmt;

use serde::de::{MapAccess, Visitor};
use serde::{Deserialize, Deserializer};
use serde_saphyr::Spanned;

use super::value::Node;

/// A pipeline file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawPipeline {
    pub name: Option<Spanned<String>>,
    /// Working folder of the stages, relative to the pipeline file.
    pub wdir: Option<Spanned<String>>,
    #[serde(default)]
    pub imports: Vec<Spanned<String>>,
    /// Cache directory (team cache).
    pub cache: Option<Spanned<String>>,
    /// How restored outputs are placed: auto | reflink | hardlink | symlink | copy.
    pub link: Option<Spanned<String>>,
    /// Where stages run by default: local | slurm.
    pub executor: Option<Spanned<String>>,
    #[serde(default)]
    pub stages: StageList,
}

/// One stage as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawStage {
    pub kind: Option<Spanned<String>>,
    #[serde(default)]
    pub deps: Vec<Spanned<String>>,
    #[serde(default)]
    pub outs: Vec<Spanned<String>>,
    /// Metrics files the stage writes (outs too, as in DVC).
    #[serde(default)]
    pub metrics: Vec<Spanned<String>>,
    pub params: Option<Spanned<Node>>,
    pub cmd: Option<Spanned<String>>,
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    pub executor: Option<Spanned<String>>,
    pub resources: Option<Spanned<Node>>,
    /// Compute threads the stage uses (its share of the run's thread budget).
    pub threads: Option<Spanned<i64>>,
    /// Record ranges a record-wise stage is split into, each run as its own unit.
    pub shards: Option<Spanned<i64>>,
    /// Free text for humans; accepted so pipelines can document stages.
    #[serde(default)]
    #[allow(dead_code)]
    pub desc: Option<String>,
}

/// Stages in the order written, with the location of each name.
#[derive(Debug, Default)]
pub(crate) struct StageList(pub Vec<(Spanned<String>, RawStage)>);

impl<'de> Deserialize<'de> for StageList {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = StageList;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a map of stage name to stage")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<StageList, A::Error> {
                let mut v = Vec::new();
                while let Some(k) = map.next_key::<Spanned<String>>()? {
                    let stage = map.next_value::<RawStage>()?;
                    v.push((k, stage));
                }
                Ok(StageList(v))
            }
            fn visit_unit<E>(self) -> Result<StageList, E> {
                Ok(StageList::default())
            }
        }
        d.deserialize_map(V)
    }
}

/// Field names, for "did you mean".
pub(crate) const PIPELINE_FIELDS: &[&str] = &["name", "wdir", "imports", "cache", "link", "executor", "stages"];
pub(crate) const STAGE_FIELDS: &[&str] =
    &["kind", "deps", "outs", "metrics", "params", "cmd", "env", "executor", "resources", "threads", "shards", "desc"];
