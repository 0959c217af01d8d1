"""Simulator vs reality: one trace slice, replayed live through `cumulo up` and in `cumulo.sim`.

    PYTHONPATH=src nice -n 5 python bench/sim_vs_live.py --out docs/benchmarks     # prints JSON

It runs `python -m cumulo up --detach` in a temporary CUMULO_HOME on a free port (CUMULO_HOME,
CUMULO_URL set), measures one replica's cold start there (what the policies are told), and for each
policy (default: kpa, then predictive)

1. deploys `bench/sim_vs_live_service.py:Sleeper` (fixed service time, fixed per-replica
   concurrency, cold start = a sleep in setup()) with the initial replica count, waits until it is
   ready, then adds `autoscaling:` (an update that does not roll the replicas), so that the policy
   starts from no state at the trace's first request, as in the simulator;
2. sends every request of the slice at its (time-compressed) trace time through the gateway
   (`POST /d/<name>/work`, a small asyncio HTTP/1.1 client) and records its latency and status,
   while sampling the deployment (`GET /api/v1/deployments/<name>`) every 0.5 s: replicas
   Starting / Ready / Draining, the autoscaler's desired count, and each replica's created_at /
   ready_at (its cold start);
3. deletes the deployment;

then `cumulo down`, and stops what replicas are left. Then it runs the simulator
(`cumulo.sim.model.simulate`) on the same requests with the same settings: service time, per-replica concurrency, cold start = the mean Starting -> Ready time
measured live in that run, SLO, policy and options, min/max and initial replicas, targets
(`target` = utilization x concurrency, `target_rps` = that / service time, set explicitly in the
live spec so that the live policy does not derive it from observed latency), once with the
simulator's shared fluid queue and once with per-replica queues (``queue="replica"``), plus a few
variants that isolate one difference each; and it replays the live replica timeline through both
queue models. It prints one JSON document (also written to OUT/NAME.json) and plots replicas over
time, live vs sim (OUT/NAME.png); see docs/benchmarks/sim-vs-live.md. `--raw FILE` keeps every
request and sample; `--from-raw FILE` redoes the simulator side and the report from such a file
without running anything live.

Replica-seconds count Starting + Ready replicas (what the simulator pays for); Draining replicas
(still running while their last requests finish) are reported apart.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

import httpx
import numpy as np

from cumulo.sim.load import ServiceModel, build_load
from cumulo.sim.model import ReplicaModel, make_config, simulate
from cumulo.sim.traces import RequestTrace, load_trace

HERE = Path(__file__).resolve().parent
SERVICE = "sim_vs_live_service.py:Sleeper"
SAMPLE_PERIOD = 0.5
#: settings a live run was made with (kept in --raw files)
LIVE_ARGS = ("trace", "start", "duration", "speedup", "policies", "options", "service_time", "concurrency",
             "setup_delay", "utilization", "min", "max", "slo_wait")
TRACES = Path(os.environ.get("CUMULO_TRACES", HERE.parent.parent / "shared" / "traces"))


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------
# the trace slice


def trace_slice(path: Path, start: float, duration: float, speedup: float) -> np.ndarray:
    """Arrival times (s from 0) of the requests in [start, start + duration), divided by speedup."""
    tr = load_trace(path)
    if not isinstance(tr, RequestTrace):
        raise SystemExit(f"{path}: a per-request trace is needed (Azure CSV or JSONL), not per-window rates")
    m = (tr.times >= start) & (tr.times < start + duration)
    if not m.any():
        raise SystemExit(f"{path}: no request in [{start:g}, {start + duration:g}) s")
    return (tr.times[m] - start) / speedup


def initial_replicas(times: np.ndarray, target_rps: float, lo: int, hi: int) -> int:
    """What the simulator starts with: the first minute's rate at the target."""
    first = float((times < 60.0).sum()) / 60.0
    return int(max(lo, min(hi, math.ceil(first / target_rps - 1e-9))))


