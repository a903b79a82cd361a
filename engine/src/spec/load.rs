//! Reading pipeline files (and their imports) into a [`Pipeline`].

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde_saphyr::Spanned;

use super::cached::{Entry, Facts, FileFact};
use super::interp::interpolate;
use super::paths::{normalize, relative_to, special_file};
use super::raw::{RawPipeline, RawStage, PIPELINE_FIELDS, STAGE_FIELDS};
use super::value::{field_span, Node};
use super::{ExecutorKind, Origin, Pipeline, Resources, StageDef};
use crate::error::{EngineError, Result, SourceFile, Span, SpecError};
use crate::Registry;
use crate::StageShape;

/// Load the pipeline at `path` with its imports, check every stage against
/// `registry`, and resolve paths and interpolations.
///
/// A pipeline loaded before in the same `.dvx/`, from the same bytes and
/// everything else resolving read, comes from there (see `cached.rs`).
pub fn load_pipeline(path: &Path, registry: &Registry) -> Result<Pipeline> {
    let file = std::fs::canonicalize(path).map_err(|source| EngineError::Read { path: path.to_path_buf(), source })?;
    let entry = Entry::of(&file, registry);
    if let Some(pipeline) = entry.as_ref().and_then(|e| e.load(registry)) {
        tracing::debug!(stages = pipeline.stages.len(), "resolved pipeline from .dvx/");
        return Ok(pipeline);
    }
    let (pipeline, facts) = load_fresh(file, registry)?;
    if let (Some(entry), Some(facts)) = (entry, facts) {
        entry.store(&pipeline, facts);
    }
    Ok(pipeline)
}

/// Parse and resolve, with what was read for the cache's next check
/// (`None` when it could not all be read: nothing is kept then).
fn load_fresh(file: PathBuf, registry: &Registry) -> Result<(Pipeline, Option<Facts>)> {
    let mut loader = Loader { sources: Vec::new(), files: Vec::new(), seen: BTreeSet::new(), imports: Vec::new() };
    loader.load(&file, None)?;
    let root = &loader.files[0];
    let root_wdir = root.wdir.canonicalize().map_err(|source| EngineError::Read { path: root.wdir.clone(), source })?;
    let name = root.raw.name.as_ref().map(|n| n.value.clone()).unwrap_or_else(|| {
        file.file_stem().map(|s| s.to_string_lossy().to_string()).unwrap_or_else(|| "pipeline".into())
    });
    let base = file.parent().expect("a file has a parent").to_path_buf();
    let cache = root.raw.cache.as_ref().map(|c| normalize(&base.join(&c.value)));
    let link = root.raw.link.as_ref().map(|l| l.value.clone());
    if let Some(l) = &root.raw.link {
        if dvx_cache::LinkMode::parse(&l.value).is_none() {
            let src = &loader.sources[0];
            return Err(src
                .error(span_of(src, &l.referenced, l.value.len()), format!("unknown link mode `{}`", l.value), "here")
                .with_help("one of: auto, reflink, hardlink, symlink, copy")
                .into());
        }
    }
    let executor = executor_of(&loader.sources[0], root.raw.executor.as_ref())?;
    // Files no out may overwrite: every pipeline file read, and dvx.toml.
    let mut protected: Vec<(PathBuf, String)> =
        loader.files.iter().map(|f| (f.path.clone(), loader.sources[f.source].name.clone())).collect();
    let config = project_config(&base);
    if let Some(toml) = &config {
        let shown = display_path(toml);
        protected.push((toml.clone(), shown));
    }

    let canon = Canon::default();
    // Imported files were pushed after the file importing them; define their stages first.
    let all: Vec<(&LoadedFile, &Spanned<String>, &RawStage)> = loader
        .files
        .iter()
        .rev()
        .flat_map(|lf| lf.raw.stages.0.iter().map(move |(name, raw)| (lf, name, raw)))
        .collect();
    let resolve = |&(lf, name, raw): &(&LoadedFile, &Spanned<String>, &RawStage)| {
        let src = &loader.sources[lf.source];
        let name_span = span_of(src, &name.referenced, name.value.len());
        let file_executor = executor_of(src, lf.raw.executor.as_ref())?.or(executor);
        let at = Place { src, lf, root_wdir: &root_wdir, protected: &protected, canon: &canon };
        resolve_stage(&at, name, name_span, raw, registry, file_executor).map_err(Box::new)
    };
    // ~20 µs a stage: 0.2 s of one core for 10,000 stages.
    let resolved = crate::par::map_in_order(&all, resolve);
    // In order, so the first mistake in the file is the one reported.
    let mut stages = Vec::with_capacity(all.len());
    let mut names: BTreeMap<&str, (usize, Span)> = BTreeMap::new();
    for ((lf, name, _), def) in all.iter().zip(resolved) {
        let src = &loader.sources[lf.source];
        let name_span = span_of(src, &name.referenced, name.value.len());
        if let Some((other_file, other_span)) = names.get(name.value.as_str()) {
            let mut err = src.error(name_span, format!("two stages are called `{}`", name.value), "second definition");
            if *other_file == lf.source {
                err = err.with_other(*other_span, "first definition");
            }
            return Err(err.with_help("stage names must be unique across a pipeline and its imports").into());
        }
        names.insert(&name.value, (lf.source, name_span));
        stages.push(def?);
    }
    let config = match config {
        None => Some(None),
        Some(toml) => std::fs::read(&toml).ok().map(|b| Some((toml, *blake3::hash(&b).as_bytes()))),
    };
    let facts = config.map(|config| Facts {
        files: loader
            .files
            .iter()
            .map(|f| {
                let src = &loader.sources[f.source];
                FileFact {
                    path: f.path.clone(),
                    name: src.name.clone(),
                    hash: *blake3::hash(src.text.as_bytes()).as_bytes(),
                    wdir: f.wdir.clone(),
                    wdir_canon: canon.dir(&f.wdir),
                }
            })
            .collect(),
        imports: std::mem::take(&mut loader.imports),
        config,
    });
    let files = loader.seen.into_iter().collect();
    let stated_outs = canon.stated;
    let pipeline = Pipeline {
        name,
        file,
        wdir: root_wdir,
        stages,
        sources: loader.sources,
        files,
        cache,
        link,
        executor,
        stated_outs,
    };
    Ok((pipeline, facts))
}

