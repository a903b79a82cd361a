#!/usr/bin/env bash
# LoRA fine-tuning of a Llama-shaped base with random bf16 weights (r16 on
# q,v, batch 2 x 128, one thread): tokens/s and peak memory of dvx (candle,
# CPU) next to torch + PEFT in f32 and bf16, run back to back.
#
#   bench/train/lora.sh                  # Llama-3.2-1B's shape (16 layers)
#   LAYERS=4 bench/train/lora.sh         # the same widths, 4 layers
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
row() { printf '| %-16s | %8s | %14s | %9s | %5s |\n' "$@"; }
row impl tokens/s "peak RSS MiB" "last loss" load
printf '|%s|%s|%s|%s|%s|\n' ------------------ ---------: ---------------: ----------: ------:
read -r name _ tps rss loss < <("$BIN" --base "$BASE" --steps "$STEPS" --threads 1 2>/dev/null)
row "$name" "$tps" "$rss" "$loss" "$(cut -d' ' -f1 /proc/loadavg)"
for d in float32 bfloat16; do
  read -r name _ tps rss loss < <("$PY" bench/train/lora_torch.py --layers "$LAYERS" --steps "$STEPS" --dtype $d 2>/dev/null)
  row "$name" "$tps" "$rss" "$loss" "$(cut -d' ' -f1 /proc/loadavg)"
done
