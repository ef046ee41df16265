"""make bench: the release binaries under a local Lambda Runtime API, on moto, against the echo
floor and a Python boto3 peer. Run inside the test bed (tests/testbed/run.sh), which provides
moto (AWS_ENDPOINT_URL) and the Slack sink (SLACK_SINK_URL):

    tests/testbed/run.sh .venv/bin/python bench/run.py [--runs 9] [--bin-dir target/release]
        [--markdown FILE] [--json FILE]

Per subject and run: a fresh moto state (reset, then seeded as tests/testbed/seed.sh does), a
new process, init (exec to its first /next), the ready event (a write), the same event again
(no write), peak RSS; every answer is checked, and a wrong one fails the bench. Then SQS
throughput, lambda_runtime's concurrent mode, and the zips' sizes. Medians are printed as a
Markdown table. Every subject's whole environment is built by `environment` below.
"""
import argparse
import contextlib
import copy
import datetime
import hashlib
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path

import boto3

sys.path.insert(0, str(Path(__file__).resolve().parent))
from aws_proxy import CountingProxy  # noqa: E402
from runtime_api import RuntimeApi  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
READY = json.loads((ROOT / "events/ready.namespaced.json").read_text())
SQS_TEMPLATE = json.loads((ROOT / "events/sqs.batch.json").read_text())["Records"][0]
TAG_POLICY = (ROOT / "tests/testbed/tag-policy.json").read_text()
FUNCTIONS = ("tagger", "secret-syncer", "slack-notifier")
NAMESPACE = "team-a"
# The functions' settings, as tests/testbed/seed.sh exports them (names from the crates'
# [package.metadata.lambda.deploy] env).
SETTINGS = {
    "echo": {},
    "tagger": {"TAG_POLICY_PARAMETER": "/crossplane-lambda/tag-policy"},
    "secret-syncer": {"SSM_PATH_TEMPLATE": "/crossplane/{namespace}/{name}"},
    "slack-notifier": {"SLACK_WEBHOOK_SECRET": "crossplane-lambda/slack-webhook",
                       "IDEMPOTENCY_TABLE": "crossplane-lambda-idempotency",
                       "SLACK_ALLOW_LOOPBACK_HTTP": "true"},
    "peer-tagger": {"TAG_POLICY_PARAMETER": "/crossplane-lambda/tag-policy"},
}
# Where TLS roots come from: one bundle file (the Lambda-like case), or a directory of
# certificates, which rustls-native-certs reads file by file.
CA_FILE = {"SSL_CERT_FILE": "/etc/ssl/certs/ca-certificates.crt"}
CA_DIR = {"SSL_CERT_DIR": "/etc/ssl/certs"}
# What the test bed gives every process (start.sh), minus AWS_ENDPOINT_URL: the proxy's instead.
TESTBED_VARS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_REGION", "AWS_DEFAULT_REGION",
                "AWS_ACCOUNT_ID", "AWS_EC2_METADATA_DISABLED")
# Outcome of the ready event, then of the same event again.
EXPECTED = {"tagger": ("applied", "unchanged"), "secret-syncer": ("applied", "unchanged"),
            "slack-notifier": ("applied", "duplicate"), "peer-tagger": ("applied", "unchanged")}


class Subject:
    """One row of the main table: a program, its function's settings, its CA roots."""

    def __init__(self, label, function, argv, ca):
        self.label, self.function, self.argv, self.ca = label, function, argv, ca


def subjects(bin_dir):
    python = str(ROOT / ".venv/bin/python")
    rows = [Subject("echo", "echo", [str(bin_dir / "echo")], CA_FILE)]
    for function in FUNCTIONS:
        rows.append(Subject(function, function, [str(bin_dir / function)], CA_FILE))
        rows.append(Subject(f"{function}, SSL_CERT_DIR", function, [str(bin_dir / function)], CA_DIR))
    rows.append(Subject("Python peer (boto3)", "peer-tagger", [python, str(ROOT / "bench/peer_tagger.py")], CA_FILE))
    return rows


