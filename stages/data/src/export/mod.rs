//! `kind: export` — a dataset's splits written as the folder a trainer
//! reads.
//!
//! ```yaml
//! deps: [split/train.jsonl, split/val.jsonl, split/test.jsonl]
//! outs: [export/mlx]        # one folder
//! params:
//!   layout: mlx_lm          # mlx_lm | llama_factory | axolotl | hub
//!   format: null            # per layout, see below; null = the layout's default
//!   splits: null            # the split of each dep; null = from the deps' file names
//!   name: null              # dataset name (LLaMA-Factory entry, card title); null = the stage's name
//!   license: null           # the card's licence (required for `hub`)
//!   category_field: category
//!   keep_fields: null       # other fields kept; null = none for trainer layouts, all for `hub`
//!   system_prompt: null     # added to records without one
//!   drop_system: false      # remove system prompts
//!   path_prefix: ""         # put before file names in axolotl.yaml
//! ```
//! Layouts and their formats (the first is the default):
//! - `mlx_lm`: `train.jsonl`, `valid.jsonl`, `test.jsonl` in `chat`
//!   (`messages`), `completions` (`prompt`/`completion`) or `text`.
//! - `llama_factory`: `<split>.jsonl` and `dataset_info.json` with an entry
//!   per split (`<name>`, `<name>_validation`, `<name>_test`): `sharegpt`
//!   (`conversations` of `from`/`value`), `messages` (OpenAI, as the
//!   `sharegpt` formatting with role/content tags) or `alpaca`.
//! - `axolotl`: `<split>.jsonl` and `axolotl.yaml` with `datasets:` (train)
//!   and `test_datasets:` (validation, else test): `chat_template`
//!   (`messages`), `alpaca` or `completion` (`text`).
//! - `hub`: `data/<split>-00000-of-00001.parquet` and a `README.md` dataset
//!   card; `records` (as they are) or any `convert` shape.
//!
//! Records become the format through `convert`'s shapes; one that cannot
//! (no answer, turns that do not alternate) fails the stage naming the file
//! and record. Metrics: `layout`, `format`, `records` (per split),
//! `categories` (per split), `files`.

mod card;
pub(crate) mod layout;

use std::collections::BTreeMap;
use std::path::Path;

use dvx_stage_api::{
    Count, Metrics, OutError, ParamDoc, ParamError, ParamsDoc, Shape, StageContext, StageFailure, TypedStage,
};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::convert::shapes::{self, RecordShape, SystemPolicy};
use crate::convert::Converter;
use crate::records::{Record, RecordWriter};
use crate::support::{category_of, file_name, par_map, pool, read_chunk, ChunkReader, OnError};
use card::{Card, SplitFacts};
use layout::{Layout, Split};

/// The `export` stage kind.
pub struct Export;

/// Params of `export`.
#[derive(Debug, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct Params {
    layout: Layout,
    #[serde(default)]
    format: Option<String>,
    #[serde(default)]
    splits: Option<Vec<Split>>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    license: Option<String>,
    #[serde(default = "default_category")]
    category_field: String,
    #[serde(default)]
    keep_fields: Option<Vec<String>>,
    #[serde(default)]
    system_prompt: Option<String>,
    #[serde(default)]
    drop_system: bool,
    #[serde(default)]
    path_prefix: String,
}

fn default_category() -> String {
    "category".into()
}

impl ParamsDoc for Params {
    fn doc() -> Vec<ParamDoc> {
        vec![
            ParamDoc::new("layout", "mlx_lm | llama_factory | axolotl | hub", "required", "The trainer's folder layout."),
            ParamDoc::new(
                "format",
                "string",
                "per layout",
                "mlx_lm: chat, completions, text; llama_factory: sharegpt, messages, alpaca; axolotl: chat_template, \
                 alpaca, completion; hub: records, messages, sharegpt, alpaca, prompt_completion, text.",
            ),
            ParamDoc::new(
                "splits",
                "list of train | validation | test",
                "-",
                "The split of each dep, in order; unset = from the deps' file names.",
            ),
            ParamDoc::new("name", "string", "stage name", "Dataset name: the LLaMA-Factory entry, the card's title."),
            ParamDoc::new("license", "string", "-", "The card's `license` (a Hub licence id); required for `hub`."),
            ParamDoc::new("category_field", "string", "category", "Field counted per split in metrics and the card."),
            ParamDoc::new(
                "keep_fields",
                "list of strings",
                "-",
                "Other fields kept; unset = none for trainer layouts, all for `hub`.",
            ),
            ParamDoc::new("system_prompt", "string", "-", "System prompt added to records that have none."),
            ParamDoc::new("drop_system", "bool", "false", "Remove system prompts."),
            ParamDoc::new("path_prefix", "string", "\"\"", "Put before the file names in `axolotl.yaml`."),
        ]
    }
}

