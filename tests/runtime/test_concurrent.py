"""Lambda Managed Instances: a function handles several invocations at once
(AWS_LAMBDA_MAX_CONCURRENCY), each with its own state and its own request id on every log line,
sharing one set of clients and caches. Driven through bench/runtime_api.py, a local Lambda
Runtime API that hands out invocations to as many /next polls as the function opens, against
moto in the test bed (make test). The tagger stands for the three: they share the runtime
(common::runtime::run)."""
import json
import os
import pathlib
import subprocess
import sys
import uuid

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "bench"))
from runtime_api import RuntimeApi  # noqa: E402

AWS = [sys.executable, str(ROOT / "tests" / "testbed" / "aws.py")]
POLICY = "/crossplane-lambda/concurrency-test-policy"
READY = (ROOT / "events" / "ready.namespaced.json").read_text()
WORKERS = 8

pytestmark = pytest.mark.skipif("AWS_ENDPOINT_URL" not in os.environ, reason="needs the test bed (make test)")


@pytest.fixture(scope="module")
def tagger():
    """The binary `cargo test --workspace` built just before (make test); built if absent."""
    binary = pathlib.Path(os.environ.get("CARGO_TARGET_DIR") or ROOT / "target") / "debug" / "tagger"
    if not binary.exists():
        subprocess.run(["cargo", "build", "--quiet", "--package", "tagger"], cwd=ROOT, check=True)
    return binary


@pytest.fixture
def databases():
    """WORKERS databases as Crossplane creates them (tags missing), and their ready events."""
    subprocess.run([*AWS, "put-policy", POLICY, str(ROOT / "tests" / "testbed" / "tag-policy.json")], check=True)
    run = uuid.uuid4().hex[:8]
    names = [f"concurrent-{run}-{n}" for n in range(WORKERS)]
    for name in names:
        subprocess.run([*AWS, "create-instance", name], check=True, capture_output=True)
    return {name: READY.replace("orders-db", name).replace(":3:ready", f":3:ready:{name}") for name in names}


def start(tagger, api, **settings):
    env = {**os.environ, **api.lambda_env("tagger"), "TAG_POLICY_PARAMETER": POLICY, "AWS_LAMBDA_LOG_LEVEL": "INFO",
           **settings}
    env.pop("AWS_LAMBDA_LOG_FORMAT", None)
    return subprocess.Popen([str(tagger)], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def stop(proc):
    proc.kill()
    out, _ = proc.communicate(timeout=10)
    return [json.loads(line) for line in out.splitlines() if line.startswith("{")]


def test_invocations_run_at_once_each_with_its_own_state_and_request_id(tagger, databases):
    with RuntimeApi() as api:
        proc = start(tagger, api, AWS_LAMBDA_MAX_CONCURRENCY=str(WORKERS))
        try:
            api.wait_for_init(proc)
            assert api.wait_for_polls(WORKERS, proc, timeout=10) == WORKERS
            invocations = dict(zip(databases, api.enqueue_many(databases.values())))
            api.wait(list(invocations.values()), proc)
        finally:
            logs = stop(proc)

    # Each answer is its own event's: the database it named was tagged.
    for name, invocation in invocations.items():
        assert invocation.error_type is None, invocation.body
        [result] = invocation.json()["results"]
        assert result["outcome"] == "applied", result
        assert result["resource"].endswith(f":db:{name}"), result

    # They overlapped: some were handed out before others were answered.
    spans = sorted((i.handed_at, i.answered_at) for i in invocations.values())
    in_flight = max(sum(1 for start_, end in spans if start_ <= t < end) for t, _ in spans)
    assert in_flight > 1, spans

    # Every line of an invocation carries that invocation's request id, and only its own event.
    by_request = {i.request_id: name for name, i in invocations.items()}
    decisions = [line for line in logs if line.get("message") == "decision"]
    assert len(decisions) == WORKERS, logs
    for line in decisions:
        request_id = line["span"]["requestId"]
        assert line["request_id"] == request_id
        assert line["subject"].endswith(f"/{by_request[request_id]}"), line
    inside = [line for line in logs if "span" in line]
    assert {line["span"]["requestId"] for line in inside} == set(by_request)


def test_without_the_setting_one_invocation_at_a_time(tagger, databases):
    """The same work, polled and handled one invocation at a time, as on classic Lambda."""
    with RuntimeApi() as api:
        proc = start(tagger, api)
        try:
            api.wait_for_init(proc)
            invocations = api.enqueue_many(databases.values())
            api.wait(invocations, proc)
        finally:
            stop(proc)
        assert api.max_outstanding == 1
    assert [i.json()["results"][0]["outcome"] for i in invocations] == ["applied"] * WORKERS
