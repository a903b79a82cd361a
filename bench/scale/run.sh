#!/usr/bin/env bash
# Scale bench (issue 16): first run, no-op, append-1,000 re-run of
# filter -> dedup -> balance -> split -> validate, per stage: seconds, peak
# RSS, records processed; cache bytes after each step.
#   bench/scale/run.sh              # 100K and 300K
#   bench/scale/run.sh 1000000      # by hand: needs ~10 GB free in $WORK
#   DVX=target/debug/dvx bench/scale/run.sh 20000   # smoke test, no release build
#   YAML=my.yaml bench/scale/run.sh 300000          # another pipeline over the same data
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
work=${WORK:-/tmp/dvx-scale-bench}
sizes=("$@"); [ ${#sizes[@]} -gt 0 ] || sizes=(100000 300000)
stages=(filter dedup balance split validate)
if [ -z "${DVX:-}" ]; then
    (cd "$root" && cargo build --release -q --bin dvx)
    DVX="$root/target/release/dvx"
fi

# Wall seconds, peak RSS (MiB) and CPU seconds (user + system, all
# threads: steadier than wall on a shared machine) of one command.
timed() {
    local label=$1; shift
    /usr/bin/time -f "%e %M %U %S" -o "$work/t" "$@" > "$work/out" 2>&1 || { cat "$work/out"; exit 1; }
    read -r secs kb user sys < "$work/t"
    printf "%-28s %8.2f s %8d MiB   cpu %6.2f s\n" "$label" "$secs" "$((kb / 1024))" "$(echo "$user + $sys" | bc)"
}
cache_bytes() { du -sb "$1/.dvx/cache" | cut -f1; }

# The stage's own seconds, as `dvx run` reports it ("ran STAGE 1.23s"): the
# rest of a stage's wall time is dvx around it (hashing deps, storing outs,
# writing the version).
exec_secs() { sed -n "s/.* ran  *$1  *\([0-9.]*\)s.*/\1/p" "$work/out" | tail -1; }

for n in "${sizes[@]}"; do
    p="$work/n$n"; rm -rf "$p"; mkdir -p "$p"; cp "${YAML:-$here/dvx.yaml}" "$p/dvx.yaml"
    # gen.py is deterministic: generated once per size, copied for each run.
    gen="$work/gen/data-$n.jsonl"
    if [ ! -f "$gen" ]; then
        mkdir -p "$work/gen"
        python3 "$here/gen.py" --n "$n" --seed 1 --out "$gen.tmp" && mv "$gen.tmp" "$gen"
    fi
    cp "$gen" "$p/data.jsonl"
    echo "== $n records ($(du -h "$p/data.jsonl" | cut -f1)), load $(cut -d' ' -f1-3 /proc/loadavg)"
    cd "$p"
    echo "-- first run, a stage at a time"
    start=$(date +%s.%N)
    for s in "${stages[@]}"; do timed "first $s" "$DVX" run "$s"; echo "   stage's own seconds: $(exec_secs "$s")"; done
    echo "first run total: $(echo "$(date +%s.%N) - $start" | bc) s; cache $(cache_bytes "$p") bytes"
    timed "no-op" "$DVX" run
    python3 "$here/gen.py" --n 1000 --start "$n" --seed 1 --append "$p/data.jsonl"
    echo "-- append 1,000, re-run a stage at a time"
    start=$(date +%s.%N)
    for s in "${stages[@]}"; do
        timed "append $s" "$DVX" run "$s"
        echo "   stage's own seconds: $(exec_secs "$s")"
        echo "   records processed by $s: $(cd "$p"; n=$("$DVX" logs "$s" | sed -n 's/^records processed: \([0-9]*\).*/\1/p' | tail -1); echo "${n:-all}")"
    done
    echo "append re-run total: $(echo "$(date +%s.%N) - $start" | bc) s; cache $(cache_bytes "$p") bytes"
    cd "$here"
done