/// Params checked and resolved.
#[derive(Debug)]
pub struct Prepared {
    layout: Layout,
    format: String,
    splits: Option<Vec<Split>>,
    name: Option<String>,
    license: String,
    category_field: String,
    /// `None` writes records as they are (`hub` + `records`).
    converter: Option<Converter>,
    keep_fields: Option<Vec<String>>,
    path_prefix: String,
}

impl TypedStage for Export {
    const KIND: &'static str = "export";
    const VERSION: u32 = 1;
    const DEPS: Count = Count::Between(1, 3);
    const OUTS: Count = Count::Exactly(1);
    const DEPS_ARE: &'static str = "records, one dep per split (train, validation, test)";
    const OUTS_ARE: &'static str = "the folder the trainer reads";
    type Params = Params;
    type Prepared = Prepared;

    fn check_outs(&self, outs: &[&str]) -> Result<(), OutError> {
        let name = outs[0].rsplit('/').next().unwrap_or(outs[0]);
        if dvx_records::WriteFormat::for_path(Path::new(name)).is_ok() && name.contains('.') {
            return Err(OutError { index: 0, message: format!("`{}`: export writes a folder; name the out without a records extension", outs[0]) });
        }
        Ok(())
    }

    fn prepare(&self, p: Params, shape: Shape) -> Result<Prepared, ParamError> {
        let formats = p.layout.formats();
        let format = p.format.unwrap_or_else(|| formats[0].to_string());
        if !formats.contains(&format.as_str()) {
            return Err(ParamError::field(
                "format",
                format!("layout `{}` writes {}, not `{format}`", p.layout.name(), formats.join(", ")),
            ));
        }
        if let Some(s) = &p.splits {
            if s.len() != shape.deps {
                return Err(ParamError::field("splits", format!("{} split(s) for {} dep(s)", s.len(), shape.deps)));
            }
            check_distinct(s).map_err(|m| ParamError::field("splits", m))?;
        }
        let license = match (p.layout, p.license) {
            (_, Some(l)) if !l.trim().is_empty() => l,
            (Layout::Hub, _) => {
                return Err(ParamError::field(
                    "license",
                    "the Hub asks every dataset for a licence: set `license:` (a Hub licence id such as `apache-2.0`, or `other`)",
                ))
            }
            _ => String::new(),
        };
        if p.drop_system && p.system_prompt.is_some() {
            return Err(ParamError::field("system_prompt", "set `system_prompt` or `drop_system`, not both"));
        }
        let keep_fields = match (p.keep_fields, p.layout) {
            (Some(k), _) => Some(k),
            (None, Layout::Hub) => None,
            (None, _) => Some(Vec::new()),
        };
        let converter = Layout::shape(&format).map(|to| Converter {
            from: None,
            to,
            roles: p.layout.roles(),
            system: SystemPolicy { add: p.system_prompt.clone(), drop: p.drop_system },
            keep_fields: keep_fields.clone(),
            drop_fields: Vec::new(),
            on_error: OnError::Fail,
        });
        if converter.is_none() && (p.system_prompt.is_some() || p.drop_system) {
            return Err(ParamError::field("format", "`records` writes records as they are: pick a shape to add or drop system prompts"));
        }
        Ok(Prepared {
            layout: p.layout,
            format,
            splits: p.splits,
            name: p.name,
            license,
            category_field: p.category_field,
            converter,
            keep_fields,
            path_prefix: p.path_prefix,
        })
    }

