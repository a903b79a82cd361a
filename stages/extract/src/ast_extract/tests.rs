use std::path::{Path, PathBuf};
use std::process::Command;

use dvx_stage_api::{Stage, StageShape, Typed};
use serde_json::{json, Value};

use super::*;
use crate::records::read_all;
use crate::source_files::testing::run;

const SAMPLE: &str = r#""""A tiny routing module."""
import os
from typing import Callable, Optional

from .base import Handler


def route(path: str, *, methods=("GET",)) -> Callable:
    """Register a handler for `path`.

    Args:
        path: the URL path.
    """
    def wrap(fn):
        return fn
    return wrap


class Router(Handler):
    """Maps paths to handlers."""

    def __init__(self, prefix=""):
        self.prefix = prefix

    @route("/x")
    async def dispatch(self, request, /, *args, timeout: float = 1.0, **kw) -> Optional[str]:
        '''Send `request` to its handler.'''
        return None

    def _private(self):
        pass


if os.name == "nt":
    def windows_only():
        pass
"#;

#[test]
fn extracts_exact_definitions() {
    let facts = extract(SAMPLE).unwrap();
    assert_eq!(facts.module_doc.as_deref(), Some("A tiny routing module."));
    assert_eq!(facts.lines, 36);
    let summary: Vec<(DefKind, &str, usize, usize, usize)> =
        facts.defs.iter().map(|d| (d.kind, d.qualname.as_str(), d.start_line, d.line, d.end_line)).collect();
    assert_eq!(
        summary,
        vec![
            (DefKind::Function, "route", 8, 8, 16),
            (DefKind::Function, "route.wrap", 14, 14, 15),
            (DefKind::Class, "Router", 19, 19, 31),
            (DefKind::Method, "Router.__init__", 22, 22, 23),
            (DefKind::Method, "Router.dispatch", 25, 26, 28),
            (DefKind::Method, "Router._private", 30, 30, 31),
            (DefKind::Function, "windows_only", 35, 35, 36),
        ]
    );
    let route = &facts.defs[0];
    assert_eq!(route.signature, "(path: str, *, methods=(\"GET\",)) -> Callable");
    assert_eq!(route.docstring.as_deref(), Some("Register a handler for `path`.\n\nArgs:\n    path: the URL path."));
    let router = &facts.defs[2];
    assert_eq!(router.bases, vec!["Handler"]);
    assert_eq!(router.docstring.as_deref(), Some("Maps paths to handlers."));
    let dispatch = &facts.defs[4];
    assert!(dispatch.is_async);
    assert_eq!(dispatch.decorators, vec!["route(\"/x\")"]);
    assert_eq!(dispatch.signature, "(self, request, /, *args, timeout: float = 1.0, **kw) -> Optional[str]");
    assert_eq!(dispatch.docstring.as_deref(), Some("Send `request` to its handler."));
    assert_eq!(facts.defs[3].docstring, None);
    let imports: Vec<(usize, Option<&str>, Vec<&str>)> = facts
        .imports
        .iter()
        .map(|i| (i.line, i.from.as_deref(), i.names.iter().map(String::as_str).collect()))
        .collect();
    assert_eq!(
        imports,
        vec![
            (2, None, vec!["os"]),
            (3, Some("typing"), vec!["Callable", "Optional"]),
            (5, Some(".base"), vec!["Handler"])
        ]
    );
}

#[test]
fn cleandoc_matches_python() {
    assert_eq!(cleandoc("  first\n    a\n      b\n\n"), "first\na\n  b");
    assert_eq!(cleandoc("\n\n    x\n\ty\n"), "x\n    y");
    assert_eq!(cleandoc("one"), "one");
}

#[test]
fn syntax_error_names_the_line() {
    let err = extract("x = 1\ndef broken(:\n").unwrap_err();
    assert!(err.starts_with("line 2:"), "{err}");
}

fn corpus(root: &Path) -> PathBuf {
    let repo = root.join("repos");
    std::fs::create_dir_all(repo.join("webkit/webkit")).unwrap();
    std::fs::write(repo.join("webkit/webkit/routing.py"), SAMPLE).unwrap();
    std::fs::write(
        repo.join("webkit/webkit/app.py"),
        "from webkit.routing import Router, route\n\n\nclass App:\n    \"\"\"The application object.\"\"\"\n\n    def dispatch(self, req):\n        return route(req)\n",
    )
    .unwrap();
    std::fs::write(repo.join("webkit/webkit/bad.py"), "def oops(:\n").unwrap();
    repo
}

fn text_of(r: &Value, role_index: usize) -> String {
    r["messages"][role_index]["content"].as_str().unwrap().to_string()
}

