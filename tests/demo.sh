#!/usr/bin/env bash
# The demo (make demo): run inside the test bed (tests/testbed/run.sh), which provides moto
# as AWS and stops everything afterwards.
#
# 1. Crossplane's AWS provider has created an RDS instance, with its crossplane-* tags; someone
#    set cost-center by hand, and the DBA team set an owner.
# 2. The platform's tag policy is in SSM Parameter Store.
# 3. Crossplane reports the instance Ready: the tagger is invoked through cargo lambda with the
#    sample event. It writes only the difference, restores the drifted tag, keeps the owner.
# 4. The same event again: nothing changes (no write call).
# 5. An SQS batch with one invalid record, and a payload that is not JSON at all.
# 6. secret-syncer publishes the instance's connection details to Secrets Manager and SSM
#    (password included, masked in this output), a replay writes nothing.
# 7. Convergence: a tag removed by hand is restored by a sweep; a rotation of the master password
#    re-syncs the published secret, and its replay writes nothing. Then a delete retains.
# 8. slack-notifier tells the local Slack sink once; a replay and the same change from another
#    source (Knative) post nothing more.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
aws() { "$root/tests/testbed/aws.py" "$@"; }
say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
invoke() { call tagger "$1"; }
call() { timeout 300 "$root/.venv/bin/cargo-lambda" lambda invoke "$1" -A 127.0.0.1 -P "$port" --data-file "$2"; }
pretty() { "$root/.venv/bin/python" -c 'import json,sys; print(json.dumps(json.load(sys.stdin), indent=2))'; }

say "Building the functions"
cargo build --quiet -p tagger -p secret-syncer -p slack-notifier

arn=arn:aws:rds:us-east-1:123456789012:db:orders-db
say "Crossplane created RDS instance orders-db (in moto), with the provider's tags and two set by hand"
aws create-instance orders-db --namespace team-a --tag cost-center=legacy-import --tag owner=dba-team >/dev/null
policy='{"tags": {"cost-center": "platform", "managed-by": "crossplane"}, "defaults": {"owner": "platform-team", "data-classification": "internal"}, "labelPrefix": "tags.platform.example.com/"}'
aws put-policy /crossplane-lambda/tag-policy "$policy"
echo "tag policy in SSM /crossplane-lambda/tag-policy:"
echo "$policy" | pretty
before=$(mktemp)
aws tags "$arn" --json > "$before"
say "Tags before"
aws tags "$arn"

export TAG_POLICY_PARAMETER=/crossplane-lambda/tag-policy
export SSM_PATH_TEMPLATE='/crossplane/{namespace}/{name}' INCLUDE_PASSWORD=true
# slack-notifier: the webhook URL (the local Slack sink) in Secrets Manager, the idempotency table.
aws create-table crossplane-lambda-idempotency
aws put-secret crossplane-lambda/slack-webhook "{\"url\": \"$SLACK_SINK_URL/services/T0DEMO/B0DEMO/demo\"}"
export SLACK_WEBHOOK_SECRET=crossplane-lambda/slack-webhook IDEMPOTENCY_TABLE=crossplane-lambda-idempotency
export SLACK_ALLOW_LOOPBACK_HTTP=true  # the sink is plain http on 127.0.0.1: test bed only
port=$("$root/tests/testbed/watch.sh")
say "Crossplane reports the instance Ready: cargo lambda invoke tagger --data-file events/ready.namespaced.json"
invoke events/ready.namespaced.json | pretty
say "Tags after (+ added, ~ changed)"
aws tags "$arn" --before "$before"

say "The same event again (a replay, or the same change from another source)"
aws tags "$arn" --json > "$before"
invoke events/ready.namespaced.json | pretty
if [ "$(aws tags "$arn" --json)" = "$(cat "$before")" ]; then echo "tags unchanged: the replay wrote nothing"; else echo "tags changed on replay!"; exit 1; fi

say "An SQS batch of three records, one of them invalid: only that one is reported as failed"
invoke events/sqs.batch-with-invalid-record.json | pretty

say "A payload that is not JSON: a clear InvalidEvent, and the function stays up"
invoke events/invalid/not-json.txt || true
invoke events/ready.namespaced.json > /dev/null && echo "(the next event is handled as usual)"

