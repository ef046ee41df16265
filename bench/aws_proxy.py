"""A counting HTTP proxy in front of moto: the subjects' AWS_ENDPOINT_URL points here, so
`make bench` can report AWS calls per event for the Rust functions and the Python peer alike
(the SDK interceptor counts only ours).

Each request is forwarded to moto and counted as `service.Operation`: the service from the
SigV4 credential scope, the operation from `X-Amz-Target` (JSON protocols) or the `Action`
form field (query protocols such as RDS). It also notes when the first request after `mark`
arrived: what a function does before its first AWS call (the SDK's lazy setup: HTTP client,
TLS roots) shows apart from moto's own time.
"""
import collections
import http.client
import re
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler

from loopback import LoopbackServer

HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "proxy-connection", "upgrade", "te", "trailer"}
SCOPE = re.compile(r"Credential=[^/]+/\d+/[^/]+/([^/]+)/aws4_request")


class CountingProxy:
    def __init__(self, target_url):
        target = urllib.parse.urlsplit(target_url)
        self.target = (target.hostname, target.port or 80)
        self.counts = collections.Counter()
        self.first_request_at = None  # perf_counter of the first request since `mark`
        self._lock = threading.Lock()
        self._local = threading.local()
        self._server = LoopbackServer(_handler(self))

    @property
    def url(self):
        host, port = self._server.server_address
        return f"http://{host}:{port}"

    def snapshot(self):
        with self._lock:
            return collections.Counter(self.counts)

    def mark(self):
        """Start watching for the next request (see `first_request_at`)."""
        with self._lock:
            self.first_request_at = None

    def since(self, snapshot):
        """The calls made after `snapshot`, by operation."""
        return self.snapshot() - snapshot

    def close(self):
        self._server.close()

    def _count(self, operation, at):
        with self._lock:
            self.counts[operation] += 1
            if self.first_request_at is None:
                self.first_request_at = at

    def _connection(self):
        """One keep-alive connection to moto per proxy thread (one per client connection)."""
        if getattr(self._local, "connection", None) is None:
            self._local.connection = http.client.HTTPConnection(*self.target, timeout=60)
        return self._local.connection


def _operation(headers, body):
    scope = SCOPE.search(headers.get("Authorization", ""))
    service = scope.group(1) if scope else "unsigned"
    target = headers.get("X-Amz-Target")
    if target:
        return f"{service}.{target.rpartition('.')[2]}"
    if b"Action=" in body:
        action = urllib.parse.parse_qs(body.decode("utf-8", "replace")).get("Action", ["?"])[0]
        return f"{service}.{action}"
    return f"{service}.other"


def _handler(proxy):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, fmt, *args):
            pass

        def _forward(self):
            arrived = time.perf_counter()
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            proxy._count(_operation(self.headers, body), arrived)
            headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
            for attempt in (1, 2):  # a kept-alive connection moto closed: reconnect once
                connection = proxy._connection()
                try:
                    connection.request(self.command, self.path, body=body, headers=headers)
                    answer = connection.getresponse()
                    data = answer.read()
                    break
                except (http.client.HTTPException, OSError):
                    connection.close()
                    proxy._local.connection = None
                    if attempt == 2:
                        raise
            self.send_response(answer.status, answer.reason)
            for key, value in answer.getheaders():
                if key.lower() not in HOP_BY_HOP and key.lower() != "content-length":
                    self.send_header(key, value)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(data)

        do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = do_PATCH = _forward

    return Handler
