"""python -m cumulo.gateway --port P --control-plane URL [--host H] [--workers N]

The standalone gateway: serves /d/<name>/<path> and /metrics on its own port, and syncs with the
control plane every `--poll` seconds (from a thread): it POSTs {URL}/api/v1/gateway/sync with what
it saw (per deployment: arrivals, answers, in flight, latency, and during a canary rollout each
generation's answers, failures and latency histogram; per replica address: requests in flight and
whether its table routes there) under its own gateway id, and applies the routes, the hold list and
the canary splits it gets back (Gateway.update). So its traffic counts in the autoscaler's load and in the
drain wait before a replica's SIGTERM, and a deployment scaled to zero holds requests while its
first replica starts, as in `cumulo up`'s own gateway. Against a control plane without the sync
route it falls back to GET /api/v1/gateway/routes (routes only).

With `--workers N` (N > 1) this process starts N worker processes that each bind the port with
SO_REUSEPORT (the kernel spreads connections over them), each syncing under its own id, and
restarts one that dies; SIGTERM/SIGINT stop them all.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

import uvicorn

from cumulo.core import settings
from cumulo.gateway.proxy import Gateway
from cumulo.gateway.routing import parse_routes, parse_splits
from cumulo.gateway.server import listen_socket, uvicorn_config

log = logging.getLogger("cumulo.gateway")

SYNC_PATH = "/api/v1/gateway/sync"
ROUTES_PATH = "/api/v1/gateway/routes"
#: answers that mean "this control plane predates the sync route"
_NO_SYNC = {404, 405, 501}

Address = tuple[str, int]


def new_gateway_id() -> str:
    host = re.sub(r"[^A-Za-z0-9.-]", "-", socket.gethostname())[:60] or "gateway"
    return f"{host}:{os.getpid()}:{secrets.token_hex(3)}"


class ControlPlaneSync:
    """Reports this gateway's counters and fetches routes + hold list every `period` seconds. Keeps
    the last good table while the control plane is unreachable (replicas keep serving)."""

    def __init__(self, gateway: Gateway, control_plane: str, period: float = 0.5,
                 gateway_id: str | None = None) -> None:
        self.gateway = gateway
        self.base = control_plane.rstrip("/")
        self.url = self.base + SYNC_PATH
        self.period = period
        self.gateway_id = gateway_id or new_gateway_id()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="cumulo-gateway-sync", daemon=True)
        self._last: dict | None = None
        self._failing = False
        self._legacy = False  # the control plane has no sync route: routes only
        self._draining: set[Address] = set()  # out of the table, requests still in flight there

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def report(self) -> dict:
        """What this gateway saw, for the control plane (read from this thread; the counters are
        updated on the serving loop, so a field may lag another by a request)."""
        table = self.gateway.routes()
        routed = {(ep.host, ep.port) for eps in table.values() for ep in eps}
        deployments = {}
        for name in table:
            st = self.gateway.stats(name)
            lat = st["latency_seconds"]
            deployments[name] = {"arrivals_total": st["arrivals_total"], "requests_total": st["requests_total"],
                                 "in_flight": max(0, st["in_flight"]), "latency_sum": lat["sum"],
                                 "latency_count": lat["count"], "in_flight_seconds": st["in_flight_seconds_total"]}
            gens = self.gateway.generation_stats(name)
            if gens:  # a canary rollout's per-generation counters (the control plane's analysis)
                deployments[name]["generations"] = {str(g): c for g, c in gens.items()}
        replicas = []
        for host, port in sorted(routed | self._draining):
            n = self.gateway.in_flight_to(host, port)
            replicas.append({"host": host, "port": port, "in_flight": n, "routed": (host, port) in routed})
            if (host, port) not in routed:
                if n:
                    self._draining.add((host, port))
                else:
                    self._draining.discard((host, port))
        return {"gateway_id": self.gateway_id, "deployments": deployments, "replicas": replicas}

    def sync_once(self) -> bool:
        # addresses leaving the table keep being reported while requests to them are in flight
        before = {(ep.host, ep.port) for eps in self.gateway.routes().values() for ep in eps}
        try:
            doc = self._exchange()
            routes = parse_routes(doc)
            splits = parse_splits(doc)
            hold = doc.get("hold", [])
            if not isinstance(hold, list) or not all(isinstance(h, str) for h in hold):
                raise ValueError("routes: 'hold' must be a list of deployment names")
            auth = doc.get("auth", {})
            if not isinstance(auth, dict) or not all(isinstance(v, dict) for v in auth.values()):
                raise ValueError("routes: 'auth' must map deployment names to {token digest: expiry}")
        except (OSError, urllib.error.URLError, ValueError) as exc:
            if not self._failing:
                hint = ""
                if isinstance(exc, urllib.error.HTTPError) and exc.code in (401, 403):
                    hint = ("; the gateway needs an admin token: set CUMULO_TOKEN (e.g. from "
                            "`cumulo token create gateway --role admin`) or run it beside $CUMULO_HOME/token")
                log.warning("cannot sync with %s (keeping the last table): %s%s", self.base, exc, hint)
            self._failing = True
            return False
        if self._failing:
            log.info("control plane %s reachable again", self.base)
        self._failing = False
        if doc != self._last:
            self.gateway.update(routes, hold, auth, splits)
            self._last = doc
            after = {(ep.host, ep.port) for eps in routes.values() for ep in eps}
            self._draining |= before - after
        return True

    def _exchange(self) -> dict:
        timeout = max(self.period * 4, 2.0)
        if not self._legacy:
            body = json.dumps(self.report()).encode()
            req = urllib.request.Request(self.url, data=body, method="POST",
                                         headers={"content-type": "application/json", **settings.auth_headers()})
            try:
                with urllib.request.urlopen(req, timeout=timeout) as resp:
                    return json.loads(resp.read())
            except urllib.error.HTTPError as exc:
                if exc.code not in _NO_SYNC:
                    raise
                log.warning("%s has no %s (an older control plane): reading routes only; this gateway's "
                            "traffic is not seen by its autoscaler", self.base, SYNC_PATH)
                self._legacy = True
        req = urllib.request.Request(self.base + ROUTES_PATH, headers=settings.auth_headers())
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return json.loads(resp.read())

    def _run(self) -> None:
        parent = os.getppid()
        while not self._stop.is_set():
            self.sync_once()
            self._stop.wait(self.period)
            if os.environ.get("CUMULO_GATEWAY_WORKER") and os.getppid() != parent:
                log.warning("the gateway's supervisor is gone; stopping this worker")
                os.kill(os.getpid(), signal.SIGTERM)
                return


# kept for callers of the route-only poller
RoutePoller = ControlPlaneSync


def serve_one(args: argparse.Namespace, reuse_port: bool) -> int:
    gw = Gateway(timeout=args.timeout)
    sync = ControlPlaneSync(gw, args.control_plane, args.poll)
    sync.sync_once()
    sync.start()
    log.info("cumulo gateway %s serving http://%s:%d/d/<deployment>/ (synced with %s)", sync.gateway_id,
             args.host, args.port, sync.base)
    server = uvicorn.Server(uvicorn_config(gw, host=args.host, port=args.port))
    try:
        server.run(sockets=[listen_socket(args.host, args.port, reuse_port=True)] if reuse_port else None)
    finally:
        sync.stop()
    return 0


def supervise(args: argparse.Namespace, argv: list[str]) -> int:
    """Run `args.workers` worker processes on one port; restart one that dies; stop all on a signal."""
    probe = listen_socket(args.host, args.port, reuse_port=True)  # fail here, once, if the port is taken
    probe.close()
    cmd = [sys.executable, "-m", "cumulo.gateway", *argv, "--worker"]
    env = {**os.environ, "CUMULO_GATEWAY_WORKER": "1"}
    stopping = threading.Event()

    def stop(signum, _frame) -> None:
        stopping.set()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    procs = [subprocess.Popen(cmd, env=env) for _ in range(args.workers)]
    log.info("cumulo gateway: %d workers on http://%s:%d (pids %s)", args.workers, args.host, args.port,
             " ".join(str(p.pid) for p in procs))
    try:
        while not stopping.is_set():
            for i, p in enumerate(procs):
                if p.poll() is not None and not stopping.is_set():
                    log.warning("gateway worker %d exited %s; starting another", p.pid, p.returncode)
                    time.sleep(1.0)
                    procs[i] = subprocess.Popen(cmd, env=env)
            stopping.wait(0.5)
    finally:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 10
        for p in procs:
            try:
                p.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                p.kill()
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    p = argparse.ArgumentParser(prog="cumulo gateway", description="Run the cumulo gateway alone.")
    p.add_argument("--port", type=int, default=8300)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--control-plane", default=os.environ.get("CUMULO_URL", "http://127.0.0.1:8200"))
    p.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for a replica's response")
    p.add_argument("--poll", type=float, default=0.5, help="seconds between syncs with the control plane")
    p.add_argument("--workers", type=int, default=1, help="processes sharing the port (SO_REUSEPORT)")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)  # one of --workers N
    args = p.parse_args(argv)
    logging.basicConfig(level=os.environ.get("CUMULO_LOG_LEVEL", "INFO"),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.workers < 1:
        p.error("--workers must be at least 1")
    if args.poll <= 0:
        p.error("--poll must be > 0")
    if args.worker:
        return serve_one(args, reuse_port=True)
    if args.workers == 1:
        return serve_one(args, reuse_port=False)
    if args.port == 0:
        p.error("--workers N needs a fixed --port (each worker binds it)")
    return supervise(args, [a for a in argv if a != "--worker"])


if __name__ == "__main__":
    sys.exit(main())
