#!/usr/bin/env bash
# Runs `cargo lambda watch` bound to 127.0.0.1 (DESIGN.md §9), passing the functions' settings
# (AWS_*, TAG_POLICY_PARAMETER, SLACK_*, …) from the environment.
#
#   watch.sh                 in the background on a free loopback port, inside the test bed:
#                            waits until it accepts TCP connections and prints the port. Its PID
#                            goes to $TESTBED_DIR/watch.pid (stop.sh stops it; it leads its own
#                            process group), its output to $TESTBED_DIR/watch.log.
#   watch.sh --foreground ADDRESS PORT
#                            in the foreground on ADDRESS:PORT (make watch: 127.0.0.1 9000),
#                            reloading on code changes, until interrupted.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
address=127.0.0.1
envs=()
for name in AWS_ENDPOINT_URL AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY AWS_SESSION_TOKEN AWS_PROFILE AWS_REGION \
            AWS_ACCOUNT_ID AWS_EC2_METADATA_DISABLED \
            TAG_POLICY_PARAMETER TAG_POLICY_TTL_SECONDS ALLOWED_ACCOUNTS ALLOWED_REGIONS AWS_LAMBDA_LOG_LEVEL AWS_LAMBDA_LOG_FORMAT \
            SECRET_NAME_TEMPLATE SECRET_KMS_KEY_ID SSM_PATH_TEMPLATE SSM_KMS_KEY_ID INCLUDE_PASSWORD DELETE_POLICY \
            SECRET_RECOVERY_WINDOW_DAYS MAX_CONCURRENCY SLACK_WEBHOOK_SECRET SLACK_WEBHOOK_CACHE_SECONDS \
            SLACK_ALLOWED_HOSTS SLACK_ALLOW_LOOPBACK_HTTP SLACK_MIN_INTERVAL_MS NOTIFY_ON IDEMPOTENCY_TABLE \
            IDEMPOTENCY_TTL_SECONDS IDEMPOTENCY_IN_PROGRESS_MAX_SECONDS; do
  if [ -n "${!name:-}" ]; then envs+=(--env-var "$name=${!name}"); fi
done
cd "$root"

if [ "${1:-}" = --foreground ]; then
  address=${2:?usage: watch.sh --foreground ADDRESS PORT}
  port=${3:?usage: watch.sh --foreground ADDRESS PORT}
  exec "$root/.venv/bin/cargo-lambda" lambda watch --invoke-address "$address" --invoke-port "$port" "${envs[@]}"
fi

: "${TESTBED_DIR:?run inside the test bed (tests/testbed/run.sh)}"
port=$("$root/.venv/bin/python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
setsid "$root/.venv/bin/cargo-lambda" lambda watch --invoke-address "$address" --invoke-port "$port" \
  --ignore-changes "${envs[@]}" > "$TESTBED_DIR/watch.log" 2>&1 &
pid=$!
echo "$pid" > "$TESTBED_DIR/watch.pid"
for _ in $(seq 1 600); do
  if ! kill -0 "$pid" 2>/dev/null; then echo "cargo lambda watch exited; see $TESTBED_DIR/watch.log" >&2; tail -20 "$TESTBED_DIR/watch.log" >&2; exit 1; fi
  if (exec 3<>"/dev/tcp/$address/$port") 2>/dev/null; then echo "$port"; exit 0; fi
  sleep 0.1
done
echo "cargo lambda watch did not listen within 60 s" >&2
exit 1