/// Whether what resolving read on the filesystem, besides the pipeline
/// files' bytes and the outs, is as `facts` say: the imports' and
/// working folders' canonical paths, the root wdir (`root_wdir`) and
/// `dvx.toml`.
pub(super) fn still_holds(facts: &Facts, root_wdir: &Path, canon: &Canon) -> bool {
    let Some(root) = facts.files.first() else { return false };
    facts.imports.iter().all(|(path, canonical)| std::fs::canonicalize(path).ok().as_ref() == Some(canonical))
        && root.wdir.canonicalize().ok().as_deref() == Some(root_wdir)
        && facts.files.iter().all(|f| canon.dir(&f.wdir) == f.wdir_canon)
        && match (root.path.parent().and_then(project_config), &facts.config) {
            (None, None) => true,
            (Some(now), Some((then, hash))) => {
                now == *then && std::fs::read(&now).is_ok_and(|b| blake3::hash(&b).as_bytes() == hash)
            }
            _ => false,
        }
}

/// The files no out may overwrite, as [`load_fresh`] lists them.
pub(super) fn protected_paths(facts: &Facts) -> Vec<PathBuf> {
    facts.files.iter().map(|f| f.path.clone()).chain(facts.config.iter().map(|(p, _)| p.clone())).collect()
}

/// The checks of an out (`abs`, normalised) that read the filesystem,
/// as [`resolve_stage`] makes them: resolved through its symlinks it
/// stays inside its stage's folder `wdir` (canonical), and it neither is
/// nor holds a `protected` file. Its metadata is kept in `canon`.
pub(super) fn out_stays_put(canon: &Canon, abs: &Path, wdir: &Path, protected: &[PathBuf]) -> bool {
    let resolved = canon.path(abs);
    resolved.starts_with(wdir) && !protected.iter().any(|f| overwritten_by(f, abs, &resolved))
}

