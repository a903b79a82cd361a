//! `kind: html-extract` — tool-choice examples about HTML pages (seed 004,
//! step 19.3): semantic layout, forms, tables, navigation, accessibility.
//!
//! - deps: folders of `.html` files (or single files).
//! - outs[0]: examples JSONL (shape: see [`crate::example_record`]), each
//!   tagged `pattern` (grep/read/direct), `source` (file:line) and `topic`
//!   (the category).
//! - params: `counts` (default grep 9, read 5, direct 16), `seed`, `format`,
//!   `system`, `max_grep_results` (10), `max_read_lines` (40).
//!
//! Pages are parsed with `tl`; a page that does not parse is counted and
//! listed in the metrics, never fatal.

mod knowledge;

use std::collections::BTreeSet;
use std::sync::Arc;

use dvx_stage_api::{Count, Metrics, ParamDoc, ParamError, ParamsDoc, Shape, StageContext, StageFailure, TypedStage};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::example_record::{count_metrics, fill, pick, to_record, Example, Format};
use crate::grep_sim::{self, GrepHit, GrepIndex, IndexedFile};
use crate::records::RecordWriter;
use crate::seeded::{sample_indices, SplitMix64};
use crate::source_files::{line_of, line_starts, list_files};
use knowledge::CONCEPTS;

/// How many examples of each pattern to generate.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Counts {
    /// Search examples.
    pub grep: usize,
    /// Read-a-range examples.
    pub read: usize,
    /// Direct explanations.
    pub direct: usize,
}

impl Default for Counts {
    fn default() -> Self {
        Counts { grep: 9, read: 5, direct: 16 }
    }
}

/// Params of `html-extract`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Params {
    /// Examples per pattern.
    pub counts: Counts,
    /// Sampling and wording seed.
    pub seed: u64,
    /// `chat` or `alpaca`.
    pub format: Format,
    /// Optional system message for chat records.
    pub system: Option<String>,
    /// Skip searches with more result lines than this.
    pub max_grep_results: usize,
    /// Longest range a read example shows.
    pub max_read_lines: usize,
}

impl ParamsDoc for Params {
    fn doc() -> Vec<ParamDoc> {
        vec![
            ParamDoc::new("counts", "{grep, read, direct}", "{grep: 9, read: 5, direct: 16}", "Examples per pattern."),
            ParamDoc::new("seed", "integer", "0", "Sampling and wording seed."),
            ParamDoc::new("format", "chat | alpaca", "chat", "Output record shape."),
            ParamDoc::new("system", "string", "-", "System message of chat records."),
            ParamDoc::new("max_grep_results", "integer", "10", "Skip searches with more result lines than this."),
            ParamDoc::new("max_read_lines", "integer", "40", "Longest range a read example shows."),
        ]
    }
}

impl Default for Params {
    fn default() -> Self {
        Params {
            counts: Counts::default(),
            seed: 0,
            format: Format::Chat,
            system: None,
            max_grep_results: 10,
            max_read_lines: 40,
        }
    }
}

/// One element of a page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Elem {
    /// Lowercase tag name.
    pub name: String,
    /// 1-based first line.
    pub line: usize,
    /// 1-based last line.
    pub end_line: usize,
    /// Attributes in source order (value `""` when bare).
    pub attrs: Vec<(String, String)>,
    /// Its text, whitespace collapsed, at most 80 characters.
    pub text: String,
}

