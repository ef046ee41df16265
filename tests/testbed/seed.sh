#!/usr/bin/env bash
# The local defaults (make watch, tests/readme, events/EXPECTED.md): sourced inside the test bed
# (tests/testbed/run.sh), it seeds moto as the demo does and exports the functions' settings:
#
# - RDS instance orders-db in namespace team-a, with the tags Crossplane's AWS provider sets;
# - the tag policy (tests/testbed/tag-policy.json) in SSM /crossplane-lambda/tag-policy;
# - the idempotency table crossplane-lambda-idempotency;
# - the Slack webhook secret crossplane-lambda/slack-webhook, pointing at the local Slack sink
#   (SLACK_ALLOW_LOOPBACK_HTTP=true: the sink is plain http on 127.0.0.1).
#
# The names are those of the crates' [package.metadata.lambda.deploy] env.
: "${TESTBED_DIR:?run inside the test bed (tests/testbed/run.sh)}"
seed_here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
"$seed_here/aws.py" create-instance orders-db --namespace team-a >/dev/null
"$seed_here/aws.py" put-policy /crossplane-lambda/tag-policy "$seed_here/tag-policy.json"
"$seed_here/aws.py" create-table crossplane-lambda-idempotency
"$seed_here/aws.py" put-secret crossplane-lambda/slack-webhook "{\"url\": \"$SLACK_SINK_URL/services/T0LOCAL/B0LOCAL/local\"}"
export TAG_POLICY_PARAMETER=/crossplane-lambda/tag-policy
export SSM_PATH_TEMPLATE='/crossplane/{namespace}/{name}'
export SLACK_WEBHOOK_SECRET=crossplane-lambda/slack-webhook IDEMPOTENCY_TABLE=crossplane-lambda-idempotency
export SLACK_ALLOW_LOOPBACK_HTTP=true