/// Whether an out at `abs` (resolved: `resolved`) is or holds `file`.
fn overwritten_by(file: &Path, abs: &Path, resolved: &Path) -> bool {
    file.starts_with(abs) || file.starts_with(resolved)
}

struct LoadedFile {
    /// The file, canonical.
    path: PathBuf,
    source: usize,
    wdir: PathBuf,
    raw: RawPipeline,
}

struct Loader {
    sources: Vec<SourceFile>,
    files: Vec<LoadedFile>,
    seen: BTreeSet<PathBuf>,
    /// Each import as written (normalised) and its canonical path.
    imports: Vec<(PathBuf, PathBuf)>,
}

impl Loader {
    fn load(&mut self, file: &Path, imported_at: Option<(usize, Span)>) -> Result<()> {
        if !self.seen.insert(file.to_path_buf()) {
            return Ok(()); // imported twice (diamond): same stages, load once
        }
        if let Some(what) = std::fs::metadata(file).ok().as_ref().and_then(special_file) {
            // Reading it could block forever (a FIFO) or never end (/dev/zero).
            let message = format!("cannot read pipeline {}: it is {what}, not a file", display_path(file));
            return Err(match imported_at {
                Some((src, span)) => self.sources[src].error(span, message, "imported here").into(),
                None => EngineError::Other(message),
            });
        }
        let text = std::fs::read_to_string(file).map_err(|source| match imported_at {
            Some((src, span)) => EngineError::from(self.sources[src].error(
                span,
                format!("cannot read import {}: {source}", file.display()),
                "imported here",
            )),
            None => EngineError::Read { path: file.to_path_buf(), source },
        })?;
        let display = display_path(file);
        let src = SourceFile::new(display, text);
        let raw: RawPipeline = parse_yaml(&src)?;
        let dir = file.parent().expect("a file has a parent").to_path_buf();
        let wdir = normalize(&dir.join(raw.wdir.as_ref().map(|w| w.value.as_str()).unwrap_or(".")));
        if let Some(w) = &raw.wdir {
            check_wdir(&src, w, &dir, &wdir)?;
        }
        let source = self.sources.len();
        self.sources.push(src);
        let imports: Vec<Spanned<String>> = raw.imports.clone();
        self.files.push(LoadedFile { path: file.to_path_buf(), source, wdir, raw });
        for imp in imports {
            let span = span_of(&self.sources[source], &imp.referenced, imp.value.len());
            let path = normalize(&dir.join(&imp.value));
            let canon = std::fs::canonicalize(&path).map_err(|e| {
                EngineError::from(self.sources[source].error(
                    span,
                    format!("cannot read import `{}`: {e}", imp.value),
                    "imported here",
                ))
            })?;
            self.imports.push((path, canon.clone()));
            self.load(&canon, Some((source, span)))?;
        }
        Ok(())
    }
}

/// `wdir:` must be the file's folder, a folder inside it, or one of its
/// ancestors (`wdir: ..` from `pipelines/`), also once symlinks are resolved:
/// stages must not run, and write, in an unrelated place.
fn check_wdir(src: &SourceFile, w: &Spanned<String>, dir: &Path, wdir: &Path) -> Result<(), Box<SpecError>> {
    // The filesystem root as a workspace is never meant: its outs would be system folders.
    let allowed = |p: &Path| (p.starts_with(dir) || dir.starts_with(p)) && p.parent().is_some();
    let why = if !allowed(wdir) {
        ""
    } else if !allowed(&canonical_prefix(wdir)) {
        " through a symlink"
    } else {
        return Ok(());
    };
    let span = span_of(src, &w.referenced, w.value.len());
    Err(Box::new(
        src.error(
            span,
            format!("wdir `{}` leads outside the pipeline's folder{why}", w.value),
            "not this folder, inside it or above it",
        )
        .with_help(format!("`wdir:` must be {}, a folder inside it, or one of its ancestors", dir.display())),
    ))
}