def environment(subject, api, proxy, extra=None):
    """A subject's whole environment; nothing else is inherited: Lambda's variables (pointing at
    the local Runtime API), the test bed's credentials and region, AWS_ENDPOINT_URL at the
    counting proxy, the function's settings, the CA roots, and `extra`."""
    env = {"PATH": os.environ["PATH"], "LANG": "C.UTF-8", "TZ": ":UTC"}
    env.update(api.lambda_env(subject.function))
    env.update({k: os.environ[k] for k in TESTBED_VARS})
    env["AWS_ENDPOINT_URL"] = proxy.url
    env.update(SETTINGS[subject.function])
    env.update(subject.ca)
    env.update(extra or {})
    return env


class Moto:
    """moto's state, reached directly (not through the proxy, so seeding is not counted)."""

    def __init__(self, endpoint):
        self.endpoint = endpoint
        self.rds = boto3.client("rds", endpoint_url=endpoint)
        self.ssm = boto3.client("ssm", endpoint_url=endpoint)
        self.dynamodb = boto3.client("dynamodb", endpoint_url=endpoint)
        self.secrets = boto3.client("secretsmanager", endpoint_url=endpoint)

    def reset(self, instances=("orders-db",)):
        """A clean state seeded as tests/testbed/seed.sh does, so the next event is a write."""
        urllib.request.urlopen(urllib.request.Request(f"{self.endpoint}/moto-api/reset", method="POST")).close()
        urllib.request.urlopen(urllib.request.Request(
            f"{os.environ['SLACK_SINK_URL']}/_sink/reset", data=b"", method="POST")).close()
        self.create_instances(instances)
        self.ssm.put_parameter(Name=SETTINGS["tagger"]["TAG_POLICY_PARAMETER"], Value=TAG_POLICY,
                               Type="String", Overwrite=True)
        table = SETTINGS["slack-notifier"]["IDEMPOTENCY_TABLE"]
        self.dynamodb.create_table(TableName=table, BillingMode="PAY_PER_REQUEST",
                                   KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
                                   AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}])
        self.dynamodb.update_time_to_live(TableName=table, TimeToLiveSpecification={
            "Enabled": True, "AttributeName": "expires_at"})
        webhook = f"{os.environ['SLACK_SINK_URL']}/services/T0LOCAL/B0LOCAL/local"
        self.secrets.create_secret(Name=SETTINGS["slack-notifier"]["SLACK_WEBHOOK_SECRET"],
                                   SecretString=json.dumps({"url": webhook}))

    def create_instances(self, names):
        """RDS instances with the tags Crossplane's AWS provider sets (as aws.py create-instance).
        moto keeps an automated snapshot of each and refuses a 101st snapshot, so they are
        deleted after every 90 instances."""
        def create(name):
            tags = {"crossplane-kind": "instance.rds.aws.m.upbound.io", "crossplane-name": name,
                    "crossplane-namespace": NAMESPACE, "crossplane-providerconfig": "default",
                    "crossplane-providerconfig-kind": "ProviderConfig"}
            self.rds.create_db_instance(
                DBInstanceIdentifier=name, DBInstanceClass="db.t4g.micro", Engine="postgres",
                EngineVersion="16.4", DBName="orders", MasterUsername="orders_admin",
                ManageMasterUserPassword=True, AllocatedStorage=20,
                Tags=[{"Key": k, "Value": v} for k, v in tags.items()])

        def forget_snapshots():
            for snapshot in self.rds.describe_db_snapshots(SnapshotType="automated")["DBSnapshots"]:
                self.rds.delete_db_snapshot(DBSnapshotIdentifier=snapshot["DBSnapshotIdentifier"])

        for count, name in enumerate(names, 1):  # one at a time: concurrent creates make moto fail (500)
            create(name)
            if count % 90 == 0:
                forget_snapshots()

    def tags(self, name):
        arn = f"arn:aws:rds:us-east-1:123456789012:db:{name}"
        return {t["Key"]: t["Value"] for t in self.rds.list_tags_for_resource(ResourceName=arn)["TagList"]}

    def slack_messages(self):
        with urllib.request.urlopen(f"{os.environ['SLACK_SINK_URL']}/_sink/messages") as answer:
            return json.load(answer)


