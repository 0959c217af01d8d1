"""Gateways running on their own (`cumulo gateway`): their sync with the control plane.

Every poll a standalone gateway (each worker process of it, under its own id) POSTs what it saw
since it started, and gets back the routes and the hold list (deployments that may scale from zero,
whose requests it holds while a first replica starts). The control plane keeps the latest report of
each gateway heard from within `ttl` seconds, so that the autoscaler's load and the drain wait before
a replica's SIGTERM count the traffic of every gateway, not only the one inside `cumulo up`.

Counters are cumulative per gateway; their sum over gateways must only grow (the autoscaler takes
rates from differences), so each gateway's growth since its previous report is added to totals kept
here, and a gateway first heard from (or heard from again after it was dropped) only sets its
baseline: a control-plane restart or a gateway that was cut off does not show up as a burst.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from cumulo.store.db import Database
from cumulo.store.gateway_view import GatewayView, gateway_view

__all__ = ["Counters", "GatewayRegistry", "GatewayReport"]

#: a gateway not heard from for this long is dropped (it polls every 0.5 s by default)
TTL = 5.0

Address = tuple[str, int]


@dataclass(frozen=True)
class Counters:
    """One deployment's counters as one gateway saw them (cumulative but `in_flight`)."""

    arrivals_total: float = 0.0
    requests_total: float = 0.0
    in_flight: float = 0.0
    latency_sum: float = 0.0
    latency_count: float = 0.0
    in_flight_seconds: float = 0.0  # requests in flight integrated over time
    #: during a canary rollout, per generation: (requests, errors, latency bucket counts), cumulative
    generations: dict[int, tuple[int, int, tuple[int, ...]]] = field(default_factory=dict)


@dataclass(frozen=True)
class GatewayReport:
    gateway_id: str
    deployments: dict[str, Counters]
    #: requests in flight to each replica address; `routed`: the addresses its table routes to now
    in_flight: dict[Address, int] = field(default_factory=dict)
    routed: frozenset[Address] = frozenset()


@dataclass
class _Gateway:
    seen: float
    last: dict[str, Counters]
    in_flight: dict[Address, int]
    routed: frozenset[Address]
    handed: frozenset[Address] = frozenset()  # the addresses in the routes it was sent last


_CUMULATIVE = ("arrivals_total", "requests_total", "latency_sum", "latency_count", "in_flight_seconds")


class GatewayRegistry:
    def __init__(self, db: Database, *, ttl: float = TTL, clock: Callable[[], float] = time.monotonic) -> None:
        self.db = db
        self.ttl = ttl
        self.clock = clock
        self._lock = threading.Lock()
        self._gateways: dict[str, _Gateway] = {}
        self._totals: dict[str, dict[str, float]] = {}  # deployment -> summed growth of each counter
        #: deployment -> generation -> summed growth of [requests, errors, *buckets]
        self._gen_totals: dict[str, dict[int, list[int]]] = {}

    def sync(self, report: GatewayReport) -> GatewayView:
        """Record `report`; return what the gateway is to serve: routes, hold list, deployment tokens."""
        with self.db.tx() as s:
            view = gateway_view(s, datetime.now(UTC))
        handed = frozenset((h, p) for eps in view.routes.values() for _o, h, p in eps)
        self.record(report, handed)
        return view

    def record(self, report: GatewayReport, handed: frozenset[Address] = frozenset()) -> None:
        now = self.clock()
        with self._lock:
            self._expire(now)
            prev = self._gateways.get(report.gateway_id)
            if prev is not None:
                for name, c in report.deployments.items():
                    before = prev.last.get(name)
                    totals = self._totals.setdefault(name, dict.fromkeys(_CUMULATIVE, 0.0))
                    for f in _CUMULATIVE:
                        new, old = getattr(c, f), getattr(before, f) if before is not None else 0.0
                        totals[f] += new - old if new >= old else new  # a counter reset: it restarted
                    if c.generations:
                        gens = self._gen_totals.setdefault(name, {})
                        for gen, (req, err, buckets) in c.generations.items():
                            was = before.generations.get(gen) if before is not None else None
                            now_v = [req, err, *buckets]
                            old_v = [was[0], was[1], *was[2]] if was is not None else []
                            if len(old_v) != len(now_v) or req < old_v[0]:
                                old_v = [0] * len(now_v)  # first seen, or it restarted
                            acc = gens.setdefault(gen, [0] * len(now_v))
                            if len(acc) < len(now_v):
                                acc.extend([0] * (len(now_v) - len(acc)))
                            for i, (a, b) in enumerate(zip(now_v, old_v, strict=True)):
                                acc[i] += max(a - b, 0)
            self._gateways[report.gateway_id] = _Gateway(now, dict(report.deployments), dict(report.in_flight),
                                                         report.routed, handed)

    def totals(self, name: str) -> Counters:
        """Deployment `name` summed over the gateways (cumulative counters only grow; in flight is
        the latest report of each live gateway)."""
        now = self.clock()
        with self._lock:
            self._expire(now)
            t = self._totals.get(name, {})
            in_flight = sum(g.last[name].in_flight for g in self._gateways.values() if name in g.last)
        return Counters(in_flight=in_flight, **{f: t.get(f, 0.0) for f in _CUMULATIVE})

    def generation_totals(self, name: str) -> dict[int, tuple[int, int, tuple[int, ...]]]:
        """Deployment `name`'s per-generation counters summed over the gateways (cumulative, only
        growing): generation -> (requests, errors, latency bucket counts)."""
        with self._lock:
            gens = self._gen_totals.get(name, {})
            return {g: (v[0], v[1], tuple(v[2:])) for g, v in gens.items()}

    def in_flight_to(self, host: str, port: int) -> int:
        """Requests the live gateways may have in flight to this address: what they reported, plus
        one for each gateway that still routes there or was last sent routes that do (it could
        start a request there before its next report)."""
        addr = (host, port)
        now = self.clock()
        with self._lock:
            self._expire(now)
            return sum(g.in_flight.get(addr, 0) + (addr in g.routed) + (addr in g.handed)
                       for g in self._gateways.values())

    def live(self) -> list[str]:
        with self._lock:
            self._expire(self.clock())
            return sorted(self._gateways)

    def arrivals_by_gateway(self, name: str) -> dict[str, float]:
        """Each live gateway's own arrivals count for deployment `name` (as it last reported it)."""
        with self._lock:
            self._expire(self.clock())
            return {gid: g.last[name].arrivals_total if name in g.last else 0.0
                    for gid, g in sorted(self._gateways.items())}

    def _expire(self, now: float) -> None:
        for gid in [g for g, v in self._gateways.items() if now - v.seen > self.ttl]:
            del self._gateways[gid]