    fn execute(&self, p: &Prepared, ctx: &mut StageContext<'_>) -> Result<Metrics, StageFailure> {
        let splits = match &p.splits {
            Some(s) => s.clone(),
            None => splits_from_names(ctx.deps)?,
        };
        let folder = &ctx.outs[0];
        if folder.exists() {
            std::fs::remove_dir_all(folder)
                .or_else(|_| std::fs::remove_file(folder))
                .map_err(|e| StageFailure::new(format!("cannot clear {}: {e}", folder.display())))?;
        }
        std::fs::create_dir_all(folder)
            .map_err(|e| StageFailure::new(format!("cannot create {}: {e}", folder.display())))?;
        let pool = pool(ctx.threads)?;
        // Splits in train, validation, test order, whatever the deps' order.
        let mut order: Vec<usize> = (0..splits.len()).collect();
        order.sort_by_key(|&i| splits[i]);
        let mut facts = Vec::new();
        let mut has_system = false;
        for i in order {
            let (dep, split) = (&ctx.deps[i], splits[i]);
            let out = folder.join(p.layout.file(split));
            let (records, categories, system) = write_split(p, dep, &out, &pool)?;
            has_system |= system;
            writeln!(ctx.log, "export: {} → {} ({records} records)", file_name(dep), p.layout.file(split))?;
            facts.push(SplitFacts { split, records, categories, source: (file_name(dep), file_blake3(dep)?) });
        }
        let name = p.name.clone().unwrap_or_else(|| ctx.name.to_string());
        let present: Vec<Split> = facts.iter().map(|f| f.split).collect();
        let mut files: Vec<String> = present.iter().map(|&s| p.layout.file(s)).collect();
        match p.layout {
            Layout::MlxLm => {
                if !present.contains(&Split::Validation) {
                    writeln!(ctx.log, "export: WARNING: no validation split: `mlx_lm.lora --train` needs valid.jsonl")?;
                }
            }
            Layout::LlamaFactory => {
                let info = layout::llama_factory_info(&name, &p.format, &present, has_system);
                write_file(&folder.join("dataset_info.json"), &(pretty_json(&info) + "\n"))?;
                files.push("dataset_info.json".into());
            }
            Layout::Axolotl => {
                let cfg = layout::axolotl_config(&p.format, &present, &p.path_prefix);
                let yaml = serde_saphyr::to_string(&cfg).map_err(|e| StageFailure::new(format!("cannot write axolotl.yaml: {e}")))?;
                let text = format!("# axolotl datasets written by dvx; axolotl reads paths from where it runs (the export's `path_prefix` is put before each)\n{yaml}");
                write_file(&folder.join("axolotl.yaml"), &text)?;
                files.push("axolotl.yaml".into());
            }
            Layout::Hub => {
                let features = dvx_records::hf_features(&folder.join(p.layout.file(facts[0].split)))?;
                for f in &facts[1..] {
                    if dvx_records::hf_features(&folder.join(p.layout.file(f.split)))? != features {
                        writeln!(
                            ctx.log,
                            "export: WARNING: split `{}` has other columns or types than `{}`; the card lists `{}`'s, \
                             and the Hub's viewer may refuse the dataset",
                            f.split.name(),
                            facts[0].split.name(),
                            facts[0].split.name()
                        )?;
                    }
                }
                let card = Card {
                    name: &name,
                    stage: ctx.name,
                    license: &p.license,
                    format: &p.format,
                    category_field: &p.category_field,
                    features,
                    splits: &facts,
                };
                write_file(&folder.join("README.md"), &card.render().map_err(StageFailure::new)?)?;
                files.push("README.md".into());
            }
        }
        writeln!(ctx.log, "export: {} folder, {} format: {}", p.layout.name(), p.format, files.join(", "))?;
        let mut m = Metrics::new();
        m.insert("layout".into(), json!(p.layout.name()));
        m.insert("format".into(), json!(p.format));
        m.insert("records".into(), facts.iter().map(|f| (f.split.name().to_string(), json!(f.records))).collect());
        m.insert("categories".into(), facts.iter().map(|f| (f.split.name().to_string(), json!(f.categories))).collect());
        m.insert("files".into(), json!(files));
        Ok(m)
    }
}

