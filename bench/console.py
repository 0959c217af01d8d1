"""Benchmark the web console on this machine; prints one JSON object.

    python bench/console.py [--jobs 1000] [--deployments 100] [--seconds 30] [-n 20] > result.json

Seeds a fresh store with N finished jobs (each with an attempt, 4 events and 40 reported metric
points), a few Pending ones that never fit, and M deployments (scaled to 0, each with 2 ended
replicas), then starts `cumulo up` on it and measures, signed in with the admin token:

- server time (the console's Server-Timing header: reads + render) and client-observed time of
  `/`, `/jobs`, a job's page, `/deployments`, and of the htmx poll of each (the `#live` block);
- bytes of each page, raw and gzip-compressed, and of everything a first visit loads (the page plus
  the vendored htmx, uPlot and the console's CSS/JS, which the browser then caches);
- the control plane's CPU per open live page: the CPU time it spends on each request a live page
  makes (the `#live` poll every 2 s; a job page also reads its log each second and its charts
  every 2 s while the job runs), measured over back-to-back requests less the idle baseline,
  times how often the page makes it.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import psutil

STATIC = ["/static/vendor/htmx-2.0.11.min.js", "/static/vendor/uPlot-1.6.32.iife.min.js",
          "/static/vendor/uPlot-1.6.32.min.css", "/static/console.css", "/static/console.js", "/static/favicon.svg"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def seed(url: str, home: Path, jobs: int, deployments: int) -> str:
    """Write the store directly (faster than the API for thousands of rows); returns a job name."""
    from cumulo.core.specs import DeploymentSpec, JobSpec
    from cumulo.store.db import Database
    from cumulo.store.migrate import upgrade
    from cumulo.store.models import Attempt, Deployment, Event, Job, Metric, Replica

    db = Database(url)
    upgrade(db.engine)
    now = datetime.now(UTC)
    work = home / "work"
    work.mkdir(parents=True, exist_ok=True)
    states = ["Succeeded"] * 8 + ["Failed", "Cancelled"]
    with db.tx() as s:
        for i in range(jobs):
            name = f"train-{i:04d}"
            pending = i >= jobs - 5
            spec = JobSpec(name=name, command="python train.py --epochs 20", workdir=str(work),
                           resources={"cpu": 500 if pending else 1, "memory": "1Gi"}).model_dump(mode="json")
            t = now - timedelta(minutes=(jobs - i) * 3)
            jid = uuid.uuid4().hex[:16]
            state = "Pending" if pending else states[i % len(states)]
            s.add(Job(id=jid, name=name, workspace="default", created_at=t, spec=spec, cancel_requested=False,
                      artifacts_dir=str(home / "jobs" / jid / "artifacts"), state=state,
                      reason="waiting for capacity" if pending else f"attempt 1 {state.lower()}",
                      attempts=0 if pending else 1, exit_code=None if pending else (0 if state == "Succeeded" else 1),
                      started_at=None if pending else t + timedelta(seconds=2),
                      finished_at=None if pending else t + timedelta(minutes=2)))
            s.flush()  # the job row before the rows that reference it
            s.add(Event(workspace="default", time=t, kind="Job", name=name, object_id=jid, type="Normal",
                        reason="Submitted", message="job submitted", actor="admin"))
            if pending:
                continue
            s.add(Attempt(job_id=jid, number=1, state=state, created_at=t, started_at=t + timedelta(seconds=2),
                          finished_at=t + timedelta(minutes=2), exit_code=0 if state == "Succeeded" else 1,
                          reason=f"exit code {0 if state == 'Succeeded' else 1}", runtime="local", cluster="local",
                          handle={"logs": [str(home / "jobs" / jid / "rank-0.log")]},
                          allocation={"cpu": 1, "memory": 1 << 30, "worker_gpus": [[]]}, workers=[]))
            for reason in ("Starting", "Running", state):
                s.add(Event(workspace="default", time=t + timedelta(seconds=2), kind="Job", name=name, object_id=jid,
                            type="Normal" if state != "Failed" else "Warning", reason=reason, message=f"attempt 1 {reason.lower()}"))
            for step in range(20):
                for metric, value in (("loss", 2.0 / (step + 1)), ("accuracy", step / 20)):
                    s.add(Metric(job_id=jid, attempt=1, step=step, time=t + timedelta(seconds=6 * step), name=metric,
                                 value=value))
        for i in range(deployments):
            name = f"svc-{i:03d}"
            did = uuid.uuid4().hex[:16]
            spec = DeploymentSpec(name=name, command="python -m http.server $PORT", workdir=str(work),
                                  replicas=0).model_dump(mode="json")
            s.add(Deployment(id=did, name=name, workspace="default", created_at=now, updated_at=now, spec=spec,
                             generation=1, deleting=False, workdir=str(work), state="Available", reason="0/0 ready",
                             failures=0, last_failure="", next_ordinal=3))
            s.flush()
            for o in (1, 2):
                s.add(Replica(deployment_id=did, ordinal=o, generation=1, state="Stopped", created_at=now,
                              finished_at=now, host="127.0.0.1", port=10000 + o, runtime="local", cluster="local",
                              handle={"logs": [str(work / "none.log")]}, allocation={}, reason="scaled down"))
            s.add(Event(workspace="default", time=now, kind="Deployment", name=name, object_id=did, type="Normal",
                        reason="Scaled", message="replicas 2 -> 0", actor="admin"))
    db.dispose()
    return f"train-{jobs - 10:04d}"


def start(home: Path, url: str) -> tuple[subprocess.Popen, str]:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen([sys.executable, "-m", "cumulo.app", "--port", str(port), "--home", str(home), "--db", url],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env={**os.environ, "CUMULO_LOG_LEVEL": "WARNING"})
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if httpx.get(base + "/api/v1/health", timeout=0.5).status_code == 200:
                return proc, base
        except httpx.HTTPError:
            time.sleep(0.05)
    raise SystemExit("control plane did not start")


def measure(c: httpx.Client, path: str, n: int, live: bool = False) -> dict:
    headers = {"hx-request": "true", "hx-target": "live"} if live else {}
    server, client, size = [], [], 0
    c.get(path, headers=headers)  # warm
    for _ in range(n):
        t0 = time.perf_counter()
        r = c.get(path, headers=headers)
        client.append(time.perf_counter() - t0)
        assert r.status_code == 200, (path, r.status_code)
        server.append(float(r.headers["server-timing"].split("dur=")[1]) / 1000)
        size = len(r.content)
        body = r.content
    return {"server_ms_p50": round(statistics.median(server) * 1000, 1), "server_ms_max": round(max(server) * 1000, 1),
            "client_ms_p50": round(statistics.median(client) * 1000, 1), "bytes": size,
            "gzip_bytes": len(gzip.compress(body)), "n": n}


def cpu_seconds(proc: psutil.Process) -> float:
    t = proc.cpu_times()
    return t.user + t.system


def idle_rate(proc: psutil.Process, seconds: float) -> float:
    """The control plane's own CPU (s per s) with no page open: its reconcile loops."""
    c0, t0 = cpu_seconds(proc), time.monotonic()
    time.sleep(seconds)
    return (cpu_seconds(proc) - c0) / (time.monotonic() - t0)