def ready_event(name, serial=0):
    """events/ready.namespaced.json for the instance `name` (same shape, its own ids)."""
    event = copy.deepcopy(READY)
    data = event["data"]
    event["id"] = f"{uuid.uuid4()}:{serial}:ready"
    event["subject"] = f"/apis/rds.aws.m.upbound.io/v1beta1/namespaces/{NAMESPACE}/instances/{name}"
    data["metadata"]["name"] = name
    data["metadata"]["annotations"]["crossplane.io/external-name"] = name
    data["spec"]["forProvider"]["identifier"] = name
    at = data["status"]["atProvider"]
    at["arn"] = f"arn:aws:rds:us-east-1:123456789012:db:{name}"
    at["address"] = f"{name}.c9akciq32.us-east-1.rds.amazonaws.com"
    at["endpoint"] = f"{at['address']}:5432"
    return event


def sqs_envelope(events):
    records = []
    for event in events:
        record = copy.deepcopy(SQS_TEMPLATE)
        record["messageId"] = str(uuid.uuid4())
        record["body"] = json.dumps(event)
        records.append(record)
    return {"Records": records}


class Processes:
    """Every process the bench starts, each in its own session, killed by `kill_all` (at the
    end, on failure, on Ctrl-C or SIGTERM)."""

    def __init__(self, log_dir):
        self.log_dir = log_dir
        self.live = set()

    def start(self, subject, env):
        log = open(self.log_dir / f"{subject.function}.log", "ab")
        try:
            proc = subprocess.Popen(subject.argv, env=env, stdin=subprocess.DEVNULL, stdout=log,
                                    stderr=subprocess.STDOUT, start_new_session=True)
        finally:
            log.close()
        self.live.add(proc)
        return proc

    def peak_rss_mib(self, proc):
        """VmHWM, the peak resident set, read while the process still lives."""
        for line in Path(f"/proc/{proc.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
        raise RuntimeError(f"no VmHWM for {proc.pid}")

    def kill(self, proc):
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        self.live.discard(proc)

    def kill_all(self):
        for proc in list(self.live):
            self.kill(proc)

    def log_tail(self, function, lines=15):
        path = self.log_dir / f"{function}.log"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else ""


class BenchFailure(Exception):
    pass


def check(subject, which, invocation, expected_payload=None):
    """The answer must be the expected kind: a bench of broken functions is worthless."""
    if invocation.error_type is not None:
        raise BenchFailure(f"{subject.label}, {which} event: function error {invocation.error_type}: "
                           f"{invocation.body[:500]!r}")
    answer = invocation.json()
    if subject.function == "echo":
        if answer != expected_payload:
            raise BenchFailure(f"echo, {which} event: the answer is not the payload")
        return
    want = EXPECTED[subject.function][0 if which == "first" else 1]
    outcomes = [r.get("outcome") for r in answer.get("results", [])]
    if outcomes != [want]:
        raise BenchFailure(f"{subject.label}, {which} event: outcomes {outcomes}, expected [{want!r}]: {answer}")


@contextlib.contextmanager
def running(subject, api, proxy, procs, extra=None):
    """The subject's process under `api`, past its init (its first /next): yields the process and
    when it was started; kills it on leaving."""
    env = environment(subject, api, proxy, extra)
    started = time.perf_counter()
    proc = procs.start(subject, env)
    try:
        api.wait_for_init(proc)
        yield proc, started
    except Exception:
        print(f"--- {subject.label}: last lines of its log\n{procs.log_tail(subject.function)}", file=sys.stderr)
        raise
    finally:
        procs.kill(proc)


def run_subject(subject, moto, proxy, procs):
    """One run: fresh state, start, init, first event, replay, peak RSS, kill."""
    moto.reset()
    with RuntimeApi() as api, running(subject, api, proxy, procs) as (proc, started):
        sample = {"init_ms": (api.first_next_at - started) * 1000}
        for which in ("first", "replay"):
            before = proxy.snapshot()
            proxy.mark()
            invocation = api.invoke(READY, proc)
            calls = proxy.since(before)
            check(subject, which, invocation, READY)
            if which == "first" and proxy.first_request_at is not None:
                sample["to_first_call_ms"] = (proxy.first_request_at - invocation.handed_at) * 1000
            sample[f"{which}_ms"] = invocation.seconds * 1000
            if which == "first":  # the cold start a caller sees: exec to the first answer
                sample["cold_ms"] = (invocation.answered_at - started) * 1000
            sample[f"{which}_calls"] = sum(calls.values())
            sample[f"{which}_operations"] = dict(sorted(calls.items()))
        sample["rss_mib"] = procs.peak_rss_mib(proc)
    if subject.function in ("tagger", "peer-tagger"):
        sample["tags"] = moto.tags("orders-db")
    if subject.function == "slack-notifier" and len(moto.slack_messages()) != 1:
        raise BenchFailure(f"{subject.label}: the Slack sink got {len(moto.slack_messages())} messages, expected 1")
    return sample


def init_starts(rows, proxy, procs, rounds):
    """Init alone, `rounds` starts of each subject (alternating order), each process killed at its
    first /next: a start costs a few milliseconds, so many samples are cheap, and no moto work
    (a reset, seeding) runs beside them. Init's difference to the echo is about a millisecond,
    which the runs' own few samples cannot tell from noise."""
    samples = {s.label: [] for s in rows}
    for round_ in range(rounds):
        for subject in rows if round_ % 2 == 0 else reversed(rows):
            with RuntimeApi() as api, running(subject, api, proxy, procs) as (_, started):
                samples[subject.label].append((api.first_next_at - started) * 1000)
    return {label: statistics.median(values) for label, values in samples.items()}


def sqs_throughput(bin_dir, moto, proxy, procs, max_concurrency, events=1000, batch=10):
    """`events` ready events for as many distinct instances (each one a write), in SQS batches."""
    names = [f"bench-{i:04d}" for i in range(events)]
    moto.reset(names)
    subject = Subject("tagger", "tagger", [str(bin_dir / "tagger")], CA_FILE)
    payloads = [sqs_envelope([ready_event(n, i) for i, n in enumerate(names[k:k + batch], k)])
                for k in range(0, events, batch)]
    settings = {"MAX_CONCURRENCY": str(max_concurrency)}
    with RuntimeApi() as api, running(subject, api, proxy, procs, settings) as (proc, _):
        before = proxy.snapshot()
        started = time.perf_counter()
        invocations = api.enqueue_many(payloads)
        api.wait(invocations, proc, timeout=600)
        seconds = time.perf_counter() - started
        calls = proxy.since(before)
        rss = procs.peak_rss_mib(proc)
    for invocation in invocations:
        if invocation.error_type is not None or invocation.json() != {"batchItemFailures": []}:
            raise BenchFailure(f"SQS, MAX_CONCURRENCY={max_concurrency}: {invocation.error_type} {invocation.body[:500]!r}")
    for name in (names[0], names[-1]):
        if moto.tags(name).get("cost-center") != "platform":
            raise BenchFailure(f"SQS, MAX_CONCURRENCY={max_concurrency}: {name} was not tagged")
    return {"max_concurrency": max_concurrency, "events": events, "invocations": len(payloads),
            "seconds": seconds, "events_per_s": events / seconds, "calls_per_event": sum(calls.values()) / events,
            "operations": dict(sorted(calls.items())), "rss_mib": rss}


def concurrent_mode(bin_dir, moto, proxy, procs, runtime_concurrency, count=64):
    """`count` direct ready events (distinct instances, each a write) handed out at once."""
    names = [f"conc-{i:02d}" for i in range(count)]
    moto.reset(names)
    subject = Subject("tagger", "tagger", [str(bin_dir / "tagger")], CA_FILE)
    extra = {"AWS_LAMBDA_MAX_CONCURRENCY": str(runtime_concurrency)} if runtime_concurrency else {}
    with RuntimeApi() as api, running(subject, api, proxy, procs, extra) as (proc, _):
        polls_before = api.wait_for_polls(runtime_concurrency or 1, proc)
        started = time.perf_counter()
        invocations = api.enqueue_many([ready_event(n, i) for i, n in enumerate(names)])
        api.wait(invocations, proc, timeout=300)
        seconds = time.perf_counter() - started
        rss = procs.peak_rss_mib(proc)
    for invocation in invocations:
        check(subject, "first", invocation)
    return {"AWS_LAMBDA_MAX_CONCURRENCY": runtime_concurrency, "invocations": count, "seconds": seconds,
            "invocations_per_s": count / seconds, "rss_mib": rss, "polls_waiting_before": polls_before,
            "max_outstanding_next": api.max_outstanding}


def zips(bin_dir):
    """`make package`'s arm64 zips, beside the release binaries (target/lambda/<function>)."""
    rows = []
    for function in FUNCTIONS:
        path = bin_dir.parent / "lambda" / function / "bootstrap.zip"
        rows.append({"function": function, "zip": str(path),
                     "zip_mb": path.stat().st_size / 1e6 if path.exists() else None,
                     "binary_mb": (bin_dir / function).stat().st_size / 1e6})
    return rows


def fingerprints(bin_dir):
    """Each binary's SHA-256 prefix and modification time: the report names what it measured,
    and a binary rebuilt during the run (another build in the same target dir) fails the bench."""
    prints = {}
    for name in ("echo", *FUNCTIONS):
        path = bin_dir / name
        stamp = datetime.datetime.fromtimestamp(path.stat().st_mtime, datetime.timezone.utc)
        prints[name] = {"sha256": hashlib.sha256(path.read_bytes()).hexdigest()[:12],
                        "built": stamp.strftime("%Y-%m-%d %H:%M:%S UTC")}
    return prints


def machine():
    model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), platform.processor() or platform.machine())
    return f"{os.cpu_count()} × {model} ({platform.system()} {platform.machine()}), nproc {len(os.sched_getaffinity(0))}"


