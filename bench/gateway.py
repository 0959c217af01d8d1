"""Gateway overhead (issue 3, Measure (a)): a trivial handler directly vs through the gateway, same run.

    flock /tmp/cumulo-bench.lock python bench/gateway.py [--duration 10] [--connections 16]

Backends (each its own uvicorn process, httptools + uvloop): a raw ASGI app, and a trivial FastAPI
handler. Gateways (each its own process, as `cumulo gateway` runs): the default (uvicorn + the
gateway's fast-path protocol) and plain ASGI under stock uvicorn (the path the control plane's own
app would give). Load: wrk -t1 -cN -dDs --latency. Each backend is measured directly before and
after the gateway runs; ratios are against the mean of the two direct runs.

Prints JSON. Run under flock: the machine is shared and benchmarks must not overlap.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

RAW_APP = '''
async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/plain"), (b"content-length", b"2")]})
    await send({"type": "http.response.body", "body": b"ok"})
'''

FASTAPI_APP = '''
from fastapi import FastAPI
app = FastAPI()

@app.get("/{path:path}")
def hello(path: str):
    return {"ok": True}
'''


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listening on {port}")


def _ms(v: str) -> float:
    m = re.fullmatch(r"([\d.]+)(us|ms|s|m)", v)
    n, unit = float(m.group(1)), m.group(2)
    return n * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}[unit]


TOKEN = "cumulo_bench-deployment-token"


def wrk(url: str, duration: int, connections: int, headers: tuple[str, ...] = ()) -> dict:
    extra = [arg for h in headers for arg in ("-H", h)]
    subprocess.run(["wrk", "-t1", f"-c{connections}", "-d1s", *extra, url], capture_output=True, check=True)  # warm up
    out = subprocess.run(["wrk", "-t1", f"-c{connections}", f"-d{duration}s", "--latency", *extra, url],
                         capture_output=True, text=True, check=True).stdout
    lat = dict(re.findall(r"^\s+(50|75|90|99)%\s+(\S+)$", out, re.M))
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    sock = re.search(r"Socket errors: (.*)$", out, re.M)
    return {
        "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
        "p50_ms": _ms(lat["50"]),
        "p99_ms": _ms(lat["99"]),
        "non_2xx": int(errors.group(1)) if errors else 0,
        "socket_errors": sock.group(1) if sock else None,
    }


#: gateway variants: the default fast path; plain ASGI under stock uvicorn; the fast path in front of
#: an `auth: token` deployment (wrk sends the token); two fast-path processes sharing the port
#: (SO_REUSEPORT, as `cumulo gateway --workers 2`)
MODES = ("fast", "asgi", "fast_token", "fast_2workers")
# (instructions only: bench/gateway_instructions.py) "fast_header": no auth, but the request carries
# the same Authorization header, to tell the check's cost from the extra header's; "fast_canary": a
# deployment in a canary rollout (10 % to the new generation, counted per generation)


def serve_gateway(port: int, mode: str, backend_port: int) -> None:
    """(subprocess) a gateway with one static route, `b`, to the backend."""
    import hashlib

    import uvicorn

    from cumulo.gateway import Endpoint
    from cumulo.gateway.proxy import Gateway
    from cumulo.gateway.server import serve

    gw = Gateway()
    auth = {"b": {hashlib.sha256(TOKEN.encode()).hexdigest(): None}} if mode == "fast_token" else None
    if mode == "fast_canary":  # a canary rollout: 10 % to generation 2, each side its own "replica"
        from cumulo.gateway.routing import Split

        gw.update({"b": [Endpoint("b-0", "127.0.0.1", backend_port, True, generation=1),
                         Endpoint("b-1", "127.0.0.1", backend_port, True, generation=2)]}, (), None,
                  {"b": Split(2, 10, 1)})
    else:
        gw.update({"b": [Endpoint("b-0", "127.0.0.1", backend_port, True)]}, (), auth)
    if mode in ("fast", "fast_token", "fast_header", "fast_canary"):
        serve(gw, port=port)
    elif mode == "fast_worker":
        serve(gw, port=port, reuse_port=True)
    else:
        uvicorn.run(gw.asgi(), host="127.0.0.1", port=port, loop="uvloop", http="httptools", lifespan="off",
                    log_level="warning", access_log=False, proxy_headers=False)


def start(args: list[str], env: dict | None = None, cwd: Path | None = None) -> subprocess.Popen:
    return subprocess.Popen(args, env=env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--duration", type=int, default=10)
    p.add_argument("--connections", type=int, default=16)
    p.add_argument("--rounds", type=int, default=1, help="interleaved rounds; >1 reports medians of the ratios")
    p.add_argument("--serve-gateway", nargs=3, metavar=("PORT", "MODE", "BACKEND_PORT"), help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.serve_gateway:
        serve_gateway(int(a.serve_gateway[0]), a.serve_gateway[1], int(a.serve_gateway[2]))
        return
    if not shutil.which("wrk"):
        sys.exit("wrk is needed: apt-get install -y wrk")
    tmp = Path(os.environ.get("TMPDIR", "/tmp")) / f"cumulo-bench-gw-{os.getpid()}"
    tmp.mkdir(parents=True, exist_ok=True)
    (tmp / "raw_app.py").write_text(RAW_APP)
    (tmp / "fastapi_app.py").write_text(FASTAPI_APP)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT / "src"), str(tmp)]))
    procs: list[subprocess.Popen] = []
    results: dict = {}
    try:
        for backend in ("raw_app", "fastapi_app"):
            bport = free_port()
            procs.append(start([sys.executable, "-m", "uvicorn", f"{backend}:app", "--port", str(bport),
                                "--loop", "uvloop", "--http", "httptools", "--log-level", "warning",
                                "--no-access-log"], env=env, cwd=tmp))
            wait_port(bport)
            gports = {}
            for mode in MODES:
                gports[mode] = free_port()
                for served in (["fast_worker"] * 2 if mode == "fast_2workers" else [mode]):
                    procs.append(start([sys.executable, str(Path(__file__).resolve()), "--serve-gateway",
                                        str(gports[mode]), served, str(bport)], env=env))
                wait_port(gports[mode])
            direct_url = f"http://127.0.0.1:{bport}/x"
            rounds = []
            for _ in range(a.rounds):  # interleaved, so that a noisy spell hits both sides
                r = {"direct": wrk(direct_url, a.duration, a.connections)}
                for mode in MODES:
                    headers = (f"Authorization: Bearer {TOKEN}",) if mode == "fast_token" else ()
                    r[f"gateway_{mode}"] = wrk(f"http://127.0.0.1:{gports[mode]}/d/b/x", a.duration, a.connections,
                                               headers)
                r["direct_again"] = wrk(direct_url, a.duration, a.connections)
                base_rps = (r["direct"]["rps"] + r["direct_again"]["rps"]) / 2
                base_p50 = (r["direct"]["p50_ms"] + r["direct_again"]["p50_ms"]) / 2
                for mode in MODES:
                    g = r[f"gateway_{mode}"]
                    g["throughput_ratio"] = round(g["rps"] / base_rps, 3)
                    g["added_p50_ms"] = round(g["p50_ms"] - base_p50, 3)
                rounds.append(r)
            summary = {mode: {"throughput_ratio_median": statistics.median(r[f"gateway_{mode}"]["throughput_ratio"] for r in rounds),
                              "added_p50_ms_median": statistics.median(r[f"gateway_{mode}"]["added_p50_ms"] for r in rounds)}
                       for mode in MODES}
            summary["fast_token_vs_fast_median"] = statistics.median(
                r["gateway_fast_token"]["rps"] / r["gateway_fast"]["rps"] for r in rounds)
            results[backend] = {"median_of_rounds": summary, "rounds": rounds} if a.rounds > 1 else rounds[0]
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(10)
    print(json.dumps({
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
                    "processor": _cpu_model()},
        "load": f"wrk -t1 -c{a.connections} -d{a.duration}s --latency",
        "goal": {"throughput_ratio": ">= 0.5", "added_p50_ms": "<= 1.0"},
        "results": results,
    }, indent=2))


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


if __name__ == "__main__":
    main()