impl Elem {
    fn attr(&self, name: &str) -> Option<&str> {
        self.attrs.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    /// The opening tag, rebuilt from the attributes.
    fn opening(&self) -> String {
        let mut s = format!("<{}", self.name);
        for (k, v) in &self.attrs {
            if v.is_empty() {
                s.push_str(&format!(" {k}"));
            } else {
                s.push_str(&format!(" {k}=\"{v}\""));
            }
        }
        s.push('>');
        s
    }
}

/// Parse a page into its elements, in document order.
pub fn elements(text: &str) -> Result<Vec<Elem>, String> {
    let dom = tl::parse(text, tl::ParserOptions::default()).map_err(|e| e.to_string())?;
    let parser = dom.parser();
    let starts = line_starts(text);
    let mut out = Vec::new();
    for node in dom.nodes() {
        let Some(tag) = node.as_tag() else { continue };
        let (start, end) = tag.boundaries(parser);
        let mut attrs: Vec<(String, String)> = tag
            .attributes()
            .iter()
            .map(|(k, v)| (k.to_ascii_lowercase(), v.map(|v| v.into_owned()).unwrap_or_default()))
            .collect();
        // tl lists `id` and `class` last; put attributes back in source order.
        let open = text[start..=end].split('>').next().unwrap_or("").to_ascii_lowercase();
        let pos = |name: &str| {
            open.match_indices(name)
                .find(|(i, _)| open[..*i].ends_with(char::is_whitespace))
                .map_or(usize::MAX, |(i, _)| i)
        };
        attrs.sort_by_key(|(k, _)| pos(k));
        let inner = tag.inner_text(parser);
        let mut words = String::new();
        for w in inner.split_whitespace() {
            if words.len() + w.len() > 80 {
                break;
            }
            if !words.is_empty() {
                words.push(' ');
            }
            words.push_str(w);
        }
        out.push(Elem {
            name: tag.name().as_utf8_str().to_ascii_lowercase(),
            line: line_of(&starts, start),
            end_line: line_of(&starts, end),
            attrs,
            text: words,
        });
    }
    Ok(out)
}

struct Page {
    rel: String,
    repo: String,
    search_dir: String,
    root_id: usize,
    text: String,
    elems: Vec<Elem>,
}

impl Page {
    fn shown(&self) -> String {
        if self.search_dir == "." || self.search_dir.is_empty() {
            format!("./{}", self.rel)
        } else {
            self.rel.clone()
        }
    }
}

fn category_of(tag: &str) -> &'static str {
    CONCEPTS.iter().find(|c| !c.attribute && c.key == tag).map(|c| c.category).unwrap_or("semantic")
}

/// Element names worth a search or a read, with the category they belong to.
const GREP_TAGS: &[&str] = &[
    "header", "nav", "main", "article", "section", "aside", "footer", "figure", "form", "fieldset", "label", "select",
    "textarea", "table", "caption", "th", "time", "button",
];
const READ_TAGS: &[&str] = &[
    "header", "nav", "main", "article", "section", "aside", "footer", "figure", "form", "fieldset", "table", "ol", "ul",
];
/// Attributes whose `name="value"` is worth a search.
const GREP_ATTRS: &[(&str, &str)] = &[
    ("aria-label", "accessibility"),
    ("aria-describedby", "accessibility"),
    ("aria-live", "accessibility"),
    ("aria-current", "navigation"),
    ("role", "accessibility"),
    ("type", "forms"),
    ("scope", "tables"),
    ("autocomplete", "forms"),
    ("id", "semantic"),
];

struct GrepCand {
    page: usize,
    pattern: String,
    subject: String,
    category: &'static str,
    is_tag: bool,
}

