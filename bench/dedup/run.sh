#!/usr/bin/env bash
# dedup benchmark: dvx's `dedup` stage vs datasketch MinHashLSH on a corpus
# with planted duplicates, then peak memory of dvx on 1M short documents.
#   N=100000 BIG=1000000 WORK=/tmp/dvx-dedup-bench bench/dedup/run.sh
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
N=${N:-100000}
BIG=${BIG:-1000000}
work=${WORK:-/tmp/dvx-dedup-bench}
venv=${VENV:-/tmp/dedup-venv}
cores=$(nproc)
mkdir -p "$work"

if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c 'import datasketch' 2>/dev/null; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q datasketch
fi
py="$venv/bin/python"
pin=(); if command -v taskset >/dev/null; then pin=(taskset -c 0); fi  # one core
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 MKL_NUM_THREADS=1

(cd "$root" && cargo build --release -q -p dvx-stages --example dedup_bench)
bench="$root/target/release/examples/dedup_bench"

echo "== corpus: $N documents (40-200 words)"
"$py" "$here/gen.py" --n "$N" --seed 1 --out "$work/corpus.jsonl" --truth "$work/truth.json"
timed() { local out=$1; shift; /usr/bin/time -f "%e %U %S %M" -o "$out.time" "$@"; }
echo "== datasketch (1 core)"
timed "$work/ds" ${pin[@]+"${pin[@]}"} "$py" "$here/ds_runner.py" "$work/corpus.jsonl" "$work/ds.json"
echo "== datasketch (1 core) with dvx's bands x rows (13 x 8)"
timed "$work/ds13x8" ${pin[@]+"${pin[@]}"} "$py" "$here/ds_runner.py" "$work/corpus.jsonl" "$work/ds13x8.json" 13 8
echo "== dvx dedup, 1 thread"
timed "$work/dvx1" ${pin[@]+"${pin[@]}"} "$bench" "$work/corpus.jsonl" --threads 1 --out "$work/dvx1" > "$work/dvx1.json"
echo "== dvx dedup, $cores threads"
timed "$work/dvxN" "$bench" "$work/corpus.jsonl" --threads "$cores" --out "$work/dvxN" > "$work/dvxN.json"
echo
"$py" "$here/eval.py" "$work/truth.json" \
    "datasketch (1 core)=$work/ds" \
    "datasketch 13x8 (1 core)=$work/ds13x8" \
    "dvx dedup (1 thread)=$work/dvx1" \
    "dvx dedup ($cores threads)=$work/dvxN"
cmp -s "$work/dvx1/kept.jsonl" "$work/dvxN/kept.jsonl" && cmp -s "$work/dvx1/lineage.jsonl" "$work/dvxN/lineage.jsonl" \
    && echo "dvx outputs identical for 1 and $cores threads" || echo "WARNING: dvx outputs differ between thread counts"
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg) on $cores cores"

if [ "$BIG" -gt 0 ]; then
    echo
    echo "== memory: $BIG short documents (15-40 words), $cores threads"
    "$py" "$here/gen.py" --n "$BIG" --seed 2 --short --out "$work/big.jsonl" --truth "$work/big-truth.json"
    /usr/bin/time -v "$bench" "$work/big.jsonl" --threads "$cores" --out "$work/dvxbig" \
        > "$work/dvxbig.json" 2> "$work/dvxbig.timev"
    grep -E "Maximum resident|Elapsed" "$work/dvxbig.timev"
    awk -F': ' '/Elapsed/ {split($2, t, ":"); w = (length(t) == 3) ? t[1]*3600 + t[2]*60 + t[3] : t[1]*60 + t[2]}
                /User time/ {u = $2} /System time/ {s = $2} /Maximum resident/ {m = $2}
                END {print w, u, s, m}' "$work/dvxbig.timev" > "$work/dvxbig.time"
    "$py" "$here/eval.py" "$work/big-truth.json" "dvx dedup ($cores threads)=$work/dvxbig"
fi
