"""A tiny threaded HTTP server on $PORT whose GET takes $DELAY seconds (load for autoscaling tests);
GET /healthz answers at once.

With $SLOTS set, at most that many requests are served at once and the rest queue: a replica with
a capacity of SLOTS / DELAY requests/s, like a model server at its max_concurrency.
"""

import http.server
import os
import threading
import time

DELAY = float(os.environ.get("DELAY", "0.2"))
SLOTS = threading.Semaphore(int(os.environ["SLOTS"])) if os.environ.get("SLOTS") else None


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802
        if self.path == "/healthz":  # answered at once, outside the slots
            pass
        elif SLOTS is not None:
            with SLOTS:
                time.sleep(DELAY)
        else:
            time.sleep(DELAY)
        self.send_response(200)
        self.send_header("content-length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args):
        pass


class Server(http.server.ThreadingHTTPServer):
    request_queue_size = 1024  # queued requests wait in the replica, not in a full listen backlog


Server(("127.0.0.1", int(os.environ["PORT"])), Handler).serve_forever()