fn grep_examples(pages: &[Page], index: &[GrepIndex], want: usize, p: &Params) -> (Vec<Example>, usize) {
    let mut seen = BTreeSet::new();
    let mut cands = Vec::new();
    for (pi, page) in pages.iter().enumerate() {
        if page.search_dir.is_empty() {
            continue;
        }
        for e in &page.elems {
            if GREP_TAGS.contains(&e.name.as_str()) {
                let pattern = format!("<{}", e.name);
                if seen.insert((page.root_id, page.search_dir.clone(), pattern.clone())) {
                    cands.push(GrepCand {
                        page: pi,
                        pattern,
                        subject: format!("<{}>", e.name),
                        category: category_of(&e.name),
                        is_tag: true,
                    });
                }
            }
            for (k, v) in &e.attrs {
                let Some((_, cat)) = GREP_ATTRS.iter().find(|(a, _)| a == k) else { continue };
                if v.is_empty() || v.contains(['"', '\'', '\n']) {
                    continue;
                }
                let pattern = format!("{k}=\"{v}\"");
                if seen.insert((page.root_id, page.search_dir.clone(), pattern.clone())) {
                    cands.push(GrepCand {
                        page: pi,
                        pattern: pattern.clone(),
                        subject: pattern,
                        category: cat,
                        is_tag: false,
                    });
                }
            }
        }
    }
    let mut rng = SplitMix64::with_label(p.seed, "html-grep");
    let mut order: Vec<usize> = (0..cands.len()).collect();
    for i in (1..order.len()).rev() {
        let j = rng.below(i as u64 + 1) as usize;
        order.swap(i, j);
    }
    let mut chosen = Vec::new();
    for i in order {
        if chosen.len() >= want {
            break;
        }
        let c = &cands[i];
        let page = &pages[c.page];
        let Some(hits) = index[page.root_id].search(&page.search_dir, &c.pattern) else { continue };
        if hits.is_empty() || hits.len() > p.max_grep_results {
            continue;
        }
        let Some(cmd) = grep_sim::command(".html", &c.pattern, &page.search_dir) else { continue };
        // The example's source is the first line the search really finds.
        let first = &hits[0];
        let source = format!("{}:{}", first.rel, first.line);
        let key = format!("html-grep:{}:{}", page.rel, c.pattern);
        let vars = [("x", c.subject.as_str()), ("repo", page.repo.as_str())];
        let q = if c.is_tag {
            pick(
                p.seed,
                &key,
                &[
                    "Which HTML pages in {repo} use a `{x}` element?",
                    "Find every `{x}` in the pages of {repo}.",
                    "Where do the pages of {repo} use `{x}`?",
                ],
            )
        } else {
            pick(
                p.seed,
                &key,
                &[
                    "Find the elements with `{x}` in the pages of {repo}.",
                    "Which page in {repo} has `{x}`?",
                    "Search the HTML of {repo} for `{x}`.",
                ],
            )
        };
        let files: BTreeSet<&str> = hits.iter().map(|h| h.path.as_str()).collect();
        let results: Vec<String> = hits.iter().map(GrepHit::render).collect();
        let answer = format!(
            "I'll search the HTML files:\n\n```bash\n{cmd}\n```\n\nResult:\n```\n{}\n```\n\n{} matching line(s) in {}: {}.",
            results.join("\n"),
            hits.len(),
            if files.len() == 1 { "1 file".to_string() } else { format!("{} files", files.len()) },
            files.iter().copied().collect::<Vec<_>>().join(", ")
        );
        chosen.push((
            i,
            Example { pattern: "grep", question: fill(q, &vars), answer, source, topic: c.category.to_string() },
        ));
    }
    chosen.sort_by_key(|(i, _)| *i);
    (chosen.into_iter().map(|(_, e)| e).collect(), cands.len())
}

fn describe(e: &Elem) -> String {
    for k in ["aria-label", "id", "action", "class"] {
        if let Some(v) = e.attr(k) {
            if !v.is_empty() {
                return format!("`<{}>` ({k} `{v}`)", e.name);
            }
        }
    }
    format!("`<{}>`", e.name)
}

