"""How long a machine launched for a Ray cluster takes to be Ready, and whose time it is; prints JSON.

    bash .ci/ray.sh
    python bench/local_vm_join.py [--ray http://127.0.0.2:8265] [--join 127.0.0.2:6390] [--rounds 5]

Each round asks a real control plane (`python -m cumulo.app`, temporary home) for one local-vm
machine joined to the Ray cluster (POST /resources with `cluster`, what `cumulo resources create
--cluster` calls), and splits the time from just before that call to the node being Ready:

  launch   cumulo: the API call, the node reconciler's placement and the provider's launch, to the
           machine's record (`launched_at` in its machine.json, written just before its process starts)
  engine   the machine's own start: the bootstrap's version check and `ray start` until Ray's state
           API lists the node alive (polled every 50 ms; Ray's own `start_time_ms` is reported too)
  detect   cumulo again: from Ray listing the node to cumulo calling it Ready (the cluster sync reads
           a joining cluster every second)

then releases the machine and times until Ray no longer lists it alive.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

import httpx


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait(pred, timeout: float, what: str, poll: float = 0.05):
    deadline = time.monotonic() + timeout
    while True:
        got = pred()
        if got:
            return got
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(poll)


def ray_node(ray: httpx.Client, node_id: str) -> dict | None:
    rows = ray.get("/api/v0/nodes", params={"limit": 10000, "detail": "true"}).json()["data"]["result"]["result"]
    mine = [n for n in rows if n.get("state") == "ALIVE" and (n.get("labels") or {}).get("cumulo.io/node-id") == node_id]
    return mine[0] if mine else None


def summary(values: list[float]) -> dict:
    return {"median_s": round(statistics.median(values), 3), "min_s": round(min(values), 3),
            "max_s": round(max(values), 3), "n": len(values)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--ray", default=os.environ.get("CUMULO_TEST_RAY_ADDRESS", "http://127.0.0.2:8265"))
    ap.add_argument("--join", default="127.0.0.2:6390")
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    home = Path(tempfile.mkdtemp(prefix="cumulo-bench-join-"))
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen([sys.executable, "-m", "cumulo.app", "--port", str(port), "--home", str(home)],
                            stdout=subprocess.DEVNULL, stderr=open(home / "server.log", "wb"),
                            env={**os.environ, "CUMULO_LOG_LEVEL": "WARNING"})
    ray = httpx.Client(base_url=args.ray.rstrip("/"), timeout=10, trust_env=False)
    rounds = []
    load_before = os.getloadavg()
    try:
        wait(lambda: proc.poll() is None and _healthy(url), 60, "the control plane", poll=0.1)
        token = (home / "token").read_text().strip()
        api = httpx.Client(base_url=url + "/api/v1", timeout=60, headers={"authorization": f"Bearer {token}"})
        api.post("/clusters", json={"name": "ray", "kind": "ray", "address": args.ray, "join": args.join,
                                    "artifacts": str(home / "ray-artifacts")}).raise_for_status()
        wait(lambda: api.get("/clusters/ray").json()["state"] == "Ready", 60, "the cluster", poll=0.2)
        for _ in range(args.rounds):
            t0 = time.time()
            pool = api.post("/resources", json={"nodes": [{"cpu": 1}], "providers": ["local-vm"],
                                                "cluster": "ray"}).json()
            node = pool["nodes"][0]["id"]
            seen = wait(lambda: ray_node(ray, node), 180, "the machine in Ray")
            t_alive = time.time()
            detail = wait(lambda: (n := api.get(f"/pools/{pool['id']}").json()["nodes"][0])["state"] == "Ready" and n,
                          60, "Ready")
            t_ready = time.time()
            record = json.loads((home / "providers" / "local-vm" / detail["machine_id"] / "machine.json").read_text())
            t_launched = datetime.fromisoformat(record["launched_at"]).timestamp()
            api.post("/resources/release", json={"ids": [node]}).raise_for_status()
            t_release = time.time()
            wait(lambda: ray_node(ray, node) is None, 60, "the machine gone from Ray")
            t_gone = time.time()
            rounds.append({
                "launch_s": round(t_launched - t0, 3), "engine_s": round(t_alive - t_launched, 3),
                "engine_ray_start_time_s": round(seen["start_time_ms"] / 1000 - t_launched, 3),
                "detect_s": round(t_ready - t_alive, 3), "total_s": round(t_ready - t0, 3),
                "release_to_gone_from_ray_s": round(t_gone - t_release, 3),
            })
            wait(lambda: api.get(f"/pools/{pool['id']}").json()["nodes"][0]["state"] == "Terminated", 60, "terminated")
    finally:
        proc.terminate()
        proc.wait(30)
        sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
        from tests.helpers import kill_machines  # noqa: PLC0415 (the machines, by PID)

        kill_machines(home)
        shutil.rmtree(home, ignore_errors=True)
    keys = ["launch_s", "engine_s", "detect_s", "total_s", "release_to_gone_from_ray_s"]
    print(json.dumps({
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
        "load_avg_before": [round(x, 2) for x in load_before], "load_avg_after": [round(x, 2) for x in os.getloadavg()],
        "rounds": rounds, "summary": {k: summary([r[k] for r in rounds]) for k in keys},
        "cumulo_share_median_s": round(statistics.median(r["launch_s"] + r["detect_s"] for r in rounds), 3),
    }, indent=2))


def _healthy(url: str) -> bool:
    try:
        return httpx.get(url + "/api/v1/health", timeout=0.5).status_code == 200
    except httpx.HTTPError:
        return False


if __name__ == "__main__":
    main()
