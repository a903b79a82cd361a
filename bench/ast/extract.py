#!/usr/bin/env python3
"""The Python side of bench/ast: the same facts as ast-extract's core
(classes, functions, methods with qualified names, lines, decorators, bases,
signatures, cleaned docstrings; imports) for every .py file under DIR, with
the standard `ast` module. Files are read first; only parsing and extraction
are timed. Prints one JSON object.
"""

import ast
import json
import os
import sys
import time


def segment(src: bytes, starts, node) -> str:
    a = starts[node.lineno - 1] + node.col_offset
    b = starts[node.end_lineno - 1] + node.end_col_offset
    return src[a:b].decode("utf-8")


def line_starts(src: bytes):
    starts = [0]
    pos = src.find(b"\n")
    while pos != -1:
        starts.append(pos + 1)
        pos = src.find(b"\n", pos + 1)
    return starts


def param(src, starts, arg, default, prefix=""):
    s = prefix + arg.arg
    if arg.annotation is not None:
        s += ": " + segment(src, starts, arg.annotation)
    if default is not None:
        s += (" = " if arg.annotation is not None else "=") + segment(src, starts, default)
    return s


def signature(src, starts, fn) -> str:
    a = fn.args
    positional = a.posonlyargs + a.args
    defaults = [None] * (len(positional) - len(a.defaults)) + list(a.defaults)
    parts = []
    for i, arg in enumerate(a.posonlyargs):
        parts.append(param(src, starts, arg, defaults[i]))
    if a.posonlyargs:
        parts.append("/")
    for i, arg in enumerate(a.args):
        parts.append(param(src, starts, arg, defaults[len(a.posonlyargs) + i]))
    if a.vararg is not None:
        parts.append(param(src, starts, a.vararg, None, "*"))
    elif a.kwonlyargs:
        parts.append("*")
    for arg, default in zip(a.kwonlyargs, a.kw_defaults):
        parts.append(param(src, starts, arg, default))
    if a.kwarg is not None:
        parts.append(param(src, starts, a.kwarg, None, "**"))
    sig = "(" + ", ".join(parts) + ")"
    if fn.returns is not None:
        sig += " -> " + segment(src, starts, fn.returns)
    return sig


def extract(src: bytes):
    tree = ast.parse(src)
    starts = line_starts(src)
    defs, imports = [], []

    def suite(body, scope):
        for node in body:
            stmt(node, scope)

    def stmt(node, scope):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            is_class = isinstance(node, ast.ClassDef)
            in_class = bool(scope) and scope[-1][1]
            kind = "class" if is_class else ("method" if in_class else "function")
            defs.append({
                "kind": kind,
                "qualname": ".".join([n for n, _ in scope] + [node.name]),
                "line": node.lineno,
                "end_line": node.end_lineno,
                "decorators": [segment(src, starts, d) for d in node.decorator_list],
                "bases": [segment(src, starts, b) for b in node.bases] if is_class else [],
                "signature": "" if is_class else signature(src, starts, node),
                "docstring": ast.get_docstring(node),
            })
            suite(node.body, scope + [(node.name, is_class)])
        elif isinstance(node, ast.Import):
            imports.append((node.lineno, None, [a.name for a in node.names]))
        elif isinstance(node, ast.ImportFrom):
            imports.append((node.lineno, "." * node.level + (node.module or ""), [a.name for a in node.names]))
        elif isinstance(node, ast.If):
            suite(node.body, scope)
            suite(node.orelse, scope)
        elif isinstance(node, (ast.For, ast.AsyncFor, ast.While)):
            suite(node.body, scope)
            suite(node.orelse, scope)
        elif isinstance(node, (ast.With, ast.AsyncWith)):
            suite(node.body, scope)
        elif isinstance(node, ast.Try) or type(node).__name__ == "TryStar":
            suite(node.body, scope)
            for handler in node.handlers:
                suite(handler.body, scope)
            suite(node.orelse, scope)
            suite(node.finalbody, scope)
        elif isinstance(node, ast.Match):
            for case in node.cases:
                suite(case.body, scope)

    suite(tree.body, [])
    return defs, imports, ast.get_docstring(tree)


def main():
    root = sys.argv[1]
    paths = []
    for dirpath, dirnames, names in os.walk(root):
        # The standard library folder also holds site-packages: leave it out.
        dirnames[:] = [d for d in dirnames if d != "site-packages"]
        paths.extend(os.path.join(dirpath, n) for n in names if n.endswith(".py"))
    paths.sort()
    sources = []
    for p in paths:
        with open(p, "rb") as fh:
            data = fh.read()
        try:
            data.decode("utf-8")
        except UnicodeDecodeError:
            continue
        sources.append(data)
    lines = sum(len(s.decode("utf-8").splitlines()) for s in sources)
    best = None
    for _ in range(3):
        start = time.perf_counter()
        defs = imports = docs = failed = 0
        for src in sources:
            try:
                d, i, _ = extract(src)
            except (SyntaxError, ValueError, RecursionError):
                failed += 1
                continue
            defs += len(d)
            imports += len(i)
            docs += sum(1 for x in d if x["docstring"] is not None)
        secs = time.perf_counter() - start
        best = secs if best is None else min(best, secs)
    print(json.dumps({"files": len(sources), "lines": lines, "seconds": round(best, 4), "definitions": defs, "imports": imports, "docstrings": docs, "failed": failed}))


if __name__ == "__main__":
    main()
