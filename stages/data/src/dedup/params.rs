//! Params of `dedup` and `minhash-index`, with their defaults and checks.

use dvx_stage_api::{ParamDoc, ParamError, ParamsDoc};
use serde::{Deserialize, Serialize};

use super::lsh;

/// Largest `num_perm` accepted: far beyond any useful setting, small enough
/// that a signature stays a few KiB.
pub const MAX_NUM_PERM: usize = 4096;

/// Which duplicates to look for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Same normalised text only.
    Exact,
    /// MinHash-LSH near-duplicates (identical texts are found too, as Jaccard 1).
    Near,
    /// Both, with identical texts labelled `exact`.
    Both,
}

/// How text is normalised before hashing and shingling.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Normalize {
    /// Lowercase every character.
    pub lowercase: bool,
    /// Turn each run of whitespace into one space and trim both ends.
    pub collapse_whitespace: bool,
    /// Drop punctuation characters (ASCII and common Unicode punctuation).
    pub strip_punctuation: bool,
}

impl Default for Normalize {
    fn default() -> Self {
        Normalize { lowercase: true, collapse_whitespace: true, strip_punctuation: false }
    }
}

/// What a shingle is made of.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Unit {
    /// Whitespace-separated words.
    Words,
    /// Unicode scalar values.
    Chars,
}

/// Shingles are runs of `size` consecutive `unit`s.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Shingle {
    /// Words or chars.
    pub unit: Unit,
    /// How many units per shingle.
    pub size: usize,
}

impl Default for Shingle {
    /// Word 5-grams: the usual choice for near-duplicate removal in LLM
    /// training data; at Jaccard 0.8 a document may differ in about one word
    /// out of every 25 and still count as a duplicate.
    fn default() -> Self {
        Shingle { unit: Unit::Words, size: 5 }
    }
}

/// `dedup` params.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DedupParams {
    /// `exact`, `near` or `both`.
    pub mode: Mode,
    /// Dotted field paths making up the text; empty: the record's text.
    pub fields: Vec<String>,
    /// Text normalisation.
    pub normalize: Normalize,
    /// Shingle unit and size.
    pub shingle: Shingle,
    /// MinHash permutations per signature.
    pub num_perm: usize,
    /// Jaccard similarity at or above which two records are duplicates.
    pub threshold: f64,
    /// LSH bands; given together with `rows`, else chosen from `threshold`.
    pub bands: Option<usize>,
    /// Rows (permutations) per band.
    pub rows: Option<usize>,
    /// Seed of the permutations.
    pub seed: u64,
    /// Field whose highest value decides which copy is kept.
    pub score_field: String,
    /// The last `reference` deps are references: never output, only matched.
    pub reference: usize,
    /// Keep the first copy in input order, each record judged against the
    /// records kept before it: an append never drops a kept record.
    /// Left out of the key when off, so it changes no existing key.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub stable: bool,
    /// Reuse earlier runs' per-record sketches (see docs/incremental.md).
    #[serde(skip_serializing_if = "crate::reuse::is_on")]
    pub reuse: bool,
}

impl Default for DedupParams {
    fn default() -> Self {
        DedupParams {
            mode: Mode::Both,
            fields: Vec::new(),
            normalize: Normalize::default(),
            shingle: Shingle::default(),
            num_perm: 128,
            threshold: 0.8,
            bands: None,
            rows: None,
            seed: 42,
            score_field: "score".into(),
            reference: 0,
            stable: false,
            reuse: true,
        }
    }
}

/// The rows shared by `dedup` and `minhash-index`.
fn sketch_doc() -> Vec<ParamDoc> {
    vec![
        ParamDoc::new("fields", "list of field paths", "[]", "The text compared; `[]` = the record's turns."),
        ParamDoc::new(
            "normalize",
            "map",
            "{lowercase: true, collapse_whitespace: true, strip_punctuation: false}",
            "How text is normalised before hashing.",
        ),
        ParamDoc::new("shingle", "{unit: words | chars, size}", "{unit: words, size: 5}", "What a shingle is."),
        ParamDoc::new("num_perm", "integer", "128", "MinHash permutations per signature (1 to 4096)."),
        ParamDoc::new("seed", "integer", "42", "Seed of the permutations."),
    ]
}

impl ParamsDoc for DedupParams {
    fn doc() -> Vec<ParamDoc> {
        let mut rows = vec![ParamDoc::new("mode", "exact | near | both", "both", "Which duplicates to look for.")];
        rows.extend(sketch_doc());
        rows.extend([
            ParamDoc::new(
                "threshold",
                "fraction",
                "0.8",
                "Jaccard similarity at or above which records are duplicates.",
            ),
            ParamDoc::new("bands", "integer", "-", "LSH bands, with `rows`; default: chosen from `threshold`."),
            ParamDoc::new("rows", "integer", "-", "Rows per LSH band, with `bands`."),
            ParamDoc::new("score_field", "field path", "score", "The copy with the highest value is kept."),
            ParamDoc::new("reference", "integer", "0", "The last N deps are references: matched, never output."),
            ParamDoc::new(
                "stable",
                "bool",
                "false",
                "Append-stable: keep the first copy in input order, so an append never drops a kept record \
                 (`score_field` is not used).",
            ),
            crate::reuse::param_doc(),
        ]);
        rows
    }
}