/// Write one split's records in the layout's format; returns the count,
/// the records per category and whether any record has a system prompt.
fn write_split(
    p: &Prepared,
    dep: &Path,
    out: &Path,
    pool: &rayon::ThreadPool,
) -> Result<(usize, BTreeMap<String, usize>, bool), StageFailure> {
    let mut writer = RecordWriter::create(out)?;
    let mut reader = ChunkReader::open(dep)?;
    let mut categories: BTreeMap<String, usize> = BTreeMap::new();
    let mut has_system = false;
    let mut bad = Vec::new();
    loop {
        let chunk = read_chunk(&mut reader, pool, OnError::Fail, &mut bad)?;
        if chunk.is_empty() {
            break;
        }
        let results = par_map(pool, &chunk, |(_, rec)| export_record(p, rec.clone()));
        for ((at, rec), result) in chunk.iter().zip(results) {
            let converted = result.map_err(|reason| {
                StageFailure::bad_input(format!(
                    "{}: record {at}: cannot export as {} `{}`: {reason}",
                    file_name(dep),
                    p.layout.name(),
                    p.format
                ))
            })?;
            *categories.entry(category_of(rec, &p.category_field)).or_default() += 1;
            has_system |= converted.contains_key("system");
            writer.write(&converted)?;
        }
    }
    Ok((writer.finish()?, categories, has_system))
}

/// One record in the export's format.
fn export_record(p: &Prepared, mut rec: Record) -> Result<Record, String> {
    let Some(conv) = &p.converter else {
        if let Some(keep) = &p.keep_fields {
            rec.retain(|k, _| keep.contains(k));
        }
        return Ok(rec);
    };
    // A `text` record is already text: nothing to convert, only fields to keep.
    if conv.to == RecordShape::Text && shapes::detect(&rec) == Some(RecordShape::Text) {
        let keep = |k: &String| k == "text" || conv.keep_fields.as_ref().is_none_or(|f| f.contains(k));
        rec.retain(|k, _| keep(k));
        return Ok(rec);
    }
    conv.convert(rec).map(|(r, _)| r)
}

/// Splits named by the deps' file names; every dep must name one, once.
fn splits_from_names(deps: &[std::path::PathBuf]) -> Result<Vec<Split>, StageFailure> {
    if deps.len() == 1 && Split::from_file_name(&file_name(&deps[0])).is_none() {
        return Ok(vec![Split::Train]);
    }
    let splits = deps
        .iter()
        .map(|d| {
            Split::from_file_name(&file_name(d)).ok_or_else(|| {
                StageFailure::bad_input(format!(
                    "cannot tell which split `{}` is (its name says none of train, validation/valid/val/dev, test); \
                     set `splits:` to name each dep's split",
                    file_name(d)
                ))
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    check_distinct(&splits).map_err(StageFailure::bad_input)?;
    Ok(splits)
}

fn check_distinct(splits: &[Split]) -> Result<(), String> {
    for (i, s) in splits.iter().enumerate() {
        if splits[..i].contains(s) {
            return Err(format!("two deps are the `{}` split", s.name()));
        }
    }
    Ok(())
}

/// The blake3 of a file dep: the object hash dvx stores it under.
fn file_blake3(path: &Path) -> Result<Option<String>, StageFailure> {
    if path.is_dir() {
        return Ok(None);
    }
    let mut h = blake3::Hasher::new();
    let mut f = std::fs::File::open(path).map_err(|e| StageFailure::new(format!("cannot read {}: {e}", path.display())))?;
    std::io::copy(&mut f, &mut h).map_err(|e| StageFailure::new(format!("cannot read {}: {e}", path.display())))?;
    Ok(Some(h.finalize().to_hex().to_string()))
}

fn pretty_json(v: &Value) -> String {
    serde_json::to_string_pretty(v).expect("a JSON value serializes")
}

fn write_file(path: &Path, text: &str) -> Result<(), StageFailure> {
    std::fs::write(path, text).map_err(|e| StageFailure::new(format!("cannot write {}: {e}", path.display())))
}

#[cfg(test)]
mod tests;
