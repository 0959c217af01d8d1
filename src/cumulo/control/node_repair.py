"""Self-repair of nodes: every PERIOD seconds, each node's GPU counters (the sampler's NVML
readings in the metrics store) go to the pure `policy.node_repair.gpu_fault`; a faulty node is
cordoned (no new work lands on it), its replicas are replaced elsewhere (started first, then
drained), a machine a node pool manages is released (the pool launches another when work needs
it), and it is an event and a `NodeGpuFault` alert with the evidence. Jobs running there are left
to finish or fail; a retry lands elsewhere. A lost node (its engine's heartbeat) is the cluster
sync's: its attempts end NodeLost or NodePreempted and its replicas are replaced.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from datetime import UTC, datetime

from sqlalchemy import select

from cumulo.policy.node_repair import GpuReading, gpu_fault
from cumulo.store import alerts as alerts_store
from cumulo.store import events
from cumulo.store import metrics as metrics_store
from cumulo.store.models import Node, Replica

log = logging.getLogger(__name__)

PERIOD = float(os.environ.get("CUMULO_NODE_REPAIR_INTERVAL", "10"))
METRICS = {"gpu_xid_errors": "xid_errors", "gpu_last_xid": "last_xid", "gpu_ecc_errors_uncorrected": "ecc_uncorrected"}


def utcnow() -> datetime:
    return datetime.now(UTC)


class NodeRepairReconciler:
    name = "node-repair"
    resync = PERIOD

    def __init__(self, db, *, clock: Callable[[], datetime] = utcnow, period: float = PERIOD) -> None:
        self.db = db
        self.clock = clock
        self.period = period
        self.wake_deployment: Callable[[str], None] = lambda dep_id: None
        self._seen: dict[str, dict[str, GpuReading]] = {}

    def keys(self) -> list[str]:
        return ["nodes"]

    def reconcile(self, _key: str) -> float | None:
        now = self.clock()
        with self.db.tx() as s:
            latest = metrics_store.latest(s, kind="node", metric=list(METRICS))
        readings: dict[str, dict[str, dict]] = {}
        for key, (_t, value) in latest.items():
            readings.setdefault(key.object, {}).setdefault(key.instance, {})[METRICS[key.metric]] = value
        for node, gpus in readings.items():
            cur = {gpu: GpuReading(**vals) for gpu, vals in gpus.items()}
            why = gpu_fault(self._seen.get(node, {}), cur)
            self._seen[node] = cur
            if why:
                self._repair(node, why, now)
        return self.period

    def _repair(self, name: str, why: str, now: datetime) -> None:
        woken = []
        with self.db.tx() as s:
            node = s.get(Node, name)
            if node is None or node.cordoned:
                return
            node.cordoned = f"GPU fault: {why}"
            live = select(Replica).where(Replica.state == "Ready", Replica.replace_reason.is_(None))
            live = live.where(Replica.cluster == "local") if node.cluster == "local" else live.where(Replica.node == name)
            moved = list(s.scalars(live))
            for r in moved:
                r.replace_reason = f"its node {name} is cordoned (GPU fault: {why})"
                woken.append(r.deployment_id)
            released = node.node_pool is not None and not node.release_requested
            if released:
                node.release_requested = True
            what = f"cordoned {name}: {why}; {len(moved)} replica(s) moved" + \
                   ("; the machine is released (its pool replaces it when work needs one)" if released else "")
            events.record(s, now=now, kind="Node", name=name, object_id=name, type="Warning", reason="NodeCordoned",
                          message=what)
            alerts_store.open_one(s, workspace="default", rule_name="NodeGpuFault", target="node", obj=name,
                                  instance="", severity="critical", summary=what, evidence={"fault": why},
                                  now=now, firing=True)
        log.warning("%s", what)
        for dep_id in set(woken):
            self.wake_deployment(dep_id)
