#!/usr/bin/env bash
# Starts moto (AWS) and the Slack sink on free loopback ports, waits until each accepts TCP
# connections, and writes their addresses and PIDs to $TESTBED_DIR/env (default .testbed/env).
# Stop them with stop.sh.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
dir=${TESTBED_DIR:-$root/.testbed}
venv="$root/.venv"
mkdir -p "$dir"
"$root/tests/testbed/setup.sh"

free_port() { "$venv/bin/python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_tcp() { # port pid name
  for _ in $(seq 1 200); do
    if ! kill -0 "$2" 2>/dev/null; then echo "test bed: $3 exited; see $dir/$3.log" >&2; tail -20 "$dir/$3.log" >&2; return 1; fi
    if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
    sleep 0.1
  done
  echo "test bed: $3 did not listen on port $1 within 20 s" >&2; return 1
}

moto_port=$(free_port)
# AWS managed policies exist in every account (cargo lambda deploy attaches
# AWSLambdaBasicExecutionRole to the role it creates); moto loads them only when asked.
MOTO_IAM_LOAD_MANAGED_POLICIES=true "$venv/bin/moto_server" -H 127.0.0.1 -p "$moto_port" > "$dir/moto.log" 2>&1 &
moto_pid=$!
echo "$moto_pid" > "$dir/moto.pid"
slack_port=$(free_port)
"$venv/bin/python" "$root/tests/testbed/slack_sink.py" --port "$slack_port" > "$dir/slack-sink.log" 2>&1 &
slack_pid=$!
echo "$slack_pid" > "$dir/slack-sink.pid"
wait_tcp "$moto_port" "$moto_pid" moto
wait_tcp "$slack_port" "$slack_pid" slack-sink

cat > "$dir/env" <<ENV
export AWS_ENDPOINT_URL=http://127.0.0.1:$moto_port
export AWS_ACCESS_KEY_ID=testing
export AWS_SECRET_ACCESS_KEY=testing
export AWS_REGION=us-east-1
export AWS_DEFAULT_REGION=us-east-1
export AWS_ACCOUNT_ID=123456789012
export AWS_EC2_METADATA_DISABLED=true
export SLACK_SINK_URL=http://127.0.0.1:$slack_port
export TESTBED_DIR=$dir
ENV
echo "test bed: moto on 127.0.0.1:$moto_port, Slack sink on 127.0.0.1:$slack_port" >&2
