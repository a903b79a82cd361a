#!/usr/bin/env bash
# Stop a cluster started by ci/slurm/start.sh: its daemons, by their PIDs.
# Usage: ci/slurm/stop.sh DIR
set -uo pipefail
dir="${1:?usage: stop.sh DIR}"
stop() {
  local pidfile="$1"
  [ -f "$pidfile" ] || return 0
  local pid
  pid="$(cat "$pidfile")"
  [ -n "$pid" ] || return 0
  kill "$pid" 2>/dev/null || return 0
  for _ in $(seq 1 50); do
    kill -0 "$pid" 2>/dev/null || return 0
    sleep 0.1
  done
  kill -9 "$pid" 2>/dev/null || true
}
stop "$dir/slurmd.pid"
stop "$dir/slurmctld.pid"
stop "$dir/munge/munged.pid"
exit 0
