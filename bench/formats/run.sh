#!/usr/bin/env bash
# Formats benchmark: 1M seed-002-shaped records JSONL -> Parquet -> JSONL,
# dvx's `filter` (reading one format, writing the other, one thread) side by
# side with pyarrow + Python's json on one core. Wall time and peak RSS.
#   N=1000000 WORK=/tmp/dvx-formats-bench bench/formats/run.sh
#   BENCH=target/release/examples/stage_bench bench/formats/run.sh   # skip the build
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
N=${N:-1000000}
work=${WORK:-/tmp/dvx-formats-bench}
venv=${VENV:-/tmp/formats-venv}
mkdir -p "$work"

if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c 'import pyarrow' 2>/dev/null; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q pyarrow
fi
py="$venv/bin/python"
pin=(); if command -v taskset >/dev/null; then pin=(taskset -c 0); fi  # one core

if [ -z "${BENCH:-}" ]; then
    # The workspace-wide build: a `-p` build unifies features differently and rebuilds the ML crates.
    (cd "$root" && cargo build --release -q --workspace --bins --examples)
    BENCH="$root/target/release/examples/stage_bench"
fi
bench=$(cd "$(dirname "$BENCH")" && pwd)/$(basename "$BENCH")
# Passes every record; the point is reading and writing.
params='{"default": {"field": "quality_score", "ge": 0}}'

echo "== $N records, load $(cut -d' ' -f1-3 /proc/loadavg) on $(nproc) cores"
# KEEP=1 keeps the work folder, and a later run reuses its input.
[ -s "$work/in-$N.jsonl" ] || "$py" "$here/gen.py" "$N" "$work/in-$N.jsonl" 1
ln -sf "in-$N.jsonl" "$work/in.jsonl"
ls -lL "$work/in.jsonl"
# Wall time, CPU time (user + sys: steadier than wall on a shared machine) and peak RSS.
# Prints on fd 3, as the dvx calls send the stage's own output to /dev/null.
exec 3>&1
timed() { local name=$1; shift; /usr/bin/time -f "%e s wall, %U s user + %S s sys, %M KB peak RSS" -o "$work/$name.time" "$@"; echo "$name: $(cat "$work/$name.time")" >&3; }
timed pyarrow_to_parquet ${pin[@]+"${pin[@]}"} "$py" "$here/peer.py" to_parquet "$work/in.jsonl" "$work/py.parquet"
timed dvx_to_parquet ${pin[@]+"${pin[@]}"} "$bench" filter --dep "$work/in.jsonl" --out "$work/dvx.parquet" --params "$params" > /dev/null 2>&1
timed pyarrow_to_jsonl ${pin[@]+"${pin[@]}"} "$py" "$here/peer.py" to_jsonl "$work/py.parquet" "$work/py.jsonl"
timed dvx_to_jsonl ${pin[@]+"${pin[@]}"} "$bench" filter --dep "$work/dvx.parquet" --out "$work/dvx.jsonl" --params "$params" > /dev/null 2>&1
ls -l "$work"/*.parquet "$work"/*.jsonl
# gen.py writes `, ` separators; both tools write compact lines, so they are compared with each other.
cmp -s "$work/py.jsonl" "$work/dvx.jsonl" && echo "round trip: dvx and pyarrow + json write the same JSONL bytes" || echo "round trip: dvx and pyarrow + json JSONL differ"
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg) on $(nproc) cores"
[ "${KEEP:-0}" = 1 ] || rm -rf "$work"
