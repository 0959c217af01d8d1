"""A tiny threaded HTTP server on $PORT for canary tests: every GET answers 200 "v$VERSION", except
that with $FAIL_EVERY=N every N-th request (counted per process) answers 500. GET /healthz always
answers 200, so the replica is healthy and only its answers are bad (a bug in the new version)."""

import http.server
import itertools
import os
import threading

VERSION = os.environ.get("VERSION", "1").encode()
FAIL_EVERY = int(os.environ.get("FAIL_EVERY", "0"))
_count = itertools.count(1)
_lock = threading.Lock()


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):  # noqa: N802
        status, body = 200, b"v" + VERSION
        if self.path != "/healthz" and FAIL_EVERY:
            with _lock:
                n = next(_count)
            if n % FAIL_EVERY == 0:
                status, body = 500, b"boom"
        self.send_response(status)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 1024


Server(("127.0.0.1", int(os.environ["PORT"])), Handler).serve_forever()
