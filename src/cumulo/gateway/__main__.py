"""python -m cumulo.gateway --port P --control-plane URL [--host H]

The standalone gateway: polls GET {URL}/api/v1/gateway/routes every 0.5 s (from a thread, through
Gateway.update) and serves /d/<name>/<path> and /metrics on its own port.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import threading
import urllib.error
import urllib.request

from cumulo.gateway.proxy import Gateway
from cumulo.gateway.routing import parse_routes
from cumulo.gateway.server import serve

log = logging.getLogger("cumulo.gateway")

ROUTES_PATH = "/api/v1/gateway/routes"


class RoutePoller:
    """Fetches the route table every `period` seconds and hands it to the gateway. Keeps the last
    good table while the control plane is unreachable (replicas keep serving)."""

    def __init__(self, gateway: Gateway, control_plane: str, period: float = 0.5) -> None:
        self.gateway = gateway
        self.url = control_plane.rstrip("/") + ROUTES_PATH
        self.period = period
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="cumulo-gateway-routes", daemon=True)
        self._last: dict | None = None
        self._failing = False

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def poll_once(self) -> bool:
        try:
            with urllib.request.urlopen(self.url, timeout=max(self.period * 4, 2.0)) as resp:
                doc = json.loads(resp.read())
            routes = parse_routes(doc)
        except (OSError, urllib.error.URLError, ValueError) as exc:
            if not self._failing:
                log.warning("cannot read routes from %s (keeping the last table): %s", self.url, exc)
            self._failing = True
            return False
        if self._failing:
            log.info("routes from %s readable again", self.url)
        self._failing = False
        if doc != self._last:
            self.gateway.update(routes)
            self._last = doc
        return True

    def _run(self) -> None:
        while not self._stop.is_set():
            self.poll_once()
            self._stop.wait(self.period)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="cumulo gateway", description="Run the cumulo gateway alone.")
    p.add_argument("--port", type=int, default=8300)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--control-plane", default=os.environ.get("CUMULO_URL", "http://127.0.0.1:8200"))
    p.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for a replica's response")
    p.add_argument("--poll", type=float, default=0.5, help="seconds between route table fetches")
    args = p.parse_args(argv)
    logging.basicConfig(level=os.environ.get("CUMULO_LOG_LEVEL", "INFO"),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    gw = Gateway(timeout=args.timeout)
    poller = RoutePoller(gw, args.control_plane, args.poll)
    poller.poll_once()
    poller.start()
    log.info("cumulo gateway serving http://%s:%d/d/<deployment>/ (routes from %s)", args.host, args.port,
             poller.url)
    try:
        serve(gw, host=args.host, port=args.port)
    finally:
        poller.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
