"""Every sample of events/ through `cargo lambda invoke`, for each function, against one
`cargo lambda watch` on the state `make watch` seeds (tests/testbed/seed.sh): the outcome must be
the one events/EXPECTED.md documents. Rows run top to bottom for each function; the three
functions run side by side. Run by `make test`."""
import json
import re
import subprocess
from concurrent.futures import ThreadPoolExecutor

import pytest

from testbed import ROOT, own_testbed, sh

EVENTS = ROOT / "events"
EXPECTED = EVENTS / "EXPECTED.md"
FUNCTIONS = ("tagger", "secret-syncer", "slack-notifier")


def expected_table(text=None):
    """[(sample, {function: outcome})] from the table of events/EXPECTED.md."""
    text = EXPECTED.read_text() if text is None else text
    rows = [line for line in text.splitlines() if line.startswith("|")]
    header = [c.strip(" `") for c in rows[0].strip("|").split("|")]
    assert header == ["sample", *FUNCTIONS], f"events/EXPECTED.md: the table's header is {header}"
    table = []
    for row in rows[2:]:
        cells = [c.strip().strip("`").strip() for c in row.strip().strip("|").split("|")]
        assert len(cells) == len(header), f"events/EXPECTED.md: {row}"
        table.append((cells[0], dict(zip(FUNCTIONS, cells[1:]))))
    return table


def outcome(out):
    """What an invocation answered, as events/EXPECTED.md writes it."""
    if out.returncode != 0:
        # cargo lambda invoke prints a function error as `Error: <errorType>` and its message.
        found = re.search(r"^Error:\s+(\w+)", out.stderr, re.M)
        assert found, f"the invocation failed without an errorType:\n{out.stderr[-3000:]}"
        return found.group(1)
    answer = json.loads(out.stdout)
    if "batchItemFailures" in answer:
        return f"batchItemFailures: {len(answer['batchItemFailures'])}"
    if "statusCode" in answer:
        body = json.loads(answer["body"]) if answer.get("body") else {}
        inner = ", ".join(r["outcome"] for r in body.get("results", [])) if isinstance(body, dict) else ""
        return f"{answer['statusCode']}: {inner}" if inner else str(answer["statusCode"])
    return ", ".join(r["outcome"] for r in answer["results"])


def test_every_sample_is_documented():
    documented = [sample for sample, _ in expected_table()]
    samples = sorted(str(p.relative_to(EVENTS)) for p in EVENTS.rglob("*") if p.is_file() and p != EXPECTED)
    assert len(documented) == len(set(documented)), "events/EXPECTED.md lists a sample twice"
    assert sorted(documented) == samples, (f"events/ and events/EXPECTED.md differ: only in events/: "
                                           f"{sorted(set(samples) - set(documented))}, only in the table: "
                                           f"{sorted(set(documented) - set(samples))}")


def test_the_outcome_reader_knows_every_shape():
    ok = subprocess.CompletedProcess([], 0, '{"handler": "tagger", "results": [{"outcome": "applied"}, {"outcome": "unchanged"}]}', "")
    assert outcome(ok) == "applied, unchanged"
    assert outcome(subprocess.CompletedProcess([], 0, '{"batchItemFailures": [{"itemIdentifier": "x"}]}', "")) == "batchItemFailures: 1"
    failed = subprocess.CompletedProcess([], 1, "", "Error: InvalidEvent\n  × id: is empty; it must be a non-empty string\n")
    assert outcome(failed) == "InvalidEvent"


def test_every_sample_through_cargo_lambda_for_each_function(tmp_path):
    table = expected_table()
    subprocess.run(["cargo", "build", "-q", "-p", "tagger", "-p", "secret-syncer", "-p", "slack-notifier"],
                   cwd=ROOT, check=True, timeout=1800)
    with own_testbed(tmp_path / "bed") as env:
        env["SLACK_MIN_INTERVAL_MS"] = "0"  # no pacing: only the order of the rows matters here
        port = sh(". tests/testbed/seed.sh && tests/testbed/watch.sh", env, check=True, timeout=600).stdout.strip()

        def column(function):
            got = []
            for sample, _ in table:
                out = sh(f"timeout 300 .venv/bin/cargo-lambda lambda invoke {function} -A 127.0.0.1 -P {port} "
                         f"--data-file events/{sample}", env, timeout=330)
                got.append(outcome(out))
            return got

        with ThreadPoolExecutor(len(FUNCTIONS)) as pool:
            columns = dict(zip(FUNCTIONS, pool.map(column, FUNCTIONS)))
    wrong = [f"{sample} × {function}: documented {want[function]!r}, got {columns[function][i]!r}"
             for i, (sample, want) in enumerate(table) for function in FUNCTIONS
             if columns[function][i] != want[function]]
    assert not wrong, "events/EXPECTED.md disagrees with the functions:\n" + "\n".join(wrong)
