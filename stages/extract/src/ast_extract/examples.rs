//! Turning extracted definitions into the three example patterns of seed
//! 004: `grep` (the answer is a search, with its real result lines), `read`
//! (the answer reads one file's line range) and `direct` (the answer comes
//! from docstrings and signatures, no tool needed).
//!
//! Candidates are listed in file/line order; each pattern samples its own
//! with a seed mixed with the pattern's name, and the wording variant of a
//! question is drawn from the seed and the example's source, so adding files
//! elsewhere does not reword existing examples.

use std::collections::{BTreeSet, HashMap};

use super::defs::{Def, DefKind, FileFacts};
use crate::example_record::{fill, pick, Example};
use crate::grep_sim::{self, GrepHit, GrepIndex};
use crate::seeded::{sample_indices, SplitMix64};

/// A parsed file, as the generators see it.
pub struct ParsedFile {
    /// Path relative to its dep root, `/`-separated.
    pub rel: String,
    /// Name of the repository (top folder, or the dep folder's name).
    pub repo: String,
    /// Folder to search with grep (top folder, or `.`).
    pub search_dir: String,
    /// Which dep root (and grep index) the file belongs to.
    pub root_id: usize,
    /// File text.
    pub text: String,
    /// Extracted facts.
    pub facts: FileFacts,
}

/// Knobs of the generators.
pub struct GenOptions {
    /// Seed for sampling and wording.
    pub seed: u64,
    /// Skip grep searches with more result lines than this.
    pub max_grep_results: usize,
    /// Longest line range a `read` example shows.
    pub max_read_lines: usize,
    /// Leave out `_private` names (dunder methods stay out too).
    pub skip_private: bool,
}

fn private(name: &str) -> bool {
    name.starts_with('_')
}

/// A grep example in waiting: the search and how to phrase it.
struct GrepCand {
    file: usize,
    line: usize,
    topic: &'static str,
    pattern: String,
    subject: String,
    /// Minimum number of result lines for the example to make sense.
    min_hits: usize,
}

/// Build the grep candidates of every file, deduplicated by (repo, pattern).
fn grep_candidates(files: &[ParsedFile], opts: &GenOptions) -> Vec<GrepCand> {
    let mut seen = BTreeSet::new();
    let mut out = Vec::new();
    let mut push = |c: GrepCand, repo: &str| {
        if seen.insert((repo.to_string(), c.pattern.clone())) {
            out.push(c);
        }
    };
    for (fi, f) in files.iter().enumerate() {
        let lines: Vec<&str> = f.text.split('\n').collect();
        for d in &f.facts.defs {
            if opts.skip_private && private(&d.name) {
                continue;
            }
            let line_text = lines.get(d.line - 1).copied().unwrap_or("");
            let (topic, pattern) = match d.kind {
                DefKind::Class => ("class", format!("class {}", d.name)),
                DefKind::Function => ("function", format!("def {}(", d.name)),
                DefKind::Method => ("method", format!("def {}(", d.name)),
            };
            // The def line must itself match, or the answer would not show it.
            if !line_text.contains(&pattern) {
                continue;
            }
            push(GrepCand { file: fi, line: d.line, topic, pattern, subject: d.name.clone(), min_hits: 1 }, &f.repo);
            if d.kind == DefKind::Function {
                let call = format!("{}(", d.name);
                push(
                    GrepCand {
                        file: fi,
                        line: d.line,
                        topic: "usage",
                        pattern: call,
                        subject: d.name.clone(),
                        min_hits: 2,
                    },
                    &f.repo,
                );
            }
            for dec in &d.decorators {
                let callee = dec.split('(').next().unwrap_or(dec).trim();
                if callee.is_empty() || callee.contains(char::is_whitespace) {
                    continue;
                }
                let pattern = format!("@{callee}");
                push(
                    GrepCand {
                        file: fi,
                        line: d.start_line,
                        topic: "decorator",
                        pattern,
                        subject: callee.to_string(),
                        min_hits: 1,
                    },
                    &f.repo,
                );
            }
        }
        for imp in &f.facts.imports {
            if let Some(m) = &imp.from {
                if m.starts_with('.') || m == "__future__" {
                    continue;
                }
                let pattern = format!("from {m} import");
                push(
                    GrepCand { file: fi, line: imp.line, topic: "import", pattern, subject: m.clone(), min_hits: 1 },
                    &f.repo,
                );
            }
        }
    }
    out
}

