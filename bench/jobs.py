"""Benchmark the control plane on this machine; prints one JSON object.

    python bench/jobs.py [--jobs 1000] [--db URL] > result.json

Measures: `cumulo up` time to ready on a fresh home (migrations included); idle CPU and RSS;
cheap API call latency; submit latency and launch throughput for N trivial jobs; submit-to-start
for one job on an idle system; wall time of `cumulo job list` from the shell.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

import httpx
import psutil


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q / 100 * (len(values) - 1))))]


def ms(values: list[float]) -> dict:
    return {"p50_ms": round(pct(values, 50) * 1000, 2), "p99_ms": round(pct(values, 99) * 1000, 2),
            "n": len(values)}


def start_server(home: Path, db: str | None):
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    args = [sys.executable, "-m", "cumulo.app", "--port", str(port), "--home", str(home)]
    if db:
        args += ["--db", db]
    t0 = time.perf_counter()
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env={**os.environ, "CUMULO_LOG_LEVEL": "WARNING"})
    while True:
        try:
            if httpx.get(url + "/api/v1/health", timeout=0.5).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.01)
        if proc.poll() is not None:
            raise SystemExit("server exited")
    return proc, url, time.perf_counter() - t0


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--jobs", type=int, default=1000)
    p.add_argument("--db", default=None, help="database URL (default: SQLite in a temporary home)")
    args = p.parse_args()
    out: dict = {
        "machine": {"cpus": psutil.cpu_count(), "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
                    "python": platform.python_version(), "platform": platform.platform()},
        "database": "postgresql" if args.db else "sqlite",
        "when": datetime.now().isoformat(timespec="seconds"),
    }

    # 1. time to ready on a fresh home (new database, migrations applied), 5 tries
    readies = []
    for _ in range(5):
        with tempfile.TemporaryDirectory() as tmp:
            proc, _url, ready = start_server(Path(tmp), None)  # fresh SQLite home, as a new user gets
            readies.append(ready)
            proc.terminate()
            proc.wait()
    out["up_ready_s"] = {"p50": round(statistics.median(readies), 3), "max": round(max(readies), 3)}

    home = Path(tempfile.mkdtemp())
    proc, url, _ = start_server(home, args.db)
    ps = psutil.Process(proc.pid)
    try:
        # the admin token its first start wrote (a PostgreSQL database that already had tokens: CUMULO_TOKEN)
        token = os.environ.get("CUMULO_TOKEN") or (home / "token").read_text().strip()
        http = httpx.Client(base_url=url + "/api/v1", timeout=30, headers={"authorization": f"Bearer {token}"})
        # 2. idle CPU and memory over 10 s
        time.sleep(2)
        c0 = sum(ps.cpu_times()[:2])
        time.sleep(10)
        out["idle"] = {"cpu_percent_of_one_core": round((sum(ps.cpu_times()[:2]) - c0) / 10 * 100, 2),
                       "rss_mib": round(ps.memory_info().rss / 2**20, 1)}

        # 3. cheap API calls (keep-alive)
        lat = []
        for _ in range(500):
            t = time.perf_counter()
            http.get("/health").raise_for_status()
            lat.append(time.perf_counter() - t)
        out["api_health"] = ms(lat)

        # 4. submit-to-start on an idle system: the job writes the time its process started
        marks = home / "marks"
        marks.mkdir()
        s2s = []
        for i in range(20):
            mark = marks / f"{i}"
            t = time.time()
            http.post("/jobs", json={"name": f"s2s-{i}", "command": f"date +%s.%N > {mark}",
                                     "resources": {"cpu": 0.01, "memory": "1Mi"}}).raise_for_status()
            while not (mark.exists() and mark.read_text().strip()):
                time.sleep(0.002)
            s2s.append(float(mark.read_text()) - t)
            time.sleep(0.2)
        out["submit_to_process_start"] = ms(s2s)
        lat = []
        for _ in range(200):
            t = time.perf_counter()
            http.get("/jobs/s2s-0").raise_for_status()
            lat.append(time.perf_counter() - t)
        out["api_get_job"] = ms(lat)

        # 5. N trivial jobs submitted back to back
        sub = []
        server_cpu0 = ps.cpu_times()
        machine_cpu0 = psutil.cpu_times()
        t_first = time.time()
        for i in range(args.jobs):
            t = time.perf_counter()
            http.post("/jobs", json={"name": f"t-{i}", "command": ["true"],
                                     "resources": {"cpu": 0.001, "memory": "1Mi"}}).raise_for_status()
            sub.append(time.perf_counter() - t)
        t_submitted = time.time()
        while True:
            jobs = http.get("/jobs", params={"state": ["Pending", "Starting", "Running"], "limit": 10000}).json()
            if not jobs:
                break
            time.sleep(0.5)
        t_done = time.time()
        sc = ps.cpu_times()
        server_cpu = (sc.user + sc.system) - (server_cpu0.user + server_cpu0.system)
        # supervisors (and the jobs they wait for) are the server's children once reaped
        children_cpu = (sc.children_user + sc.children_system) - (server_cpu0.children_user + server_cpu0.children_system)
        m1 = psutil.cpu_times()
        machine_busy = (m1.user + m1.system) - (machine_cpu0.user + machine_cpu0.system)
        starts = []
        for i in range(0, args.jobs, max(1, args.jobs // 200)):
            j = http.get(f"/jobs/t-{i}").json()
            starts.append(datetime.fromisoformat(j["attempt_list"][0]["created_at"]).timestamp())
        states = {}
        for j in http.get("/jobs", params={"limit": 10000}).json():
            states[j["state"]] = states.get(j["state"], 0) + 1
        out["submit_many"] = {
            "jobs": args.jobs,
            "submit_latency": ms(sub),
            "submit_rate_per_s": round(args.jobs / (t_submitted - t_first), 1),
            "all_finished_s": round(t_done - t_first, 2),
            "jobs_started_per_s": round(args.jobs / (t_done - t_first), 1),
            "launch_span_s": round(max(starts) - min(starts), 2),
            "final_states": states,
            # where the CPU went while the jobs ran (2 cores = 2 CPU-seconds per second)
            "server_cpu_s": round(server_cpu, 1),
            "supervisors_and_jobs_cpu_s": round(children_cpu, 1),
            "machine_cpu_s": round(machine_busy, 1),
            "machine_cpu_s_per_job": round(machine_busy / args.jobs, 4),
        }

        # 6. `cumulo job list` wall time from the shell, with ~N jobs present
        env = {**os.environ, "CUMULO_URL": url, "CUMULO_TOKEN": token, "COLUMNS": "160"}
        for label, extra in (("table", []), ("json", ["--json"])):
            walls = []
            for _ in range(5):
                t = time.perf_counter()
                subprocess.run([sys.executable, "-m", "cumulo.cli.main", "job", "list", *extra], env=env,
                               stdout=subprocess.DEVNULL, check=True)
                walls.append(time.perf_counter() - t)
            out[f"cli_job_list_{label}_s"] = {"p50": round(statistics.median(walls), 3), "jobs": args.jobs + 20}
        walls = []
        for _ in range(5):
            t = time.perf_counter()
            subprocess.run([sys.executable, "-m", "cumulo.cli.main", "job", "status", "s2s-0"], env=env,
                           stdout=subprocess.DEVNULL, check=True)
            walls.append(time.perf_counter() - t)
        out["cli_job_status_s"] = {"p50": round(statistics.median(walls), 3)}
        out["rss_after_mib"] = round(ps.memory_info().rss / 2**20, 1)
    finally:
        proc.terminate()
        proc.wait()
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