/// The `dvx.toml` that applies to a pipeline in `dir`: the nearest one upward.
fn project_config(dir: &Path) -> Option<PathBuf> {
    dir.ancestors().map(|d| d.join("dvx.toml")).find(|f| f.is_file()).map(|f| canonical_prefix(&f))
}

/// A path as shown in errors: relative to the current folder when inside it.
fn display_path(file: &Path) -> String {
    std::env::current_dir()
        .ok()
        .and_then(|cwd| cwd.canonicalize().ok())
        .and_then(|cwd| file.strip_prefix(&cwd).ok().map(|p| p.display().to_string()))
        .unwrap_or_else(|| file.display().to_string())
}

/// The span of a value at `loc` with `len` bytes.
pub(crate) fn span_of(src: &SourceFile, loc: &serde_saphyr::Location, len: usize) -> Span {
    if loc.line() == 0 {
        return Span { offset: 0, len: 0 };
    }
    let offset = src.offset(loc.line(), loc.column());
    // Quoted scalars start at the quote; cover the quotes too.
    let extra = match src.text.as_bytes().get(offset) {
        Some(b'"') | Some(b'\'') => 2,
        _ => 0,
    };
    Span { offset, len: (len + extra).min(src.text.len() - offset) }
}

fn parse_yaml(src: &SourceFile) -> Result<RawPipeline> {
    let opts = serde_saphyr::options! { with_snippet: false };
    serde_saphyr::from_str_with_options::<RawPipeline>(&src.text, opts).map_err(|e| {
        let span =
            e.location().map(|loc| Span { offset: src.offset(loc.line(), loc.column()), len: 1 }).unwrap_or_default();
        let message = clean_yaml_message(&e.to_string());
        let mut err = src.error(span, message.clone(), "here");
        if let Some(field) = between_backticks(&message, "unknown field `") {
            // Widen the label to the whole key and suggest the closest field.
            let len = field.len();
            err = src.error(Span { offset: span.offset, len }, format!("unknown key `{field}`"), "not a known key");
            // Top-level keys sit in column 1; anything deeper is a stage's.
            let top_level = e.location().map(|l| l.column() <= 1).unwrap_or(true);
            let candidates: &[&str] = if top_level { PIPELINE_FIELDS } else { STAGE_FIELDS };
            if let Some(best) = did_you_mean(&field, candidates.iter().copied()) {
                err = err.with_help(format!("did you mean `{best}`?"));
            } else {
                err = err.with_help(format!("expected one of: {}", candidates.join(", ")));
            }
        }
        EngineError::from(err)
    })
}

/// serde-saphyr appends the location to its message; we show it as a span.
fn clean_yaml_message(m: &str) -> String {
    let first = m.lines().next().unwrap_or(m).trim();
    match first.find(" at line ") {
        Some(i) => first[..i].to_string(),
        None => first.to_string(),
    }
}

fn between_backticks(m: &str, prefix: &str) -> Option<String> {
    let start = m.find(prefix)? + prefix.len();
    let len = m[start..].find('`')?;
    Some(m[start..start + len].to_string())
}

/// The closest candidate to `word`, if close enough to be a likely typo.
pub(crate) fn did_you_mean<'a>(word: &str, candidates: impl Iterator<Item = &'a str>) -> Option<&'a str> {
    candidates
        .map(|c| (strsim::jaro_winkler(word, c), c))
        // Close by either measure: jaro-winkler misses short transpositions (`cdm`).
        .filter(|(score, c)| *score > 0.8 || strsim::damerau_levenshtein(word, c) <= (word.len() / 3).max(1))
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, c)| c)
}

/// Where a stage is resolved: its file, the root folder, the files no out
/// may overwrite, and the canonical folders met so far.
struct Place<'a> {
    src: &'a SourceFile,
    lf: &'a LoadedFile,
    root_wdir: &'a Path,
    protected: &'a [(PathBuf, String)],
    canon: &'a Canon,
}

