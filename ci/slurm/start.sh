#!/usr/bin/env bash
# Start a throwaway single-node Slurm cluster on localhost (its own munged,
# free ports, every file under one folder) and print the path of its
# slurm.conf. Usage: ci/slurm/start.sh [DIR]   (DIR defaults to a new temp folder)
# Then: export SLURM_CONF=<printed path>; stop with ci/slurm/stop.sh DIR.
# Needs root (munged runs as the `munge` user) and Debian's slurm-wlm + munge.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
dir="${1:-$(mktemp -d /tmp/dvx-slurm.XXXXXX)}"
mkdir -p "$dir"
dir="$(cd "$dir" && pwd)"

for bin in munged slurmctld slurmd sinfo sbatch python3 runuser; do
  command -v "$bin" >/dev/null || { echo "start.sh: \`$bin\` not found (apt-get install slurm-wlm)" >&2; exit 3; }
done
[ "$(id -u)" = 0 ] || { echo "start.sh: must run as root (munged runs as the munge user)" >&2; exit 3; }
[ -r /etc/munge/munge.key ] || { echo "start.sh: no /etc/munge/munge.key" >&2; exit 3; }

# munge runs as its own user: it must reach the folder.
chmod 755 "$dir"
mkdir -p "$dir/munge" "$dir/state" "$dir/spool"
chown munge:munge "$dir/munge"
chmod 755 "$dir/munge"

read -r ctld_port slurmd_port < <(python3 -c '
import socket
socks = [socket.socket() for _ in range(2)]
for s in socks: s.bind(("127.0.0.1", 0))
print(*[s.getsockname()[1] for s in socks])
')
sed -e "s|@DIR@|$dir|g" -e "s|@CTLD_PORT@|$ctld_port|g" -e "s|@SLURMD_PORT@|$slurmd_port|g" -e "s|@USER@|$(id -un)|g" \
  "$here/slurm.conf.in" > "$dir/slurm.conf"
export SLURM_CONF="$dir/slurm.conf"

fail() {
  echo "start.sh: $*" >&2
  for f in "$dir"/slurmctld.log "$dir"/slurmd.log "$dir"/munge/munged.log; do
    [ -f "$f" ] && { echo "--- $f" >&2; tail -n 20 "$f" >&2; }
  done
  "$here/stop.sh" "$dir" >&2 || true
  exit 1
}

runuser -u munge -- /usr/sbin/munged --socket="$dir/munge/munge.socket" --pid-file="$dir/munge/munged.pid" \
  --log-file="$dir/munge/munged.log" --seed-file="$dir/munge/munged.seed" || fail "munged did not start"
slurmctld -i -f "$SLURM_CONF" || fail "slurmctld did not start"
slurmd -N localhost -f "$SLURM_CONF" || fail "slurmd did not start"

for _ in $(seq 1 60); do
  if sinfo -h -N -o '%N %t' 2>/dev/null | grep -q '^localhost idle'; then
    echo "$SLURM_CONF"
    exit 0
  fi
  sleep 0.5
done
fail "the node did not become idle within 30s: $(sinfo -h -N -o '%N %t' 2>&1 || true)"
