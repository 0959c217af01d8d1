"""A tiny threaded HTTP server on $PORT whose GET takes $DELAY seconds (load for autoscaling tests)."""

import http.server
import os
import time


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802
        time.sleep(float(os.environ.get("DELAY", "0.2")))
        self.send_response(200)
        self.send_header("content-length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args):
        pass


http.server.ThreadingHTTPServer(("127.0.0.1", int(os.environ["PORT"])), Handler).serve_forever()
