#!/usr/bin/env bash
# Installs the pinned cargo-mutants into the project-local .tools/ (not on the user's PATH),
# once: a later run finds the same version and does nothing.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
# cargo-mutants runs the tests with nextest (.cargo/mutants.toml). The machine's image has it;
# where it does not, a pinned one is installed beside cargo-mutants.
if ! cargo nextest --version >/dev/null 2>&1 && ! [ -x "$root/.tools/bin/cargo-nextest" ]; then
  echo "mutants: installing cargo-nextest 0.9.143 into $root/.tools" >&2
  cargo install --quiet --locked --root "$root/.tools" cargo-nextest --version 0.9.143
fi
version=27.1.0
bin="$root/.tools/bin/cargo-mutants"
if [ -x "$bin" ] && [ "$("$bin" mutants --version 2>/dev/null)" = "cargo-mutants $version" ]; then
  exit 0
fi
echo "mutants: installing cargo-mutants $version into $root/.tools" >&2
cargo install --quiet --locked --root "$root/.tools" cargo-mutants --version "$version"