fn read_examples(pages: &[Page], want: usize, p: &Params) -> (Vec<Example>, usize) {
    let mut cands = Vec::new();
    for (pi, page) in pages.iter().enumerate() {
        for (ei, e) in page.elems.iter().enumerate() {
            if READ_TAGS.contains(&e.name.as_str()) && e.end_line > e.line {
                cands.push((pi, ei));
            }
        }
    }
    let picked = sample_indices(cands.len(), want, &mut SplitMix64::with_label(p.seed, "html-read"));
    let out = picked
        .into_iter()
        .map(|i| {
            let (pi, ei) = cands[i];
            let page = &pages[pi];
            let e = &page.elems[ei];
            let path = page.shown();
            let end = e.end_line.min(e.line + p.max_read_lines - 1);
            let lines: Vec<&str> = page.text.split('\n').collect();
            let body = lines[e.line - 1..end.min(lines.len())].join("\n");
            let source = format!("{}:{}", page.rel, e.line);
            let desc = describe(e);
            let vars = [("x", desc.as_str()), ("file", path.as_str())];
            let q = pick(p.seed, &format!("html-read:{source}"), &[
                "Show me the markup of the {x} in `{file}`.",
                "I want to see how the {x} in `{file}` is written.",
                "Open `{file}` at the {x}.",
            ]);
            let mut answer = format!(
                "The {desc} spans lines {}–{} of `{path}`. I'll read them:\n\n```bash\nsed -n '{},{end}p' {path}\n```\n\n```html\n{body}\n```",
                e.line, e.end_line, e.line
            );
            if end < e.end_line {
                answer.push_str(&format!("\n\nIt continues to line {}.", e.end_line));
            }
            Example { pattern: "read", question: fill(q, &vars), answer, source, topic: category_of(&e.name).to_string() }
        })
        .collect();
    (out, cands.len())
}

fn direct_examples(pages: &[Page], want: usize, p: &Params) -> (Vec<Example>, usize) {
    // (page, concept, element): the first element of each page showing it.
    let mut cands = Vec::new();
    for (pi, page) in pages.iter().enumerate() {
        for (ci, c) in CONCEPTS.iter().enumerate() {
            let found =
                page.elems.iter().position(|e| if c.attribute { e.attr(c.key).is_some() } else { e.name == c.key });
            if let Some(ei) = found {
                cands.push((pi, ci, ei));
            }
        }
    }
    let picked = sample_indices(cands.len(), want, &mut SplitMix64::with_label(p.seed, "html-direct"));
    let out = picked
        .into_iter()
        .map(|i| {
            let (pi, ci, ei) = cands[i];
            let (page, c, e) = (&pages[pi], &CONCEPTS[ci], &pages[pi].elems[ei]);
            let source = format!("{}:{}", page.rel, e.line);
            let key = format!("html-direct:{source}:{}", c.key);
            let tag = format!("<{}>", e.name);
            let vars = [("key", c.key), ("tag", tag.as_str()), ("file", page.rel.as_str())];
            let q = if c.attribute {
                pick(
                    p.seed,
                    &key,
                    &[
                        "What does the `{key}` attribute do on the `{tag}` in `{file}`?",
                        "Why does `{file}` put `{key}` on its `{tag}`?",
                        "Explain `{key}` as used in `{file}`.",
                    ],
                )
            } else {
                pick(
                    p.seed,
                    &key,
                    &[
                        "What is the `<{key}>` element for in `{file}`?",
                        "Why does `{file}` use `<{key}>`?",
                        "Explain the `<{key}>` element as used in `{file}`.",
                    ],
                )
            };
            let mut answer = c.note.to_string();
            answer.push_str(&format!("\n\nIn `{}` (line {}) it is `{}`", page.rel, e.line, e.opening()));
            if !e.text.is_empty() {
                answer.push_str(&format!(", with the text \"{}\"", e.text));
            }
            answer.push('.');
            Example { pattern: "direct", question: fill(q, &vars), answer, source, topic: c.category.to_string() }
        })
        .collect();
    (out, cands.len())
}

/// The `html-extract` kind.
pub struct HtmlExtract;

impl TypedStage for HtmlExtract {
    const KIND: &'static str = "html-extract";
    const VERSION: u32 = 2;
    const DEPS: Count = Count::AtLeast(1);
    const OUTS: Count = Count::Exactly(1);
    const DEPS_ARE: &'static str = "folders of HTML pages";
    const OUTS_ARE: &'static str = "the examples JSONL";
    type Params = Params;
    type Prepared = Params;

