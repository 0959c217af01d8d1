"""Self-repair of replicas: every PERIOD seconds per deployment, what the gateway saw of each ready
replica since the last pass (and each one's sampled memory) goes to the pure
`policy.replica_repair.decide_replica_repair`; a replica it picks gets `replace_reason` set, an event
with the evidence, and the deployment reconciler replaces it like a replica of an old version
(replacement first, then a drain), so no request fails.

The per-window counts and the detectors' state live in memory: after a restart each deployment
needs a few windows again before a replica is judged.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from datetime import UTC, datetime

from cumulo.control.alerts import open_repair_alert
from cumulo.core.specs import DeploymentSpec
from cumulo.core.tokens import route_key
from cumulo.policy.replica_repair import RepairParams, RepairState, ReplicaWindow, decide_replica_repair
from cumulo.store import deployments as store
from cumulo.store import events
from cumulo.store import metrics as metrics_store
from cumulo.store.models import Deployment

log = logging.getLogger(__name__)

PERIOD = float(os.environ.get("CUMULO_REPAIR_INTERVAL", "5"))


class ReplicaRepairReconciler:
    name = "replica-repair"
    resync = PERIOD

    def __init__(self, db, *, replica_stats: Callable[[str], dict[str, tuple[int, int, float]]],
                 params: RepairParams | None = None, monotonic: Callable[[], float] = time.monotonic,
                 period: float = PERIOD) -> None:
        self.db = db
        self.replica_stats = replica_stats
        self.params = params or RepairParams()
        self.monotonic = monotonic
        self.period = period
        self.wake_deployment: Callable[[str], None] = lambda dep_id: None
        self._prev: dict[str, dict[str, tuple[int, int, float]]] = {}
        self._state: dict[str, RepairState] = {}
        self._memory_t: dict[str, int] = {}
        self._at: dict[str, float] = {}  # when each deployment's window last closed

    def keys(self) -> list[str]:
        with self.db.tx() as s:
            ids = store.ids(s)
        for gone in set(self._state) - set(ids):
            self._state.pop(gone, None)
            self._prev.pop(gone, None)
            self._memory_t.pop(gone, None)
            self._at.pop(gone, None)
        return ids

    def reconcile(self, dep_id: str) -> float | None:
        with self.db.tx() as s:
            d = s.get(Deployment, dep_id)
            if d is None or d.deleting:
                return None
            spec = DeploymentSpec.model_validate(d.spec)
            name, workspace = d.name, d.workspace
            reps = store.live_replicas(s, dep_id)
            ready = {str(r.ordinal) for r in reps if r.state == "Ready"}
            replacing = any(r.replace_reason for r in reps) or any(r.state == "Draining" for r in reps)
            memory = self._memory(s, dep_id, workspace, name, ready) if spec.health.replace_before_oom else None
            desired = spec.replicas
            if spec.autoscaling is not None:
                desired = d.desired_replicas if d.desired_replicas is not None else spec.initial_replicas()
        if not spec.health.replace_outliers and not spec.health.replace_before_oom:
            return self.period
        t = self.monotonic()
        since = self._at.get(dep_id)
        if since is not None and t - since < self.period * 0.9:  # woken early: keep the windows even
            return self.period - (t - since)
        self._at[dep_id] = t
        now = self.replica_stats(route_key(name, workspace))
        before = self._prev.get(dep_id, {})
        self._prev[dep_id] = now
        windows = []
        for rid, (n, bad, secs) in now.items():
            if rid in ready and rid in before:
                n0, bad0, secs0 = before[rid]
                if n >= n0:
                    windows.append(ReplicaWindow(rid, n - n0, bad - bad0, secs - secs0))
        if not spec.health.replace_outliers:
            windows = []
        state, decision = decide_replica_repair(
            self.params, self._state.get(dep_id, RepairState()), t, windows,
            ready=len(ready), desired=desired, replacing=replacing, memory=memory,
            memory_limit=float(spec.resources.memory) if memory else None, window_s=self.period)
        self._state[dep_id] = state
        if decision is None:
            return self.period
        with self.db.tx() as s:
            r = store.replica(s, dep_id, int(decision.replica))
            if r is None or r.state != "Ready" or r.replace_reason:
                return self.period
            r.replace_reason = decision.message
            message = f"{decision.message} (evidence: {_evidence(decision.evidence)})"
            now = datetime.now(UTC)
            events.record(s, now=now, kind="Deployment", name=name, object_id=dep_id, type="Warning",
                          reason=decision.reason, workspace=workspace, message=message)
            open_repair_alert(s, workspace=workspace, deployment=name, reason=decision.reason, message=message, now=now)
        self.wake_deployment(dep_id)
        return self.period

    def _memory(self, s, dep_id: str, workspace: str, name: str, ready: set[str]) -> dict[str, float] | None:
        """The newest memory sample of each ready replica, once per sample (None: nothing new)."""
        latest = metrics_store.latest(s, kind="deployment", workspace=workspace, object=name, metric="memory_bytes")
        got = {k.instance: (t, v) for k, (t, v) in latest.items() if k.instance in ready}
        if not got:
            return None
        newest = max(t for t, _ in got.values())
        if newest <= self._memory_t.get(dep_id, 0):
            return None
        self._memory_t[dep_id] = newest
        return {rid: v for rid, (t, v) in got.items() if t == newest}


def _evidence(e: dict) -> str:
    keep = ("signal", "value", "expected", "threshold", "window_s")
    return ", ".join(f"{k}={e[k]:.4g}" if isinstance(e.get(k), float) else f"{k}={e[k]}" for k in keep if k in e)
