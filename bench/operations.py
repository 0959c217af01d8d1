"""Automated operations, measured on a live control plane; prints one JSON object.

    python bench/operations.py [--parts faults,steady] [--steady-minutes 60] > result.json

Parts (each starts its own control plane, `python -m cumulo.app`, SQLite in a temporary home, with
the default 10 s sampling and alert intervals):

  faults   each injected fault once, with real processes, and how long cumulo took to act:
           stall     a job reporting every 0.5 s hangs (alive) at step 10; `progress_timeout: auto`:
                     seconds from its last report to the `Stalled` event, and to the retry running;
           nan       a job's loss goes NaN at step 10: seconds from that report to the
                     `LossNotFinite` event and to the job being Failed;
           slow      one of 3 replicas turns 10x slower under steady load: seconds to the
                     `ReplicaOutlier` event and to its replacement being ready; failed requests;
           (a bad canary's detection and failed share: bench/canary.py)
  steady   no fault: a deployment of 3 replicas under steady load and a training job reporting a
           noisy, falling loss every second, for --steady-minutes; every alert that fired and every
           self-repair action (stall, NaN, divergence, outlier, rollback) counts as a false alarm.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from datetime import datetime
from pathlib import Path

import httpx
import psutil

REPAIRS = {"Stalled", "LossNotFinite", "LossDiverged", "ReplicaOutlier", "RolledBack", "ReplicaNearOOM"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Plane:
    """A control plane of its own in a temporary home."""

    def __init__(self, **env: str) -> None:
        self.home = Path(tempfile.mkdtemp(prefix="cumulo-ops-"))
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {**os.environ, "CUMULO_HOME": str(self.home), **env}
        self.env.pop("CUMULO_TOKEN", None)
        log = open(self.home / "server.log", "wb")
        self.proc = subprocess.Popen([sys.executable, "-m", "cumulo.app", "--port", str(self.port)], env=self.env,
                                     stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                     start_new_session=True)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.url}/api/v1/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        self.http = httpx.Client(base_url=f"{self.url}/api/v1", timeout=30,
                                 headers={"authorization": f"Bearer {(self.home / 'token').read_text().strip()}"})

    def events(self, name: str | None = None) -> list[dict]:
        rows = self.http.get("/events", params={"limit": 10000}).json()
        return [e for e in rows if name is None or e["name"] == name]

    def first_event(self, name: str, reason: str, timeout: float) -> dict | None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            hit = [e for e in self.events(name) if e["reason"] == reason]
            if hit:
                return hit[0]
            time.sleep(0.5)
        return None

    def close(self) -> None:
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(30)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            os.killpg(self.proc.pid, signal.SIGKILL)
        # the replicas' and attempts' supervisors outlive the server (by design): stop every process
        # this plane started, found by its home in their command lines (by PID, nothing else)
        home = str(self.home)
        for p in psutil.process_iter(["pid", "cmdline"]):
            if p.info["pid"] != os.getpid() and any(home in part for part in p.info["cmdline"] or ()):
                try:
                    p.kill()
                except psutil.Error:
                    pass
        shutil.rmtree(self.home, ignore_errors=True)


def ts(iso: str) -> float:
    return datetime.fromisoformat(iso).timestamp()


TRAIN = textwrap.dedent("""
    import math, os, random, sys, time
    import cumulo
    fault, every = sys.argv[1], float(sys.argv[2])
    first = os.environ["CUMULO_ATTEMPT"] == "1"
    for step in range(1, 100000):
        loss = 1.0 / math.sqrt(step) * (1 + 0.1 * random.random())
        if fault == "nan" and step >= 10:
            loss = math.nan
        cumulo.report(step=step, loss=loss)
        if fault == "stall" and first and step == 10:
            time.sleep(3600)
        if fault != "steady" and step >= 20:
            break
        time.sleep(every)
