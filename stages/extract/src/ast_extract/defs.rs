//! The parser-and-extraction core: one Python source in, its definitions
//! (classes, functions, methods with decorators, docstrings, signatures,
//! 1-based lines) and imports out. Kept free of stage plumbing so the
//! benchmark can call it directly.

use ruff_python_ast::{self as ast, Expr, Stmt};
use ruff_text_size::{Ranged, TextRange};
use serde::Serialize;

use crate::source_files::{line_of, line_starts};

/// What a definition is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DefKind {
    /// `class X`.
    Class,
    /// `def f` outside any class body.
    Function,
    /// `def f` directly inside a class body (or a block of it).
    Method,
}

impl DefKind {
    /// Lowercase name, as in the definitions JSONL.
    pub fn as_str(self) -> &'static str {
        match self {
            DefKind::Class => "class",
            DefKind::Function => "function",
            DefKind::Method => "method",
        }
    }
}

/// One class, function or method.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Def {
    /// Class, function or method.
    pub kind: DefKind,
    /// Its own name.
    pub name: String,
    /// Enclosing class/function names and its own, joined by `.`.
    pub qualname: String,
    /// `async def`.
    pub is_async: bool,
    /// 1-based line of the `def`/`class` keyword's name (not the decorators).
    pub line: usize,
    /// 1-based line of the first decorator, or `line`.
    pub start_line: usize,
    /// 1-based last line of the body.
    pub end_line: usize,
    /// Decorator expressions as written, without `@`.
    pub decorators: Vec<String>,
    /// Base classes as written (classes only).
    pub bases: Vec<String>,
    /// `(a: int, b=1, *args, **kw) -> T` (functions and methods only).
    pub signature: String,
    /// The docstring, cleaned like `inspect.cleandoc`.
    pub docstring: Option<String>,
}

/// One `import` / `from ... import` statement.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Import {
    /// 1-based line.
    pub line: usize,
    /// The module for `from` imports (with leading dots for relative ones);
    /// `None` for plain `import a, b`.
    pub from: Option<String>,
    /// Imported names (`a.b`, or `name` for `from` imports; `as` ignored).
    pub names: Vec<String>,
    /// Outside any function or class (it may be under `if`/`try`).
    pub module_level: bool,
}

/// Everything extracted from one file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FileFacts {
    /// Definitions in source order (outer before inner).
    pub defs: Vec<Def>,
    /// Import statements in source order.
    pub imports: Vec<Import>,
    /// The module docstring.
    pub module_doc: Option<String>,
    /// Number of lines in the file.
    pub lines: usize,
}

/// Parse `source` and extract its facts; a syntax error comes back as the
/// parser's message with its 1-based line.
pub fn extract(source: &str) -> Result<FileFacts, String> {
    let parsed = ruff_python_parser::parse_module(source).map_err(|e| {
        let starts = line_starts(source);
        format!("line {}: {}", line_of(&starts, usize::from(e.location.start())), e.error)
    })?;
    let module = parsed.syntax();
    let mut walker =
        Walker { src: source, starts: line_starts(source), facts: FileFacts::default(), scope: Vec::new() };
    walker.facts.module_doc = docstring(&module.body);
    walker.suite(&module.body);
    let mut facts = walker.facts;
    facts.lines = source.lines().count();
    Ok(facts)
}

struct Walker<'a> {
    src: &'a str,
    starts: Vec<usize>,
    facts: FileFacts,
    /// Enclosing definitions: (name, is_class).
    scope: Vec<(String, bool)>,
}

