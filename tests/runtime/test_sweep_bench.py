"""make bench-sweep's harness (crates/tagger/examples/sweep_throughput.rs), on a few resources in
the debug build, so that the benchmark keeps working: its figures are not checked, only what it
counts (resources, writes, AWS calls per resource), against moto in the test bed (make test)."""
import json
import os
import pathlib
import subprocess

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
RESOURCES = 12

pytestmark = pytest.mark.skipif("AWS_ENDPOINT_URL" not in os.environ, reason="needs the test bed (make test)")


def test_the_sweep_benchmark_counts_what_each_phase_did():
    run = subprocess.run(
        ["cargo", "run", "--quiet", "--package", "tagger", "--example", "sweep_throughput", "--",
         "--resources", str(RESOURCES), "--concurrency", "4", "--json"],
        cwd=ROOT, capture_output=True, text=True, timeout=900,
    )
    assert run.returncode == 0, run.stderr
    phases = json.loads(run.stdout.strip().splitlines()[-1])["phases"]
    converging, steady, baseline = phases
    assert [p["resources"] for p in phases] == [RESOURCES] * 3, phases
    assert converging["writes"] == RESOURCES, "every resource drifted: one write each"
    assert steady["writes"] == 0 and baseline["writes"] == 0, phases
    # Nothing drifted: the listing's tags serve resolution, where one event per resource reads them.
    assert steady["calls_per_resource"] < 0.5, phases
    assert baseline["calls_per_resource"] >= 1, phases
    assert all(p["per_second"] > 0 for p in phases), phases
