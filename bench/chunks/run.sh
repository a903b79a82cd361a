#!/usr/bin/env bash
# Cache store throughput and append growth, this tree against a base commit
# (default: the merge base with main), side by side on the same data.
#   bench/chunks/run.sh [MEGABYTES] [REPEATS]
# The data and caches go under $TMPDIR: a disk measures the disk (each store
# ends in one syncfs), TMPDIR=/dev/shm measures hashing, chunking and copying.
set -euo pipefail
cd "$(dirname "$0")/../.."
megabytes=${1:-1500}
repeats=${2:-3}
base=${BASE:-$(git merge-base HEAD main)}
work=$(mktemp -d "${TMPDIR:-/tmp}/dvx-chunks-bench.XXXXXX")
trap 'rm -rf "$work"' EXIT

# The base tree, with this bench added as an example of its cache crate.
git archive "$base" | tar -x -C "$work" --one-top-level=base
mkdir -p "$work/base/cache/examples"
cp bench/chunks/store.rs "$work/base/cache/examples/store_bench.rs"

mkdir -p cache/examples
cp bench/chunks/store.rs cache/examples/store_bench.rs
trap 'rm -rf "$work" cache/examples/store_bench.rs; rmdir cache/examples 2>/dev/null || true' EXIT

CARGO_INCREMENTAL=0 cargo build -q --release -p dvx-cache --example store_bench
# The base build is kept between runs, beside this tree's.
base_target="$PWD/target/chunks-bench-base"
(cd "$work/base" && CARGO_INCREMENTAL=0 CARGO_TARGET_DIR="$base_target" cargo build -q --release -p dvx-cache --example store_bench)

new=target/release/examples/store_bench
old="$base_target/release/examples/store_bench"
data="$work/data.jsonl"
records=$("$new" gen "$data" "$megabytes")
echo "data: $(stat -c %s "$data") bytes, $records records; base = $base (whole objects), this tree = chunked"
# Interleaved, so both see the same machine load.
for i in $(seq "$repeats"); do
    for who in base this; do
        bin=$new; [ "$who" = base ] && bin=$old
        read -r wall cpu bytes < <("$bin" store "$data" "$work/cache-$who")
        awk -v who="$who" -v w="$wall" -v c="$cpu" -v b="$bytes" \
            'BEGIN { printf "%s store: wall %.2f s (%.0f MB/s), cpu %.2f s (%.0f MB/s)\n", who, w, b / 1e6 / w, c, b / 1e6 / c }'
        rm -rf "$work/cache-$who"
    done
done
# Append 1,000 records to a stored file and store it again.
for who in base this; do
    bin=$new; [ "$who" = base ] && bin=$old
    cp "$data" "$work/data-$who.jsonl"
    "$bin" store "$work/data-$who.jsonl" "$work/cache-$who" > /dev/null
    read -r wall appended grew < <("$bin" append "$work/data-$who.jsonl" "$work/cache-$who")
    echo "$who append 1,000 records ($appended bytes): stored in $wall s, cache grew by $grew bytes ($(awk "BEGIN { printf \"%.2f\", $grew / $appended }")x the appended bytes)"
    rm -rf "$work/cache-$who" "$work/data-$who.jsonl"
done
