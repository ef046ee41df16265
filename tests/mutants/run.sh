#!/usr/bin/env bash
# Runs cargo-mutants over the pure core (.cargo/mutants.toml) and fails on any mutant the tests
# miss. Arguments go to cargo-mutants, e.g. `--file crates/tagger/src/plan.rs` or `--in-diff F`.
# The tree is copied (mutants never touch the checkout); the build reuses the workspace target,
# so dependencies built by `make test` are not built again.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
"$root/tests/mutants/install.sh"
cd "$root"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$root/target}"
export PATH="$root/.tools/bin:$PATH"  # a cargo-nextest install.sh may have put there
exec "$root/.tools/bin/cargo-mutants" mutants --no-shuffle "$@"
