#!/usr/bin/env bash
# Creates (or refreshes) the project-local virtual environment with the pinned test bed:
# moto[server] (the AWS emulator), cargo-lambda and ziglang. Idempotent: a stamp file records
# the requirements it was built from.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
venv="$root/.venv"
requirements="$root/tests/testbed/requirements.txt"
stamp="$venv/.requirements.sha256"
want=$(sha256sum "$requirements" | cut -d' ' -f1)
if [ -x "$venv/bin/python" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$want" ]; then
  exit 0
fi
python=${PYTHON:-python3}
echo "test bed: installing $(grep -v '^#' "$requirements" | tr '\n' ' ')into $venv" >&2
"$python" -m venv "$venv"
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$requirements"
echo "$want" > "$stamp"
