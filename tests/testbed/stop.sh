#!/usr/bin/env bash
# Stops what start.sh started, by PID. Safe to call twice.
set -u
root=$(cd "$(dirname "$0")/../.." && pwd)
dir=${TESTBED_DIR:-$root/.testbed}
# cargo lambda watch leads its own process group (watch.sh starts it with setsid).
if [ -f "$dir/watch.pid" ]; then
  kill -- "-$(cat "$dir/watch.pid")" 2>/dev/null
  rm -f "$dir/watch.pid"
fi
for name in moto slack-sink; do
  pidfile="$dir/$name.pid"
  [ -f "$pidfile" ] || continue
  pid=$(cat "$pidfile")
  if kill "$pid" 2>/dev/null; then
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null
  fi
  rm -f "$pidfile"
done
rm -f "$dir/env"
# run.sh gives each run a directory of its own: remove it once empty of services.
case "$dir" in */.testbed/[0-9]*) rm -rf "$dir" ;; esac