def git(directory, *args):
    try:
        return subprocess.run(["git", "-C", str(directory), *args], capture_output=True, text=True,
                              check=True).stdout.strip()
    except (subprocess.CalledProcessError, FileNotFoundError):
        return "unknown"


def median(samples, key):
    return statistics.median(s[key] for s in samples)


def calls_cell(samples):
    def one(key):
        values = sorted({s[key] for s in samples})
        return str(values[0]) if len(values) == 1 else f"{values[0]}–{values[-1]}"
    return f"{one('first_calls')} / {one('replay_calls')}"


def markdown(results):
    meta = results["meta"]
    out = [f"## make bench, {meta['date']}", "",
           f"- machine: {meta['machine']}; load average {meta['load_average']:.2f} at the end (other work "
           "on the machine shows here: the numbers are only as quiet as it is)",
           f"- commit: {meta['commit']} (harness); binaries: {meta['bin_dir']}, tree at {meta['bin_commit']}, "
           "built " + ", ".join(f"{name} {b['built']} ({b['sha256']})" for name, b in meta["binaries"].items()),
           f"- runs: {meta['runs']} per subject after one warm-up round, medians; subjects alternate "
           "order each round; a fresh moto state per run",
           f"- command: `{meta['command']}`", "",
           f"Init: exec to the first /next, median of {meta['init_starts']} starts of each subject "
           "(alternating, nothing else running beside them). First event: the ready event (a write) from hand-out to "
           "answer; replay: the same event again (no write). Peak RSS: VmHWM at the end of the run. "
           "AWS calls counted by a proxy in front of moto. CA roots: SSL_CERT_FILE (one bundle file, the "
           "Lambda-like case) unless the row says SSL_CERT_DIR (a directory of certificates).", "",
           "| subject | init ms | × echo | cold start ms | peak RSS MiB | first event ms | to 1st AWS call ms "
           "| replay ms | AWS calls (first/replay) |",
           "|---|---:|---:|---:|---:|---:|---:|---:|---|"]
    echo = results["subjects"]["echo"]["median"]
    for label, row in results["subjects"].items():
        m = row["median"]
        to_call = f"{m['to_first_call_ms']:.1f}" if "to_first_call_ms" in m else "–"
        out.append(f"| {label} | {m['init_ms']:.1f} | {m['init_ms'] / echo['init_ms']:.1f} | {m['cold_ms']:.1f} "
                   f"| {m['rss_mib']:.1f} "
                   f"| {m['first_ms']:.1f} (×{m['first_ms'] / echo['first_ms']:.0f}) | {to_call} "
                   f"| {m['replay_ms']:.1f} (×{m['replay_ms'] / echo['replay_ms']:.0f}) | {row['calls']} |")
    out += ["", "(Cold start: from exec to the first event's answer, in the same runs as the latencies: what "
            "a caller of a cold function waits, whatever is done at init or on the first event. "
            "×N after a latency: that many times echo's, which answers the same payload. To 1st AWS "
            "call: from hand-out of the first event to its first request at the proxy, i.e. the lazy "
            "setup before it: HTTP client, TLS roots, endpoint resolution.)", "",
            "SQS throughput (tagger): 1,000 ready events for 1,000 distinct RDS instances (each a tag "
            "write), 100 invocations of 10 records, all queued at once, one function process.", "",
            "| MAX_CONCURRENCY | wall s | events/s | AWS calls/event | peak RSS MiB |",
            "|---:|---:|---:|---:|---:|"]
    for r in results["sqs"]:
        out.append(f"| {r['max_concurrency']} | {r['seconds']:.2f} | {r['events_per_s']:.0f} "
                   f"| {r['calls_per_event']:.2f} | {r['rss_mib']:.1f} |")
    out += ["", "Concurrent mode (tagger): 64 direct ready events for 64 distinct instances, handed out at once.", "",
            "| AWS_LAMBDA_MAX_CONCURRENCY | wall ms | invocations/s | peak RSS MiB | max /next polls waiting at once |",
            "|---|---:|---:|---:|---:|"]
    for r in results["concurrent"]:
        out.append(f"| {r['AWS_LAMBDA_MAX_CONCURRENCY'] or 'unset'} | {r['seconds'] * 1000:.0f} "
                   f"| {r['invocations_per_s']:.0f} | {r['rss_mib']:.1f} | {r['max_outstanding_next']} |")
    out += ["", "| function | zip MB (arm64, make package) | release binary MB (this machine) |", "|---|---:|---:|"]
    for r in results["zips"]:
        size = f"{r['zip_mb']:.2f}" if r["zip_mb"] is not None else "absent: run `make package` first"
        out.append(f"| {r['function']} | {size} | {r['binary_mb']:.2f} |")
    return "\n".join(out) + "\n"