impl ParamsDoc for IndexParams {
    fn doc() -> Vec<ParamDoc> {
        sketch_doc()
    }
}

/// `minhash-index` params: the part of `dedup`'s that decides a signature.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IndexParams {
    /// As in `dedup`.
    pub fields: Vec<String>,
    /// As in `dedup`.
    pub normalize: Normalize,
    /// As in `dedup`.
    pub shingle: Shingle,
    /// As in `dedup`.
    pub num_perm: usize,
    /// As in `dedup`.
    pub seed: u64,
}

impl Default for IndexParams {
    fn default() -> Self {
        let d = DedupParams::default();
        IndexParams { fields: d.fields, normalize: d.normalize, shingle: d.shingle, num_perm: d.num_perm, seed: d.seed }
    }
}

/// Everything that decides a record's signature; a signature file records it
/// and a dedup refuses a file whose settings differ from its own.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SketchSpec {
    /// The hash scheme version (`SCHEME_VERSION`).
    pub scheme: u32,
    /// Permutations per signature.
    pub num_perm: usize,
    /// Seed of the permutations.
    pub seed: u64,
    /// Text fields.
    pub fields: Vec<String>,
    /// Normalisation.
    pub normalize: Normalize,
    /// Shingles.
    pub shingle: Shingle,
}

impl DedupParams {
    /// The signature settings.
    pub fn spec(&self) -> SketchSpec {
        SketchSpec {
            scheme: super::SCHEME_VERSION,
            num_perm: self.num_perm,
            seed: self.seed,
            fields: self.fields.clone(),
            normalize: self.normalize.clone(),
            shingle: self.shingle,
        }
    }

    /// LSH `(bands, rows)`: the given pair, else the choice for `threshold`.
    pub fn bands_rows(&self) -> Result<(usize, usize), ParamError> {
        match (self.bands, self.rows) {
            (Some(b), Some(r)) => Ok((b, r)),
            (None, None) => lsh::choose_bands(self.threshold, self.num_perm).ok_or_else(|| {
                ParamError::field(
                    "num_perm",
                    format!(
                        "{} permutations cannot find pairs at Jaccard {} with probability {}; \
                         raise `num_perm` or give `bands` and `rows`",
                        self.num_perm,
                        self.threshold,
                        lsh::MIN_RECALL
                    ),
                )
            }),
            (Some(_), None) => Err(ParamError::field("rows", "`bands` needs `rows` too")),
            (None, Some(_)) => Err(ParamError::field("bands", "`rows` needs `bands` too")),
        }
    }

    /// Check values, and `reference` against the number of deps.
    pub fn validate(&self, deps: usize) -> Result<(), ParamError> {
        check_sketch(self.num_perm, &self.shingle)?;
        if !(self.threshold > 0.0 && self.threshold <= 1.0) {
            return Err(ParamError::field("threshold", "must be in (0, 1]"));
        }
        if self.mode != Mode::Exact {
            let (b, r) = self.bands_rows()?;
            if b == 0 {
                return Err(ParamError::field("bands", "must be at least 1"));
            }
            if r == 0 {
                return Err(ParamError::field("rows", "must be at least 1"));
            }
            if b.saturating_mul(r) > self.num_perm {
                return Err(ParamError::field(
                    "bands",
                    format!("bands × rows = {} exceeds num_perm = {}", b * r, self.num_perm),
                ));
            }
        }
        if self.score_field.is_empty() {
            return Err(ParamError::field("score_field", "must not be empty"));
        }
        if self.reference >= deps {
            return Err(ParamError::field(
                "reference",
                format!("{} reference deps leave no input among {deps} deps", self.reference),
            ));
        }
        Ok(())
    }
}

impl IndexParams {
    /// The signature settings.
    pub fn spec(&self) -> SketchSpec {
        SketchSpec {
            scheme: super::SCHEME_VERSION,
            num_perm: self.num_perm,
            seed: self.seed,
            fields: self.fields.clone(),
            normalize: self.normalize.clone(),
            shingle: self.shingle,
        }
    }

    /// Check values.
    pub fn validate(&self) -> Result<(), ParamError> {
        check_sketch(self.num_perm, &self.shingle)
    }
}

fn check_sketch(num_perm: usize, shingle: &Shingle) -> Result<(), ParamError> {
    if num_perm == 0 || num_perm > MAX_NUM_PERM {
        return Err(ParamError::field("num_perm", format!("must be in 1..={MAX_NUM_PERM}")));
    }
    if shingle.size == 0 {
        return Err(ParamError::field("shingle.size", "must be at least 1"));
    }
    Ok(())
}
