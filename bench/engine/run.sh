#!/usr/bin/env bash
# Build dvx in release mode and run the engine overhead benchmark.
set -euo pipefail
cd "$(dirname "$0")/../.."
cargo build --release --bin dvx
python3 bench/engine/bench.py "$@"
