"""The threaded HTTP server under the bench's Runtime API and AWS proxy, tuned so that it does
not distort what it serves: no Nagle delay, room for many simultaneous connections, and quiet
when a killed function drops its connections."""
import socket
import threading
from http.server import ThreadingHTTPServer


class LoopbackServer(ThreadingHTTPServer):
    daemon_threads = True
    # socketserver's default backlog (5) drops SYNs when 64 runtime workers connect at once;
    # each then waits a second for the retransmission.
    request_queue_size = 256

    def __init__(self, handler):
        super().__init__(("127.0.0.1", 0), handler)
        threading.Thread(target=self.serve_forever, daemon=True).start()

    def get_request(self):
        # A response is written as headers, then body: without TCP_NODELAY, Nagle holds the body
        # until the client's delayed ACK of the headers (up to 40 ms on Linux).
        connection, address = super().get_request()
        connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return connection, address

    def handle_error(self, request, client_address):
        pass  # a function killed at the end of its run drops its connections

    def close(self):
        self.shutdown()
        self.server_close()