#[test]
fn stage_writes_examples_whose_grep_commands_are_real() {
    let dir = tempfile::tempdir().unwrap();
    let repo = corpus(dir.path());
    let outs = [dir.path().join("out/examples.jsonl"), dir.path().join("out/defs.jsonl")];
    let (metrics, log) = run(
        AstExtract,
        dir.path(),
        std::slice::from_ref(&repo),
        &outs,
        json!({"counts": {"grep": 50, "read": 50, "direct": 50}, "seed": 3}),
    );
    let metrics = metrics.unwrap();
    assert!(log.contains("parse failed: webkit/webkit/bad.py: line 1:"), "{log}");
    assert_eq!(metrics["files"], json!(3));
    assert_eq!(metrics["parse_failed"], json!(1));
    assert_eq!(metrics["definitions"], json!({"class": 2, "function": 3, "method": 4}));
    let recs = read_all(&outs[0]).unwrap();
    let by_pattern = |p: &str| recs.iter().filter(|r| r["pattern"] == json!(p)).count();
    let m = &metrics["patterns"];
    assert_eq!(m["grep"]["produced"], json!(by_pattern("grep")));
    assert_eq!(m["read"]["produced"], json!(by_pattern("read")));
    assert_eq!(m["direct"]["produced"], json!(by_pattern("direct")));
    assert!(m["grep"]["short"].as_str().unwrap().starts_with("only "));
    // Candidates: `class Router`, `class App`; `def route(`, `def wrap(`,
    // `def windows_only(` and their three `name(` usages; `def dispatch(`;
    // `@route`; `from typing import`, `from webkit.routing import`.
    assert_eq!(m["grep"]["candidates"], json!(12));

    let mut grep_checked = 0;
    for r in recs.iter().filter(|r| r["pattern"] == json!("grep")) {
        let answer = text_of(&Value::Object(r.clone()), 1);
        let cmd = answer.split("```bash\n").nth(1).unwrap().split('\n').next().unwrap();
        let shown: Vec<&str> =
            answer.split("Result:\n```\n").nth(1).unwrap().split("\n```").next().unwrap().lines().collect();
        let out = Command::new("sh").arg("-c").arg(cmd).current_dir(&repo).env("LC_ALL", "C").output().unwrap();
        // Byte for byte, in the order shown: the command sorts its output.
        let real: Vec<String> = String::from_utf8(out.stdout).unwrap().lines().map(String::from).collect();
        assert_eq!(real, shown, "command {cmd}");
        // The source line is among the results.
        let source = r["source"].as_str().unwrap();
        let (file, line) = source.rsplit_once(':').unwrap();
        assert!(shown.iter().any(|s| s.starts_with(&format!("{file}:{line}:"))), "{source} not in {shown:?}");
        grep_checked += 1;
    }
    assert!(grep_checked >= 7, "{grep_checked}");

    let route_read = recs
        .iter()
        .find(|r| r["pattern"] == json!("read") && r["source"] == json!("webkit/webkit/routing.py:8"))
        .expect("a read example for route");
    let answer = text_of(&Value::Object(route_read.clone()), 1);
    assert!(answer.contains("sed -n '8,16p' webkit/webkit/routing.py"), "{answer}");
    assert!(
        answer.contains("def route(path: str, *, methods=(\"GET\",)) -> Callable:\n    \"\"\"Register"),
        "{answer}"
    );

    let direct = recs
        .iter()
        .find(|r| r["pattern"] == json!("direct") && r["source"] == json!("webkit/webkit/routing.py:26"))
        .expect("a direct example for dispatch");
    let answer = text_of(&Value::Object(direct.clone()), 1);
    assert!(
        answer.starts_with(
            "`dispatch(self, request, /, *args, timeout: float = 1.0, **kw) -> Optional[str]` is an async method"
        ),
        "{answer}"
    );

    let defs = read_all(&outs[1]).unwrap();
    assert_eq!(defs.iter().filter(|d| d["kind"] != json!("import")).count(), 9);
    assert_eq!(defs[0]["qualname"], json!("App"));
    assert_eq!(defs[0]["file"], json!("webkit/webkit/app.py"));
}

#[test]
fn same_seed_same_bytes_and_seed_changes_the_sample() {
    let dir = tempfile::tempdir().unwrap();
    let repo = corpus(dir.path());
    let go = |name: &str, seed: u64| {
        let out = dir.path().join(name);
        run(
            AstExtract,
            dir.path(),
            std::slice::from_ref(&repo),
            std::slice::from_ref(&out),
            json!({"counts": {"grep": 3, "read": 2, "direct": 2}, "seed": seed}),
        )
        .0
        .unwrap();
        std::fs::read(out).unwrap()
    };
    assert_eq!(go("a.jsonl", 1), go("b.jsonl", 1));
    let many: std::collections::BTreeSet<Vec<u8>> = (0..6).map(|s| go(&format!("s{s}.jsonl"), s)).collect();
    assert!(many.len() > 1);
}

