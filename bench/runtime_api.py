"""A local AWS Lambda Runtime API (2018-06-01), enough to run a real function binary outside
Lambda and time it: `make bench` uses it, and so can a pytest test (tests/runtime/...).

Like Lambda, it hands out queued invocations to `GET .../invocation/next` long polls (several
polls may wait at once: lambda_runtime's concurrent mode, AWS_LAMBDA_MAX_CONCURRENCY=N, opens N
of them), and records `POST .../invocation/{id}/response|error` and `POST .../init/error`. It
notes when the first /next arrived (the end of the function's init) and how many /next polls
were waiting at the same time (`max_outstanding`).

Use from a test (the server runs in daemon threads; `with` stops it):

    import os, subprocess, sys
    sys.path.insert(0, "bench")  # the repository's bench/ directory
    from runtime_api import RuntimeApi

    with RuntimeApi() as api:
        env = {**os.environ, **api.lambda_env("tagger"), "AWS_LAMBDA_MAX_CONCURRENCY": "8"}
        proc = subprocess.Popen(["target/release/tagger"], env=env)
        try:
            api.wait_for_init(proc)                      # first /next arrived
            api.wait_for_polls(8, proc)                  # all workers are polling
            invocations = api.enqueue_many([event] * 8)  # raw bytes, str or JSON-able objects
            api.wait(invocations, proc)                  # raises if the process dies or time runs out
            assert api.max_outstanding == 8
            assert all(i.error_type is None for i in invocations)
            results = [i.json() for i in invocations]
        finally:
            proc.kill()

Times are `time.perf_counter()` values: compare them with a `perf_counter()` taken before
starting the process (`init_seconds = api.first_next_at - started`).
"""
import json
import queue
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler

from loopback import LoopbackServer

PREFIX = "/2018-06-01/runtime"
ACCOUNT = "123456789012"
REGION = "us-east-1"


class Invocation:
    """One event handed to the function, and its answer once it came."""

    def __init__(self, payload, timeout_seconds):
        self.request_id = str(uuid.uuid4())
        self.payload = payload
        self.timeout_seconds = timeout_seconds
        self.handed_at = None    # perf_counter when /next returned it
        self.answered_at = None  # perf_counter when its response or error arrived
        self.body = None         # the answer's raw bytes
        self.error_type = None   # Lambda-Runtime-Function-Error-Type (or the error body's), for /error
        self.done = threading.Event()

    @property
    def seconds(self):
        """From hand-out to answer: what the caller of Invoke waits, minus Lambda's own routing."""
        return self.answered_at - self.handed_at

    def json(self):
        return json.loads(self.body)


