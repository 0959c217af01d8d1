"""The autoscaler reconciler: sample each autoscaled deployment's load, ask its policy, set replicas.

Every second it samples the gateways (requests arrived so far, requests in flight, mean latency) into
a window per deployment; at the policy's own period it calls the pure policy with that window and
the policy's previous state, and records a changed replica count (Status: `desired_replicas`) with
an event giving the policy's reason. The deployment reconciler then starts or drains replicas.

The window is what the simulator (sim/model.py) hands the same policies: per step, the arrival rate
(demand: requests that reached a gateway, answered or not) and the requests in the system (in flight
at the gateway: queued or in service). Finished requests would show capacity, not demand: a
saturated deployment completes what its replicas can serve however many more arrive.

Load windows and policy state live in memory: after a control-plane restart they start empty,
and the policies fall back to their reactive behaviour until history builds up again.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np

from cumulo.core.specs import Autoscaling, DeploymentSpec
from cumulo.core.states import ReplicaState
from cumulo.core.tokens import route_key
from cumulo.policy.autoscaling import POLICIES, AutoscaleInput, LoadWindow, configure, period
from cumulo.store import deployments as store
from cumulo.store import events
from cumulo.store.db import Database
from cumulo.store.models import Deployment

log = logging.getLogger(__name__)

#: samples kept per deployment (one a second): enough for every policy's windows
WINDOW = 3600
STEP = 1.0


@dataclass(frozen=True)
class LoadSample:
    """What the gateways have seen of one deployment so far (counters only grow)."""

    arrivals_total: float  # requests that arrived (demand), counted before any replica is chosen
    requests_total: float  # requests answered: capacity under saturation, so never a policy's rate
    in_flight: float  # requests arrived and not yet answered: queued or in service (now)
    mean_latency: float  # seconds; 0 when nothing was served yet
    #: requests in flight integrated over time: its growth over a step / the step = mean concurrency
    in_flight_seconds: float | None = None


@dataclass
class _Track:
    #: one sample per STEP seconds, oldest first: arrivals/s in it, mean requests in flight in it
    rates: deque = field(default_factory=lambda: deque(maxlen=WINDOW))
    in_flight: deque = field(default_factory=lambda: deque(maxlen=WINDOW))
    last_time: float | None = None
    last_arrivals: float = 0.0
    last_in_flight_seconds: float | None = None
    state: Any = None
    last_decision: float = -1e18
    policy: str = ""

    def add(self, now: float, sample: LoadSample) -> bool:
        """Fold a reading into the window on a regular STEP grid (the policies weigh every sample
        as STEP seconds, as the simulator's): a reading sooner than that after the last one (a pass
        woken early) is skipped, and a late one fills the seconds it spans with its mean rate.
        True if samples were added."""
        if self.last_time is None:
            self.last_time, self.last_arrivals = now, sample.arrivals_total
            self.last_in_flight_seconds = sample.in_flight_seconds
            return False
        dt = now - self.last_time
        if dt < 0.9 * STEP:
            return False
        n = max(1, min(WINDOW, round(dt / STEP)))
        rate = max(0.0, sample.arrivals_total - self.last_arrivals) / dt
        # the mean concurrency over the interval, as the simulator's (an instant's count, when a
        # gateway gives no integral, swings by a few requests from one second to the next)
        if sample.in_flight_seconds is not None and self.last_in_flight_seconds is not None:
            concurrency = max(0.0, sample.in_flight_seconds - self.last_in_flight_seconds) / dt
        else:
            concurrency = sample.in_flight
        for _ in range(n):
            self.rates.append(rate)
            self.in_flight.append(concurrency)
        self.last_time, self.last_arrivals = now, sample.arrivals_total
        self.last_in_flight_seconds = sample.in_flight_seconds
        return True


class AutoscalerReconciler:
    name = "autoscaler"
    resync = 5.0

    def __init__(
        self,
        db: Database,
        *,
        load: Callable[[str], LoadSample],
        wake_deployment: Callable[[str], None],
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.db = db
        self.load = load
        self.wake_deployment = wake_deployment
        self.clock = clock
        self.wall = wall
        self._tracks: dict[str, _Track] = {}

    def keys(self) -> list[str]:
        with self.db.tx() as s:
            ids = store.autoscaled_ids(s)
        for gone in set(self._tracks) - set(ids):
            del self._tracks[gone]
        return ids

    def reconcile(self, dep_id: str) -> float | None:
        now = self.clock()
        with self.db.tx() as s:
            d = s.get(Deployment, dep_id)
            if d is None or d.deleting:
                self._tracks.pop(dep_id, None)
                return None
            spec = DeploymentSpec.model_validate(d.spec)
            a = spec.autoscaling
            if a is None:
                self._tracks.pop(dep_id, None)
                return None
            live = store.live_replicas(s, dep_id)
            ready = sum(1 for r in live if r.state == ReplicaState.READY.value)
            starting = sum(1 for r in live if r.state == ReplicaState.STARTING.value)
            current = d.desired_replicas if d.desired_replicas is not None else spec.initial_replicas()
            name, last_reason, workspace = d.name, d.autoscale_reason, d.workspace
        track = self._tracks.setdefault(dep_id, _Track())
        if track.policy != a.policy:
            # a new policy (or a new track: a new deployment, a restarted control plane) starts from no
            # state and first decides one policy period from now, on that much load, as in the
            # simulator; deciding on the first second seen had scaled a loaded deployment 5 -> 1
            track.state, track.last_decision, track.policy = None, now, a.policy
        sample = self.load(route_key(name, workspace))  # the gateway knows deployments by route key
        track.add(now, sample)
        cfg = configure(a.policy, a.options, scale_to_zero_after=a.scale_to_zero_after)
        if now - track.last_decision < period(cfg) or not track.rates:
            return STEP
        track.last_decision = now
        decision = POLICIES[a.policy][1](self._input(track, a, sample, now, ready, starting), cfg)
        track.state = decision.state
        desired = decision.desired
        if desired == 0 and sample.in_flight > 0:
            desired = 1  # requests are waiting at the gateway: never leave them with nothing
        if desired != current or decision.reason != last_reason:
            with self.db.tx() as s:
                d = s.get(Deployment, dep_id)
                if d is None:
                    return None
                d.desired_replicas, d.autoscale_reason = desired, decision.reason  # shown by deployment status
                if desired != current:  # a scaling decision: an event with the policy's reason
                    events.record(s, now=self.wall(), kind="Deployment", name=name, object_id=dep_id, type="Normal",
                                  reason="Autoscaled",
                                  message=f"{current} -> {desired} replicas ({a.policy}): {decision.reason}",
                                  workspace=workspace)
            if desired != current:
                self.wake_deployment(dep_id)
        return STEP

    @staticmethod
    def _input(track: _Track, a: Autoscaling, sample: LoadSample, now: float, ready: int, starting: int) -> AutoscaleInput:
        rates = np.fromiter(track.rates, float)  # arrivals per second in each sample, as in sim/
        concurrency = np.fromiter(track.in_flight, float)
        target_rps = a.target_rps or (a.target / sample.mean_latency if sample.mean_latency > 0 else a.target)
        return AutoscaleInput(
            now=now, load=LoadWindow(step=STEP, rates=rates, concurrency=concurrency), ready=ready,
            starting=starting, target_concurrency=a.target, target_rps=target_rps, min_replicas=a.min,
            max_replicas=a.max, cold_start=a.cold_start, state=track.state,
        )
