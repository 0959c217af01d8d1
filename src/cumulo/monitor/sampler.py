"""The sampler: every `interval` seconds (CUMULO_METRICS_INTERVAL, default 10) one sample of
everything cumulo runs, written to the store (store/metrics.py) and kept in memory for /metrics
and `cumulo monitor`.

- node (this machine): cpu_percent, memory_used_bytes, memory_total_bytes; per GPU (instance gpuN,
  through NVML where there is one) utilization, memory, temperature, power, ECC and XID errors.
  Engine nodes (Ray, Slurm): cpu/memory/gpus total and free, as the cluster's node sync last saw them.
- job: per rank (instance = rank) cpu_percent and memory_bytes of the worker's process tree,
  gpu_memory_bytes and gpu_utilization_percent (SM use of its processes, NVML); for the job
  (instance '') step, steps_per_second, progress (0-1, when it
  reports total_steps) and eta_seconds, from its cumulo.report() points.
- deployment: per replica (instance = ordinal) cpu_percent, memory_bytes, in_flight, and with the
  gateway's per-replica counters request_rate, error_rate, latency_mean_seconds; for the
  deployment request_rate (arrivals/s, every gateway), in_flight, latency_p50/p99_seconds and
  error_rate (5xx share) over the interval (this process's gateway), replicas_ready.

It is a reconciler with one key, so the control loop's error handling applies: a failing sample is
logged and retried with backoff, and never stops anything else.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

from cumulo.core.errors import CumuloError
from cumulo.core.progress import estimate
from cumulo.core.units import parse_duration
from cumulo.monitor.gpu import Gpus
from cumulo.monitor.procs import ProcTable
from cumulo.monitor.targets import DeploymentTarget, JobTarget, NodeTarget, Targets, read
from cumulo.store import metrics as store
from cumulo.store.db import Database
from cumulo.store.metrics import Retention, SeriesKey

log = logging.getLogger(__name__)

KEY = "sample"


def interval_from_env() -> float:
    """CUMULO_METRICS_INTERVAL: seconds between samples (default 10)."""
    raw = os.environ.get("CUMULO_METRICS_INTERVAL", "10")
    try:
        value = parse_duration(raw)
    except ValueError:
        raise CumuloError(f"CUMULO_METRICS_INTERVAL={raw!r} is not a duration; write it like 10 or 10s") from None
    if not 0.2 <= value <= 3600:
        raise CumuloError(f"CUMULO_METRICS_INTERVAL={raw!r}: give between 0.2 s and 1 h")
    return value


def retention_from_env() -> Retention:
    """CUMULO_METRICS_RAW_RETENTION (raw samples, default 24h) and CUMULO_METRICS_RETENTION
    (1-minute rollups, default 30d)."""
    out = []
    for var, default in (("CUMULO_METRICS_RAW_RETENTION", "24h"), ("CUMULO_METRICS_RETENTION", "30d")):
        raw = os.environ.get(var, default)
        try:
            seconds = parse_duration(raw)
        except ValueError:
            raise CumuloError(f"{var}={raw!r} is not a duration; write it like 24h or 30d") from None
        if seconds < 60:
            raise CumuloError(f"{var}={raw!r}: keep samples at least a minute (e.g. 24h)")
        out.append(int(seconds))
    return Retention(raw=out[0], rollup=max(out[1], out[0]))


@dataclass(frozen=True)
class GatewayCounters:
    """What the gateways counted for one deployment, cumulative (the sampler takes differences)."""

    arrivals_total: int = 0  # every gateway
    in_flight: int = 0  # every gateway
    requests_total: int = 0  # this process's gateway (codes and latency below are its)
    errors_total: int = 0
    latency_buckets: tuple[int, ...] = ()  # per BUCKETS bound, +Inf last (not cumulative)
    bucket_bounds: tuple[float, ...] = ()


class Sampler:
    name = "monitor"

    def __init__(self, db: Database, *, local_node: str, interval: float = 10.0,
                 retention: Retention = Retention(),
                 gateway: Callable[[str], GatewayCounters] | None = None,
                 replica_in_flight: Callable[[str, int], int] | None = None,
                 replica_counters: Callable[[str], Mapping[str, tuple[int, int, float]]] | None = None,
                 clock: Callable[[], float] = time.time, gpus: Gpus | None = None) -> None:
        self.db = db
        self.local_node = local_node
        self.interval = interval
        self.resync = 3600.0  # the single key requeues itself; nothing to list
        self.retention = retention
        self.gateway = gateway
        self.replica_in_flight = replica_in_flight
        #: route -> {replica id (ordinal): (answers, failures, latency seconds)}, cumulative (the gateway's)
        self.replica_counters = replica_counters
        self._prev_replicas: dict[str, tuple[float, Mapping[str, tuple[int, int, float]]]] = {}
        self.clock = clock
        self.gpus = gpus if gpus is not None else Gpus()
        self.procs = ProcTable()
        self.ids = store.SeriesIds()
        #: the newest sample of every series (what /metrics and `cumulo monitor` show)
        self.latest: dict[SeriesKey, float] = {}
        self.latest_t: int | None = None
        #: called after each sample is written: (t, values); the alert evaluator hooks in here
        self.listeners: list[Callable[[int, dict[SeriesKey, float]], None]] = []
        self.seconds_spent = 0.0  # CPU time of sampling so far (thread time), for the benchmark
        self._prev_counters: dict[str, tuple[float, GatewayCounters]] = {}
        self._workers_cache: dict[str, tuple[float, list]] = {}
        self._last_t = 0
        self._rolled_minute: int | None = None
        self._pruned_at = 0.0
        psutil.cpu_percent(None)  # the first call starts the measurement

    # -- reconciler protocol -----------------------------------------------------------------------
    def keys(self) -> list[str]:
        return [KEY]

    def reconcile(self, key: str) -> float | None:
        started = time.monotonic()
        self.sample()
        return max(self.interval - (time.monotonic() - started), 0.05)

    # -- one sample ------------------------------------------------------------------------------
    def sample(self) -> dict[SeriesKey, float]:
        cpu0 = time.thread_time()
        now = self.clock()
        t = max(int(now), self._last_t + 1)
        self._last_t = t
        with self.db.tx() as s:
            targets = read(s)
        self.procs.scan()
        values: dict[SeriesKey, float] = {}
        gpu_by_pid = self._gpus(values)
        self._host(values)
        self._nodes(values, targets)
        for job in targets.jobs:
            self._job(values, job, gpu_by_pid, now)
        for dep in targets.deployments:
            self._deployment(values, dep, now)
        self._forget_gone(targets)
        with self.db.tx() as s:
            store.write(s, t, values, self.ids)
            self._maintain(s, t)
        self.latest, self.latest_t = values, t
        for listener in list(self.listeners):
            try:
                listener(t, values)
            except Exception:
                log.exception("a metrics listener failed; the sample was stored")
        self.seconds_spent += time.thread_time() - cpu0
        return values

    def _forget_gone(self, targets: Targets) -> None:
        """Drop what the sampler remembers of jobs, replicas and deployments that are gone."""
        dirs = {j.run_dir for j in targets.jobs} | {r.run_dir for d in targets.deployments for r in d.replicas}
        self._workers_cache = {k: v for k, v in self._workers_cache.items() if k in dirs}
        routes = {d.route for d in targets.deployments}
        self._prev_counters = {k: v for k, v in self._prev_counters.items() if k in routes}
        self._prev_replicas = {k: v for k, v in self._prev_replicas.items() if k in routes}

    def _maintain(self, s: Any, t: int) -> None:
        minute = t - t % 60
        if self._rolled_minute != minute:  # a minute completed: roll it up
            store.roll_up(s, t)
            self._rolled_minute = minute
        if t - self._pruned_at >= 600:
            store.prune(s, t, self.retention, self.ids)
            self._pruned_at = t

    # -- nodes -----------------------------------------------------------------------------------
    def _host(self, v: dict) -> None:
        node = self.local_node
        mem = psutil.virtual_memory()
        v[SeriesKey("node", "", node, "", "cpu_percent")] = psutil.cpu_percent(None)
        v[SeriesKey("node", "", node, "", "memory_used_bytes")] = float(mem.total - mem.available)
        v[SeriesKey("node", "", node, "", "memory_total_bytes")] = float(mem.total)

    def _gpus(self, v: dict) -> dict[int, tuple[int, float]]:
        """Per GPU node series; returns pid -> (GPU memory bytes, SM utilization %) over all GPUs."""
        by_pid: dict[int, tuple[int, float]] = {}
        for g in self.gpus.sample():
            for metric, value in g.values.items():
                v[SeriesKey("node", "", self.local_node, f"gpu{g.index}", metric)] = value
            for pid in set(g.processes) | set(g.process_utilization):
                mem, util = by_pid.get(pid, (0, 0.0))
                by_pid[pid] = (mem + g.processes.get(pid, 0), util + g.process_utilization.get(pid, 0.0))
        return by_pid

    def _nodes(self, v: dict, targets: Targets) -> None:
        for n in targets.nodes:
            if n.name == self.local_node or n.cluster == "local":
                continue
            self._engine_node(v, n)

    @staticmethod
    def _engine_node(v: dict, n: NodeTarget) -> None:
        def put(metric: str, value: float | None) -> None:
            if value is not None:
                v[SeriesKey("node", "", n.name, "", metric)] = float(value)

        put("cpu_total", n.cpu)
        put("memory_total_bytes", n.memory)
        put("gpus_total", n.gpus)
        put("cpu_free", n.free.get("cpu"))
        put("memory_free_bytes", n.free.get("memory"))
        put("gpus_free", n.free.get("gpus"))
        put("ready", 1.0 if n.state == "Ready" else 0.0)

    # -- jobs ------------------------------------------------------------------------------------
    def _workers(self, run_dir: str) -> list:
        """The local runtime's workers.json (pid and start time per rank); read again every minute."""
        cached = self._workers_cache.get(run_dir)
        now = time.monotonic()
        if cached is not None and now - cached[0] < 60:
            return cached[1]
        try:
            workers = json.loads((Path(run_dir) / "workers.json").read_text())
        except (OSError, ValueError):
            workers = []
        workers = workers if isinstance(workers, list) else []
        if workers:
            self._workers_cache[run_dir] = (now, workers)
        return workers

    def _job(self, v: dict, job: JobTarget, gpu_by_pid: dict[int, tuple[int, float]], now: float) -> None:
        def key(instance: str, metric: str) -> SeriesKey:
            return SeriesKey("job", job.workspace, job.name, instance, metric)

        if job.run_dir is not None:  # this machine: measure the process trees
            for w in self._workers(job.run_dir):
                tree = self.procs.tree(w.get("pid"), w.get("start"))
                if tree is None:
                    continue
                rank = str(w.get("rank", 0))
                if tree.cpu_percent is not None:
                    v[key(rank, "cpu_percent")] = tree.cpu_percent
                v[key(rank, "memory_bytes")] = float(tree.rss)
                on_gpu = [gpu_by_pid[p] for p in tree.pids if p in gpu_by_pid]
                if self.gpus.available:  # a machine with GPUs: 0 when the worker uses none
                    v[key(rank, "gpu_memory_bytes")] = float(sum(mem for mem, _ in on_gpu))
                if on_gpu:  # it has a GPU context: how busy it keeps its GPUs (0 = idle)
                    v[key(rank, "gpu_utilization_percent")] = round(sum(util for _, util in on_gpu), 2)
        else:  # an engine: what the runtime last observed there
            for w in job.workers:
                rank = str(w.get("rank", 0))
                if w.get("cpu_percent") is not None:
                    v[key(rank, "cpu_percent")] = float(w["cpu_percent"])
                if w.get("memory_bytes") is not None:
                    v[key(rank, "memory_bytes")] = float(w["memory_bytes"])
        p = estimate(job.steps, job.total_steps, now)
        if p.step is not None:
            v[key("", "step")] = float(p.step)
        if p.steps_per_second is not None:
            v[key("", "steps_per_second")] = p.steps_per_second
        if p.fraction is not None:
            v[key("", "progress")] = p.fraction
        if p.eta_seconds is not None:
            v[key("", "eta_seconds")] = p.eta_seconds
        if p.since_report is not None:
            v[key("", "seconds_since_report")] = round(p.since_report, 3)

    # -- deployments -----------------------------------------------------------------------------
    def _deployment(self, v: dict, dep: DeploymentTarget, now: float) -> None:
        def key(instance: str, metric: str) -> SeriesKey:
            return SeriesKey("deployment", dep.workspace, dep.name, instance, metric)

        v[key("", "replicas_ready")] = float(dep.ready)
        for r in dep.replicas:
            inst = str(r.ordinal)
            if r.run_dir is not None:
                for w in self._workers(r.run_dir)[:1]:
                    tree = self.procs.tree(w.get("pid"), w.get("start"))
                    if tree is not None:
                        if tree.cpu_percent is not None:
                            v[key(inst, "cpu_percent")] = tree.cpu_percent
                        v[key(inst, "memory_bytes")] = float(tree.rss)
            if self.replica_in_flight is not None and r.port:
                v[key(inst, "in_flight")] = float(self.replica_in_flight(r.host, r.port))
        if self.replica_counters is not None:
            self._replica_rates(v, dep, now)
        if self.gateway is None:
            return
        c = self.gateway(dep.route)
        v[key("", "in_flight")] = float(c.in_flight)
        prev = self._prev_counters.get(dep.route)
        self._prev_counters[dep.route] = (now, c)
        if prev is None or now <= prev[0]:
            return
        dt = now - prev[0]
        before = prev[1]
        arrivals = c.arrivals_total - before.arrivals_total
        if arrivals < 0:  # counters restarted (a gateway dropped): no rate this time
            return
        v[key("", "request_rate")] = round(arrivals / dt, 4)
        done = c.requests_total - before.requests_total
        if done > 0:
            v[key("", "error_rate")] = round(max(c.errors_total - before.errors_total, 0) / done, 6)
            if c.latency_buckets and len(before.latency_buckets) == len(c.latency_buckets):
                delta = [max(a - b, 0) for a, b in zip(c.latency_buckets, before.latency_buckets, strict=True)]
                for q, name in ((0.5, "latency_p50_seconds"), (0.99, "latency_p99_seconds")):
                    got = quantile(delta, c.bucket_bounds, q)
                    if got is not None:
                        v[key("", name)] = round(got, 6)

    def _replica_rates(self, v: dict, dep: DeploymentTarget, now: float) -> None:
        """Per replica over the interval: answers/s, error rate (failures / answers) and mean latency."""
        current = dict(self.replica_counters(dep.route))
        prev = self._prev_replicas.get(dep.route)
        self._prev_replicas[dep.route] = (now, current)
        if prev is None or now <= prev[0]:
            return
        dt = now - prev[0]
        live = {str(r.ordinal) for r in dep.replicas}
        for rid, (answers, failures, seconds) in current.items():
            if rid not in live or rid not in prev[1]:
                continue
            a0, f0, s0 = prev[1][rid]
            done = answers - a0
            if done < 0:
                continue
            key = SeriesKey("deployment", dep.workspace, dep.name, rid, "request_rate")
            v[key] = round(done / dt, 4)
            if done > 0:
                v[key._replace(metric="error_rate")] = round(max(failures - f0, 0) / done, 6)
                v[key._replace(metric="latency_mean_seconds")] = round(max(seconds - s0, 0.0) / done, 6)

    def close(self) -> None:
        self.gpus.close()


def quantile(counts: list[int], bounds: tuple[float, ...], q: float) -> float | None:
    """A quantile from histogram counts (per bucket, +Inf last), linear within a bucket."""
    total = sum(counts)
    if total == 0 or not bounds:
        return None
    rank = q * total
    seen, lower = 0, 0.0
    for i, c in enumerate(counts):
        upper = bounds[i] if i < len(bounds) else bounds[-1]
        if c > 0 and seen + c >= rank:
            return lower + (upper - lower) * ((rank - seen) / c)
        seen += c
        lower = upper
    return bounds[-1]
