"""Measure (c): the replica runtime alone against a plain FastAPI app, in the same run.

Both serve the same trivial handler (POST /echo, JSON body {"text": ...}, returns the text) on
uvicorn with httptools + uvloop and no access log, one process each, on loopback. For each variant
(async def and plain def handlers) the two servers run alternately `--rounds` times; wrk
(`wrk -t1 -c16 -d10s --latency`, Debian's wrk) drives each. Also: time from process start to
ready (first 200 on /readyz; /healthz for the plain app, which has no setup) and RSS.

    flock /tmp/cumulo-bench.lock python bench/serving.py > result.json

Prints JSON. Run it alone on the machine: wrk and the server share the CPUs.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import psutil

TRIVIAL_SERVICE = '''
from cumulo.serving import Service, handler


class Trivial(Service):
    @handler
    async def echo(self, text: str) -> str:
        return text


class TrivialSync(Service):
    @handler
    def echo(self, text: str) -> str:
        return text
'''

PLAIN_FASTAPI = '''
import os

from fastapi import FastAPI
from pydantic import BaseModel

app = FastAPI()


class EchoRequest(BaseModel):
    text: str


@app.get("/healthz")
async def healthz():
    return {"status": "alive"}


if os.environ.get("BENCH_SYNC") == "1":
    @app.post("/echo")
    def echo(body: EchoRequest) -> str:
        return body.text
else:
    @app.post("/echo")
    async def echo(body: EchoRequest) -> str:
        return body.text
'''

WRK_POST = '''
wrk.method = "POST"
wrk.body = '{"text": "hello"}'
wrk.headers["Content-Type"] = "application/json"
'''


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(cmd: list[str], port: int, ready_path: str, env: dict[str, str], cwd: Path) -> tuple[subprocess.Popen, float]:
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}{ready_path}"
    with httpx.Client(timeout=1) as client:
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"{cmd} exited {proc.returncode}: {proc.stderr.read().decode()[-2000:]}")
            try:
                if client.get(url).status_code == 200:
                    return proc, time.perf_counter() - t0
            except httpx.HTTPError:
                pass
            if time.perf_counter() - t0 > 30:
                raise RuntimeError(f"{cmd} not ready after 30 s")
            time.sleep(0.005)


def stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3}


def _ms(text: str) -> float:
    m = re.fullmatch(r"([\d.]+)(us|ms|s)", text)
    assert m, text
    return float(m.group(1)) * _UNITS[m.group(2)]


def wrk(url: str, script: Path, connections: int, duration: int) -> dict:
    out = subprocess.run(
        ["wrk", "-t1", f"-c{connections}", f"-d{duration}s", "--latency", "-s", str(script), url],
        capture_output=True, text=True, check=True,
    ).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    pct = {f"p{p}_ms": _ms(v) for p, v in re.findall(r"^\s+(50|75|90|99)%\s+(\S+)", out, re.M)}
    total = int(re.search(r"(\d+) requests in", out).group(1))
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    sock_err = re.search(r"Socket errors: (.*)", out)
    return {"rps": rps, **pct, "requests": total, "non_2xx": int(errors.group(1)) if errors else 0,
            "socket_errors": sock_err.group(1) if sock_err else None}


def rss_mb(proc: subprocess.Popen) -> float:
    return psutil.Process(proc.pid).memory_info().rss / 2**20


def run_one(kind: str, sync: bool, workdir: Path, args: argparse.Namespace) -> dict:
    port = free_port()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(Path(__file__).resolve().parents[1] / "src"),
                                                                      os.environ.get("PYTHONPATH")]))}
    if kind == "cumulo":
        target = f"trivial.py:{'TrivialSync' if sync else 'Trivial'}"
        cmd = [sys.executable, "-m", "cumulo.serving", target, "--port", str(port), "--log-level", "warning"]
        ready = "/readyz"
    else:
        env["BENCH_SYNC"] = "1" if sync else "0"
        cmd = [sys.executable, "-m", "uvicorn", "plain_fastapi:app", "--port", str(port), "--http", "httptools",
               "--loop", "uvloop", "--no-access-log", "--log-level", "warning"]
        ready = "/healthz"
    proc, ready_s = start(cmd, port, ready, env, workdir)
    try:
        rss_idle = rss_mb(proc)
        with httpx.Client() as c:  # sanity: both answer the same
            r = c.post(f"http://127.0.0.1:{port}/echo", json={"text": "hello"})
            assert r.status_code == 200 and r.json() == "hello", r.text
        wrk(f"http://127.0.0.1:{port}/echo", workdir / "post.lua", args.connections, 2)  # warm-up
        result = wrk(f"http://127.0.0.1:{port}/echo", workdir / "post.lua", args.connections, args.duration)
        result.update(ready_s=round(ready_s, 3), rss_idle_mb=round(rss_idle, 1), rss_after_mb=round(rss_mb(proc), 1))
        return result
    finally:
        stop(proc)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--duration", type=int, default=10)
    p.add_argument("--connections", type=int, default=16)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--variants", default="async,sync")
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        (work / "trivial.py").write_text(TRIVIAL_SERVICE)
        (work / "plain_fastapi.py").write_text(PLAIN_FASTAPI)
        (work / "post.lua").write_text(WRK_POST)
        report: dict = {
            "machine": {"cpus": os.cpu_count(), "cpu": platform.processor() or platform.machine(),
                        "python": platform.python_version(), "platform": platform.platform()},
            "load": f"wrk -t1 -c{args.connections} -d{args.duration}s --latency, POST /echo",
            "variants": {},
        }
        for variant in args.variants.split(","):
            sync = variant == "sync"
            runs: dict[str, list[dict]] = {"fastapi": [], "cumulo": []}
            for _ in range(args.rounds):
                for kind in ("fastapi", "cumulo"):
                    runs[kind].append(run_one(kind, sync, work, args))
            summary = {}
            for kind, rs in runs.items():
                summary[kind] = {
                    "rps_median": statistics.median(r["rps"] for r in rs),
                    "p50_ms_median": statistics.median(r["p50_ms"] for r in rs),
                    "p99_ms_median": statistics.median(r["p99_ms"] for r in rs),
                    "ready_s_median": statistics.median(r["ready_s"] for r in rs),
                    "rss_idle_mb_median": statistics.median(r["rss_idle_mb"] for r in rs),
                    "rss_after_mb_median": statistics.median(r["rss_after_mb"] for r in rs),
                    "runs": rs,
                }
            summary["ratio_rps"] = round(summary["cumulo"]["rps_median"] / summary["fastapi"]["rps_median"], 3)
            report["variants"][variant] = summary
        print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