/// Lookup from (file, line) to the qualified name defined there.
fn def_at(files: &[ParsedFile]) -> HashMap<(&str, usize), &Def> {
    let mut m = HashMap::new();
    for f in files {
        for d in &f.facts.defs {
            m.insert((f.rel.as_str(), d.line), d);
        }
    }
    m
}

fn grep_example(
    c: &GrepCand,
    f: &ParsedFile,
    hits: &[GrepHit],
    defs: &HashMap<(&str, usize), &Def>,
    seed: u64,
) -> Option<Example> {
    let cmd = grep_sim::command(".py", &c.pattern, &f.search_dir)?;
    let source = format!("{}:{}", f.rel, c.line);
    let key = format!("grep:{source}:{}", c.pattern);
    let vars = [("name", c.subject.as_str()), ("repo", f.repo.as_str())];
    let target = hits.iter().find(|h| h.rel == f.rel && h.line == c.line);
    let files_hit: BTreeSet<&str> = hits.iter().map(|h| h.path.as_str()).collect();
    let (question, summary) = match c.topic {
        "class" | "function" => {
            let t = target?;
            let q = if c.topic == "class" {
                pick(
                    seed,
                    &key,
                    &[
                        "Where is the `{name}` class defined in {repo}?",
                        "Find the definition of class `{name}` in the {repo} codebase.",
                        "Which file in {repo} defines the `{name}` class?",
                    ],
                )
            } else {
                pick(
                    seed,
                    &key,
                    &[
                        "Where is the function `{name}` defined in {repo}?",
                        "Find where `{name}()` is implemented in {repo}.",
                        "In {repo}, which module contains the `{name}` function?",
                    ],
                )
            };
            let mut s = format!("`{}` is defined in `{}` at line {}.", c.subject, t.path, t.line);
            if hits.len() > 1 {
                s.push_str(&format!(" The other {} match(es) are similarly named.", hits.len() - 1));
            }
            (fill(q, &vars), s)
        }
        "method" => {
            let q = pick(
                seed,
                &key,
                &[
                    "Which classes in {repo} define a `{name}` method?",
                    "Find every `{name}` method in {repo}.",
                    "Where is `{name}` implemented as a method in {repo}?",
                ],
            );
            let owners: Vec<String> = hits
                .iter()
                .map(|h| match defs.get(&(h.rel.as_str(), h.line)) {
                    Some(d) => format!("`{}` ({}:{})", d.qualname, h.path, h.line),
                    None => format!("{}:{}", h.path, h.line),
                })
                .collect();
            (fill(q, &vars), format!("{} definition(s): {}.", hits.len(), owners.join(", ")))
        }
        "usage" => {
            let q = pick(
                seed,
                &key,
                &[
                    "Where is `{name}` called in {repo}?",
                    "Find the call sites of `{name}()` in {repo}.",
                    "Which code in {repo} uses the `{name}` function?",
                ],
            );
            let t = target?;
            (
                fill(q, &vars),
                format!(
                    "{} line(s) mention `{}(`: the definition at {}:{} and {} other use(s) in {} file(s).",
                    hits.len(),
                    c.subject,
                    t.path,
                    t.line,
                    hits.len() - 1,
                    files_hit.len()
                ),
            )
        }
        "decorator" => {
            let q = pick(
                seed,
                &key,
                &[
                    "Find every place in {repo} that uses the `@{name}` decorator.",
                    "Which functions in {repo} are decorated with `@{name}`?",
                    "Show me the uses of `@{name}` in {repo}.",
                ],
            );
            (fill(q, &vars), format!("`@{}` appears {} time(s) in {} file(s).", c.subject, hits.len(), files_hit.len()))
        }
        _ => {
            let q = pick(
                seed,
                &key,
                &[
                    "Which modules in {repo} import from `{name}`?",
                    "Find the files in {repo} that import from `{name}`.",
                    "Where does {repo} import `{name}`?",
                ],
            );
            let names: Vec<&str> = files_hit.iter().copied().collect();
            (fill(q, &vars), format!("{} file(s) import from `{}`: {}.", names.len(), c.subject, names.join(", ")))
        }
    };
    let results: Vec<String> = hits.iter().map(GrepHit::render).collect();
    let answer = format!(
        "I'll search the code:\n\n```bash\n{cmd}\n```\n\nResult:\n```\n{}\n```\n\n{summary}",
        results.join("\n")
    );
    Some(Example { pattern: "grep", question, answer, source, topic: c.topic.to_string() })
}

