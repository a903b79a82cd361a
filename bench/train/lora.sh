#!/usr/bin/env bash
# LoRA fine-tuning of a Llama-shaped base with random bf16 weights (r16 on
# q,v, batch 2 x 128, one thread): tokens/s and peak memory of dvx (candle,
# CPU) next to torch + PEFT in f32 and bf16, run back to back.
#
#   bench/train/lora.sh                  # Llama-3.2-1B's shape (16 layers)
#   LAYERS=4 bench/train/lora.sh         # the same widths, 4 layers
#   ROUNDS=3 DTYPES=float32 ...          # dvx and torch f32 interleaved, 3 times
#
# Needs ~5 GiB of free memory for the 1B shape (torch f32 needs ~8); runs
# one job at a time. TORCH_PY: a python with torch, transformers and peft.
set -euo pipefail
cd "$(dirname "$0")/../.."

LAYERS=${LAYERS:-16} STEPS=${STEPS:-3} PROFILE=${PROFILE:-release}
PY=${TORCH_PY:-/work/venv/bin/python}
BASE=${BASE_DIR:-/tmp/dvx-lora-bench-base-$LAYERS}
export CANDLE_NUM_THREADS=1 RAYON_NUM_THREADS=1

# The workspace selection, as the release build of the binaries uses: a
# `-p dvx-stages` build unifies features differently and recompiles candle.
if [ "$PROFILE" = release ]; then
  cargo build --release -q --workspace --examples; BIN=target/release/examples/lora_bench
else
  cargo build -q --workspace --examples; BIN=target/debug/examples/lora_bench
fi
[ -f "$BASE/model.safetensors" ] || "$BIN" --write-base "$BASE" --layers "$LAYERS"

echo "shape: Llama-3.2-1B widths, $LAYERS layers; LoRA r16 q,v; batch 2 x 128; 1 thread"
# Load average: the 1-minute figure as each run ends (other jobs slow it).
# dvx's tokens/s counts every step; torch's leaves out its first (warm-up)
# step, and the next column counts it too.
row() { printf '| %-16s | %8s | %14s | %14s | %9s | %5s |\n' "$@"; }
row impl tokens/s "all steps" "peak RSS MiB" "last loss" load
printf '|%s|%s|%s|%s|%s|%s|\n' ------------------ ---------: ---------------: ---------------: ----------: ------:
for round in $(seq "${ROUNDS:-1}"); do
  read -r name _ tps rss loss < <("$BIN" --base "$BASE" --steps "$STEPS" --threads 1 2>/dev/null)
  row "$name" "$tps" "$tps" "$rss" "$loss" "$(cut -d' ' -f1 /proc/loadavg)"
  # DTYPES=float32 skips bf16, which on a CPU without bf16 matrix
  # instructions takes far longer than a session.
  for d in ${DTYPES:-float32 bfloat16}; do
    read -r name _ tps rss loss all < <("$PY" bench/train/lora_torch.py --layers "$LAYERS" --steps "$STEPS" --dtype $d 2>/dev/null)
    row "$name" "$tps" "$all" "$rss" "$loss" "$(cut -d' ' -f1 /proc/loadavg)"
  done
done
