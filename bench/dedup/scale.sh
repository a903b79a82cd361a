#!/usr/bin/env bash
# dedup at scale (issue 16, section 4): N seed-002-shaped records
# (bench/scale/gen.py, ~1.7 KB each) through `dedup` (mode both, threshold
# 0.8, fields instruction + response, score quality_score), as in
# bench/scale/dvx.yaml; prints wall seconds and peak RSS. Input and kept
# records are zstd JSONL to spare the disk (10M records: ~3.4 GB instead of
# 17 GB each). The data is deleted afterwards unless KEEP=1.
#   N=10000000 PARTS=2 WORK=/var/tmp/dvx-dedup-scale bench/dedup/scale.sh
#   BENCH=target/release/examples/stage_bench ...   # skip the build
#   N=10000000 TILE=10 ...   # gen.py makes N/10 records, tile.py the 9
#                            # letter-permuted copies (minutes instead of
#                            # over an hour on 2 cores; same Jaccard structure)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
N=${N:-10000000}
TILE=${TILE:-1}
PARTS=${PARTS:-2}     # generator processes; the input is this many deps
THREADS=${THREADS:-$(nproc)}
work=${WORK:-/var/tmp/dvx-dedup-scale}
mkdir -p "$work"
echo "free disk in $work: $(df -h "$work" | awk 'NR==2 {print $4}') (needs ~$((N / 1000000 * 7 / 10 + 2)) GB for input, output and spill files)"

if [ -z "${BENCH:-}" ]; then
    (cd "$root" && cargo build --release -q --workspace --bins --examples)
    BENCH="$root/target/release/examples/stage_bench"
fi

# Record i depends only on (seed, i): the parts are the corpus cut in ranges.
deps=()
base=$(( N / TILE ))
per=$(( (base + PARTS - 1) / PARTS ))
pids=()
for ((k = 0; k < PARTS; k++)); do
    start=$((k * per)); n=$(( base - start < per ? base - start : per ))
    f="$work/part$k-$start-$n.jsonl.zst"
    deps+=(--dep "$f")
    [ -s "$f" ] && continue
    (python3 "$root/bench/scale/gen.py" --n "$n" --start "$start" --seed 1 --out /dev/stdout \
        | zstd -3 -T1 -q -c > "$f.part" && mv "$f.part" "$f") &
    pids+=($!)
done
for p in ${pids[@]+"${pids[@]}"}; do wait "$p"; done
# Copies 1.. of the base corpus, each part permuted on its own (in parallel).
parts=("${deps[@]}")
pids=()
for ((c = 1; c < TILE; c++)); do
    for ((i = 1; i < ${#parts[@]}; i += 2)); do
        src=${parts[$i]}; f="${src%.jsonl.zst}-copy$c.jsonl.zst"
        deps+=(--dep "$f")
        [ -s "$f" ] && continue
        (zstdcat "$src" | python3 "$here/tile.py" --copy "$c" | zstd -3 -T1 -q -c > "$f.part" && mv "$f.part" "$f") &
        pids+=($!)
        if [ ${#pids[@]} -ge "$PARTS" ]; then wait "${pids[0]}"; pids=("${pids[@]:1}"); fi
    done
done
for p in ${pids[@]+"${pids[@]}"}; do wait "$p"; done
ls -l "$work"/part*.jsonl.zst | head -4; du -ch "$work"/part*.jsonl.zst | tail -1

params='{"mode": "both", "threshold": 0.8, "fields": ["instruction", "response"], "score_field": "quality_score"}'
echo "== dedup of $N records, $THREADS threads, load $(cut -d' ' -f1-3 /proc/loadavg) on $(nproc) cores"
/usr/bin/time -v "$BENCH" dedup "${deps[@]}" --out "$work/kept.jsonl.zst" --threads "$THREADS" --params "$params" \
    > "$work/dedup.json" 2> "$work/dedup.err"
grep -E '^(dedup|kept|lsh|time|candidates)' "$work/dedup.err" || true
grep -E 'Elapsed|Maximum resident|User time|System time' "$work/dedup.err"
cat "$work/dedup.json"
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
[ "${KEEP:-0}" = 1 ] || rm -rf "$work"
