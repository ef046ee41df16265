#!/usr/bin/env bash
# Runs a command inside the test bed: starts it, exports its addresses, runs the command,
# and stops it afterwards, also when the command fails or is interrupted.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
export TESTBED_DIR=${TESTBED_DIR:-$root/.testbed/$$}
trap '"$here/stop.sh"' EXIT
trap 'exit 130' INT TERM
"$here/start.sh"
# shellcheck disable=SC1091
. "$TESTBED_DIR/env"
export PATH="$root/.venv/bin:$PATH"
"$@"