say "secret-syncer: publish the connection details (cargo lambda invoke secret-syncer --data-file events/ready.namespaced.json)"
call secret-syncer events/ready.namespaced.json | pretty
say "Secrets Manager secret crossplane/team-a/orders-db/connection (password masked here)"
aws secret crossplane/team-a/orders-db/connection
say "SSM parameters under /crossplane/team-a/orders-db (password masked here)"
aws parameters /crossplane/team-a/orders-db

say "The same event again: read, compare, nothing written (still one version)"
call secret-syncer events/ready.namespaced.json | pretty
aws secret crossplane/team-a/orders-db/connection | tail -1

say "Convergence: someone removes the cost-center tag by hand, and no event will come"
aws untag "$arn" cost-center
aws tags "$arn" --json > "$before"
say "The hourly sweep (EventBridge Scheduler sends {\"sweep\": {}}; here, at once): it lists what Crossplane manages and converges it"
sweep=$(mktemp)
echo '{"sweep": {}}' > "$sweep"
invoke "$sweep" | pretty
say "Tags after the sweep (+ added, ~ changed)"
aws tags "$arn" --before "$before"

say "RDS rotates the master password; Secrets Manager's RotationSucceeded reaches secret-syncer"
master=$(aws master-secret orders-db)
aws rotate "$master"
rotation=$(mktemp)
"$root/.venv/bin/python" -c 'import json,sys; e=json.load(open(sys.argv[1])); e["detail"]["additionalEventData"]["SecretId"]=sys.argv[2]; print(json.dumps(e))' \
  events/eventbridge.secretsmanager-rotation-succeeded.json "$master" > "$rotation"
call secret-syncer "$rotation" | pretty
say "The published secret follows the rotation (a new version; the password masked here)"
aws secret crossplane/team-a/orders-db/connection | tail -1
say "The rotation event again: nothing written"
call secret-syncer "$rotation" | pretty
aws secret crossplane/team-a/orders-db/connection | tail -1

say "The database is deleted: with the default DELETE_POLICY=retain the details are kept"
call secret-syncer events/deleted.namespaced.json | pretty

slack() { # what the local Slack sink received
  "$root/.venv/bin/python" -c '
import json, sys, urllib.request
messages = json.load(urllib.request.urlopen(sys.argv[1]))
print(f"{len(messages)} message(s) received by the Slack sink")
for m in messages:
    print("  text:", m["body"]["text"])
    for block in m["body"]["blocks"]:
        if block["type"] == "section" and "fields" in block:
            print("  fields:", " | ".join(f["text"].replace("\n", ": ") for f in block["fields"]))
        elif block["type"] == "context":
            print("  context:", " ".join(e["text"] for e in block["elements"]))
' "$SLACK_SINK_URL/_sink/messages?path=/services/T0DEMO/B0DEMO/demo"
}
say "slack-notifier: the instance is ready (cargo lambda invoke slack-notifier --data-file events/ready.namespaced.json)"
call slack-notifier events/ready.namespaced.json | pretty
slack
say "The same change again, and from another source (a Knative ApiServerSource update of the same object)"
call slack-notifier events/ready.namespaced.json | pretty
call slack-notifier events/knative.resource-update.json | pretty
slack

say "The function's structured log lines (one per decision)"
grep '"message":"decision"' "$TESTBED_DIR/watch.log" | tail -4 || true

say "The metrics the demo produced (CloudWatch EMF documents among the logs, one set per invocation)"
"$root/.venv/bin/python" - "$TESTBED_DIR/watch.log" <<'PY'
import collections, json, sys
counts = collections.Counter()
for line in open(sys.argv[1], errors="replace"):
    try:
        doc = json.loads(line)
    except ValueError:
        continue
    if not isinstance(doc, dict) or "_aws" not in doc:
        continue
    for metric, label in (("Events", "Outcome"), ("EventErrors", "ErrorType"), ("SlackAnswers", "Class")):
        if metric in doc:
            values = doc[metric] if isinstance(doc[metric], list) else [doc[metric]]
            counts[(doc["Function"], f"{metric} {doc[label]}")] += int(sum(values))
print(f"{'function':<16} {'metric':<32} count")
for (function, metric), n in sorted(counts.items()):
    print(f"{function:<16} {metric:<32} {n}")
if not counts:
    sys.exit("no EMF documents in the function's output")
PY
