"""Clusters: the runtime that drives each one, and a reconciler that keeps their nodes in the store.

`Runtimes` hands a reconciler the runtime of a cluster by name: the local runtime for `local`, a
RayRuntime or SlurmRuntime built from the cluster's row for the others (built once, on first use;
a cluster's engine settings never change after `cumulo cluster add`).

`ClusterReconciler` asks each engine for its nodes every few seconds (one key per cluster, so an
unreachable engine is retried on its own and never holds up another), writes them as `nodes` rows
with the cluster's name, and records the cluster's state (Ready / Unreachable, with why) and an
event for each change: a cluster that became unreachable or reachable, a node that joined or was
lost.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from cumulo.policy.clusters import LOCAL
from cumulo.runtimes.base import Runtime, RuntimeUnavailable
from cumulo.store import clusters as clusters_store
from cumulo.store import events
from cumulo.store.db import Database

log = logging.getLogger(__name__)

#: how often each cluster's nodes are read from its engine
NODE_SYNC = 5.0
#: ... while a machine launched for the cluster waits to join it (its join is seen within a second)
JOIN_SYNC = 1.0


def utcnow() -> datetime:
    return datetime.now(UTC)


def run_root(artifacts: str) -> Path:
    """Where an engine's runtime keeps its launches (logs, status): beside the artifacts, on the
    filesystem every node of the cluster sees."""
    return Path(artifacts) / ".cumulo" / "runs"


def build_runtime(kind: str, address: str | None, partition: str | None, artifacts: str) -> Runtime:
    """The runtime for an engine's cluster. Raises RuntimeUnavailable when it cannot be built."""
    if kind == "ray":
        try:
            from cumulo.runtimes.ray import RayRuntime  # noqa: PLC0415 (the ray extra is optional)
        except ImportError as exc:
            raise RuntimeUnavailable(
                f"Ray clusters need the ray extra ({exc}): python -m pip install 'cumulo[ray]'") from None
        return RayRuntime(address or "", run_root(artifacts))
    if kind == "slurm":
        from cumulo.runtimes.slurm import SlurmRuntime  # noqa: PLC0415

        return SlurmRuntime(run_root(artifacts), partition=partition)
    raise RuntimeUnavailable(f"unknown cluster kind {kind!r}")


class Runtimes:
    """Cluster name -> its runtime."""

    def __init__(self, db: Database, local: Runtime,
                 factory: Callable[[str, str | None, str | None, str], Runtime] = build_runtime) -> None:
        self.db = db
        self.local = local
        self.factory = factory
        self._built: dict[str, Runtime] = {}
        self._artifacts: dict[str, str] = {}
        self._lock = threading.Lock()

    def get(self, cluster: str) -> Runtime:
        if cluster == LOCAL:
            return self.local
        runtime = self._built.get(cluster)
        if runtime is not None:
            return runtime
        with self._lock:
            if cluster not in self._built:
                with self.db.tx() as s:
                    row = clusters_store.get(s, cluster)
                    if row is None:
                        raise RuntimeUnavailable(f"cluster {cluster!r} does not exist")
                    kind, address, partition, artifacts = row.kind, row.address, row.partition, row.artifacts
                self._built[cluster] = self.factory(kind, address, partition, artifacts)
                self._artifacts[cluster] = artifacts
            return self._built[cluster]

    def artifacts(self, cluster: str) -> str:
        """An engine cluster's shared artifacts folder (read with its row, on first use)."""
        self.get(cluster)
        return self._artifacts[cluster]

    def forget(self, cluster: str) -> None:
        self._built.pop(cluster, None)
        self._artifacts.pop(cluster, None)


class ClusterReconciler:
    name = "clusters"
    resync = NODE_SYNC

    def __init__(self, db: Database, runtimes: Runtimes, clock: Callable[[], datetime] = utcnow) -> None:
        self.db = db
        self.runtimes = runtimes
        self.clock = clock
        self.wake: Callable[[str], None] = lambda key: None
        #: called when a cluster's capacity may have grown (a node joined, a cluster came back)
        self.capacity_changed: Callable[[], None] = lambda: None
        #: called with a launched machine's node name when the engine starts or stops listing it alive
        #: (app.py: the node reconciler's wake, so a joined machine is Ready at once)
        self.machine_changed: Callable[[str], None] = lambda name: None

    def keys(self) -> list[str]:
        with self.db.tx() as s:
            return [c.name for c in clusters_store.listing(s) if c.kind != LOCAL]

    def reconcile(self, name: str) -> float | None:
        with self.db.tx() as s:
            row = clusters_store.get(s, name)
            if row is None:
                self.runtimes.forget(name)
                return None
            kind = row.kind
        try:
            seen = self.runtimes.get(name).nodes()
            state, reason = "Ready", ""
        except RuntimeUnavailable as exc:
            seen, state, reason = None, "Unreachable", str(exc)
        except Exception as exc:  # an engine's unexpected answer must not stop the loop
            log.exception("cluster %s: reading its nodes failed", name)
            seen, state, reason = None, "Unreachable", f"reading its nodes failed: {exc}"
        now = self.clock()
        grew = False
        machines: list[str] = []
        with self.db.tx() as s:
            row = clusters_store.get(s, name)
            if row is None:
                return None
            if row.state != state:
                events.record(s, now=now, kind="Cluster", name=name, object_id=name,
                              type="Normal" if state == "Ready" else "Warning",
                              reason="ClusterReady" if state == "Ready" else "ClusterUnreachable",
                              message=f"cluster {name} is reachable" if state == "Ready"
                              else f"cluster {name} is unreachable: {reason}")
                grew = state == "Ready"
            row.state, row.reason, row.checked_at = state, reason, now
            if seen is not None:
                joined, lost = clusters_store.sync_nodes(s, name, kind, [_node_dict(n) for n in seen], now)
                for n in joined:
                    events.record(s, now=now, kind="Node", name=n, object_id=n, type="Normal", reason="NodeJoined",
                                  message=f"node {n} of cluster {name} joined")
                for n in lost:
                    events.record(s, now=now, kind="Node", name=n, object_id=n, type="Warning", reason="NodeLost",
                                  message=f"node {n} of cluster {name} was lost")
                grew = grew or bool(joined)
                machines = clusters_store.machines_of(s, joined + lost)
            joining = clusters_store.joining(s, name)
        for n in machines:
            self.machine_changed(n)
        if grew:
            self.capacity_changed()
        return JOIN_SYNC if joining else NODE_SYNC


def _node_dict(n) -> dict:
    labels = dict(n.labels)
    free = {k: v for k, v in (("cpu", n.cpu_free), ("memory", n.memory_free), ("gpus", n.gpus_free)) if v is not None}
    if free:
        labels["cumulo.free"] = free
    return {"engine_id": n.id, "address": n.address, "cpu": n.cpu, "memory": n.memory, "gpus": n.gpus,
            "gpu_type": n.gpu_type, "labels": labels, "alive": n.alive}