/// `grep` examples: a seeded walk over the candidates, keeping each whose
/// real search has between `min_hits` and `max_grep_results` lines.
pub fn grep_examples(
    files: &[ParsedFile],
    index: &[GrepIndex],
    want: usize,
    opts: &GenOptions,
) -> (Vec<Example>, usize) {
    let cands = grep_candidates(files, opts);
    let defs = def_at(files);
    let mut rng = SplitMix64::with_label(opts.seed, "grep");
    let order = sample_indices_shuffled(cands.len(), &mut rng);
    let mut chosen: Vec<(usize, Example)> = Vec::new();
    for i in order {
        if chosen.len() >= want {
            break;
        }
        let c = &cands[i];
        let f = &files[c.file];
        if f.search_dir.is_empty() {
            continue;
        }
        let Some(idx) = index.get(f.root_id) else { continue };
        let Some(hits) = idx.search(&f.search_dir, &c.pattern) else { continue };
        if hits.len() < c.min_hits || hits.len() > opts.max_grep_results {
            continue;
        }
        if let Some(ex) = grep_example(c, f, &hits, &defs, opts.seed) {
            chosen.push((i, ex));
        }
    }
    chosen.sort_by_key(|(i, _)| *i);
    (chosen.into_iter().map(|(_, e)| e).collect(), cands.len())
}

/// All of `0..n` in a seeded order.
fn sample_indices_shuffled(n: usize, rng: &mut SplitMix64) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..n).collect();
    for i in (1..n).rev() {
        let j = rng.below(i as u64 + 1) as usize;
        idx.swap(i, j);
    }
    idx
}

/// `read` examples: a definition's lines, or a module's opening lines.
pub fn read_examples(files: &[ParsedFile], want: usize, opts: &GenOptions) -> (Vec<Example>, usize) {
    struct ReadCand<'a> {
        file: usize,
        def: Option<&'a Def>,
        start: usize,
        end: usize,
    }
    let mut cands = Vec::new();
    for (fi, f) in files.iter().enumerate() {
        // Module-level imports only: one inside a function is not part of the overview.
        let last_import = f.facts.imports.iter().filter(|i| i.module_level).map(|i| i.line).max();
        if let (Some(_), Some(last)) = (&f.facts.module_doc, last_import) {
            cands.push(ReadCand { file: fi, def: None, start: 1, end: last });
        }
        for d in &f.facts.defs {
            if opts.skip_private && private(&d.name) {
                continue;
            }
            if d.end_line + 1 - d.start_line >= 3 {
                cands.push(ReadCand { file: fi, def: Some(d), start: d.start_line, end: d.end_line });
            }
        }
    }
    let mut rng = SplitMix64::with_label(opts.seed, "read");
    let picked = sample_indices(cands.len(), want, &mut rng);
    let examples = picked
        .into_iter()
        .map(|i| {
            let c = &cands[i];
            let f = &files[c.file];
            let shown_end = c.end.min(c.start + opts.max_read_lines - 1);
            let lines: Vec<&str> = f.text.split('\n').collect();
            let body = lines[c.start - 1..shown_end.min(lines.len())].join("\n");
            let path = f.shown_path();
            let source = format!("{}:{}", f.rel, c.start);
            let key = format!("read:{source}");
            let (question, intro, topic) = match c.def {
                Some(d) => {
                    let kind = d.kind.as_str();
                    let vars = [
                        ("name", d.qualname.as_str()),
                        ("repo", f.repo.as_str()),
                        ("kind", kind),
                        ("file", path.as_str()),
                    ];
                    let q = pick(
                        opts.seed,
                        &key,
                        &[
                            "Show me how `{name}` is implemented in {repo}.",
                            "I want to read the code of the `{name}` {kind} in `{file}`.",
                            "Open the source of `{name}` so I can see what it does.",
                        ],
                    );
                    let intro =
                        format!("`{}` is in `{path}`, lines {}–{}. I'll read that range:", d.qualname, c.start, c.end);
                    (fill(q, &vars), intro, kind.to_string())
                }
                None => {
                    let vars = [("repo", f.repo.as_str()), ("file", path.as_str())];
                    let q = pick(
                        opts.seed,
                        &key,
                        &[
                            "Give me an overview of `{file}`: what is it for and what does it import?",
                            "What does the module `{file}` depend on?",
                            "Open the top of `{file}` in {repo}.",
                        ],
                    );
                    let intro =
                        format!("The module docstring and imports of `{path}` are in lines {}–{}:", c.start, c.end);
                    (fill(q, &vars), intro, "module".to_string())
                }
            };
            let mut answer = format!(
                "{intro}\n\n```bash\nsed -n '{},{}p' {path}\n```\n\n```python\n{body}\n```",
                c.start, shown_end
            );
            if shown_end < c.end {
                answer.push_str(&format!(
                    "\n\nIt continues to line {}: `sed -n '{},{}p' {path}` shows the rest.",
                    c.end,
                    shown_end + 1,
                    c.end
                ));
            }
            Example { pattern: "read", question, answer, source, topic }
        })
        .collect();
    (examples, cands.len())
}

