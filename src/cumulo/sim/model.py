"""The replica model: a time-stepped fluid queue driven by an autoscaling policy.

Each step of ``dt`` seconds (1 s by default):

1. replicas whose cold start (default 30 s) has elapsed become ready;
2. capacity is ``ready * concurrency * dt`` slot-seconds; the step's arriving work joins the FIFO
   backlog and as much of the backlog as capacity allows is served (work-conserving, no drops);
3. the load the policy sees is recorded: arrival rate, and concurrency = busy slots + queued
   requests (what a gateway or queue-proxy counts as in flight);
4. when the policy's period has come, it is asked (pure ``decide``) and its desired count is
   applied: new replicas start (ready after the cold start), a lower count cancels starting replicas
   first, then removes ready ones at once.

A request's queueing delay is read off the cumulative arrived-work and served-work curves (FIFO,
linear inside a step): it starts service when everything that arrived before it has been served.
That is one queue shared by every replica (``queue="shared"``, the default). With
``queue="replica"`` (request traces only) latencies are instead replayed request by request on the
same replica timeline: each request joins, on arrival, the ready replica with the fewest
outstanding requests and waits in that replica's own FIFO, so a backlog queued while few replicas
were ready is not taken over by replicas that become ready later; that is what cumulo's gateway
(least outstanding, no queue of its own) in front of replicas with ``max_queue`` does
(docs/benchmarks/sim-vs-live.md). The policies' load signals come from the fluid queue either way.
Latency = queueing delay + its own service time. Replica-seconds count starting replicas too
(they are paid for). Per-step mode puts each step's requests at the step's middle.
"""

from __future__ import annotations

import heapq
import math
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from cumulo.core.errors import InvalidSpec
from cumulo.policy.autoscaling import POLICIES, period
from cumulo.policy.autoscaling.base import AutoscaleInput, LoadWindow
from cumulo.sim.load import Load

__all__ = ["ReplicaModel", "SimResult", "check_eval_from", "make_config", "simulate"]

#: seconds of history handed to a policy at each decision
WINDOW_SECONDS = 600.0


@dataclass(frozen=True)
class ReplicaModel:
    concurrency: int = 8
    cold_start: float = 30.0
    min_replicas: int = 1
    max_replicas: int = 1000
    utilization: float = 0.7
    slo_wait: float = 1.0
    price_per_hour: float = 1.0
    #: replicas up at the start; None = what the first minute of load needs at the target
    initial_replicas: int | None = None
    #: "shared": one FIFO in front of every replica (fluid); "replica": each request queues at the
    #: replica it is sent to on arrival (least outstanding), as behind cumulo's gateway
    queue: str = "shared"

    def __post_init__(self) -> None:
        checks = [
            (self.concurrency >= 1, "concurrency", "must be >= 1"),
            (self.cold_start >= 0, "cold_start", "must be >= 0"),
            (self.min_replicas >= 0, "min_replicas", "must be >= 0"),
            (self.max_replicas >= max(1, self.min_replicas), "max_replicas", "must be >= min_replicas and >= 1"),
            (0 < self.utilization <= 2, "utilization", "must be in (0, 2]"),
            (self.slo_wait >= 0, "slo_wait", "must be >= 0"),
            (self.price_per_hour >= 0, "price_per_hour", "must be >= 0"),
            (self.queue in ("shared", "replica"), "queue", "must be 'shared' or 'replica'"),
        ]
        for ok, f, msg in checks:
            if not ok:
                raise InvalidSpec(f"{f}: {msg}", errors=[{"field": f, "message": msg}])


@dataclass
class SimResult:
    policy: str
    metrics: dict[str, Any]
    t: np.ndarray = field(repr=False)
    rates: np.ndarray = field(repr=False)
    ready: np.ndarray = field(repr=False)
    starting: np.ndarray = field(repr=False)
    capacity_rps: np.ndarray = field(repr=False)
    step_latency: np.ndarray = field(repr=False)
    decisions: list[tuple[float, int, int, str]] = field(default_factory=list, repr=False)


def make_config(name: str, load: Load, model: ReplicaModel, overrides: dict[str, Any] | None = None) -> Any:
    """The policy's config: its published defaults, plus ``overrides``; the oracle gets the future."""
    if name not in POLICIES:
        known = ", ".join(sorted(POLICIES))
        raise InvalidSpec(f"policy: unknown {name!r}; one of {known}", errors=[{"field": "policy", "message": f"one of {known}"}])
    cls, _ = POLICIES[name]
    kw = dict(overrides or {})
    if name == "oracle":
        # the future in effective requests/s (work / mean service time), so token traces count right
        kw.setdefault("rates", load.work / (load.mean_service * load.step))
        kw.setdefault("step", load.step)
    try:
        return cls(**kw)
    except TypeError as e:
        raise InvalidSpec(f"policy option: {e}", errors=[{"field": "policy_options", "message": str(e)}]) from None


