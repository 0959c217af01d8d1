"""Cost of monitoring: the sampler's CPU with 100 replicas and 50 running jobs, and the bytes one
series costs per day in the database. Prints one JSON object.

    python bench/monitor.py [--parts cpu,bytes] [--replicas 100] [--jobs 50] [--samples 30]
                            [--postgres URL] > result.json

cpu    the control plane's real sampler (built by cumulo.app.build, as `cumulo up` builds it, with
       its gateway counters) over a SQLite database holding 50 running job attempts and 100 ready
       replicas (10 deployments x 10), each a real process on this machine (`sleep`: the sampler
       reads processes from /proc and request metrics from the gateway's counters; it makes no HTTP
       call to a replica), and 200 cumulo.report() points per job. It takes `--samples` samples one
       second apart; the CPU time of each (thread time: the /proc pass, the reads and writes in
       SQLite, the rollup) is what one 10 s interval costs, so % of one core = CPU per sample / 10 s.
bytes  one day of samples every 10 s for 100 series written through store/metrics.py, rolled up
       by the minute; bytes of each table (SQLite: dbstat; PostgreSQL with --postgres:
       pg_total_relation_size) divided by series: raw bytes per series per day, rollup bytes per
       series per day (kept 30 days by default).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import create_engine, text

from cumulo.app import ServerConfig, build
from cumulo.control.nodes import register_local_node
from cumulo.runtimes.local.procs import start_time
from cumulo.store import metrics as m
from cumulo.store.db import Database
from cumulo.store.migrate import upgrade
from cumulo.store.models import Attempt, Deployment, Job, Metric, Replica


def _spawn(n: int) -> list[subprocess.Popen]:
    return [subprocess.Popen(["sleep", "3600"]) for _ in range(n)]


def _seed(db: Database, home: Path, jobs: list[subprocess.Popen], replicas: list[subprocess.Popen],
          per_deployment: int) -> None:
    now = datetime.now(UTC)
    with db.tx() as s:
        for i, proc in enumerate(jobs):
            job_id = uuid.uuid4().hex[:16]
            run = home / "jobs" / job_id / "attempt-1"
            run.mkdir(parents=True)
            (run / "workers.json").write_text(json.dumps([{"rank": 0, "pid": proc.pid, "start": start_time(proc.pid)}]))
            s.add(Job(id=job_id, name=f"job-{i}", workspace="default", created_at=now, spec={"kind": "Job", "name": f"job-{i}", "command": "sleep 3600"},
                      cancel_requested=False, artifacts_dir=str(run), state="Running", reason="", attempts=1, started_at=now))
            s.flush()
            s.add(Attempt(job_id=job_id, number=1, state="Running", created_at=now, started_at=now, runtime="local",
                          cluster="local", handle={"dir": str(run)}, allocation={}, workers=[]))
            t0 = time.time() - 200
            for step in range(200):
                t = datetime.fromtimestamp(t0 + step, UTC)
                s.add(Metric(job_id=job_id, attempt=1, step=step, time=t, name="loss", value=1.0 / (step + 1)))
                s.add(Metric(job_id=job_id, attempt=1, step=step, time=t, name="total_steps", value=10000.0))
        deployments = (len(replicas) + per_deployment - 1) // per_deployment
        for d in range(deployments):
            dep_id = uuid.uuid4().hex[:16]
            s.add(Deployment(id=dep_id, name=f"svc-{d}", workspace="default", created_at=now, updated_at=now,
                             spec={"kind": "Deployment", "name": f"svc-{d}", "command": "sleep 3600"},
                             generation=1, deleting=False, workdir=str(home), state="Available"))
            s.flush()
            for r, proc in enumerate(replicas[d * per_deployment:(d + 1) * per_deployment]):
                run = home / "deployments" / dep_id / f"replica-{r + 1}"
                run.mkdir(parents=True)
                (run / "workers.json").write_text(json.dumps([{"rank": 0, "pid": proc.pid, "start": start_time(proc.pid)}]))
                s.add(Replica(deployment_id=dep_id, ordinal=r + 1, generation=1, state="Ready", created_at=now,
                              ready_at=now, host="127.0.0.1", port=20000 + d * per_deployment + r, runtime="local",
                              cluster="local", handle={"dir": str(run)}, allocation={}))


def part_cpu(args: argparse.Namespace) -> dict:
    home = Path(tempfile.mkdtemp(prefix="cumulo-bench-monitor-"))
    plane = build(ServerConfig(home=home, database_url=f"sqlite:///{home / 'cumulo.db'}"))
    register_local_node(plane.db, plane.runtime, datetime.now(UTC))
    sampler = plane.app.state.monitor.sampler
    procs = _spawn(args.jobs + args.replicas)
    try:
        _seed(plane.db, home, procs[:args.jobs], procs[args.jobs:], per_deployment=10)
        for _ in range(3):  # warm up: series rows created, caches filled
            sampler.sample()
            time.sleep(1)
        per_sample, series = [], 0
        for _ in range(args.samples):
            before = sampler.seconds_spent
            values = sampler.sample()
            per_sample.append(sampler.seconds_spent - before)
            series = len(values)
            time.sleep(1)
        with open("/proc/loadavg") as f:
            load = f.read().split()[:3]
    finally:
        for p in procs:
            p.kill()
            p.wait()
        plane.stop()
    mean = statistics.mean(per_sample)
    return {
        "jobs": args.jobs, "replicas": args.replicas, "series_per_sample": series, "samples": len(per_sample),
        "cpu_seconds_per_sample": {"mean": round(mean, 5), "median": round(statistics.median(per_sample), 5),
                                   "max": round(max(per_sample), 5)},
        "percent_of_one_core_at_10s": round(mean / 10 * 100, 3),
        "load_average": load,
    }


def _sizes(db: Database) -> dict[str, int]:
    """Bytes of each monitoring table (with its indexes), after a VACUUM."""
    if db.backend == "sqlite":
        conn = sqlite3.connect(db.engine.url.database)
        try:
            conn.execute("VACUUM")
            rows = conn.execute("SELECT name, SUM(pgsize) FROM dbstat WHERE name IN "
                                "('samples', 'samples_1m', 'series', 'sqlite_autoindex_series_1') GROUP BY name")
            return {name: int(size) for name, size in rows}
        finally:
            conn.close()
    with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.exec_driver_sql("VACUUM ANALYZE")
        return {t: int(conn.execute(text(f"SELECT pg_total_relation_size('{t}')")).scalar())
                for t in ("samples", "samples_1m", "series")}


def part_bytes(args: argparse.Namespace, url: str) -> dict:
    db = Database(url)
    upgrade(db.engine)
    n_series, every = 100, 10
    keys = [m.SeriesKey("deployment", "default", f"svc-{i // 5}", str(i % 5), "cpu_percent") for i in range(n_series)]
    ids = m.SeriesIds()
    t0 = 1_800_000_000 - 1_800_000_000 % 86400
    started = time.perf_counter()
    batch = 60  # samples per transaction (the sampler writes one per transaction; size is the same)
    times = list(range(t0, t0 + 86400, every))
    for i in range(0, len(times), batch):
        with db.tx() as s:
            for t in times[i:i + batch]:
                m.write(s, t, {k: float((t // every + j) % 100) + 0.25 for j, k in enumerate(keys)}, ids)
    with db.tx() as s:
        m.roll_up(s, t0 + 86400)
    sizes = _sizes(db)
    db.dispose()
    return {
        "backend": db.backend, "series": n_series, "interval_s": every, "samples_per_series_per_day": len(times),
        "write_seconds": round(time.perf_counter() - started, 1),
        "table_bytes": sizes,
        "raw_bytes_per_series_per_day": round(sizes["samples"] / n_series),
        "rollup_bytes_per_series_per_day": round(sizes["samples_1m"] / n_series),
        "bytes_per_raw_sample": round(sizes["samples"] / n_series / len(times), 1),
        "steady_state_bytes_per_series": round(sizes["samples"] / n_series + 30 * sizes["samples_1m"] / n_series),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--parts", default="cpu,bytes")
    p.add_argument("--jobs", type=int, default=50)
    p.add_argument("--replicas", type=int, default=100)
    p.add_argument("--samples", type=int, default=30)
    p.add_argument("--postgres", default=os.environ.get("CUMULO_TEST_POSTGRES_URL"), help="also measure bytes on PostgreSQL")
    args = p.parse_args()
    parts = args.parts.split(",")
    out: dict = {"machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
                 "date": datetime.now(UTC).isoformat(timespec="seconds")}
    if "cpu" in parts:
        out["cpu"] = part_cpu(args)
    if "bytes" in parts:
        with tempfile.TemporaryDirectory() as d:
            out["bytes_sqlite"] = part_bytes(args, f"sqlite:///{d}/bytes.db")
        if args.postgres:
            name = f"cumulo_bench_{uuid.uuid4().hex[:8]}"
            admin = create_engine(args.postgres, isolation_level="AUTOCOMMIT")
            with admin.connect() as conn:
                conn.execute(text(f'CREATE DATABASE "{name}"'))
            try:
                from sqlalchemy.engine import make_url
                out["bytes_postgresql"] = part_bytes(args, make_url(args.postgres).set(database=name).render_as_string(hide_password=False))
            finally:
                with admin.connect() as conn:
                    conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
                admin.dispose()
    json.dump(out, sys.stdout, indent=2)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