fn resolve_stage(
    at: &Place<'_>,
    name: &Spanned<String>,
    name_span: Span,
    raw: &RawStage,
    registry: &Registry,
    file_executor: Option<ExecutorKind>,
) -> Result<StageDef, SpecError> {
    let Place { src, lf, root_wdir, protected, canon } = *at;
    let stage_name = &name.value;
    // The stage folder, resolved through the canonical root so relative
    // comparisons work even when the pipeline was reached via a symlink.
    let wdir = canon.dir(&lf.wdir);
    let kind = match (&raw.kind, &raw.cmd) {
        (Some(k), _) => {
            if registry.get(&k.value).is_none() {
                let span = span_of(src, &k.referenced, k.value.len());
                let mut err = src.error(span, format!("unknown stage kind `{}`", k.value), "unknown kind");
                err = match did_you_mean(&k.value, registry.names()) {
                    Some(best) => err.with_help(format!("did you mean `{best}`?")),
                    None => err.with_help(format!("known kinds: {}", registry.names().collect::<Vec<_>>().join(", "))),
                };
                return Err(err);
            }
            if let Some(c) = &raw.cmd {
                if !registry.get(&k.value).is_some_and(|s| s.takes_cmd()) {
                    // A built-in never runs `cmd`: taking it silently would hide a mistake.
                    let first_line = c.value.lines().next().unwrap_or("").len().max(1);
                    let span = span_of(src, &c.referenced, first_line);
                    return Err(src
                        .error(span, format!("stage `{stage_name}` has `kind: {}` and a `cmd`", k.value), "not run")
                        .with_help(format!(
                            "a `{}` stage does not run a command: remove `cmd`, or remove `kind` to run it as a shell command",
                            k.value
                        )));
                }
            }
            k.value.clone()
        }
        (None, Some(_)) => "cmd".to_string(),
        (None, None) => {
            return Err(src
                .error(name_span, format!("stage `{stage_name}` has no `kind`"), "this stage")
                .with_help("add `kind: <kind>` (or a `cmd:` for a shell command)"))
        }
    };

    let params = match &raw.params {
        None => serde_json::Value::Object(Default::default()),
        Some(p) => match p.value.to_json() {
            v @ serde_json::Value::Object(_) => v,
            serde_json::Value::Null => serde_json::Value::Object(Default::default()),
            _ => {
                let span = span_of(src, &p.referenced, 1);
                return Err(src.error(span, "`params` must be a map", "not a map"));
            }
        },
    };

    let mut origin = Origin { file: lf.source, name: name_span, deps: Vec::new(), outs: Vec::new() };
    let mut deps = Vec::new();
    let mut deps_as_written = Vec::new();
    let mut deps_abs = Vec::new();
    for d in &raw.deps {
        let span = span_of(src, &d.referenced, d.value.len());
        origin.deps.push(span);
        let abs = normalize(&wdir.join(&d.value));
        deps_abs.push(abs.clone());
        deps.push(relative_to(&abs, root_wdir).unwrap_or_else(|| abs.display().to_string()));
        deps_as_written.push(d.value.clone());
    }
    let mut outs = Vec::new();
    let mut outs_as_written = Vec::new();
    // An out (or a metrics file): inside the stage's folder, not `.dvx/`,
    // no pipeline file or dvx.toml; relative to the root wdir.
    let resolve_out = |o: &Spanned<String>, span: Span| -> Result<String, Box<SpecError>> {
        let escape = |why: &str| {
            src.error(
                span,
                format!("out `{}` escapes the pipeline's folder{why}", o.value),
                "outside the pipeline's folder",
            )
            .with_help(format!("outs must stay inside {}", wdir.display()))
        };
        if Path::new(&o.value).is_absolute() {
            return Err(Box::new(escape(" (absolute path)")));
        }
        let abs = normalize(&wdir.join(&o.value));
        let inside_own = abs.starts_with(&wdir) && abs != wdir;
        let Some(rel) = relative_to(&abs, root_wdir).filter(|r| !r.is_empty() && inside_own) else {
            return Err(Box::new(escape("")));
        };
        // Resolved once (every symlink on the way): it must stay inside the
        // (canonical) wdir, and is what the protected files are checked against.
        let resolved = canon.path(&abs);
        if !resolved.starts_with(&wdir) {
            return Err(Box::new(escape(" through a symlink")));
        }
        if rel == ".dvx" || rel.starts_with(".dvx/") {
            return Err(Box::new(src.error(span, "outs cannot be inside `.dvx/`", "dvx's own folder")));
        }
        if let Some((file, shown)) = protected.iter().find(|(f, _)| overwritten_by(f, &abs, &resolved)) {
            let what = if file.ends_with("dvx.toml") { "the project's config" } else { "a pipeline file" };
            let verb = if *file == abs || *file == resolved { "is" } else { "contains" };
            return Err(Box::new(
                src.error(span, format!("out `{}` {verb} {what} `{shown}`", o.value), "would be overwritten")
                    .with_help("dvx removes outs before a stage runs; write the out somewhere else"),
            ));
        }
        Ok(rel)
    };
    for o in &raw.outs {
        let span = span_of(src, &o.referenced, o.value.len());
        origin.outs.push(span);
        outs.push(resolve_out(o, span).map_err(|e| *e)?);
        outs_as_written.push(o.value.clone());
    }
    // Metrics files are outs of the stage (cached and restored like any
    // out, as in DVC), listed after the outs the kind writes.
    let mut metrics = Vec::new();
    for m in &raw.metrics {
        let span = span_of(src, &m.referenced, m.value.len());
        let rel = resolve_out(m, span).map_err(|e| *e)?;
        if outs.contains(&rel) {
            let what = if metrics.contains(&rel) { "listed twice" } else { "also under `outs`" };
            return Err(src
                .error(span, format!("metrics file `{}` is {what}", m.value), "here")
                .with_help("a metrics file is an out of its stage already; list it once, under `metrics` only"));
        }
        origin.outs.push(span);
        outs.push(rel.clone());
        metrics.push(rel);
    }

    // A dep that is (or holds) the stage's own out changes every time the
    // stage runs, so its key would never settle.
    for (di, dep) in deps_abs.iter().enumerate() {
        let own = raw.outs.iter().chain(&raw.metrics).find(|o| normalize(&wdir.join(&o.value)).starts_with(dep));
        if let Some(o) = own {
            let d = &raw.deps[di].value;
            let verb = if normalize(&wdir.join(&o.value)) == *dep { "is" } else { "contains" };
            return Err(src
                .error(
                    origin.deps[di],
                    format!("dep `{d}` of stage `{stage_name}` {verb} its own out `{}`", o.value),
                    "the stage's own output",
                )
                .with_help("a stage cannot read what it writes; narrow the dep or move the out"));
        }
    }

    let cmd = match &raw.cmd {
        None => None,
        Some(c) => match interpolate(&c.value, &params, &deps_as_written, &outs_as_written) {
            Ok(s) => Some(s),
            Err(unknown) => {
                let needle = format!("${{{}}}", unknown.name);
                let start = src.offset(c.referenced.line(), c.referenced.column());
                let offset = src.text[start..].find(&needle).map(|i| start + i).unwrap_or(start);
                let mut err = src.error(
                    Span { offset, len: needle.len() },
                    format!("unknown name `{}` in `cmd`", unknown.name),
                    "not defined",
                );
                err = err.with_help(if unknown.name.trim().trim_start_matches("raw:").trim().starts_with("params.") {
                    let known: Vec<String> =
                        params.as_object().map(|m| m.keys().cloned().collect()).unwrap_or_default();
                    format!(
                        "params of `{stage_name}`: {}",
                        if known.is_empty() { "none".into() } else { known.join(", ") }
                    )
                } else {
                    format!("use ${{params.NAME}}, ${{deps[0..{}]}} or ${{outs[0..{}]}}", deps.len(), outs.len())
                });
                return Err(err);
            }
        },
    };

    let stage = registry.get(&kind).expect("kind checked above");
    // The kind sees the outs as written; metrics files appended after them are the engine's.
    let shape = StageShape { params: &params, deps: deps.len(), outs: outs_as_written.len(), cmd: cmd.as_deref() };
    if let Err(pe) = stage.check(&shape) {
        let span = raw.params.as_ref().map(|p| block_field_span(src, p, pe.field.as_deref())).unwrap_or(name_span);
        let what = match &pe.field {
            Some(f) => format!("invalid `params.{f}` of stage `{stage_name}`: {}", pe.message),
            None => format!("invalid stage `{stage_name}` ({kind}): {}", pe.message),
        };
        return Err(src.error(span, what, "here"));
    }
    let written: Vec<&str> = outs_as_written.iter().map(String::as_str).collect();
    if let Err(oe) = stage.check_outs(&written) {
        let span = origin.outs.get(oe.index).copied().unwrap_or(name_span);
        return Err(src.error(span, format!("out of stage `{stage_name}` ({kind}): {}", oe.message), "here"));
    }

    let resources = match &raw.resources {
        None => None,
        Some(r) => match Resources::from_value(&r.value.to_json()) {
            Ok(res) => Some(res),
            Err(re) => {
                let span = block_field_span(src, r, re.field.as_deref());
                let what = match &re.field {
                    Some(f) if !re.unknown => {
                        format!("invalid `resources.{f}` of stage `{stage_name}`: {}", re.message)
                    }
                    _ => format!("invalid `resources` of stage `{stage_name}`: {}", re.message),
                };
                return Err(src.error(span, what, "here"));
            }
        },
    };

    let threads = match &raw.threads {
        None => None,
        Some(t) if t.value >= 1 && t.value <= 4096 => Some(t.value as usize),
        Some(t) => {
            let span = span_of(src, &t.referenced, t.value.to_string().len());
            let err = src.error(span, format!("invalid `threads` of stage `{stage_name}`: {}", t.value), "here");
            return Err(
                err.with_help("`threads` is how many compute threads the stage uses: a whole number from 1 to 4096")
            );
        }
    };

    let shards = match &raw.shards {
        None => None,
        Some(n) => {
            let span = span_of(src, &n.referenced, n.value.to_string().len());
            if !(1..=MAX_SHARDS).contains(&n.value) {
                return Err(src
                    .error(span, format!("invalid `shards` of stage `{stage_name}`: {}", n.value), "here")
                    .with_help(format!("`shards` is how many record ranges the stage is split into: 1 to {MAX_SHARDS}")));
            }
            let Some(how) = registry.shards(&kind) else {
                let able: Vec<&str> = registry.names().filter(|k| registry.shards(k).is_some()).collect();
                return Err(src
                    .error(span, format!("stage `{stage_name}` ({kind}) cannot be sharded"), "here")
                    .with_help(format!(
                        "only record-wise kinds take `shards`: {}; remove `shards`",
                        able.join(", ")
                    )));
            };
            if let Err(why) = how.check(&params, deps.len(), outs_as_written.len()) {
                return Err(src.error(span, format!("stage `{stage_name}` ({kind}) cannot be sharded: {why}"), "here"));
            }
            if !metrics.is_empty() {
                return Err(src.error(
                    span,
                    format!("stage `{stage_name}` has `shards` and `metrics` files: a sharded stage's metrics are its kind's"),
                    "here",
                ));
            }
            Some(n.value as usize)
        }
    };

    let cwd = relative_to(&wdir, root_wdir).unwrap_or_else(|| wdir.display().to_string());
    Ok(StageDef {
        name: stage_name.clone(),
        kind,
        cwd,
        deps,
        outs,
        metrics,
        params,
        cmd,
        env: raw.env.clone(),
        executor: executor_of(src, raw.executor.as_ref()).map_err(|e| *e)?,
        file_executor,
        resources,
        threads,
        shards,
        origin,
    })
}