def simulate(load: Load, policy: str, model: ReplicaModel = ReplicaModel(), *, config: Any = None, eval_from: float = 0.0) -> SimResult:
    """Replay ``load`` under ``policy``; metrics cover the steps from ``eval_from`` seconds on."""
    cfg = config if config is not None else make_config(policy, load, model)
    _, decide = POLICIES[policy]
    dt = load.step
    T = load.steps
    check_eval_from(load, eval_from)
    k = model.concurrency
    target_conc = model.utilization * k
    target_rps = model.utilization * k / load.mean_service
    every = max(1, int(round(period(cfg) / dt)))
    win = max(1, int(round(WINDOW_SECONDS / dt)))

    rates = load.rates
    work = load.work.tolist()
    sbar = load.mean_service
    conc = np.zeros(T)
    served_cum = np.zeros(T + 1)
    backlog_end = np.zeros(T)
    ready_s = np.zeros(T, dtype=np.int32)
    starting_s = np.zeros(T, dtype=np.int32)

    first = float(rates[: max(1, int(60 / dt))].mean()) if T else 0.0
    initial = math.ceil(first / target_rps - 1e-9) if model.initial_replicas is None else model.initial_replicas
    n_ready = int(max(model.min_replicas, min(model.max_replicas, initial)))
    starting: deque[float] = deque()
    state: Any = None
    desired_prev = n_ready
    decisions: list[tuple[float, int, int, str]] = []
    if model.queue == "replica" and load.times is None:
        raise InvalidSpec("queue: 'replica' needs a trace of individual requests",
                          errors=[{"field": "queue", "message": "needs individual requests"}])
    cap_step = k * dt
    B = 0.0
    cum = 0.0
    up: list[list[float]] = [[0.0, math.inf] for _ in range(n_ready)]  # [ready, removed] per replica
    stack = list(range(n_ready))  # ready replicas, newest last (a scale-down removes the newest)
    for t in range(T):
        now = t * dt
        while starting and starting[0] <= now + 1e-9:
            starting.popleft()
            n_ready += 1
            stack.append(len(up))
            up.append([now, math.inf])
        cap = n_ready * cap_step
        tot = B + work[t]
        served = min(tot, cap)
        B = tot - served
        if B < 1e-9:
            B = 0.0
        cum += served
        served_cum[t + 1] = cum
        backlog_end[t] = B
        conc[t] = served / dt + B / sbar
        ready_s[t] = n_ready
        starting_s[t] = len(starting)
        if (t + 1) % every == 0:
            lo = t + 1 - win if t + 1 > win else 0
            inp = AutoscaleInput(
                now=now + dt,
                load=LoadWindow(dt, rates[lo : t + 1], conc[lo : t + 1]),
                ready=n_ready,
                starting=len(starting),
                target_concurrency=target_conc,
                target_rps=target_rps,
                min_replicas=model.min_replicas,
                max_replicas=model.max_replicas,
                cold_start=model.cold_start,
                state=state,
            )
            d = decide(inp, cfg)
            state = d.state
            want = d.desired
            have = n_ready + len(starting)
            if want != desired_prev:
                decisions.append((now + dt, desired_prev, want, d.reason))
                desired_prev = want
            if want > have:
                ready_at = now + dt + model.cold_start
                for _ in range(want - have):
                    starting.append(ready_at)
            elif want < have:
                drop = have - want
                while drop and starting:
                    starting.pop()
                    drop -= 1
                n_ready -= drop
                for _ in range(drop):
                    up[stack.pop()][1] = now + dt

    e0 = min(T, max(0, int(math.ceil(eval_from / dt - 1e-9))))
    lat = _replica_latencies(load.times, load.service, up, k) if model.queue == "replica" else None
    metrics, step_latency = _metrics(load, model, served_cum, backlog_end, ready_s, starting_s, decisions, e0, T, lat)
    metrics = {"policy": policy, **metrics}
    if e0 > 0:  # the fitting part too, for tuning on it
        metrics["fit"] = _metrics(load, model, served_cum, backlog_end, ready_s, starting_s, decisions, 0, e0, lat)[0]
    return SimResult(
        policy, metrics, np.arange(T) * dt, rates, ready_s, starting_s, ready_s * k / sbar, step_latency, decisions
    )


def check_eval_from(load: Load, eval_from: float) -> None:
    """``eval_from`` must leave at least one step of the trace to evaluate."""
    length = load.steps * load.step
    if not (0 <= eval_from < length):
        msg = (f"{eval_from:g} s is outside the trace {load.name!r}, which is {length:g} s long; "
               f"give a value from 0 up to below {length:g}")
        raise InvalidSpec(f"eval_from: {msg}", errors=[{"field": "eval_from", "message": msg}])


