#!/usr/bin/env bash
# `make watch` on local defaults. Run inside the test bed (tests/testbed/run.sh provides moto as
# AWS and the Slack sink, and stops them when this ends, also on Ctrl-C): seeds it
# (tests/testbed/seed.sh), then runs `cargo lambda watch` in the foreground on ADDRESS:PORT, so
# that `make invoke` (the tagger, events/ready.namespaced.json) gives `applied`.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
address=${1:?usage: local-watch.sh ADDRESS PORT}
port=${2:?usage: local-watch.sh ADDRESS PORT}
# Only the test bed's credentials: a profile or session token of the caller's must not leak in.
unset AWS_PROFILE AWS_DEFAULT_PROFILE AWS_SESSION_TOKEN
# shellcheck source=seed.sh
. "$here/seed.sh"
cat >&2 <<INFO
make watch: the local test bed: moto (AWS_ENDPOINT_URL=$AWS_ENDPOINT_URL), Slack sink $SLACK_SINK_URL
  seeded: RDS instance orders-db (namespace team-a), tag policy $TAG_POLICY_PARAMETER,
  table $IDEMPOTENCY_TABLE, webhook secret $SLACK_WEBHOOK_SECRET (the sink)
  messages the sink received: $SLACK_SINK_URL/_sink/messages
cargo lambda watch on $address:$port: in another terminal, \`make invoke\`; Ctrl-C stops it all
(\`make watch AWS=1\` uses your own AWS environment instead)
INFO
exec "$here/watch.sh" --foreground "$address" "$port"
