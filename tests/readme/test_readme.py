"""The executable README: every shell command README.md shows (tests/readme/readme.py finds them)
either runs here exactly as written, against the local test bed, or is in ALLOWED with the reason
it cannot. A command added to the README that is neither fails `test_every_readme_command_is_run_or_allowed`;
an ALLOWED or RUN entry the README no longer shows fails it too. Run by `make test`."""
import json
import os
import re
import subprocess
import tomllib
import urllib.request
import zipfile
from pathlib import Path

import boto3
import pytest

import readme
from testbed import ROOT, Background, exclusive_port, own_testbed, sh, user_env

FUNCTIONS = ("tagger", "secret-syncer", "slack-notifier")
ORDERS_DB = "arn:aws:rds:us-east-1:123456789012:db:orders-db"
CLUSTER = "needs a Kubernetes cluster with Crossplane and the AWS provider"

# README commands that do not run here, and why.
ALLOWED = {
    "make test": "this is the command running this test (CI runs it)",
    "make publish ARTIFACT_BUCKET=<your bucket>": "a placeholder for your S3 bucket (tests/infra runs publish.py against moto)",
    "make publish": "uploads to an S3 bucket of a real AWS account (tests/infra runs publish.py against moto)",
    "cargo lambda invoke --remote crossplane-lambda-tagger --data-file events/ready.namespaced.json":
        "invokes the function deployed in AWS Lambda: moto runs Lambda functions only in Docker, with the "
        "provided.al2023 image from the internet (make deploy is run against moto here)",
    "kubectl apply -k infra/functions": CLUSTER,
    "kubectl apply -k infra/triggers/composition": CLUSTER,
    "kubectl apply -k infra/triggers/eventbridge": CLUSTER,
    "kubectl apply -k infra/triggers/queue": CLUSTER,
    "kubectl apply -f infra/examples/postgres-instance.yaml": CLUSTER,
    "kubectl apply -k infra": CLUSTER,
    "kubectl apply -k infra/triggers/sweep": CLUSTER,
    "kubectl apply -k infra/examples/many-accounts": CLUSTER,
    "kubectl get managed -n crossplane-lambda-210987654321": CLUSTER,
    "kubectl kustomize infra/examples/many-accounts": "needs kubectl, which the test bed does not install; "
        "tests/infra renders the same kustomization (and compares its rendering with kubectl's where it is installed)",
    "cargo lambda watch": "names cargo lambda's emulator, which make watch runs (run here)",
    "cargo lambda invoke": "names cargo lambda's client, which make invoke runs (run here)",
    "cargo lambda invoke --data-file events/…": "describes tests/tests/cargo_lambda.rs, run by make test",
    "make bench": "a benchmark, not a test: minutes of timed runs whose figures go to BENCHMARKS.md; make test "
                  "runs its Runtime API under the concurrent-mode test (tests/runtime)",
    "make bench BENCH_ARGS='--runs 3 --json bench.json'": "make bench, with fewer runs (see make bench)",
    "make bench-sweep": "a benchmark, not a test: a release build and a sweep over hundreds of resources; "
                        "make test runs its harness on a few (tests/runtime/test_sweep_bench.py)",
    "make bench-sweep BENCH_SWEEP_ARGS='--resources 1000'": "make bench-sweep, with more resources",
    "make mutants": "every mutant of the pure core, over an hour on two cores; make test runs "
                    "tests/mutants/changed.sh, the same tool over the lines changed since the last full run",
}
# README commands that a make target runs: checked against `make -n TARGET`.
PART_OF = {
    "cargo fmt --all -- --check": "test",
    "cargo clippy --workspace --all-targets -- -D warnings": "test",
    "cargo test --workspace": "test",
    "tests/mutants/changed.sh": "test",
    "cargo lambda build --release --arm64 --output-format zip": "package",
}
# README commands this test runs, each exactly as written (the test below, in this order).
RUN = [
    "make setup",
    "make watch",
    "make invoke",
    "make invoke FUNCTION=secret-syncer",
    "make invoke FUNCTION=slack-notifier",
    "make invoke EVENT=events/sqs.batch-with-invalid-record.json",
    "make invoke EVENT=events/invalid/not-json.txt",
    ".venv/bin/cargo-lambda lambda invoke tagger -A 127.0.0.1 -P 9000 --data-file events/sqs.batch.json",
    "make watch AWS=1",
    "tests/testbed/run.sh bash -c 'tests/testbed/aws.py create-instance orders-db; port=$(tests/testbed/watch.sh); "
    ".venv/bin/cargo-lambda lambda invoke tagger -A 127.0.0.1 -P $port --data-file events/ready.namespaced.json'",
    "make deploy",
    "make package",
    "make demo",
]
WATCH_PORT = 9000  # the documented address of make watch / make invoke