impl Walker<'_> {
    fn text(&self, range: TextRange) -> &str {
        &self.src[usize::from(range.start())..usize::from(range.end())]
    }

    fn line(&self, offset: ruff_text_size::TextSize) -> usize {
        line_of(&self.starts, usize::from(offset))
    }

    /// The line of the `def`/`class` keyword before the name at `name`, as
    /// Python's `ast` reports it: the name may sit on a later line after a
    /// backslash continuation (`def \`).
    fn keyword_line(&self, name: ruff_text_size::TextSize) -> usize {
        let b = self.src.as_bytes();
        let mut i = usize::from(name);
        loop {
            while i > 0 && matches!(b[i - 1], b' ' | b'\t' | b'\x0c') {
                i -= 1;
            }
            let mut j = i;
            if j > 0 && b[j - 1] == b'\n' {
                j -= 1;
            }
            if j > 0 && b[j - 1] == b'\r' {
                j -= 1;
            }
            if j < i && j > 0 && b[j - 1] == b'\\' {
                i = j - 1;
                continue;
            }
            break;
        }
        line_of(&self.starts, i.saturating_sub(1))
    }

    fn qualname(&self, name: &str) -> String {
        let mut parts: Vec<&str> = self.scope.iter().map(|(n, _)| n.as_str()).collect();
        parts.push(name);
        parts.join(".")
    }

    fn suite(&mut self, body: &[Stmt]) {
        for stmt in body {
            self.stmt(stmt);
        }
    }

    fn stmt(&mut self, stmt: &Stmt) {
        match stmt {
            Stmt::FunctionDef(f) => self.function(f),
            Stmt::ClassDef(c) => self.class(c),
            Stmt::Import(i) => {
                let names = i.names.iter().map(|a| a.name.id.to_string()).collect();
                let module_level = self.scope.is_empty();
                self.facts.imports.push(Import { line: self.line(i.range.start()), from: None, names, module_level });
            }
            Stmt::ImportFrom(i) => {
                let mut module = ".".repeat(i.level as usize);
                if let Some(m) = &i.module {
                    module.push_str(m.id.as_str());
                }
                let names = i.names.iter().map(|a| a.name.id.to_string()).collect();
                let (line, module_level) = (self.line(i.range.start()), self.scope.is_empty());
                self.facts.imports.push(Import { line, from: Some(module), names, module_level });
            }
            Stmt::If(s) => {
                self.suite(&s.body);
                for clause in &s.elif_else_clauses {
                    self.suite(&clause.body);
                }
            }
            Stmt::For(s) => {
                self.suite(&s.body);
                self.suite(&s.orelse);
            }
            Stmt::While(s) => {
                self.suite(&s.body);
                self.suite(&s.orelse);
            }
            Stmt::With(s) => self.suite(&s.body),
            Stmt::Try(s) => {
                self.suite(&s.body);
                for ast::ExceptHandler::ExceptHandler(h) in &s.handlers {
                    self.suite(&h.body);
                }
                self.suite(&s.orelse);
                self.suite(&s.finalbody);
            }
            Stmt::Match(s) => {
                for case in &s.cases {
                    self.suite(&case.body);
                }
            }
            _ => {}
        }
    }

    fn decorators(&self, list: &[ast::Decorator]) -> Vec<String> {
        list.iter().map(|d| self.text(d.expression.range()).to_string()).collect()
    }

    fn start_line(&self, list: &[ast::Decorator], line: usize) -> usize {
        list.first().map(|d| self.line(d.range.start())).unwrap_or(line)
    }

    fn function(&mut self, f: &ast::StmtFunctionDef) {
        let in_class = self.scope.last().is_some_and(|(_, is_class)| *is_class);
        let line = self.keyword_line(f.name.range.start());
        let def = Def {
            kind: if in_class { DefKind::Method } else { DefKind::Function },
            name: f.name.id.to_string(),
            qualname: self.qualname(f.name.id.as_str()),
            is_async: f.is_async,
            line,
            start_line: self.start_line(&f.decorator_list, line),
            end_line: self.line(f.range.end()),
            decorators: self.decorators(&f.decorator_list),
            bases: Vec::new(),
            signature: self.signature(&f.parameters, f.returns.as_deref()),
            docstring: docstring(&f.body),
        };
        self.facts.defs.push(def);
        self.scope.push((f.name.id.to_string(), false));
        self.suite(&f.body);
        self.scope.pop();
    }

    fn class(&mut self, c: &ast::StmtClassDef) {
        let line = self.keyword_line(c.name.range.start());
        let bases = c
            .arguments
            .as_deref()
            .map(|a| a.args.iter().map(|b| self.text(b.range()).to_string()).collect())
            .unwrap_or_default();
        let def = Def {
            kind: DefKind::Class,
            name: c.name.id.to_string(),
            qualname: self.qualname(c.name.id.as_str()),
            is_async: false,
            line,
            start_line: self.start_line(&c.decorator_list, line),
            end_line: self.line(c.range.end()),
            decorators: self.decorators(&c.decorator_list),
            bases,
            signature: String::new(),
            docstring: docstring(&c.body),
        };
        self.facts.defs.push(def);
        self.scope.push((c.name.id.to_string(), true));
        self.suite(&c.body);
        self.scope.pop();
    }

    fn param(&self, p: &ast::Parameter, default: Option<&Expr>, prefix: &str) -> String {
        let mut s = format!("{prefix}{}", p.name.id);
        if let Some(ann) = &p.annotation {
            s.push_str(": ");
            s.push_str(self.text(ann.range()));
        }
        if let Some(d) = default {
            s.push_str(if p.annotation.is_some() { " = " } else { "=" });
            s.push_str(self.text(d.range()));
        }
        s
    }

    fn signature(&self, params: &ast::Parameters, returns: Option<&Expr>) -> String {
        let mut parts = Vec::new();
        for p in &params.posonlyargs {
            parts.push(self.param(&p.parameter, p.default.as_deref(), ""));
        }
        if !params.posonlyargs.is_empty() {
            parts.push("/".to_string());
        }
        for p in &params.args {
            parts.push(self.param(&p.parameter, p.default.as_deref(), ""));
        }
        match &params.vararg {
            Some(v) => parts.push(self.param(v, None, "*")),
            None if !params.kwonlyargs.is_empty() => parts.push("*".to_string()),
            None => {}
        }
        for p in &params.kwonlyargs {
            parts.push(self.param(&p.parameter, p.default.as_deref(), ""));
        }
        if let Some(k) = &params.kwarg {
            parts.push(self.param(k, None, "**"));
        }
        let mut sig = format!("({})", parts.join(", "));
        if let Some(r) = returns {
            sig.push_str(" -> ");
            sig.push_str(self.text(r.range()));
        }
        sig
    }
}

