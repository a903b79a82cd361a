#!/usr/bin/env bash
# Train-stage throughput (tokens/s) of dvx (candle, CPU) vs PyTorch (CPU) on
# the same small transformer, batch and sequence length.
#
#   bench/train/run.sh                 # defaults: 2 layers, width 128, seq 128, batch 8
#   LAYERS=4 WIDTH=256 bench/train/run.sh
#
# PyTorch comes from PyPI into a throwaway venv (TORCH_VENV, default
# /tmp/dvx-torch-venv). PyPI's Linux wheel is the CUDA build (~3 GB with its
# nvidia-* dependencies); it runs on the CPU here. Set SKIP_TORCH=1 to skip.
set -euo pipefail
cd "$(dirname "$0")/../.."

LAYERS=${LAYERS:-2} WIDTH=${WIDTH:-128} HEADS=${HEADS:-4} SEQ=${SEQ:-128} BATCH=${BATCH:-8} STEPS=${STEPS:-20}
THREADS_LIST=${THREADS_LIST:-"1 2"}
ARGS="--layers $LAYERS --width $WIDTH --heads $HEADS --seq $SEQ --batch $BATCH --steps $STEPS"

cargo build --release -q -p dvx-stages --example train_bench
VENV=${TORCH_VENV:-/tmp/dvx-torch-venv}
if [ "${SKIP_TORCH:-0}" != 1 ]; then
  [ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
  "$VENV/bin/python" -c "import torch" 2>/dev/null || "$VENV/bin/pip" install -q torch
fi

echo "workload: $ARGS"
printf '| %-10s | %7s | %10s | %10s | %-16s |\n' impl threads "tokens/s" "last loss" "weights hash"
printf '|%s|%s|%s|%s|%s|\n' ------------ ---------: ------------: ------------: ------------------
for t in $THREADS_LIST; do
  # candle sizes its pool once per process from these.
  export CANDLE_NUM_THREADS=$t RAYON_NUM_THREADS=$t
  read -r name th tps loss hash < <(target/release/examples/train_bench $ARGS --threads "$t")
  printf '| %-10s | %7s | %10s | %10s | %-16s |\n' "$name" "$th" "$tps" "$loss" "$hash"
  if [ "${SKIP_TORCH:-0}" != 1 ]; then
    read -r name th tps loss < <("$VENV/bin/python" bench/train/torch_bench.py $ARGS --threads "$t" 2>/dev/null)
    printf '| %-10s | %7s | %10s | %10s | %-16s |\n' "$name" "$th" "$tps" "$loss" "-"
  fi
done