def test_the_readme_shows_the_usage_sections_and_their_commands():
    found = readme.sections()
    for section in readme.USAGE_SECTIONS:
        assert section in found, f"README.md has no section '## {section}': update USAGE_SECTIONS"
    texts = {c.text for c in readme.commands()}
    assert {"make demo", "make test", "make watch", "make invoke", "make deploy"} <= texts, texts


def test_every_readme_command_is_run_or_allowed():
    shown = {c.text: c for c in readme.commands()}
    covered = set(RUN) | set(ALLOWED) | set(PART_OF)
    assert len(RUN) == len(set(RUN)) and not (set(RUN) & set(ALLOWED)) and not (set(PART_OF) & set(ALLOWED))
    untested = [f"README.md:{c.line} ({c.section}): {c.text}" for t, c in shown.items() if t not in covered]
    assert not untested, ("README commands neither run by tests/readme nor allowed (with the reason) in "
                          "tests/readme/test_readme.py:\n" + "\n".join(untested))
    stale = sorted(covered - set(shown))
    assert not stale, f"tests/readme lists commands the README no longer shows: {stale}"


@pytest.mark.parametrize("command,target", PART_OF.items())
def test_commands_of_make_targets_are_what_they_run(command, target):
    dry = subprocess.run(["make", "-n", target], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert dry.returncode == 0, dry.stderr
    ran = dry.stdout.replace(".venv/bin/cargo-lambda lambda", "cargo lambda")
    assert command in ran, f"README says make {target} runs `{command}`; it runs:\n{dry.stdout}"


def result(out):
    assert out.returncode == 0, f"exit {out.returncode}\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}"
    answers = [line for line in out.stdout.splitlines() if line.startswith("{")]  # not make's echo
    assert len(answers) == 1, out.stdout
    return json.loads(answers[0])


def sink_messages(url):
    return json.load(urllib.request.urlopen(f"{url}/_sink/messages", timeout=10))


def test_the_readme_commands_run_as_written(tmp_path):
    user = user_env()
    ran = []

    def run(command, **kwargs):
        assert command in RUN, f"not in RUN: {command}"
        ran.append(command)
        return sh(command, user if "env" not in kwargs else kwargs.pop("env"), **kwargs)

    run("make setup", check=True)
    subprocess.run(["cargo", "build", "-q", "-p", "tagger", "-p", "secret-syncer", "-p", "slack-notifier"],
                   cwd=ROOT, check=True, timeout=1800)  # as the demo does: make watch starts at once

    with exclusive_port(WATCH_PORT):
        # make watch, on local defaults, in a terminal of its own; make invoke in another.
        ran.append("make watch")
        watch = Background("make watch", user, tmp_path / "make-watch.log")
        try:
            watch.wait_for_port(WATCH_PORT)
            first = result(run("make invoke", timeout=400))
            assert (first["handler"], first["results"][0]["outcome"], first["results"][0]["resource"]) == \
                ("tagger", "applied", ORDERS_DB), first
            synced = result(run("make invoke FUNCTION=secret-syncer", timeout=400))
            assert synced["results"][0]["outcome"] == "applied", synced
            told = result(run("make invoke FUNCTION=slack-notifier", timeout=400))
            assert told["results"][0]["outcome"] == "applied", told
            sink = re.search(r"Slack sink (http://127\.0\.0\.1:\d+)", watch.output()).group(1)
            assert len(sink_messages(sink)) == 1
            batch = result(run("make invoke EVENT=events/sqs.batch-with-invalid-record.json", timeout=400))
            assert batch["batchItemFailures"] == [{"itemIdentifier": "3f1c2d4e-5a6b-4c7d-8e9f-0a1b2c3d4e05"}], batch
            invalid = run("make invoke EVENT=events/invalid/not-json.txt", timeout=400)
            assert invalid.returncode != 0 and "InvalidEvent" in invalid.stderr, invalid.stderr
            direct = result(run(RUN[7], timeout=400))
            assert direct == {"batchItemFailures": []}, direct
        finally:
            watch.stop()
        moto = re.search(r"AWS_ENDPOINT_URL=(http://127\.0\.0\.1:\d+)", watch.output()).group(1)
        with pytest.raises(OSError):  # Ctrl-C stopped the test bed of make watch too
            urllib.request.urlopen(moto, timeout=5)

        # make watch AWS=1: the caller's AWS environment (here: a test bed of this test's own).
        with own_testbed(tmp_path / "aws") as caller:
            sh("tests/testbed/aws.py create-instance orders-db", caller, check=True)
            ran.append("make watch AWS=1")
            watch = Background("make watch AWS=1", caller, tmp_path / "make-watch-aws.log")
            try:
                watch.wait_for_port(WATCH_PORT)
                tagged = result(run("make invoke", timeout=400))
                assert tagged["results"][0]["outcome"] == "applied", tagged
            finally:
                watch.stop()
            tags = json.loads(sh(f"tests/testbed/aws.py tags {ORDERS_DB} --json", caller, check=True).stdout)
            assert tags["crossplane.io/claim-name"] == "orders", tags  # written to the caller's AWS

    oneliner = run(RUN[9], timeout=600)
    assert '"outcome": "applied"' in oneliner.stdout.replace('":"', '": "'), oneliner.stdout + oneliner.stderr

    with own_testbed(tmp_path / "deploy") as aws:
        out = run("make deploy", env=aws, timeout=3600)
        assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
        lam = check_deployed(aws)
        # Someone changes a function by hand: the second make deploy updates it back, creating nothing.
        lam.update_function_configuration(FunctionName="crossplane-lambda-tagger", MemorySize=128, Timeout=3,
                                          Environment={"Variables": {"STRAY": "1"}})
        before = lam.get_function(FunctionName="crossplane-lambda-tagger")["Configuration"]
        out = run("make deploy", env=aws, timeout=3600)
        assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
        check_deployed(aws)
        after = lam.get_function(FunctionName="crossplane-lambda-tagger")["Configuration"]
        assert before["MemorySize"] == 128 and after["FunctionArn"] == before["FunctionArn"]
    zips = run("make package", timeout=3600)  # the zips make deploy built: reused, not rebuilt
    assert zips.returncode == 0, zips.stderr[-3000:]
    target = Path(os.environ.get("CARGO_TARGET_DIR") or ROOT / "target")
    for function in FUNCTIONS:
        zip_path = target / "lambda" / function / "bootstrap.zip"
        assert zipfile.ZipFile(zip_path).namelist() == ["bootstrap"]
        # The budget of BENCHMARKS.md: a function that grows past it fails here, not in a table.
        assert zip_path.stat().st_size <= MAX_ZIP_BYTES, f"{function}: {zip_path.stat().st_size} bytes"

    demo = run("make demo", timeout=1800)
    assert demo.returncode == 0, demo.stdout[-4000:] + demo.stderr[-4000:]
    for line in ["tags unchanged: the replay wrote nothing", "1 message(s) received by the Slack sink",
                 "InvalidEvent", "(the next event is handled as usual)"]:
        assert line in demo.stdout + demo.stderr, line
    assert sorted(set(ran)) == sorted(RUN), "the test ran other commands than RUN"


# arm64 zip of one function (make package), BENCHMARKS.md's budget: 3.0 MB.
MAX_ZIP_BYTES = 3_000_000


def check_deployed(env):
    """Each function once, as its crate's [package.metadata.lambda.deploy] says; one role each."""
    session = boto3.session.Session(aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
                                    aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"], region_name=env["AWS_REGION"])
    lam = session.client("lambda", endpoint_url=env["AWS_ENDPOINT_URL"])
    names = sorted(f["FunctionName"] for f in lam.list_functions()["Functions"])
    assert names == sorted(f"crossplane-lambda-{f}" for f in FUNCTIONS), names
    roles = set()
    for function in FUNCTIONS:
        cargo = tomllib.loads((ROOT / "crates" / function / "Cargo.toml").read_text())
        deploy = cargo["package"]["metadata"]["lambda"]["deploy"]
        got = lam.get_function(FunctionName=f"crossplane-lambda-{function}")
        config = got["Configuration"]
        assert (config["MemorySize"], config["Timeout"], config["Runtime"], config["Architectures"]) == \
            (deploy["memory"], deploy["timeout"], deploy["runtime"], ["arm64"]), config
        assert config["Environment"]["Variables"] == deploy["env"], config["Environment"]
        assert config["TracingConfig"]["Mode"].lower() == deploy["tracing"], config["TracingConfig"]
        for key, value in deploy["tags"].items():
            assert got["Tags"].get(key) == value, got["Tags"]
        roles.add(config["Role"])
        logs = session.client("logs", endpoint_url=env["AWS_ENDPOINT_URL"])
        group = f"/aws/lambda/crossplane-lambda-{function}"
        found = logs.describe_log_groups(logGroupNamePrefix=group)["logGroups"]
        assert [(g["logGroupName"], g.get("retentionInDays")) for g in found] == [(group, deploy["log_retention"])], found
    iam = session.client("iam", endpoint_url=env["AWS_ENDPOINT_URL"])
    assert {r["Arn"] for r in iam.list_roles()["Roles"]} == roles, "make deploy left roles behind"
    return lam
