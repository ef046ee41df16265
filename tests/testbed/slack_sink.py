#!/usr/bin/env python3
"""A local stand-in for Slack incoming webhooks (ARCHITECTURE.md section 9).

POST /services/...        records the request and answers like Slack ("ok"), unless a failure
                          was queued for that path: then answers with it (429 with Retry-After,
                          500, 404 channel_not_found, ...) and records it as refused.
GET  /_sink/messages      what was received, as a JSON array of {path, body, at, answered};
                          ?path=/services/... keeps that webhook's only (tests run in parallel).
POST /_sink/fail          queue failures for a path: {"path": "/services/...", "status": 429,
                          "body": "rate_limited", "retry_after": 1, "times": 1}; "delay": seconds
                          answers that late (status 200 by default: a slow success), "reset": true
                          takes the message and closes the connection without an answer
                          (recorded with answered 0: delivered, but the poster cannot know).
POST /_sink/reset         forget everything.
"""
import argparse
import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

lock = threading.Lock()
messages = []
failures = {}  # path -> [failure, ...]


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
        path, _, query = self.path.partition("?")
        if path == "/_sink/messages":
            wanted = dict(p.split("=", 1) for p in query.split("&") if "=" in p).get("path")
            with lock:
                found = [m for m in messages if wanted is None or m["path"] == wanted]
            self._answer(200, json.dumps(found), content_type="application/json")
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
                failures.setdefault(spec.get("path", ""), []).extend([spec] * int(spec.get("times", 1)))
            return self._answer(200, "ok")
        if not self.path.startswith("/services/"):
            return self._answer(404, "no_service")
        try:
            payload = json.loads(body)
        except ValueError:
            return self._answer(400, "invalid_payload")
        with lock:
            queued = failures.get(self.path) or failures.get("") or []
            failure = queued.pop(0) if queued else None
            if failure and failure.get("reset"):
                answered = 0
            elif failure and "delay" in failure:
                answered = int(failure.get("status", 200))
            else:
                answered = int(failure.get("status", 500)) if failure else 200
            messages.append({"path": self.path, "body": payload, "at": time.time(), "answered": answered})
        if failure and "delay" in failure:
            time.sleep(float(failure["delay"]))
        if failure and failure.get("reset"):
            self.close_connection = True
            self.connection.shutdown(2)
            return
        if failure and answered == 200:
            print(json.dumps(payload, indent=2), flush=True)
            return self._answer(200, "ok")
        if failure:
            headers = {}
            if "retry_after" in failure:
                headers["Retry-After"] = str(failure["retry_after"])
            return self._answer(int(failure.get("status", 500)), failure.get("body", "error"), headers)
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