def cpu_per_request(c: httpx.Client, proc: psutil.Process, path: str, headers: dict, seconds: float,
                    idle: float) -> tuple[float, float]:
    """CPU seconds the control plane spends on one such request, as (gross, net): its CPU over
    `seconds` of back-to-back requests divided by their number (an upper bound: the reconcilers'
    own work is in it), and the same less the idle rate over that time (a lower bound: with the
    GIL, reconcilers get less done while requests run back to back). Windows of 30 s or more
    average over the reconcilers' own 10 s and 30 s cycles."""
    c.get(path, headers=headers)
    c0, t0, n = cpu_seconds(proc), time.monotonic(), 0
    while time.monotonic() - t0 < seconds:
        assert c.get(path, headers=headers).status_code == 200
        n += 1
    used, elapsed = cpu_seconds(proc) - c0, time.monotonic() - t0
    return used / n, max(0.0, used - idle * elapsed) / n


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--jobs", type=int, default=1000)
    ap.add_argument("--deployments", type=int, default=100)
    ap.add_argument("--seconds", type=float, default=30, help="window of each CPU measure (the idle baseline: twice)")
    ap.add_argument("-n", type=int, default=20, help="requests per timing")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp) / "home"
        url = f"sqlite:///{Path(tmp) / 'cumulo.db'}"
        t0 = time.perf_counter()
        job = seed(url, home, args.jobs, args.deployments)
        seeded = time.perf_counter() - t0
        proc, base = start(home, url)
        try:
            token = (home / "token").read_text().strip()
            with httpx.Client(base_url=base, timeout=60) as c:
                assert c.post("/login", data={"token": token, "next": "/"}).status_code == 303
                cookie = dict(c.cookies)
                time.sleep(5)  # let the first reconcile passes and the cost pass settle
                pages = {p: {"page": measure(c, p, args.n), "live_poll": measure(c, p, args.n, live=True)}
                         for p in ("/", "/jobs", f"/jobs/{job}", "/deployments")}
                pages["/jobs?limit=1000"] = {"page": measure(c, "/jobs?limit=1000", max(3, args.n // 4))}  # "show all"
                assets = sum(len(c.get(s).content) for s in STATIC)
                for p in pages.values():
                    p["first_visit_bytes_with_assets"] = p["page"]["bytes"] + assets
                cp = psutil.Process(proc.pid)
                idle = idle_rate(cp, 2 * args.seconds)
                hx = {"hx-request": "true", "hx-target": "live"}
                js = {"accept": "application/json"}
                # what one open, live page asks for: (path, headers, seconds between requests)
                open_pages = {
                    "overview": [("/", hx, 2.0)],
                    "jobs": [("/jobs", hx, 2.0)],
                    "job_running": [(f"/jobs/{job}", hx, 2.0), (f"/jobs/{job}/logs?rank=0&offset=0", js, 1.0),
                                    (f"/jobs/{job}/charts", js, 2.0)],
                    "deployments": [("/deployments", hx, 2.0)],
                }
                cpu = {"idle_percent": round(idle * 100, 2)}
                for label, polls in open_pages.items():
                    per = {p: cpu_per_request(c, cp, p, h, args.seconds, idle) for p, h, _ in polls}
                    cpu[label] = {
                        "cpu_ms_per_request_gross_net": {p: [round(g * 1000, 1), round(n * 1000, 1)] for p, (g, n) in per.items()},
                        "percent_of_a_core_per_open_page_gross_net": [
                            round(sum(per[p][i] / every for p, _, every in polls) * 100, 2) for i in (0, 1)]}
        finally:
            proc.terminate()
            proc.wait(30)
    print(json.dumps({
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform(),
                    "load_avg_at_end": [round(x, 2) for x in os.getloadavg()]},
        "store": {"jobs": args.jobs, "deployments": args.deployments, "seed_seconds": round(seeded, 1),
                  "database": "sqlite"},
        "pages": pages, "static_asset_bytes": assets, "cpu": cpu,
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
    }, indent=2))


if __name__ == "__main__":
    main()
