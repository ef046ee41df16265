#!/usr/bin/env python3
"""A local stand-in for Slack incoming webhooks (DESIGN.md section 9).

POST /services/...        records the JSON body and answers like Slack ("ok"), unless a failure
                          was queued: then answers with it (e.g. 429 with Retry-After, 500, 404).
GET  /_sink/messages      the bodies received so far, as a JSON array.
POST /_sink/fail          queue failures: {"status": 429, "body": "rate_limited",
                          "retry_after": 1, "times": 1}.
POST /_sink/reset         forget messages and queued failures.
"""
import argparse
import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

lock = threading.Lock()
messages = []
failures = []


class Sink(BaseHTTPRequestHandler):
    def log_message(self, fmt, *args):
        sys.stderr.write("slack-sink: " + (fmt % args) + "\n")

    def _answer(self, status, body, headers=None, content_type="text/plain"):
        data = body.encode() if isinstance(body, str) else body
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(data)

    def _body(self):
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def do_GET(self):
        if self.path == "/_sink/messages":
            with lock:
                self._answer(200, json.dumps(messages), content_type="application/json")
        else:
            self._answer(404, "no_service")

    def do_POST(self):
        body = self._body()
        if self.path == "/_sink/reset":
            with lock:
                messages.clear()
                failures.clear()
            return self._answer(200, "ok")
        if self.path == "/_sink/fail":
            spec = json.loads(body or b"{}")
            with lock:
                failures.extend([spec] * int(spec.get("times", 1)))
            return self._answer(200, "ok")
        if not self.path.startswith("/services/"):
            return self._answer(404, "no_service")
        with lock:
            failure = failures.pop(0) if failures else None
        if failure:
            headers = {}
            if "retry_after" in failure:
                headers["Retry-After"] = str(failure["retry_after"])
            return self._answer(int(failure.get("status", 500)), failure.get("body", "error"), headers)
        try:
            payload = json.loads(body)
        except ValueError:
            return self._answer(400, "invalid_payload")
        with lock:
            messages.append({"path": self.path, "body": payload})
        print(json.dumps(payload, indent=2), flush=True)
        return self._answer(200, "ok")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    args = parser.parse_args()
    ThreadingHTTPServer((args.host, args.port), Sink).serve_forever()


if __name__ == "__main__":
    main()