    fn check_outs(&self, outs: &[&str]) -> Result<(), dvx_stage_api::OutError> {
        crate::support::check_record_outs(outs, ..1)
    }

    fn prepare(&self, p: Params, _shape: Shape) -> Result<Params, ParamError> {
        if p.max_read_lines == 0 {
            return Err(ParamError::field("max_read_lines", "must be at least 1"));
        }
        Ok(p)
    }

    fn execute(&self, p: &Params, ctx: &mut StageContext<'_>) -> Result<Metrics, StageFailure> {
        let files = list_files(ctx.deps, &[".html", ".htm"])?;
        let mut roots: Vec<Vec<IndexedFile>> = vec![Vec::new(); ctx.deps.len()];
        let mut pages = Vec::new();
        let mut failed = Vec::new();
        for f in &files {
            let bytes = Arc::new(
                std::fs::read(&f.abs)
                    .map_err(|e| StageFailure::new(format!("cannot read {}: {e}", f.abs.display())))?,
            );
            roots[f.dep].push(IndexedFile {
                rel: f.rel.clone(),
                binary: GrepIndex::is_binary(&bytes),
                bytes: bytes.clone(),
            });
            let text = match std::str::from_utf8(&bytes) {
                Ok(t) => t.to_string(),
                Err(e) => {
                    failed.push(format!("{}: not UTF-8: {e}", f.rel));
                    continue;
                }
            };
            match elements(&text) {
                Err(e) => failed.push(format!("{}: {e}", f.rel)),
                Ok(elems) => {
                    let (repo, search_dir) = match f.rel.split_once('/') {
                        Some((top, _)) => (top.to_string(), top.to_string()),
                        // Pages at the top of a dep: the dep is the site.
                        None => ("this site".to_string(), if f.file_dep { String::new() } else { ".".to_string() }),
                    };
                    pages.push(Page { rel: f.rel.clone(), repo, search_dir, root_id: f.dep, text, elems });
                }
            }
        }
        for f in &failed {
            writeln!(ctx.log, "parse failed: {f}")?;
        }
        let index: Vec<GrepIndex> = roots.into_iter().map(GrepIndex::new).collect();
        let (grep, gp) = grep_examples(&pages, &index, p.counts.grep, p);
        let (read, rp) = read_examples(&pages, p.counts.read, p);
        let (direct, dp) = direct_examples(&pages, p.counts.direct, p);
        let mut w = RecordWriter::create(&ctx.outs[0])?;
        let mut topics = std::collections::BTreeMap::<String, usize>::new();
        for ex in grep.iter().chain(&read).chain(&direct) {
            *topics.entry(ex.topic.clone()).or_default() += 1;
            w.write(&to_record(ex, p.format, p.system.as_deref()))?;
        }
        let written = w.finish()?;
        let mut m = Metrics::new();
        m.insert("files".into(), json!(files.len()));
        m.insert("parsed".into(), json!(pages.len()));
        m.insert("parse_failed".into(), json!(failed.len()));
        m.insert("parse_failed_files".into(), json!(failed.iter().take(50).collect::<Vec<_>>()));
        m.insert("elements".into(), json!(pages.iter().map(|p| p.elems.len()).sum::<usize>()));
        m.insert(
            "patterns".into(),
            count_metrics(
                &[("grep", p.counts.grep), ("read", p.counts.read), ("direct", p.counts.direct)],
                &[("grep", grep.len()), ("read", read.len()), ("direct", direct.len())],
                &[("grep", gp), ("read", rp), ("direct", dp)],
            ),
        );
        m.insert("topics".into(), json!(topics));
        m.insert("examples".into(), json!(written));
        Ok(m)
    }
}

#[cfg(test)]
mod tests;
