#!/usr/bin/env bash
# What the memo saves, measured against a real `dvx serve` on this machine:
# 1,000 `generate` requests (first run, then a forced re-run all from the
# memo), 100 appended records, and a `kill -9` at a random point followed by
# a re-run. A counting proxy between dvx and the server counts the requests
# that reach the server. Run by hand:
#   cargo build --release && bench/llm/run.sh [N=1000]
# Env: DVX (default target/release/dvx).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
DVX=${DVX:-$ROOT/target/release/dvx}
N=${1:-1000}
WORK=$(mktemp -d /tmp/dvx-bench-llm.XXXXXX)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$WORK"; }
trap cleanup EXIT
cd "$WORK"
export DVX_CACHE_DIR=$WORK/cache

# A tiny model, so that the server answers fast: what is measured is dvx.
mkdir models && (
    cd models
    python3 - <<'PY'
import json
with open("train.jsonl", "w") as f:
    for i in range(64):
        f.write(json.dumps({"messages": [{"role": "user", "content": f"q{i}"}, {"role": "assistant", "content": f"a{i}"}]}) + "\n")
PY
    cp train.jsonl valid.jsonl
    cat > dvx.yaml <<'YAML'
name: tiny
stages:
  lm:
    kind: train
    deps: [train.jsonl, valid.jsonl]
    outs: [model, metrics.json]
    params: { model: {layers: 1, width: 16, heads: 2, context: 64}, steps: 4, batch_size: 4, eval_every: 4 }
YAML
    "$DVX" run >/dev/null 2>&1
)

"$DVX" serve models/model --port 0 >serve.log 2>&1 &
PIDS+=($!)
until grep -q http:// serve.log; do sleep 0.1; done
UPSTREAM=$(sed -n 's|.*http://\([^/]*\)/v1.*|\1|p' serve.log | head -1)
python3 "$ROOT/bench/llm/count_proxy.py" "$UPSTREAM" >proxy.port &
PIDS+=($!)
until [ -s proxy.port ]; do sleep 0.1; done
PORT=$(cat proxy.port)
count() { curl -s "http://127.0.0.1:$PORT/_count" | python3 -c "import json,sys; print(json.load(sys.stdin)['$1'])"; }

prompts() { python3 -c "
import json
for i in range($1): print(json.dumps({'id': i, 'q': f'question {i}'}))" >prompts.jsonl; }
pipeline() { # temperature
    cat >dvx.yaml <<YAML
name: bench
stages:
  gen:
    kind: generate
    deps: [prompts.jsonl]
    outs: [responses.jsonl]
    params:
      teachers:
        - { name: tiny, base_url: "http://127.0.0.1:$PORT/v1", model: model, share: 1, params: { temperature: $1, max_tokens: 8, seed: 1 } }
      prompt: "Answer {q}"
      limits: { max_concurrent: 8 }
YAML
}
secs() { python3 -c "import time; print(time.time())"; }
timed() { local t0; t0=$(secs); "$@" >/dev/null 2>&1; python3 -c "print(f'{$(secs) - $t0:.2f}')"; }

prompts "$N"
pipeline 0
before=$(count forwarded)
first=$(timed "$DVX" run)
sent_first=$(($(count forwarded) - before))
before=$(count forwarded)
rerun=$(timed "$DVX" run --force gen)
sent_rerun=$(($(count forwarded) - before))
prompts $((N + 100))
before=$(count forwarded)
append=$(timed "$DVX" run)
sent_append=$(($(count forwarded) - before))

# kill -9 at a random point of a run that must ask everything again (new temperature).
pipeline 0.5
before_answered=$(count answered)
before=$(count forwarded)
"$DVX" run >/dev/null 2>&1 &
RUN=$!
target=$((RANDOM % (N * 8 / 10) + N / 10))
while [ $(($(count answered) - before_answered)) -lt "$target" ]; do sleep 0.05; done
kill -9 "$RUN"
wait "$RUN" 2>/dev/null || true
sleep 0.5
answered=$(($(count answered) - before_answered))
not_answered=$((N + 100 - answered))
# What reached the memo before the kill (an answer handed back in the instant of the kill may not have).
memo_before=$(find "$DVX_CACHE_DIR/memo-v1" -type f | wc -l)
not_memoised=$((2 * (N + 100) - memo_before))
before=$(count forwarded)
resume=$(timed "$DVX" run)
sent_resume=$(($(count forwarded) - before))
memo=$(find "$DVX_CACHE_DIR/memo-v1" -type f | wc -l)

printf '%-52s %s\n' "requests, first run ($N records)" "$sent_first sent, ${first}s"
printf '%-52s %s\n' "forced re-run, all from the memo" "$sent_rerun sent, ${rerun}s"
printf '%-52s %s\n' "after appending 100 records" "$sent_append sent (must be 100), ${append}s"
printf '%-52s %s\n' "kill -9 after answers handed back" "$answered of $((N + 100))"
printf '%-52s %s\n' "re-run after the kill" "$sent_resume sent, ${resume}s"
printf '%-52s %s\n' "  not yet handed back at the kill / not in the memo" "$not_answered / $not_memoised"
printf '%-52s %s\n' "memo entries" "$memo"
