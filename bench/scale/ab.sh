#!/usr/bin/env bash
# Interleaved A/B of the append-1,000 re-run on one project that run.sh left
# (default: the 1M one): each round restores the N-record outputs from the
# cache, appends 1,000 records of a seed not used before (so no run-cache
# hit), and times `dvx run STAGE` stage by stage with binary A, then B.
#   bench/scale/ab.sh /tmp/dvx-before target/release/dvx
#   N=300000 ROUNDS=5 SEED=500 bench/scale/ab.sh A B
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
a=$(realpath "$1"); b=$(realpath "$2")
n=${N:-1000000}; work=${WORK:-/tmp/dvx-scale-bench}
p="$work/n$n"; size=$(stat -c %s "$work/gen/data-$n.jsonl")
seed=${SEED:-100}
cd "$p"
for round in $(seq "${ROUNDS:-3}"); do
    for bin in "$a" "$b"; do
        seed=$((seed + 1))
        truncate -s "$size" data.jsonl
        "$bin" run > /dev/null 2>&1 # the N-record outputs, from the cache
        python3 "$here/gen.py" --n 1000 --start "$n" --seed "$seed" --append data.jsonl
        line="round $round $(basename "$bin") (seed $seed):"; total=0; cpu=0
        for s in filter dedup balance split validate; do
            /usr/bin/time -f "%e %U %S" -o "$work/ab.t" "$bin" run "$s" > "$work/ab.out" 2>&1
            read -r wall user sys < "$work/ab.t"
            line="$line $s ${wall}s"
            total=$(echo "$total + $wall" | bc); cpu=$(echo "$cpu + $user + $sys" | bc)
        done
        echo "$line | total ${total}s, cpu ${cpu}s"
    done
done
