#!/bin/sh
# ast-extract's parser+extraction core (ruff_python_parser, Rust) against the
# same extraction written with Python's `ast`, over the Python standard
# library of this machine (or DIR). Files are read into memory first; both
# sides time parsing and extraction only, best of three runs.
#   bench/ast/run.sh [DIR]
set -eu
cd "$(dirname "$0")/../.."
dir=${1:-$(python3 -c 'import sysconfig; print(sysconfig.get_paths()["stdlib"])')}
cargo build --release -q -p dvx-stages --example ast_bench
rust=$(target/release/examples/ast_bench "$dir")
py=$(python3 bench/ast/extract.py "$dir")
python3 - "$rust" "$py" "$dir" <<'PY'
import json, sys
r, p, d = json.loads(sys.argv[1]), json.loads(sys.argv[2]), sys.argv[3]
print(f"corpus: {d}")
print(f"files: {r['files']}   lines: {r['lines']}")
print(f"definitions  rust {r['definitions']}  python {p['definitions']}   imports rust {r['imports']}  python {p['imports']}   docstrings rust {r['docstrings']}  python {p['docstrings']}")
print(f"parse failures  rust {r['failed']}  python {p['failed']}")
print()
rows = [
    ("python ast (1 thread)", p["seconds"]),
    ("rust ruff (1 thread)", r["seconds_1_thread"]),
    (f"rust ruff ({r['threads']} threads)", r["seconds_all_threads"]),
]
print(f"{'extractor':<26}{'seconds':>9}{'files/s':>11}{'lines/s':>13}{'vs python':>11}")
for name, s in rows:
    print(f"{name:<26}{s:>9.3f}{r['files']/s:>11.0f}{r['lines']/s:>13.0f}{p['seconds']/s:>10.1f}x")
PY