def _replica_latencies(times: np.ndarray, service: np.ndarray, up: list[list[float]], k: int) -> np.ndarray:
    """Each request, in arrival order, joins the replica ready at its arrival with the fewest
    outstanding requests (the oldest on a tie; if none is ready, the next to become ready) and
    starts when one of that replica's ``k`` slots is free. A removed replica finishes what it holds."""
    slots = [[r] * k for r, _ in up]  # when each slot is next free (a min-heap per replica)
    outstanding: list[list[float]] = [[] for _ in up]  # finish times of what each replica holds
    lat = np.full(len(times), np.inf)
    for i, (t, s) in enumerate(zip(times.tolist(), service.tolist(), strict=True)):
        live = [j for j, (r, e) in enumerate(up) if r <= t < e]
        if not live:
            later = [j for j, (r, _) in enumerate(up) if r > t]
            if not later:
                continue  # never served inside the run
            live = [min(later, key=lambda j: up[j][0])]
        for j in live:
            while outstanding[j] and outstanding[j][0] <= t:
                heapq.heappop(outstanding[j])
        j = min(live, key=lambda j: len(outstanding[j]))
        start = max(t, heapq.heappop(slots[j]))
        heapq.heappush(slots[j], start + s)
        heapq.heappush(outstanding[j], start + s)
        lat[i] = start + s - t
    return lat


def _start_times(served_cum: np.ndarray, positions: np.ndarray, dt: float) -> np.ndarray:
    """When the served-work curve reaches each position (s); inf if never."""
    idx = np.searchsorted(served_cum, positions, side="left")
    out = np.full(len(positions), np.inf)
    ok = idx < len(served_cum)
    i = idx[ok]
    lo = np.maximum(i - 1, 0)
    span = served_cum[i] - served_cum[lo]
    frac = np.where(span > 0, (positions[ok] - served_cum[lo]) / np.where(span > 0, span, 1.0), 0.0)
    out[ok] = (lo + np.clip(frac, 0.0, 1.0)) * dt
    out[ok & (idx == 0)] = 0.0
    return out


def weighted_quantile(values: np.ndarray, weights: np.ndarray, q: float) -> float:
    if len(values) == 0 or weights.sum() <= 0:
        return math.nan
    order = np.argsort(values, kind="stable")
    v, w = values[order], weights[order]
    c = np.cumsum(w)
    i = int(np.searchsorted(c, q * c[-1], side="left"))
    return float(v[min(i, len(v) - 1)])


def _metrics(load, model, served_cum, backlog_end, ready_s, starting_s, decisions, e0, e1, replica_lat=None):
    """Metrics over steps [e0, e1); ``replica_lat``: per-request latencies of ``queue="replica"``."""
    dt = load.step
    T = load.steps
    arrived_before = np.concatenate(([0.0], np.cumsum(load.work)))
    step_latency = np.zeros(T)
    if load.times is not None and load.service is not None:
        before = np.concatenate(([0.0], np.cumsum(load.service)[:-1]))
        start = _start_times(served_cum, before + 1e-9, dt)
        step_idx = np.minimum((load.times / dt).astype(np.int64), T - 1)
        wait = np.maximum(0.0, start - load.times)
        wait[backlog_end[step_idx] == 0] = 0.0  # nothing queued when its step ended: served at once
        if replica_lat is not None:
            wait = replica_lat - load.service
        lat = wait + load.service
        mask = (step_idx >= e0) & (step_idx < e1)
        values, weights, waits = lat[mask], np.ones(int(mask.sum())), wait[mask]
        np.maximum.at(step_latency, step_idx, lat)
    else:
        mid = arrived_before[:-1] + load.work / 2
        start = _start_times(served_cum, mid, dt)
        wait = np.maximum(0.0, start - (np.arange(T) + 0.5) * dt)
        wait[backlog_end == 0] = 0.0
        lat = wait + load.mean_service
        step_latency = np.where(load.counts > 0, lat, 0.0)
        values, weights, waits = lat[e0:e1], load.counts[e0:e1], wait[e0:e1]
    total = float(weights.sum())
    ok = float(weights[waits <= model.slo_wait + 1e-9].sum())
    rs = float((ready_s[e0:e1].astype(float) + starting_s[e0:e1]).sum() * dt)
    t0, t1 = e0 * dt, e1 * dt
    actions = [d for d in decisions if t0 < d[0] <= t1]
    cold_starts = sum(max(0, d[2] - d[1]) for d in actions)
    return (
        {
            "trace": load.name,
            "evaluated_from_s": t0,
            "evaluated_seconds": (e1 - e0) * dt,
            "requests": int(round(total)),
            "slo": f"latency <= service time + {model.slo_wait:g} s",
            # no request arrived in [e0, e1): nothing was attained or missed (nan, never 100 %)
            "slo_attainment": ok / total if total else math.nan,
            "latency_p50_s": weighted_quantile(values, weights, 0.50),
            "latency_p99_s": weighted_quantile(values, weights, 0.99),
            "replica_seconds": rs,
            "cost": rs / 3600.0 * model.price_per_hour,
            "seconds_under_provisioned": float((backlog_end[e0:e1] > 0).sum() * dt),
            "scaling_actions": len(actions),
            "cold_starts": cold_starts,
            "mean_replicas": rs / ((e1 - e0) * dt) if e1 > e0 else 0.0,
            "max_replicas": int((ready_s[e0:e1] + starting_s[e0:e1]).max()) if e1 > e0 else 0,
        },
        step_latency,
    )
