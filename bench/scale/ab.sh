#!/usr/bin/env bash
# Interleaved A/B of the append-1,000 re-run on one project that run.sh left
# (default: the 1M one): each round restores the N-record outputs from the
# cache, appends 1,000 records of a seed not used before (so no run-cache
# hit), and times `dvx run STAGE` stage by stage with binary A, then B.
#   bench/scale/ab.sh /tmp/dvx-before target/release/dvx
#   N=300000 ROUNDS=5 SEED=500 bench/scale/ab.sh A B
# WHOLE=1 times one `dvx run` of the whole pipeline instead (what a user
# runs; stage by stage, each run also re-hashes the out the one before it
# wrote, which the stat cache calls racy when that was under 100 ms ago).
# CHAIN=1 appends to what the last round left instead of restoring the N
# records first: the daily flow, where the outs on disk are the ones the
# last run stored.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
a=$(realpath "$1"); b=$(realpath "$2")
n=${N:-1000000}; work=${WORK:-/tmp/dvx-scale-bench}
p="$work/n$n"; size=$(stat -c %s "$work/gen/data-$n.jsonl")
seed=${SEED:-100}
stages=(filter dedup balance split validate)
[ -z "${WHOLE:-}" ] || stages=("")
cd "$p"
for round in $(seq "${ROUNDS:-3}"); do
    for bin in "$a" "$b"; do
        seed=$((seed + 1))
        if [ -z "${CHAIN:-}" ]; then
            truncate -s "$size" data.jsonl
            "$bin" run > /dev/null 2>&1 # the N-record outputs, from the cache
        fi
        python3 "$here/gen.py" --n 1000 --start "$(wc -l < data.jsonl)" --seed "$seed" --append data.jsonl
        line="round $round $(basename "$bin") (seed $seed):"; total=0; cpu=0
        for s in "${stages[@]}"; do
            # shellcheck disable=SC2086 # an empty stage name runs them all
            /usr/bin/time -f "%e %U %S" -o "$work/ab.t" "$bin" run $s > "$work/ab.out" 2>&1
            read -r wall user sys < "$work/ab.t"
            line="$line ${s:-whole pipeline} ${wall}s"
            total=$(echo "$total + $wall" | bc); cpu=$(echo "$cpu + $user + $sys" | bc)
        done
        echo "$line | total ${total}s, cpu ${cpu}s"
    done
done
