#!/usr/bin/env bash
# Runs cargo-mutants over the pure core (.cargo/mutants.toml) and fails on any mutant the tests
# miss. Arguments go to cargo-mutants, e.g. `--file crates/tagger/src/plan.rs` or `--in-diff F`.
# The tree is copied (mutants never touch the checkout) and built in a target directory of its
# own, target/mutants: a target shared with the checkout would hand `cargo test` artifacts built
# from the copy (cargo names a workspace crate's artifacts by its path relative to the workspace,
# and the copy's are newer), the last of them with a mutant in it.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
"$root/tests/mutants/install.sh"
cd "$root"
export CARGO_TARGET_DIR="$root/target/mutants"
export PATH="$root/.tools/bin:$PATH"  # a cargo-nextest install.sh may have put there
exec "$root/.tools/bin/cargo-mutants" mutants --no-shuffle "$@"