# ---------------------------------------------------------------------------------------------
# the control plane


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ControlPlane:
    """`cumulo up --detach` in a temporary CUMULO_HOME; `down` stops it and every replica it left."""

    def __init__(self, home: Path) -> None:
        self.home = home
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {**os.environ, "CUMULO_HOME": str(home), "CUMULO_URL": self.url}

    @property
    def token(self) -> str | None:
        """The admin token `cumulo up` wrote on its first start (the API needs it)."""
        path = self.home / "token"
        return path.read_text().strip() if path.exists() else None

    @property
    def headers(self) -> dict[str, str]:
        return {"authorization": f"Bearer {self.token}"} if self.token else {}

    def cli(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "cumulo", *args], env=self.env, capture_output=True,
                              text=True, timeout=timeout, check=False)

    def up(self) -> None:
        r = self.cli("up", "--detach", "--port", str(self.port))
        if r.returncode != 0:
            raise SystemExit(f"cumulo up failed:\n{r.stdout}\n{r.stderr}")

    def pid(self) -> int | None:
        try:
            return json.loads((self.home / "server.lock").read_text()).get("pid")
        except (OSError, ValueError):
            return None

    def down(self) -> None:
        self.cli("down")
        # replicas outlive their control plane by design: stop the ones this run started
        for claim in self.home.glob("deployments/*/replica-*/supervisor.json"):
            try:
                info = json.loads(claim.read_text())
                pid = info.get("pid")
                if pid and _start_time(pid) == info.get("start"):  # never a recycled pid
                    os.kill(pid, signal.SIGTERM)
            except (OSError, ValueError):
                pass


def _start_time(pid: int) -> int | None:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19])
    except (OSError, IndexError, ValueError):
        return None


def _cpu_seconds(pid: int | None) -> float:
    if not pid:
        return math.nan
    try:
        f = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return math.nan


def _self_cpu() -> float:
    t = os.times()
    return t.user + t.system


def _machine_busy() -> tuple[float, float]:
    """(busy, total) jiffies of the whole machine since boot."""
    v = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = v[3] + v[4]
    return float(sum(v) - idle), float(sum(v))


def _ts(s: str | None) -> float | None:
    return datetime.fromisoformat(s).timestamp() if s else None


# ---------------------------------------------------------------------------------------------
# one live run


def deployment_spec(name: str, args: argparse.Namespace, replicas: int, autoscaling: dict | None) -> dict:
    spec = {
        "kind": "Deployment", "name": name, "service": SERVICE, "workdir": str(HERE), "replicas": replicas,
        "resources": {"cpu": 0.1, "memory": "128Mi"},
        "env": {"SVL_SERVICE_TIME": str(args.service_time), "SVL_CONCURRENCY": str(args.concurrency),
                "SVL_SETUP_DELAY": str(args.setup_delay)},
    }
    if autoscaling is not None:
        spec["autoscaling"] = autoscaling
    return spec


def autoscaling_block(policy: str, args: argparse.Namespace, cold_start: float, options: dict) -> dict:
    target = args.utilization * args.concurrency
    return {"policy": policy, "target": target, "target_rps": target / args.service_time, "min": args.min,
            "max": args.max, "cold_start": round(cold_start, 3), "options": options}


def _replica_cpu(home: Path, seen: dict) -> None:
    """CPU seconds of every replica process under ``home`` (last value seen per pid)."""
    for f in home.glob("deployments/*/replica-*/workers.json"):
        try:
            for w in json.loads(f.read_text()):
                if _start_time(w["pid"]) == w["start"]:
                    seen[(w["pid"], w["start"])] = _cpu_seconds(w["pid"])
        except (OSError, ValueError, KeyError, TypeError):
            pass


async def _sampler(c: httpx.AsyncClient, name: str, t0_wall: float, stop: asyncio.Event, out: dict,
                   home: Path) -> None:
    samples, replicas = out["samples"], out["replicas"]
    while not stop.is_set():
        _replica_cpu(home, out["replica_cpu"])
        try:
            r = await c.get(f"/api/v1/deployments/{name}", timeout=10)
            now = time.time()
            if r.status_code == 200:
                d = r.json()
                counts = {"Starting": 0, "Ready": 0, "Draining": 0}
                for rep in d["replicas"]:
                    counts[rep["state"]] = counts.get(rep["state"], 0) + 1
                for rep in d["replicas"] + d.get("ended", []):
                    replicas[str(rep["id"])] = {k: rep.get(k) for k in ("state", "created_at", "ready_at", "finished_at")}
                    replicas[str(rep["id"])]["seen"] = round(now - t0_wall, 3)
                for rep in d["replicas"]:  # last seen live: the end of a replica that left `ended` unseen
                    replicas[str(rep["id"])]["live_seen"] = round(now - t0_wall, 3)
                samples.append([round(now - t0_wall, 3), counts["Starting"], counts["Ready"], counts["Draining"],
                                d["desired"]])
        except httpx.HTTPError as e:
            out["sample_errors"] += 1
            out.setdefault("sample_error", repr(e))
        try:
            await asyncio.wait_for(stop.wait(), SAMPLE_PERIOD)
        except TimeoutError:
            pass