def bench(args, procs):
    bin_dir = Path(args.bin_dir).resolve()
    for name in ("echo", *FUNCTIONS):
        if not os.access(bin_dir / name, os.X_OK):
            raise BenchFailure(f"{bin_dir / name} missing: cargo build --release -p {name}")
    if "AWS_ENDPOINT_URL" not in os.environ or "SLACK_SINK_URL" not in os.environ:
        raise BenchFailure("run inside the test bed: tests/testbed/run.sh .venv/bin/python bench/run.py")
    binaries = fingerprints(bin_dir)
    moto = Moto(os.environ["AWS_ENDPOINT_URL"])
    proxy = CountingProxy(os.environ["AWS_ENDPOINT_URL"])
    try:
        rows = subjects(bin_dir)
        samples = {s.label: [] for s in rows}
        # Not recorded: moto's first call of each operation is slow (it loads models and rules).
        for subject in rows:
            run_subject(subject, moto, proxy, procs)
        for round_ in range(args.runs):
            for subject in rows if round_ % 2 == 0 else reversed(rows):
                samples[subject.label].append(run_subject(subject, moto, proxy, procs))
            print(f"bench: round {round_ + 1}/{args.runs} done", file=sys.stderr)
        tagger_tags = [s["tags"] for s in samples["tagger"]]
        peer_tags = [s["tags"] for s in samples["Python peer (boto3)"]]
        if any(t != tagger_tags[0] for t in tagger_tags + peer_tags):
            raise BenchFailure(f"the peer's tags differ from the tagger's: {peer_tags[0]} vs {tagger_tags[0]}")
        starts = init_starts(rows, proxy, procs, args.init_starts)
        results = {"subjects": {}}
        for label, runs in samples.items():
            keys = [k for k in ("init_ms", "cold_ms", "rss_mib", "first_ms", "to_first_call_ms", "replay_ms", "first_calls",
                                "replay_calls") if k in runs[0]]
            results["subjects"][label] = {"median": {k: median(runs, k) for k in keys}, "calls": calls_cell(runs),
                                          "operations": {"first": runs[0]["first_operations"],
                                                         "replay": runs[0]["replay_operations"]},
                                          "samples": [{k: s[k] for k in keys} for s in runs]}
            # Init from the dedicated starts; each run's own stays in its samples, as `run_init_ms`.
            results["subjects"][label]["median"]["init_ms"] = starts[label]
            for sample in results["subjects"][label]["samples"]:
                sample["run_init_ms"] = sample.pop("init_ms")
        results["sqs"] = [sqs_throughput(bin_dir, moto, proxy, procs, n) for n in (1, 8)]
        print("bench: SQS done", file=sys.stderr)
        results["concurrent"] = [concurrent_mode(bin_dir, moto, proxy, procs, n) for n in (64, None)]
        results["zips"] = zips(bin_dir)
    finally:
        proxy.close()
    if fingerprints(bin_dir) != binaries:
        raise BenchFailure(f"the binaries in {bin_dir} changed during the bench (a build there?): run it again")
    dirty = git(bin_dir, "--no-optional-locks", "status", "--porcelain", "--untracked-files=no")
    results["meta"] = {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": machine(), "load_average": os.getloadavg()[0], "commit": git(ROOT, "rev-parse", "--short", "HEAD"),
        "bin_dir": str(bin_dir), "binaries": binaries,
        "bin_commit": git(bin_dir, "rev-parse", "--short", "HEAD") + (" with uncommitted changes" if dirty else ""),
        "runs": args.runs, "init_starts": args.init_starts, "command": " ".join([Path(sys.executable).name, *sys.argv])}
    return results


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=9, help="runs per subject (default 9)")
    parser.add_argument("--init-starts", type=int, default=31,
                        help="starts of each subject for the init column (default 31)")
    parser.add_argument("--bin-dir", default=str(ROOT / "target/release"),
                        help="where the release binaries are (default target/release)")
    parser.add_argument("--markdown", help="also write the tables to this file")
    parser.add_argument("--json", help="write every sample and median to this file")
    args = parser.parse_args()
    # Stop cleanly (every process killed) on Ctrl-C, also when started in the background, where
    # the shell hands SIGINT down ignored, and on SIGTERM.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit("bench: stopped by SIGTERM"))
    with tempfile.TemporaryDirectory(prefix="bench-") as logs:
        procs = Processes(Path(logs))
        try:
            results = bench(args, procs)
        except BenchFailure as failure:
            print(f"bench: FAILED: {failure}", file=sys.stderr)
            return 1
        except KeyboardInterrupt:
            print("bench: interrupted", file=sys.stderr)
            return 130
        finally:
            procs.kill_all()
    text = markdown(results)
    print(text)
    if args.markdown:
        Path(args.markdown).write_text(text)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