impl ParsedFile {
    /// The path examples show: relative to the folder grep runs in.
    pub fn shown_path(&self) -> String {
        if self.search_dir == "." || self.search_dir.is_empty() {
            format!("./{}", self.rel)
        } else {
            self.rel.clone()
        }
    }
}

/// First paragraphs of a docstring, at most about `limit` characters.
fn doc_excerpt(doc: &str, limit: usize) -> String {
    let mut out = String::new();
    for para in doc.split("\n\n") {
        if !out.is_empty() && out.len() + para.len() > limit {
            break;
        }
        if !out.is_empty() {
            out.push_str("\n\n");
        }
        out.push_str(para);
    }
    out
}

/// `direct` examples: explanations from a docstring and signature.
pub fn direct_examples(files: &[ParsedFile], want: usize, opts: &GenOptions) -> (Vec<Example>, usize) {
    let mut cands: Vec<(usize, usize)> = Vec::new();
    for (fi, f) in files.iter().enumerate() {
        for (di, d) in f.facts.defs.iter().enumerate() {
            let useful = d.docstring.as_deref().is_some_and(|s| s.len() >= 20);
            if useful && !(opts.skip_private && private(&d.name)) {
                cands.push((fi, di));
            }
        }
    }
    let mut rng = SplitMix64::with_label(opts.seed, "direct");
    let picked = sample_indices(cands.len(), want, &mut rng);
    let examples = picked
        .into_iter()
        .map(|i| {
            let (fi, di) = cands[i];
            let f = &files[fi];
            let d = &f.facts.defs[di];
            let source = format!("{}:{}", f.rel, d.line);
            let key = format!("direct:{source}");
            let kind = d.kind.as_str();
            let vars = [("name", d.qualname.as_str()), ("repo", f.repo.as_str()), ("kind", kind)];
            let q = match d.kind {
                DefKind::Class => pick(
                    opts.seed,
                    &key,
                    &[
                        "What is the `{name}` class in {repo} for?",
                        "Explain what `{name}` represents in {repo}.",
                        "In {repo}, what does the `{name}` class do?",
                    ],
                ),
                _ => pick(
                    opts.seed,
                    &key,
                    &[
                        "What does `{name}` do in {repo}?",
                        "Explain the `{name}` {kind} of {repo} and its parameters.",
                        "How do I use `{name}` from {repo}?",
                    ],
                ),
            };
            let doc = doc_excerpt(d.docstring.as_deref().unwrap_or(""), 1200);
            let mut answer = match d.kind {
                DefKind::Class => {
                    let mut a = format!("`{}` is a class defined in `{}` (line {}).", d.qualname, f.rel, d.line);
                    if !d.bases.is_empty() {
                        a.push_str(&format!(
                            " It subclasses {}.",
                            d.bases.iter().map(|b| format!("`{b}`")).collect::<Vec<_>>().join(", ")
                        ));
                    }
                    a
                }
                _ => {
                    let asyn = if d.is_async { "async " } else { "" };
                    format!("`{}{}` is an {asyn}{kind} in `{}` (line {}).", d.name, d.signature, f.rel, d.line)
                        .replace("an function", "a function")
                        .replace("an method", "a method")
                }
            };
            if !d.decorators.is_empty() {
                answer.push_str(&format!(
                    " It is decorated with {}.",
                    d.decorators.iter().map(|x| format!("`@{x}`")).collect::<Vec<_>>().join(", ")
                ));
            }
            answer.push_str("\n\n");
            answer.push_str(&doc);
            if d.kind == DefKind::Class {
                let prefix = format!("{}.", d.qualname);
                let methods: Vec<String> = f
                    .facts
                    .defs
                    .iter()
                    .filter(|m| {
                        m.kind == DefKind::Method && m.qualname.strip_prefix(&prefix).is_some_and(|r| !r.contains('.'))
                    })
                    .filter(|m| !private(&m.name) || m.name == "__init__")
                    .map(|m| format!("`{}{}`", m.name, m.signature))
                    .collect();
                if !methods.is_empty() {
                    answer.push_str(&format!("\n\nIts methods: {}.", methods.join(", ")));
                }
            }
            Example { pattern: "direct", question: fill(q, &vars), answer, source, topic: kind.to_string() }
        })
        .collect();
    (examples, cands.len())
}
