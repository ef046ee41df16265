#!/usr/bin/env bash
# Starts `cargo lambda watch` on a free loopback port (inside the test bed), waits until it
# accepts TCP connections, and prints the port. Its PID goes to $TESTBED_DIR/watch.pid;
# stop it with `kill -- -$(cat $TESTBED_DIR/watch.pid)` (it leads its own process group).
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
: "${TESTBED_DIR:?run inside the test bed (tests/testbed/run.sh)}"
port=$("$root/.venv/bin/python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
envs=()
for name in AWS_ENDPOINT_URL AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY AWS_REGION AWS_ACCOUNT_ID AWS_EC2_METADATA_DISABLED \
            TAG_POLICY_PARAMETER TAG_POLICY_TTL_SECONDS ALLOWED_ACCOUNTS ALLOWED_REGIONS AWS_LAMBDA_LOG_LEVEL AWS_LAMBDA_LOG_FORMAT \
            SECRET_NAME_TEMPLATE SECRET_KMS_KEY_ID SSM_PATH_TEMPLATE SSM_KMS_KEY_ID INCLUDE_PASSWORD DELETE_POLICY \
            SECRET_RECOVERY_WINDOW_DAYS MAX_CONCURRENCY SLACK_WEBHOOK_SECRET SLACK_WEBHOOK_CACHE_SECONDS \
            SLACK_ALLOWED_HOSTS SLACK_ALLOW_LOOPBACK_HTTP SLACK_MIN_INTERVAL_MS NOTIFY_ON IDEMPOTENCY_TABLE \
            IDEMPOTENCY_TTL_SECONDS IDEMPOTENCY_IN_PROGRESS_MAX_SECONDS; do
  if [ -n "${!name:-}" ]; then envs+=(--env-var "$name=${!name}"); fi
done
cd "$root"
setsid "$root/.venv/bin/cargo-lambda" lambda watch --invoke-address 127.0.0.1 --invoke-port "$port" \
  --ignore-changes "${envs[@]}" > "$TESTBED_DIR/watch.log" 2>&1 &
pid=$!
echo "$pid" > "$TESTBED_DIR/watch.pid"
for _ in $(seq 1 600); do
  if ! kill -0 "$pid" 2>/dev/null; then echo "cargo lambda watch exited; see $TESTBED_DIR/watch.log" >&2; tail -20 "$TESTBED_DIR/watch.log" >&2; exit 1; fi
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then echo "$port"; exit 0; fi
  sleep 0.1
done
echo "cargo lambda watch did not listen within 60 s" >&2
exit 1
