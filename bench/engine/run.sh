#!/usr/bin/env bash
# Build dvx in release mode and run the engine overhead benchmark.
set -euo pipefail
cd "$(dirname "$0")/../.."
# DVX=path/to/dvx skips the build (a workspace-wide one: a `-p`/`--bin` build
# unifies features differently and rebuilds the ML crates).
if [ -z "${DVX:-}" ]; then
    cargo build --release -q --workspace --bins --examples
    DVX=target/release/dvx
fi
python3 bench/engine/bench.py --dvx "$DVX" "$@"