#: a kept-alive connection idle longer than this is not reused (uvicorn closes them after 5 s)
IDLE_S = 3.0


class _Http:
    """A minimal HTTP/1.1 client on asyncio streams with keep-alive connections (httpx cost ~10x the
    CPU per request here, and the load generator shares 2 cores with everything it measures)."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter, float]] = []  # most recent last

    async def post(self, path: str, body: bytes) -> int:
        req = (f"POST {path} HTTP/1.1\r\nhost: {self.host}:{self.port}\r\ncontent-type: application/json\r\n"
               f"content-length: {len(body)}\r\n\r\n").encode() + body
        while True:  # a kept-alive connection the server closed meanwhile: the next one, or a new one
            now = time.monotonic()
            while self.idle and now - self.idle[-1][2] > IDLE_S:
                self.idle.pop()[1].close()
            reused = bool(self.idle)
            r, w = self.idle.pop()[:2] if reused else await asyncio.open_connection(self.host, self.port)
            try:
                w.write(req)
                head = await r.readuntil(b"\r\n\r\n")
            except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
                w.close()
                if reused:
                    continue
                return -1
            try:
                status = int(head[9:12])
                lower = head.lower()
                if b"transfer-encoding: chunked" in lower:
                    while True:
                        size = int((await r.readuntil(b"\r\n")).split(b";")[0], 16)
                        await r.readexactly(size + 2)
                        if size == 0:
                            break
                else:
                    i = lower.find(b"content-length:")
                    n = int(lower[i + 15: lower.index(b"\r\n", i)]) if i >= 0 else 0
                    await r.readexactly(n)
            except (OSError, ValueError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
                w.close()
                return -1
            if b"connection: close" in lower:
                w.close()
            else:
                self.idle.append((r, w, time.monotonic()))
            return status

    def close(self) -> None:
        for _, w, _ in self.idle:
            w.close()


async def _load(url: str, times: np.ndarray, t0: float, out: list) -> None:
    u = httpx.URL(url)
    client = _Http(u.host, u.port)
    path = u.raw_path.decode()

    async def one(i: int, due: float) -> None:
        sent = time.monotonic()
        status = await client.post(path, b'{"id": %d}' % i)
        done = time.monotonic()
        out[i] = (round(due - t0, 4), round(sent - due, 4), round(done - sent, 4), status)

    tasks = []
    for i, t in enumerate(times):
        due = t0 + float(t)
        delay = due - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(i, due)))
    await asyncio.gather(*tasks)
    client.close()


async def _run_trace(cp: ControlPlane, name: str, times: np.ndarray, duration: float, t0_mono: float,
                     t0_wall: float) -> tuple[list, dict]:
    requests: list = [None] * len(times)
    obs: dict = {"samples": [], "replicas": {}, "sample_errors": 0, "replica_cpu": {}}
    stop = asyncio.Event()
    async with httpx.AsyncClient(base_url=cp.url, headers=cp.headers) as api:
        sampler = asyncio.create_task(_sampler(api, name, t0_wall, stop, obs, cp.home))
        await _load(f"{cp.url}/d/{name}/work", times, t0_mono, requests)
        rest = t0_mono + duration + 2 * SAMPLE_PERIOD - time.monotonic()
        if rest > 0:
            await asyncio.sleep(rest)
        stop.set()
        await sampler
        r = await api.get(f"/api/v1/deployments/{name}/metrics", timeout=30)
        obs["gateway"] = r.json() if r.status_code == 200 else {"error": r.status_code}
    return requests, obs


def live_run(cp: ControlPlane, policy: str, times: np.ndarray, duration: float, n0: int, cold_start_spec: float,
             options: dict, args: argparse.Namespace) -> dict:
    import cumulo
    from cumulo.core.errors import NotFound

    name = f"svl-{policy}"
    client = cumulo.Client(cp.url, token=cp.token, timeout=60)
    log(f"{policy}: deploying {n0} replica(s)")
    client.deploy(deployment_spec(name, args, n0, None))
    client.wait_deployment(name, timeout=180)
    block = autoscaling_block(policy, args, cold_start_spec, options)
    busy0 = _machine_busy()
    cpu0 = _cpu_seconds(cp.pid())
    self0 = _self_cpu()
    client.deploy(deployment_spec(name, args, n0, block))  # autoscaling on; replicas kept (no rollout)
    t0_wall, t0_mono = time.time(), time.monotonic()
    t0_mono += 0.2
    t0_wall += 0.2
    log(f"{policy}: replaying {len(times)} requests over {duration:.0f} s")
    requests, obs = _event_loop_run(_run_trace(cp, name, times, duration, t0_mono, t0_wall))
    busy1 = _machine_busy()
    cpu1 = _cpu_seconds(cp.pid())
    self1 = _self_cpu()
    events = [e.model_dump(mode="json") for e in client.events(name=name, limit=1000)]
    log(f"{policy}: deleting the deployment")
    client.delete_deployment(name)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            client.get_deployment(name)
        except NotFound:
            break
        time.sleep(0.5)
    client.close()
    last = obs["samples"][-1][0] if obs["samples"] else 0.0
    reps = {}
    for k, v in obs["replicas"].items():
        finished = _rel(v["finished_at"], t0_wall)
        if finished is None and v.get("live_seen", last) < last:  # gone between two samples, exit unseen
            finished = v["live_seen"] + SAMPLE_PERIOD / 2
        reps[k] = {**v, "created": _rel(v["created_at"], t0_wall), "ready": _rel(v["ready_at"], t0_wall),
                   "finished": finished}
    return {
        "policy": policy, "deployment": name, "autoscaling": block, "t0_wall": t0_wall,
        "requests": requests, "samples": obs["samples"], "sample_errors": obs["sample_errors"],
        "replicas": reps,
        "autoscaled_events": [{"t": _rel(e["time"], t0_wall), "message": e["message"]}
                              for e in events if e.get("reason") == "Autoscaled"],
        "gateway": obs.get("gateway"),
        "cpu": {"machine_busy_share": (busy1[0] - busy0[0]) / max(1.0, busy1[1] - busy0[1]),
                "machine_busy_cpu_s": (busy1[0] - busy0[0]) / os.sysconf("SC_CLK_TCK"),
                "control_plane_s": cpu1 - cpu0, "harness_s": self1 - self0,
                "replicas_s": sum(obs["replica_cpu"].values())},
    }


def _event_loop_run(coro):
    try:  # uvloop when installed (uvicorn's standard extra brings it): less CPU per request
        import uvloop

        return uvloop.run(coro)
    except ImportError:
        return asyncio.run(coro)


def _rel(ts: str | None, t0: float) -> float | None:
    v = _ts(ts)
    return None if v is None else round(v - t0, 3)


# ---------------------------------------------------------------------------------------------
# analysis


def live_metrics(run: dict, args: argparse.Namespace, horizon: float) -> dict:
    req = np.array([r for r in run["requests"] if r is not None], dtype=float).reshape(-1, 4)
    lag, lat, status = req[:, 1], req[:, 2], req[:, 3]
    ok = status == 200
    slo_ok = ok & (lat <= args.service_time + args.slo_wait + 1e-9)
    s = np.array(run["samples"], dtype=float).reshape(-1, 5)
    # piecewise constant between samples, clipped to [0, horizon]
    t = np.clip(np.append(s[:, 0], horizon), 0.0, horizon)
    width = np.diff(t)
    rs = float(((s[:, 1] + s[:, 2]) * width).sum())
    drain = float((s[:, 3] * width).sum())
    colds = [v["ready"] - v["created"] for v in run["replicas"].values()
             if v["ready"] is not None and v["created"] is not None and v["created"] > -1.0]
    return {
        "requests": len(req),
        "non_200": int((~ok).sum()),
        "slo_attainment": float(slo_ok.mean()) if len(req) else 1.0,
        "latency_p50_s": float(np.quantile(lat, 0.5)),
        "latency_p99_s": float(np.quantile(lat, 0.99)),
        "latency_max_s": float(lat.max()),
        "replica_seconds": rs,
        "draining_replica_seconds": drain,
        "mean_replicas": rs / horizon,
        "max_replicas": int((s[:, 1] + s[:, 2]).max()),
        "scaling_actions": len(run["autoscaled_events"]),
        "cold_starts_measured_s": [round(c, 2) for c in sorted(colds)],
        "cold_start_mean_s": float(np.mean(colds)) if colds else None,
        "send_lag_p99_s": float(np.quantile(lag, 0.99)),
        "send_lag_max_s": float(lag.max()),
        "replica_seconds_created_to_exit": created_to_exit(run["replicas"], horizon),
        "in_flight_signal": in_flight_signal(req, horizon, args.utilization * args.concurrency),
        "gateway_latency_p50_s": _get(run, "gateway", "latency_seconds", "p50"),
        "gateway_latency_p99_s": _get(run, "gateway", "latency_seconds", "p99"),
        "cpu": run.get("cpu"),
    }


def in_flight_signal(req: np.ndarray, horizon: float, target: float, grid: float = 0.01) -> dict:
    """Requests in flight (from the client's send/answer times): the mean of each second (what the
    simulator's policies see) against the value at each second's end (a 1 Hz point sample, what the
    live autoscaler reads from the gateway), and when the 6 s mean (KPA's panic window) of each first
    exceeds one replica's target."""
    n = math.ceil(horizon / grid)
    delta = np.zeros(n + 1)
    sent = req[:, 0] + req[:, 1]
    np.add.at(delta, np.clip((sent / grid).astype(int), 0, n), 1)
    np.add.at(delta, np.clip(((sent + req[:, 2]) / grid).astype(int), 0, n), -1)
    level = np.cumsum(delta)[:n]
    per = round(1 / grid)
    secs = n // per
    mean = level[: secs * per].reshape(secs, per).mean(axis=1)
    point = level[per - 1 : secs * per : per]
    k = 6

    def roll(x: np.ndarray) -> np.ndarray:
        return np.convolve(x, np.ones(k) / k, mode="valid")

    def first_over(x: np.ndarray) -> float | None:  # when a 6 s mean first exceeds one replica's target
        i = np.flatnonzero(roll(x) > target)
        return float(i[0] + k) if len(i) else None

    return {"mean_abs_point_minus_mean": float(np.abs(point - mean).mean()), "mean_in_flight": float(mean.mean()),
            "first_6s_mean_over_target_s": {"means": first_over(mean), "points": first_over(point)}}


def _get(d: dict | None, *keys: str):
    for k in keys:
        if not isinstance(d, dict):
            return None
        d = d.get(k)
    return d


def created_to_exit(replicas: dict, horizon: float) -> float:
    """Replica-seconds from each replica's creation to its exit (or the horizon), inside [0, horizon]:
    what the machines would be billed for, draining included."""
    total = 0.0
    for v in replicas.values():
        a = max(0.0, v["created"] if v["created"] is not None else 0.0)
        b = min(horizon, v["finished"] if v["finished"] is not None else horizon)
        total += max(0.0, b - a)
    return total


def replay_queues(arrivals: np.ndarray, replicas: dict, args: argparse.Namespace, p2c: bool, seed: int = 0) -> dict:
    """Latencies the LIVE replica timeline gives under two queue models (no CPU, no HTTP):

    - ``p2c=False``: one FIFO queue in front of every ready slot (what the simulator assumes);
    - ``p2c=True``: each request is dispatched on arrival to the less loaded of two random ready
      replicas (the gateway's rule) and waits in that replica's own FIFO queue; a replica that
      becomes ready later never takes requests already queued elsewhere.

    A replica is routable from its ready_at to its exit (drain start is not recorded; drains here
    last about a service time)."""
    import heapq

    s, k = args.service_time, args.concurrency
    reps = [(v["ready"], v["finished"] if v["finished"] is not None else math.inf)
            for v in replicas.values() if v["ready"] is not None]
    reps.sort()
    lat = np.zeros(len(arrivals))
    if not p2c:
        slots: list = []
        for ready, end in reps:
            for _ in range(k):
                heapq.heappush(slots, (ready, end))
        for i, t in enumerate(arrivals):
            while True:
                free, end = heapq.heappop(slots)
                start = max(t, free)
                if start < end or not slots:
                    break
            heapq.heappush(slots, (start + s, end))
            lat[i] = start + s - t
    else:
        rng = np.random.default_rng(seed)
        free = [[r] * k for r, _ in reps]  # per replica: when each slot is next free
        busy_until: list[list[float]] = [[] for _ in reps]  # finish times of requests assigned to it
        for i, t in enumerate(arrivals):
            live = [j for j, (r, e) in enumerate(reps) if r <= t < e]
            if not live:  # none ready (not in these runs: min >= 1): the first to come
                live = [min(range(len(reps)), key=lambda j: reps[j][0] if reps[j][0] > t else math.inf)]
            pick = live if len(live) < 2 else list(rng.choice(live, 2, replace=False))
            for j in pick:
                busy_until[j] = [f for f in busy_until[j] if f > t]
            j = min(pick, key=lambda j: len(busy_until[j]))
            slot = min(range(k), key=lambda x: free[j][x])
            start = max(t, free[j][slot], reps[j][0])
            free[j][slot] = start + s
            busy_until[j].append(start + s)
            lat[i] = start + s - t
    return {"slo_attainment": float((lat <= s + args.slo_wait + 1e-9).mean()),
            "latency_p50_s": float(np.quantile(lat, 0.5)), "latency_p99_s": float(np.quantile(lat, 0.99))}


def sim_run(times: np.ndarray, policy: str, args: argparse.Namespace, cold_start: float, n0: int, options: dict,
            step: float, queue: str = "shared"):
    trace = RequestTrace("slice", times)
    load = build_load(trace, ServiceModel(service_time=args.service_time, use_tokens=False), step=step)
    m = ReplicaModel(concurrency=args.concurrency, cold_start=cold_start, min_replicas=args.min,
                     max_replicas=args.max, utilization=args.utilization, slo_wait=args.slo_wait,
                     initial_replicas=n0, queue=queue)
    return simulate(load, policy, m, config=make_config(policy, load, m, options))


def sim_metrics(r) -> dict:
    keep = ("requests", "slo_attainment", "latency_p50_s", "latency_p99_s", "replica_seconds", "mean_replicas",
            "max_replicas", "scaling_actions", "seconds_under_provisioned", "evaluated_seconds")
    return {k: (None if isinstance(r.metrics[k], float) and not math.isfinite(r.metrics[k]) else r.metrics[k])
            for k in keep}


def ratio(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or not b:
        return None
    return a / b


def plot(results: list[dict], times: np.ndarray, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(results), 1, figsize=(11, 3.6 * len(results)), sharex=True, squeeze=False)
    for ax, res in zip(axes[:, 0], results, strict=True):
        s = np.array(res["live_series"], dtype=float).reshape(-1, 5)
        ax.step(s[:, 0], s[:, 1] + s[:, 2], where="post", color="C0", lw=1.6, label="live: starting + ready")
        ax.step(s[:, 0], s[:, 2], where="post", color="C0", lw=0.8, ls=":", label="live: ready")
        sim = res["sim_series"]
        st = np.array(sim["t"])
        ax.step(st, np.array(sim["ready"]) + np.array(sim["starting"]), where="post", color="C3", lw=1.6,
                label="sim: starting + ready")
        ax.step(st, sim["ready"], where="post", color="C3", lw=0.8, ls=":", label="sim: ready")
        ax.set_ylabel("replicas")
        lv, sm = res["live"], res["sim"]
        ax.set_title(f"{res['policy']}: replica-s live {lv['replica_seconds']:.0f} / sim {sm['replica_seconds']:.0f}; "
                     f"SLO live {100 * lv['slo_attainment']:.1f} % / sim {100 * sm['slo_attainment']:.1f} %", fontsize=10)
        ax2 = ax.twinx()
        edges = np.arange(0, times.max() + 5, 5.0)
        counts, _ = np.histogram(times, edges)
        ax2.bar(edges[:-1], counts / 5.0, width=5.0, align="edge", color="0.85", zorder=0)
        ax2.set_ylabel("requests/s (5 s)", color="0.5")
        ax.set_zorder(ax2.get_zorder() + 1)
        ax.patch.set_visible(False)
        ax.legend(loc="upper left", fontsize=8)
    axes[-1, 0].set_xlabel("seconds (replayed time)")
    fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def analyse(raw: dict, args: argparse.Namespace) -> dict:
    times = np.array(raw["times"])
    results = []
    for run in raw["runs"]:
        policy = run["policy"]
        options = run["autoscaling"]["options"]
        horizon = math.ceil((float(times[-1]) + 1.0) / args.step) * args.step  # the simulator's span
        live = live_metrics(run, args, horizon)
        cs = live["cold_start_mean_s"] or raw["cold_start_calibrated_s"]
        req = np.array([r for r in run["requests"] if r is not None], dtype=float).reshape(-1, 4)
        sent = np.sort(req[:, 0] + req[:, 1])  # when each request really left the load generator
        sims = {}
        for label, at, cold, step, queue in (
            ("sim", times, cs, args.step, "shared"),
            ("sim_replica_queues", times, cs, args.step, "replica"),
            ("sim_step_0.1s", times, cs, 0.1, "shared"),
            ("sim_cold_start_spec", times, run["autoscaling"]["cold_start"], args.step, "shared"),
            ("sim_sent_times", sent, cs, args.step, "shared"),
        ):
            r = sim_run(at, policy, args, cold, raw["initial_replicas"], options, step, queue)
            sims[label] = (r, sim_metrics(r))
        replay = {"central_fifo": replay_queues(sent, run["replicas"], args, p2c=False),
                  "p2c_per_replica_fifo": replay_queues(sent, run["replicas"], args, p2c=True)}
        r, sm = sims["sim"]
        every = max(1, round(1.0 / args.step))  # the plotted series: one point a second
        res = {
            "policy": policy, "autoscaling": run["autoscaling"], "sim_cold_start_s": cs,
            "live": live, "sim": sm,
            "sim_variants": {k: v[1] for k, v in sims.items() if k != "sim"},
            "live_timeline_replayed": replay,
            "ratio_sim_over_live": {k: ratio(sm[k], live[k]) for k in ("replica_seconds", "slo_attainment", "latency_p99_s")},
            "ratio_sim_replica_queues_over_live": {k: ratio(sims["sim_replica_queues"][1][k], live[k])
                                                   for k in ("replica_seconds", "slo_attainment", "latency_p99_s")},
            "live_autoscaled_events": run["autoscaled_events"],
            "sim_decisions": [[round(t, 1), a, b, why] for t, a, b, why in r.decisions],
            "live_series": run["samples"],
            "sim_series": {"t": r.t[::every].tolist(), "ready": r.ready[::every].tolist(),
                           "starting": r.starting[::every].tolist()},
        }
        results.append(res)
    return {"results": results}


# ---------------------------------------------------------------------------------------------


def parse_options(items: list[str]) -> dict[str, dict]:
    """--set kpa:stable_window=30 -> {"kpa": {"stable_window": 30.0}}"""
    out: dict[str, dict] = {}
    for item in items:
        try:
            head, value = item.split("=", 1)
            policy, key = head.split(":", 1)
            out.setdefault(policy, {})[key] = float(value)
        except ValueError:
            raise SystemExit(f"--set {item!r}: expected POLICY:KEY=NUMBER, e.g. kpa:stable_window=30") from None
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=None, help="write NAME.json and NAME.png here")
    ap.add_argument("--name", default="sim-vs-live", help="file name stem of the outputs in --out")
    ap.add_argument("--trace", type=Path, default=TRACES / "azure-llm-2023-code.csv")
    ap.add_argument("--start", type=float, default=420.0, help="slice start in the trace (s)")
    ap.add_argument("--duration", type=float, default=600.0, help="slice length in the trace (s)")
    ap.add_argument("--speedup", type=float, default=2.0, help="time compression: trace seconds per replayed second")
    ap.add_argument("--policies", default="kpa,predictive")
    ap.add_argument("--set", dest="options", action="append", default=[], help="POLICY:KEY=VALUE policy option")
    ap.add_argument("--service-time", type=float, default=0.5)
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--setup-delay", type=float, default=8.0, help="seconds setup() sleeps (the cold start's bulk)")
    ap.add_argument("--utilization", type=float, default=0.7)
    ap.add_argument("--min", type=int, default=1)
    ap.add_argument("--max", type=int, default=10)
    ap.add_argument("--slo-wait", type=float, default=1.0, help="SLO: latency <= service time + this")
    ap.add_argument("--step", type=float, default=1.0, help="simulator step (s); 1 s = the live autoscaler's sampling")
    ap.add_argument("--raw", type=Path, default=None, help="also write every request and sample here")
    ap.add_argument("--from-raw", type=Path, default=None, help="skip the live runs: analyse this --raw file")
    ap.add_argument("--keep-home", action="store_true", help="keep the temporary CUMULO_HOME (logs, database)")
    args = ap.parse_args()
    options = parse_options(args.options)
    started = time.monotonic()

    if args.from_raw:
        raw = json.loads(args.from_raw.read_text())
        for k, v in raw.get("args", {}).items():  # the live run's settings win over the command line's
            setattr(args, k, Path(v) if k == "trace" else v)
    else:
        times = trace_slice(args.trace, args.start, args.duration, args.speedup)
        target_rps = args.utilization * args.concurrency / args.service_time
        n0 = initial_replicas(times, target_rps, args.min, args.max)
        load_before = os.getloadavg()
        home = Path(tempfile.mkdtemp(prefix="cumulo-svl-"))
        cp = ControlPlane(home)
        log(f"cumulo up in {home} at {cp.url}")
        cp.up()
        runs = []
        try:
            # the cold start the policies are told: one replica started on the idle machine
            import cumulo

            with cumulo.Client(cp.url, token=cp.token) as c:
                c.deploy(deployment_spec("svl-calibrate", args, 1, None))
                d = c.wait_deployment("svl-calibrate", timeout=180)
                rep = d.replicas[0]
                calibrated = (rep.ready_at - rep.created_at).total_seconds()
                c.delete_deployment("svl-calibrate")
            log(f"calibration: a replica is ready {calibrated:.2f} s after it is created")
            for policy in [p.strip() for p in args.policies.split(",") if p.strip()]:
                runs.append(live_run(cp, policy, times, float(times[-1]) + 1.0, n0, calibrated,
                                     options.get(policy, {}), args))
        finally:
            cp.down()
            if not args.keep_home:
                shutil.rmtree(home, ignore_errors=True)
        raw = {
            "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items() if k in LIVE_ARGS},
            "times": times.tolist(), "initial_replicas": n0, "cold_start_calibrated_s": calibrated, "runs": runs,
            "machine": {"python": platform.python_version(), "platform": platform.platform(), "cpus": os.cpu_count(),
                        "loadavg_before": load_before, "loadavg_after": os.getloadavg(),
                        "live_wall_s": round(time.monotonic() - started, 1)},
        }
        if args.raw:
            args.raw.write_text(json.dumps(raw))

    times = np.array(raw["times"])
    analysed = time.monotonic()
    report = {
        "what": "the same trace slice replayed live (cumulo up, real replicas, gateway) and in cumulo.sim",
        "trace": {"file": str(args.trace.name), "start_s": args.start, "duration_s": args.duration,
                  "speedup": args.speedup, "requests": len(times), "replayed_seconds": float(times[-1]) + 1.0},
        "settings": {"service_time_s": args.service_time, "concurrency": args.concurrency,
                     "setup_delay_s": args.setup_delay, "utilization": args.utilization,
                     "target_concurrency": args.utilization * args.concurrency,
                     "target_rps": args.utilization * args.concurrency / args.service_time,
                     "min": args.min, "max": args.max, "initial_replicas": raw["initial_replicas"],
                     "slo": f"latency <= {args.service_time:g} + {args.slo_wait:g} s", "sim_step_s": args.step,
                     "cold_start_calibrated_s": raw["cold_start_calibrated_s"]},
        "machine": raw["machine"],
        **analyse(raw, args),
    }
    report["machine"]["analysis_wall_s"] = round(time.monotonic() - analysed, 1)
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        plot(report["results"], times, args.out / f"{args.name}.png",
             f"{args.trace.name} [{args.start:g}, {args.start + args.duration:g}) s at x{args.speedup:g}: "
             f"replicas over time, live vs simulator")
        (args.out / f"{args.name}.json").write_text(json.dumps(report, indent=1) + "\n")
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
