#!/usr/bin/env bash
# The mutants of the lines changed since .ci/mutants-base (the main whose every mutant was last
# tested, by `make mutants`; .ci/mutants-verified.txt lists them): what `make test` and CI run. Fails on any mutant the tests miss,
# and when the base is not an ancestor of this checkout (no silent pass on a broken base).
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
base=$(tr -d '[:space:]' < .ci/mutants-base)
if ! git rev-parse -q --verify "$base^{commit}" >/dev/null 2>&1; then
  # No history to diff against (a shallow clone, an export): test every mutant whose name is not
  # in the list that base verified. A moved line renames its mutants, so this tests more, never less.
  echo "mutants: base $base is not in this checkout; testing the mutants not in .ci/mutants-verified.txt" >&2
  out="$root/target/mutants-unverified"
  rm -rf "$out" && mkdir -p "$out/mutants.out"
  cp .ci/mutants-verified.txt "$out/mutants.out/previously_caught.txt"
  exec "$root/tests/mutants/run.sh" --iterate --output "$out" "$@"
fi
if ! git merge-base --is-ancestor "$base" HEAD 2>/dev/null; then
  echo "mutants: base $base (.ci/mutants-base) is not a commit this checkout descends from" >&2
  exit 1
fi
mkdir -p target
diff="$root/target/mutants-changed.diff"
# Against the working tree: committed and uncommitted changes to tracked files alike. The
# format is pinned whatever the user's git configuration: a/ b/ prefixes (all cargo-mutants
# reads), no colour, no external diff tool, renames followed (a moved file's unchanged lines
# are not new decisions).
git -c diff.noprefix=false -c diff.mnemonicPrefix=false diff --no-ext-diff --no-color \
  --src-prefix=a/ --dst-prefix=b/ --find-renames "$base" -- ':(glob)crates/**/*.rs' > "$diff"
echo "mutants: lines changed since $(git log -1 --format='%h %s' "$base" | cut -c1-72)" >&2
exec "$root/tests/mutants/run.sh" --in-diff "$diff" "$@"