/// The docstring of a body: its first statement, when that is a plain string.
fn docstring(body: &[Stmt]) -> Option<String> {
    match body.first()? {
        Stmt::Expr(e) => match e.value.as_ref() {
            Expr::StringLiteral(s) => Some(cleandoc(s.value.to_str())),
            _ => None,
        },
        _ => None,
    }
}

/// `inspect.cleandoc`: expand tabs, strip the first line's leading blanks and
/// the common indent of the rest, drop leading and trailing blank lines.
pub fn cleandoc(doc: &str) -> String {
    // Python's tokenizer turns `\r\n` into `\n` before the string exists.
    let doc = doc.replace("\r\n", "\n");
    let expanded: Vec<String> = doc.split('\n').map(expand_tabs).collect();
    let margin = expanded[1..]
        .iter()
        .filter_map(|l| {
            let content = l.trim_start_matches(is_py_space);
            (!content.is_empty()).then(|| l.len() - content.len())
        })
        .min();
    let mut lines: Vec<&str> = Vec::with_capacity(expanded.len());
    lines.push(expanded[0].trim_start_matches(is_py_space));
    for l in &expanded[1..] {
        lines.push(match margin {
            Some(m) => l.get(m..).unwrap_or(""),
            None => l,
        });
    }
    while lines.last().is_some_and(|l| l.trim_matches(is_py_space).is_empty()) {
        lines.pop();
    }
    let first = lines.iter().position(|l| !l.trim_matches(is_py_space).is_empty()).unwrap_or(lines.len());
    lines[first..].join("\n")
}

/// Characters Python's `str.lstrip()` removes that can appear within a line.
fn is_py_space(c: char) -> bool {
    c == ' ' || c == '\t' || c == '\x0b' || c == '\x0c' || c == '\r'
}

/// `str.expandtabs(8)`.
fn expand_tabs(line: &str) -> String {
    if !line.contains('\t') {
        return line.to_string();
    }
    let mut out = String::with_capacity(line.len() + 8);
    let mut col = 0;
    for c in line.chars() {
        if c == '\t' {
            let n = 8 - col % 8;
            out.extend(std::iter::repeat_n(' ', n));
            col += n;
        } else {
            out.push(c);
            col += 1;
        }
    }
    out
}