/// The most shards a stage may be split into.
const MAX_SHARDS: i64 = 100_000;

/// [`canonical_prefix`] with each folder resolved once per load: a
/// pipeline of thousands of stages keeps its outs in a few folders, and
/// resolving a path costs a stat per component.
#[derive(Default)]
pub(super) struct Canon {
    dirs: std::sync::Mutex<std::collections::HashMap<PathBuf, PathBuf>>,
    /// What each path asked for was (its own metadata), for the run to
    /// reuse instead of stating the out again (see [`crate::stated`]).
    pub(super) stated: crate::stated::Stated,
}

impl Canon {
    /// A folder, canonical (its longest existing prefix).
    fn dir(&self, dir: &Path) -> PathBuf {
        if let Some(c) = self.dirs.lock().expect("canon lock").get(dir) {
            return c.clone();
        }
        let c = canonical_prefix(dir);
        self.dirs.lock().expect("canon lock").insert(dir.to_path_buf(), c.clone());
        c
    }

    /// A normalised path, canonical: its folder's canonical form and its
    /// name, unless the name itself is a symlink (then resolved in full).
    fn path(&self, path: &Path) -> PathBuf {
        let (Some(parent), Some(name)) = (path.parent(), path.file_name()) else { return canonical_prefix(path) };
        match std::fs::symlink_metadata(path) {
            Ok(m) if m.file_type().is_symlink() => canonical_prefix(path),
            Ok(m) => {
                self.stated.keep(path, m);
                self.dir(parent).join(name)
            }
            Err(_) => self.dir(parent).join(name),
        }
    }
}