#[test]
fn alpaca_shape_and_param_errors() {
    let dir = tempfile::tempdir().unwrap();
    let repo = corpus(dir.path());
    let out = dir.path().join("a.jsonl");
    run(
        AstExtract,
        dir.path(),
        std::slice::from_ref(&repo),
        std::slice::from_ref(&out),
        json!({"counts": {"grep": 1, "read": 0, "direct": 0}, "format": "alpaca", "system": "s"}),
    )
    .0
    .unwrap();
    let recs = read_all(&out).unwrap();
    assert_eq!(recs.len(), 1);
    assert_eq!(recs[0].keys().collect::<Vec<_>>(), ["instruction", "input", "output", "pattern", "source", "topic"]);

    let shape = |params: Value, outs: usize| {
        Typed::new(AstExtract).check(&StageShape { params: &params, deps: 1, outs, cmd: None }).unwrap_err()
    };
    let e = shape(json!({"countz": {}}), 1);
    assert_eq!(e.field.as_deref(), Some("countz"));
    let e = shape(json!({"format": "xml"}), 1);
    assert!(e.message.contains("unknown variant `xml`"), "{}", e.message);
    let e = shape(json!({}), 3);
    assert!(e.message.contains("1 to 2 outs (examples JSONL"), "{}", e.message);
}

/// Python source edge cases (issue 15 §4): each as Python's `ast` sees it.
#[test]
fn coding_declarations_cr_endings_continued_defs_and_module_imports() {
    // PEP 263: latin-1 bytes under a declaration are decoded, not "not UTF-8".
    let latin = b"# -*- coding: latin-1 -*-\n\"\"\"Caf\xe9.\"\"\"\n\ndef caf\xe9():\n    pass\n";
    let text = decode::python_text(latin).unwrap();
    let facts = defs::extract(&text).unwrap();
    assert_eq!(facts.defs.iter().map(|d| (d.name.as_str(), d.line)).collect::<Vec<_>>(), [("caf\u{e9}", 4)]);
    assert_eq!(facts.module_doc.as_deref(), Some("Caf\u{e9}."));

    // CR-only line endings: real line numbers, not all on line 1.
    let cr = decode::python_text(b"import os\r\rdef a():\r    pass\r\rclass B:\r    def c(self):\r        pass\r").unwrap();
    let facts = defs::extract(&cr).unwrap();
    let lines: Vec<(&str, usize)> = facts.defs.iter().map(|d| (d.name.as_str(), d.line)).collect();
    assert_eq!(lines, [("a", 3), ("B", 6), ("c", 7)]);
    assert_eq!(facts.lines, 8);

    // `def \` / `class \`: the keyword's line, as `ast` reports it.
    let cont = "def \\\n    f():\n    pass\n\nclass \\\r\n  K:\n    pass\n";
    let facts = defs::extract(cont).unwrap();
    let lines: Vec<(&str, usize)> = facts.defs.iter().map(|d| (d.name.as_str(), d.line)).collect();
    assert_eq!(lines, [("f", 1), ("K", 5)]);

    // Only imports outside functions and classes are the module's.
    let src = "\"\"\"Doc.\"\"\"\nimport os\ntry:\n    import json\nexcept ImportError:\n    json = None\n\ndef f():\n    import re\n    return re\n";
    let facts = defs::extract(src).unwrap();
    let imports: Vec<(usize, bool)> = facts.imports.iter().map(|i| (i.line, i.module_level)).collect();
    assert_eq!(imports, [(2, true), (4, true), (9, false)]);
}

#[test]
fn module_overview_ends_at_the_last_module_level_import() {
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("pkg");
    std::fs::create_dir_all(&repo).unwrap();
    let body = "    x = 1\n".repeat(4);
    let src = format!("\"\"\"Tools.\"\"\"\nimport os\nimport sys\n\n\ndef helper():\n{body}    import json\n    return json\n");
    std::fs::write(repo.join("tools.py"), src).unwrap();
    let out = dir.path().join("ex.jsonl");
    run(
        AstExtract,
        dir.path(),
        std::slice::from_ref(&repo),
        std::slice::from_ref(&out),
        json!({"counts": {"grep": 0, "read": 50, "direct": 0}}),
    )
    .0
    .unwrap();
    let recs = read_all(&out).unwrap();
    let overview: Vec<String> = recs
        .iter()
        .map(|r| text_of(&Value::Object(r.clone()), 1))
        .filter(|t| t.contains("The module docstring and imports"))
        .collect();
    assert_eq!(overview.len(), 1, "{recs:?}");
    assert!(overview[0].contains("are in lines 1–3:"), "{}", overview[0]);
}