""")


def job(plane: Plane, folder: Path, name: str, fault: str, every: float, **spec) -> None:
    script = folder / f"{name}.py"
    script.write_text(TRAIN)
    r = plane.http.post("/jobs", json={"name": name, "command": [sys.executable, str(script), fault, str(every)],
                                        "resources": {"cpu": 0.25, "memory": "256Mi"}, **spec})
    r.raise_for_status()


def last_report_time(plane: Plane, name: str, attempt: int = 1) -> float:
    pts = plane.http.get(f"/jobs/{name}/metrics", params={"metric": "loss"}).json()
    return max(ts(p["time"]) for p in pts if p["attempt"] == attempt)


def fault_stall(folder: Path) -> dict:
    plane = Plane()
    try:
        job(plane, folder, "hangs", "stall", 0.5, max_retries=1)
        ev = plane.first_event("hangs", "Stalled", timeout=120)
        if ev is None:
            return {"detected": False}
        last = last_report_time(plane, "hangs")
        running = None
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and running is None:
            j = plane.http.get("/jobs/hangs").json()
            a2 = [a for a in j["attempt_list"] if a["number"] == 2 and a.get("started_at")]
            running = ts(a2[0]["started_at"]) if a2 else None
            time.sleep(0.5)
        return {"detected": True, "progress_timeout_s": 30.0, "detection_s": round(ts(ev["time"]) - last, 2),
                "to_retry_running_s": round(running - last, 2) if running else None, "evidence": ev["message"]}
    finally:
        plane.close()


def fault_nan(folder: Path) -> dict:
    plane = Plane()
    try:
        job(plane, folder, "nan", "nan", 0.5, max_retries=3)
        ev = plane.first_event("nan", "LossNotFinite", timeout=60)
        if ev is None:
            return {"detected": False}
        pts = plane.http.get("/jobs/nan/metrics", params={"metric": "loss"}).json()
        nan_at = min(ts(p["time"]) for p in pts if p["values"]["loss"] == "NaN")
        failed = plane.first_event("nan", "Failed", timeout=60)
        return {"detected": True, "detection_s": round(ts(ev["time"]) - nan_at, 2),
                "to_failed_s": round(ts(failed["time"]) - nan_at, 2) if failed else None,
                "reason": plane.http.get("/jobs/nan").json()["reason"]}
    finally:
        plane.close()


SERVER = textwrap.dedent("""
    import http.server, os, time
    PORT = int(os.environ["PORT"])
    DELAY = float(os.environ.get("DELAY", "0.02"))
    MARK = os.environ.get("SLOW_MARK", "")
    class H(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            if self.path != "/healthz":
                slow = MARK and os.path.exists(f"{MARK}.{PORT}")
                time.sleep(DELAY * (10 if slow else 1))
            self.send_response(200); self.send_header("content-length", "2"); self.end_headers()
            self.wfile.write(b"ok")
        def log_message(self, *a): pass
    class S(http.server.ThreadingHTTPServer):
        request_queue_size = 1024
    S(("127.0.0.1", PORT), H).serve_forever()
""")


class Load:
    """`rate` requests per second, spread over a few threads, until stopped."""

    def __init__(self, url: str, rate: float, threads: int = 8) -> None:
        self.url, self.rate = url, rate
        self.ok = self.failed = 0
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._run, args=(threads,), daemon=True) for _ in range(threads)]

    def _run(self, n: int) -> None:
        rnd = random.Random()
        with httpx.Client(timeout=30) as c:
            while not self._stop.is_set():
                time.sleep(rnd.expovariate(self.rate / n))
                try:
                    good = c.get(self.url).status_code == 200
                except httpx.HTTPError:
                    good = False
                with self._lock:
                    self.ok += good
                    self.failed += not good

    def __enter__(self) -> "Load":
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(30)


def deploy(plane: Plane, folder: Path, name: str, replicas: int = 3, **extra) -> None:
    script = folder / "server.py"
    script.write_text(SERVER)
    spec = {"kind": "Deployment", "name": name, "replicas": replicas,
            "command": [sys.executable, str(script)], "workdir": str(folder), "env": {"SLOW_MARK": str(folder / "slow")},
            "resources": {"cpu": 0.25, "memory": "128Mi"},
            "health": {"path": "/healthz", "period": "1s"}, **extra}
    r = plane.http.post("/deployments", json=spec)
    if r.status_code >= 300:
        raise RuntimeError(f"deploy {name}: {r.status_code} {r.text}")
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        d = plane.http.get(f"/deployments/{name}").json()
        if d.get("ready", 0) >= replicas:
            return
        time.sleep(0.5)
    raise RuntimeError(f"deployment {name} not ready")


def fault_slow(folder: Path) -> dict:
    plane = Plane()
    try:
        deploy(plane, folder, "web")
        victim = plane.http.get("/deployments/web").json()["replicas"][1]
        with Load(f"{plane.url}/d/web/", rate=60) as load:
            time.sleep(10)
            start = time.time()
            (folder / f"slow.{victim['port']}").touch()
            ev = plane.first_event("web", "ReplicaOutlier", timeout=120)
            replaced = None
            deadline = time.monotonic() + 120
            while ev is not None and replaced is None and time.monotonic() < deadline:
                d = plane.http.get("/deployments/web").json()
                if d["ready"] == 3 and all(r["id"] != victim["id"] for r in d["replicas"]):
                    replaced = time.time()
                time.sleep(0.5)
            time.sleep(5)
        return {"detected": ev is not None, "detection_s": round(ts(ev["time"]) - start, 2) if ev else None,
                "replaced_s": round(replaced - start, 2) if replaced else None,
                "requests_ok": load.ok, "requests_failed": load.failed, "evidence": ev["message"] if ev else None}
    finally:
        plane.close()


def steady(folder: Path, minutes: float) -> dict:
    plane = Plane()
    try:
        deploy(plane, folder, "web")
        job(plane, folder, "train", "steady", 1.0)
        start = time.time()
        with Load(f"{plane.url}/d/web/", rate=20) as load:
            time.sleep(minutes * 60)
        alerts = plane.http.get("/alerts", params={"state": ["firing", "resolved", "pending"]}).json()
        fired = [a for a in alerts if a["state"] != "pending" and ts(a["started_at"]) >= start]
        repairs = [e for e in plane.events() if e["reason"] in REPAIRS and ts(e["time"]) >= start]
        hours = minutes / 60
        return {"minutes": minutes, "requests_ok": load.ok, "requests_failed": load.failed,
                "alerts_fired": len(fired), "alerts": [f"{a['rule']} on {a['object']}: {a['summary']}" for a in fired],
                "repairs": [f"{e['reason']} {e['name']}: {e['message']}" for e in repairs],
                "false_alarms_per_hour": round((len(fired) + len(repairs)) / hours, 2)}
    finally:
        plane.close()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--parts", default="faults,steady")
    ap.add_argument("--faults", default="stall,nan,slow")
    ap.add_argument("--steady-minutes", type=float, default=60.0)
    args = ap.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="cumulo-ops-bench-"))
    out: dict = {"machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                             "python": platform.python_version()},
                 "when": datetime.now().isoformat(timespec="seconds")}
    parts = args.parts.split(",")
    if "faults" in parts:
        runs = {"stall": fault_stall, "nan": fault_nan, "slow": fault_slow}
        out["faults"] = {name: runs[name](folder) for name in args.faults.split(",") if name in runs}
    if "steady" in parts:
        out["steady"] = steady(folder, args.steady_minutes)
    shutil.rmtree(folder, ignore_errors=True)
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