/// `path` with its longest existing prefix canonicalised.
fn canonical_prefix(path: &Path) -> PathBuf {
    if let Ok(c) = path.canonicalize() {
        return c;
    }
    let mut head = path.to_path_buf();
    let mut tail = Vec::new();
    while let Some(name) = head.file_name().map(|n| n.to_os_string()) {
        head.pop();
        tail.push(name);
        if let Ok(c) = head.canonicalize() {
            let mut out = c;
            for t in tail.iter().rev() {
                out.push(t);
            }
            return out;
        }
    }
    path.to_path_buf()
}

/// Where `field` (dotted, e.g. `rules.1.regex`) of a `params:` or
/// `resources:` block is written, as recorded while parsing; the block's
/// start when it is not written there (a missing field) or not named.
fn block_field_span(src: &SourceFile, block: &Spanned<Node>, field: Option<&str>) -> Span {
    let start = Span { offset: src.offset(block.referenced.line(), block.referenced.column()), len: 1 };
    field.and_then(|f| field_span(&block.value.spans(src), f)).unwrap_or(start)
}

/// A validated `executor:`.
fn executor_of(src: &SourceFile, e: Option<&Spanned<String>>) -> Result<Option<ExecutorKind>, Box<SpecError>> {
    let Some(e) = e else { return Ok(None) };
    match ExecutorKind::parse(&e.value) {
        Some(k) => Ok(Some(k)),
        None => {
            let span = span_of(src, &e.referenced, e.value.len());
            let mut err = src.error(span, format!("unknown executor `{}`", e.value), "here");
            err = match did_you_mean(&e.value, ExecutorKind::ALL.iter().copied()) {
                Some(best) => err.with_help(format!("did you mean `{best}`? (one of: local, slurm)")),
                None => err.with_help("one of: local, slurm"),
            };
            Err(Box::new(err))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canon_resolves_as_canonical_prefix_does() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        std::fs::create_dir_all(root.join("real/sub")).unwrap();
        std::fs::write(root.join("real/sub/f.txt"), "x").unwrap();
        std::os::unix::fs::symlink(root.join("real"), root.join("link")).unwrap();
        std::os::unix::fs::symlink(root.join("real/sub/f.txt"), root.join("real/sub/to_f")).unwrap();
        std::os::unix::fs::symlink("/etc", root.join("real/sub/out")).unwrap();
        let canon = Canon::default();
        for rel in
            ["real/sub/f.txt", "link/sub/f.txt", "link/sub/missing.txt", "real/sub/to_f", "real/sub/out", "new/a/b.txt"]
        {
            let p = root.join(rel);
            assert_eq!(canon.path(&p), canonical_prefix(&p), "{rel}");
            // Twice: the second answer comes from the memo.
            assert_eq!(canon.path(&p), canonical_prefix(&p), "{rel}");
        }
        assert_eq!(canon.dir(&root.join("link/sub")), canonical_prefix(&root.join("real/sub")));
    }
}
