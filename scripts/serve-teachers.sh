#!/usr/bin/env bash
# Start or stop the `dvx serve` processes pipelines/phase0.yaml asks:
#   teachers: the phase-5 model on 127.0.0.1:$PHASE0_TEACHER_PORT (8101)
#   judge:    phase0's judge model on 127.0.0.1:$PHASE0_JUDGE_PORT (8102)
# `start` first builds both models with dvx (or restores them from the
# cache), then serves them and waits until both listen. Offline throughout.
#   scripts/serve-teachers.sh start|stop|status
# Env: DVX (the dvx binary, default `dvx`), PHASE0_TEACHER_PORT, PHASE0_JUDGE_PORT.
set -euo pipefail
cd "$(dirname "$0")/.."
DVX=${DVX:-dvx}
TEACHER_PORT=${PHASE0_TEACHER_PORT:-8101}
JUDGE_PORT=${PHASE0_JUDGE_PORT:-8102}
RUN=data/phase0/servers
mkdir -p "$RUN"

serve() { # name model port
    local name=$1 model=$2 port=$3
    if [ -f "$RUN/$name.pid" ] && kill -0 "$(cat "$RUN/$name.pid")" 2>/dev/null; then
        echo "$name already running (pid $(cat "$RUN/$name.pid"))"
        return
    fi
    "$DVX" serve "$model" --port "$port" --name "$(basename "$model")" >"$RUN/$name.log" 2>&1 &
    echo $! >"$RUN/$name.pid"
    for _ in $(seq 1 300); do
        if grep -q "http://" "$RUN/$name.log"; then
            echo "$name: $(head -1 "$RUN/$name.log") (pid $(cat "$RUN/$name.pid"))"
            return
        fi
        if ! kill -0 "$(cat "$RUN/$name.pid")" 2>/dev/null; then
            echo "$name failed to start:" >&2
            cat "$RUN/$name.log" >&2
            exit 1
        fi
        sleep 0.1
    done
    echo "$name did not start listening within 30 s" >&2
    exit 1
}

stop() { # name
    local pidfile="$RUN/$1.pid"
    [ -f "$pidfile" ] || return 0
    kill "$(cat "$pidfile")" 2>/dev/null || true
    rm -f "$pidfile"
    echo "$1 stopped"
}

case "${1:-}" in
start)
    "$DVX" run pipelines/phase0.yaml p5_train p0_judge_model
    serve teachers data/phase5/model "$TEACHER_PORT"
    serve judge data/phase0/judge_model "$JUDGE_PORT"
    ;;
stop)
    stop teachers
    stop judge
    ;;
status)
    for n in teachers judge; do
        if [ -f "$RUN/$n.pid" ] && kill -0 "$(cat "$RUN/$n.pid")" 2>/dev/null; then
            echo "$n: running, $(head -1 "$RUN/$n.log")"
        else
            echo "$n: not running"
        fi
    done
    ;;
*)
    echo "usage: $0 start|stop|status" >&2
    exit 2
    ;;
esac