class RuntimeApi:
    """The server; `address` is what AWS_LAMBDA_RUNTIME_API must be set to."""

    def __init__(self, timeout_seconds=30):
        self.timeout_seconds = timeout_seconds
        self.function_name = "function"  # in the invoked function ARN; lambda_env sets it
        self.first_next_at = None
        self.outstanding = 0
        self.max_outstanding = 0
        self.init_error = None
        self._queue = queue.Queue()
        self._by_id = {}
        self._lock = threading.Lock()
        self._closing = threading.Event()
        self._server = LoopbackServer(_handler(self))

    @property
    def address(self):
        host, port = self._server.server_address
        return f"{host}:{port}"

    def lambda_env(self, function_name, memory_mb=256):
        """The variables Lambda sets for a function, pointing at this server."""
        self.function_name = function_name
        return {
            "AWS_LAMBDA_RUNTIME_API": self.address,
            "AWS_LAMBDA_FUNCTION_NAME": function_name,
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(memory_mb),
            "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
            "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/{function_name}",
            "AWS_LAMBDA_LOG_STREAM_NAME": time.strftime("%Y/%m/%d/[$LATEST]") + uuid.uuid4().hex,
        }

    def enqueue(self, payload):
        if not isinstance(payload, bytes):
            payload = payload.encode() if isinstance(payload, str) else json.dumps(payload).encode()
        invocation = Invocation(payload, self.timeout_seconds)
        with self._lock:
            self._by_id[invocation.request_id] = invocation
        self._queue.put(invocation)
        return invocation

    def enqueue_many(self, payloads):
        return [self.enqueue(p) for p in payloads]

    def invoke(self, payload, proc=None, timeout=None):
        """Enqueue one payload and wait for its answer."""
        invocation = self.enqueue(payload)
        self.wait([invocation], proc, timeout)
        return invocation

    def wait(self, invocations, proc=None, timeout=None):
        """Until every invocation is answered; fails as soon as `proc` (a Popen) exits."""
        self._until(lambda: all(i.done.is_set() for i in invocations), proc, timeout,
                    lambda: f"{sum(not i.done.is_set() for i in invocations)} of {len(invocations)} invocations unanswered")

    def wait_for_init(self, proc=None, timeout=None):
        """Until the function's first /next (its init is over)."""
        self._until(lambda: self.first_next_at is not None, proc, timeout, lambda: "no /next request")

    def wait_for_polls(self, count, proc=None, timeout=1.0):
        """Until `count` /next polls wait at once; returns how many did within `timeout` (a runtime
        without concurrent mode never has more than one)."""
        try:
            self._until(lambda: self.outstanding >= count, proc, timeout, lambda: "")
        except TimeoutError:
            pass
        return self.outstanding

    def _until(self, condition, proc, timeout, what):
        deadline = time.monotonic() + (self.timeout_seconds if timeout is None else timeout)
        while not condition():
            if self.init_error is not None:
                raise RuntimeError(f"the function reported an init error: {self.init_error!r}")
            if proc is not None and proc.poll() is not None:
                raise RuntimeError(f"the function exited with status {proc.returncode}: {what()}")
            if time.monotonic() > deadline:
                raise TimeoutError(what())
            time.sleep(0.0005)

    def close(self):
        self._closing.set()
        self._server.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # Called from the request threads.

    def _next(self):
        with self._lock:
            if self.first_next_at is None:
                self.first_next_at = time.perf_counter()
            self.outstanding += 1
            self.max_outstanding = max(self.max_outstanding, self.outstanding)
        try:
            while not self._closing.is_set():
                try:
                    return self._queue.get(timeout=0.2)
                except queue.Empty:
                    continue
            return None
        finally:
            with self._lock:
                self.outstanding -= 1

    def _answer(self, request_id, body, error_type):
        answered_at = time.perf_counter()
        with self._lock:
            invocation = self._by_id.get(request_id)
        if invocation is None or invocation.done.is_set():
            return False
        invocation.body, invocation.error_type, invocation.answered_at = body, error_type, answered_at
        invocation.done.set()
        return True


def _handler(api):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as the runtime clients expect

        def log_message(self, fmt, *args):
            pass

        def _reply(self, status, body=b"", headers=()):
            self.send_response(status)
            for key, value in headers:
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _body(self):
            if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                chunks = []
                while True:
                    size = int(self.rfile.readline().split(b";")[0], 16)
                    chunk = self.rfile.read(size + 2)[:size]
                    if size == 0:
                        while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                            pass
                        return b"".join(chunks)
                    chunks.append(chunk)
            return self.rfile.read(int(self.headers.get("Content-Length") or 0))

        def do_GET(self):
            if self.path != f"{PREFIX}/invocation/next":
                return self._reply(404, b'{"errorType":"NotFound"}')
            invocation = api._next()
            if invocation is None:  # closing: the function is gone or about to be
                self.close_connection = True
                return None
            now = time.time()
            invocation.handed_at = time.perf_counter()
            self._reply(200, invocation.payload, [
                ("Content-Type", "application/json"),
                ("Lambda-Runtime-Aws-Request-Id", invocation.request_id),
                ("Lambda-Runtime-Deadline-Ms", str(int((now + invocation.timeout_seconds) * 1000))),
                ("Lambda-Runtime-Invoked-Function-Arn",
                 f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{api.function_name}"),
                ("Lambda-Runtime-Trace-Id",
                 f"Root=1-{int(now):08x}-{uuid.uuid4().hex[:24]};Parent={uuid.uuid4().hex[:16]};Sampled=0"),
            ])

        def do_POST(self):
            body = self._body()
            path = self.path
            if path == f"{PREFIX}/init/error":
                api.init_error = body
                return self._reply(202, b'{"status":"OK"}')
            prefix = f"{PREFIX}/invocation/"
            if path.startswith(prefix) and path.endswith(("/response", "/error")):
                request_id, _, kind = path[len(prefix):].rpartition("/")
                error_type = None
                if kind == "error":
                    error_type = self.headers.get("Lambda-Runtime-Function-Error-Type") or _error_type(body)
                if api._answer(request_id, body, error_type):
                    return self._reply(202, b'{"status":"OK"}')
                return self._reply(400, b'{"errorType":"InvalidRequestID"}')
            return self._reply(404, b'{"errorType":"NotFound"}')

    return Handler


def _error_type(body):
    try:
        return json.loads(body).get("errorType") or "Unknown"
    except (ValueError, AttributeError):
        return "Unknown"
