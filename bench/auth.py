"""What authentication costs an API call; prints one JSON object.

    python bench/auth.py [--requests 2000] [--rounds 3] > result.json

Two control planes on this machine, one with tokens (the default) and one with `--no-auth`, each
holding the same job; GET /api/v1/jobs/<name> and GET /api/v1/jobs are called over one keep-alive
connection, alternating between the two planes round by round (so both see the same machine
load). Reported: p50/p99 per plane and the difference of the medians of the round p50s.
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
from pathlib import Path

import httpx


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(home: Path, auth: bool) -> tuple[subprocess.Popen, str, dict]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    args = [sys.executable, "-m", "cumulo.app", "--port", str(port), "--home", str(home)]
    if not auth:
        args.append("--no-auth")
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env={**os.environ, "CUMULO_LOG_LEVEL": "WARNING"})
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(url + "/api/v1/health", timeout=0.5).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.05)
    headers = {"authorization": "Bearer " + (home / "token").read_text().strip()} if auth else {}
    r = httpx.post(url + "/api/v1/jobs", headers=headers, timeout=30,
                   json={"kind": "Job", "name": "bench", "command": "true", "workdir": str(home)})
    r.raise_for_status()
    return proc, url, headers


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q / 100 * (len(values) - 1))))]


def _verify_cost(n: int = 20000) -> float:
    """Microseconds of one token verification on the request path (in process; a token seen in the
    last 5 s is cached): the part of authentication that wall-clock rounds cannot resolve."""
    import timeit

    from cumulo.services.tokens import TokenService
    from cumulo.store.db import Database
    from cumulo.store.migrate import upgrade

    with tempfile.TemporaryDirectory() as tmp:
        db = Database(f"sqlite:///{tmp}/t.db")
        upgrade(db.engine)
        tokens = TokenService(db, os.urandom(32))
        raw = tokens.create(name="bench", role="member").token
        tokens.verify(raw)
        seconds = timeit.timeit(lambda: tokens.verify(raw), number=n)
        db.dispose()
    return seconds / n * 1e6


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--requests", type=int, default=2000)
    p.add_argument("--rounds", type=int, default=3)
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        planes = {name: start(Path(tmp) / name, auth) for name, auth in (("tokens", True), ("no-auth", False))}
        out: dict = {"machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                                 "platform": platform.platform()},
                     "requests_per_round": args.requests, "rounds": args.rounds, "paths": {}}
        try:
            for path in ("/api/v1/jobs/bench", "/api/v1/jobs"):
                per = {name: {"p50": [], "p99": []} for name in planes}
                for _ in range(args.rounds):
                    for name, (_proc, url, headers) in planes.items():
                        with httpx.Client(base_url=url, headers=headers, timeout=10) as c:
                            for _ in range(100):  # warm up
                                c.get(path)
                            times = []
                            for _ in range(args.requests):
                                t0 = time.perf_counter()
                                c.get(path).raise_for_status()
                                times.append(time.perf_counter() - t0)
                        per[name]["p50"].append(pct(times, 50) * 1000)
                        per[name]["p99"].append(pct(times, 99) * 1000)
                summary = {name: {"p50_ms": round(statistics.median(v["p50"]), 3),
                                  "p99_ms": round(statistics.median(v["p99"]), 3),
                                  "round_p50s_ms": [round(x, 3) for x in v["p50"]]} for name, v in per.items()}
                summary["added_p50_ms"] = round(summary["tokens"]["p50_ms"] - summary["no-auth"]["p50_ms"], 3)
                out["paths"][path] = summary
        finally:
            for proc, _url, _h in planes.values():
                proc.terminate()
                proc.wait(30)
    out["verify_cached_us"] = round(_verify_cost(), 2)
    json.dump(out, sys.stdout, indent=2)
    print()


if __name__ == "__main__":
    main()
