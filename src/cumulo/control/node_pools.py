"""The node pool reconciler: scale each pool's machines with the work waiting on its cluster.

One pass over one pool: load (lease the row; read the pool's nodes, the cluster as placement sees
it, what cumulo's work holds, the Pending jobs bound to the cluster, the month's spend, the
provider quotas left), decide with the pure `policy.node_pools.decide_pool`, apply in ONE
transaction guarded by the lease: a `pools` row and a Provisioning `nodes` row (cluster and
node_pool set) per launch, `release_requested` per release, the policy's state, the notes each
waiting job shows in its Pending reason, and an event per decision with its reason and $/h.

Nothing is launched here: the node reconciler (`control/resources.py`) launches each node row
with a launch token derived from the node's name, and node names come from the pool's sequence
number, which the same transaction advances. A crash before that commit leaves nothing (the next
pass decides again); after it, the rows are there and the node reconciler launches each exactly
once. So a SIGKILL in the middle of a scale-up never makes a second machine, and a machine whose
row is gone is terminated by the orphan sweep.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Mapping
from dataclasses import replace
from datetime import UTC, datetime

from sqlalchemy import or_, select

from cumulo.control import provider_quotas
from cumulo.core.faults import crash_at
from cumulo.core.offerings import Offering
from cumulo.core.specs import JobSpec, NodePoolSpec
from cumulo.core.states import JobState, NodeState
from cumulo.policy.capacity import Allocation, Request
from cumulo.policy.clusters import ClusterView
from cumulo.policy.node_pools import PendingWork, PoolDecision, PoolInput, PoolNode, decide_pool
from cumulo.store import allocations as allocations_store
from cumulo.store import clusters as clusters_store
from cumulo.store import events, leases
from cumulo.store import node_pools as store
from cumulo.store import resources as resources_store
from cumulo.store.db import Database
from cumulo.store.deployments import LIVE as LIVE_REPLICA
from cumulo.store.jobs import ACTIVE_ATTEMPT
from cumulo.store.models import Attempt, Job, Node, NodePool, Pool, Replica

log = logging.getLogger(__name__)

LEASE_TTL = 60.0
#: providers a pool uses only when its spec names them
NAMED_ONLY = ("local", "local-vm")
#: how often a pool is looked at without a hint (idle nodes age; limits may have moved)
RESYNC = 5.0


def utcnow() -> datetime:
    return datetime.now(UTC)


def _labels_name(row: Node, name: str) -> bool:
    return any(v == name for v in (row.labels or {}).values() if isinstance(v, str))


class NodePoolReconciler:
    name = "nodepools"
    resync = RESYNC

    def __init__(
        self, db: Database, *, offerings: Callable[[], list[Offering]], providers: list[str],
        quotas: Callable[[], Mapping[tuple[str, str], Mapping[str, float]]] = dict,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.db = db
        self.offerings = offerings
        self.providers = providers  # providers with a driver
        self.quotas = quotas  # provider quota limits per (provider, region), e.g. from the account
        self.clock = clock
        #: wake the node reconciler for a node row (launch it, release it)
        self.wake_node: Callable[[str], None] = lambda name: None
        #: wake the job reconciler for a job whose Pending reason changed
        self.wake_job: Callable[[str], None] = lambda job_id: None
        self.wake: Callable[[str], None] = lambda name: None

    def keys(self) -> list[str]:
        with self.db.tx() as s:
            return store.names(s)

    def wake_cluster(self, cluster: str | None = None) -> None:
        """Look at the pools of a cluster (every pool when None) now: work went Pending, nodes changed."""
        with self.db.tx() as s:
            names = [p.name for p in (store.of_cluster(s, cluster) if cluster else store.listing(s))]
        for n in names:
            self.wake(n)

    # -- one pass --------------------------------------------------------------------------------
    def reconcile(self, name: str) -> float | None:
        token = uuid.uuid4().hex
        now = self.clock()
        catalog = self.offerings()
        with self.db.tx() as s:
            if not leases.claim(s, NodePool, name, token, now, LEASE_TTL):
                return 1.0 if store.get(s, name) is not None else None
            row = store.by_name(s, name)
            if row.deleting:
                wake, gone = self._delete(s, row, token, now)
            else:
                wake, gone = None, False
            if wake is None:
                spec = NodePoolSpec.model_validate(row.spec)
                # the made-up local-vm machines are launched only when named, as by `resources create`
                allowed = spec.providers or [p for p in self.providers if p not in NAMED_ONLY]
                offerings = [o for o in catalog if o.provider in allowed and o.provider in self.providers]
                inp, old_notes = self._load(s, row, spec, offerings, now)
        if wake is not None:
            for n in wake:
                self.wake_node(n)
            return None if gone else 2.0
        with provider_quotas.lock:  # quota spent by one decision at a time (with `resources create`)
            if inp.quotas:  # re-read under the lock: another decision may have spent some meanwhile
                with self.db.tx() as s:
                    inp = replace(inp, quotas=self._quotas_left(s))
            d = decide_pool(inp)
            launched = self._apply(name, token, spec, d, old_notes, now)
        if launched is None:
            return 0.0  # lease lost: decide again
        for node in [*launched, *(r.node for r in d.releases)]:
            self.wake_node(node)
        for key in set(old_notes) ^ set(d.notes) | {k for k in d.notes if old_notes.get(k) != d.notes[k]}:
            if key.startswith("job:"):
                self.wake_job(key[4:])
        return RESYNC

    def _load(self, s, row: NodePool, spec: NodePoolSpec, offerings: list[Offering],
              now: datetime) -> tuple[PoolInput, dict]:
        cluster = next((c for c in clusters_store.views(s, None) if c.name == spec.cluster),
                       ClusterView(spec.cluster, "ray", reachable=False, reason="no such cluster"))
        used = self._used(s)
        engine_rows = [n for n in clusters_store.nodes_of(s, spec.cluster) if n.node_pool is None]
        on_cluster = [a for a in used if a.cluster == spec.cluster]
        live_workers = {w.get("node_id") for ws in s.scalars(
            select(Attempt.workers).where(Attempt.cluster == spec.cluster, Attempt.state.in_(ACTIVE_ATTEMPT)))
            for w in (ws or []) if w.get("node_id")}
        # a replica names its node (Node.name)
        live_workers |= set(s.scalars(select(Replica.node).where(
            Replica.cluster == spec.cluster, Replica.state.in_(LIVE_REPLICA), Replica.node.is_not(None))))
        nodes = []
        for n in store.nodes(s, row.name):
            if n.release_requested or n.state == NodeState.TERMINATING.value:
                state = "releasing"
            elif n.state == NodeState.READY.value:
                state = "ready"
            else:
                state = "launching"
            nodes.append(PoolNode(
                name=n.name, state=state, cpu=n.cpu, memory=n.memory, gpus=len(n.gpus),
                gpu_type=n.gpu_names[0] if n.gpu_names else None, price=n.price,
                busy=state == "ready" and self._busy(n, engine_rows, live_workers, on_cluster),
                instance_type=n.instance_type or ""))
        pending = self._pending(s, spec.cluster, now)
        this_month = store.nodes(s, row.name, include_ended=True, ended_since=store.month_start(now))
        idle = {k: datetime.fromisoformat(v) for k, v in (row.idle_since or {}).items()}
        inp = PoolInput(
            now=now, spec=spec, offerings=tuple(offerings), cluster=cluster, used=tuple(used), nodes=tuple(nodes),
            pending=tuple(pending), spent_month=store.spent_this_month(this_month, now),
            quotas=self._quotas_left(s), idle_since=idle, next_seq=row.next_seq,
        )
        return inp, dict(row.notes or {})

    @staticmethod
    def _used(s) -> list[Allocation]:
        held = allocations_store.holders(s)
        return [Allocation.from_dict(a) for a in allocations_store.allocations_of(s, held).values()]

    @staticmethod
    def _busy(n: Node, engine_rows: list[Node], live_workers: set[str], on_cluster: list[Allocation]) -> bool:
        """Whether cumulo work runs on a pool's ready node. The node is known to the engine by its
        own row or by an engine node row that carries its name as a label (or its address): busy
        when a live attempt's worker runs on that engine node, or the engine reports less than all
        of it free. Known by neither, any cumulo work on the cluster counts (a node is never
        released from under work)."""
        mine = [n] + [e for e in engine_rows if _labels_name(e, n.name) or (n.address and e.address == n.address)]
        ids = {m.engine_id for m in mine if m.engine_id}
        if (ids | {m.name for m in mine}) & live_workers:
            return True
        for m in mine:
            free = (m.labels or {}).get("cumulo.free") or {}
            if "cpu" in free:
                return free["cpu"] + 1e-9 < m.cpu or free.get("gpus", len(m.gpus)) < len(m.gpus)
        return not ids and bool(on_cluster)

    @staticmethod
    def _pending(s, cluster: str, now: datetime) -> list[PendingWork]:
        """Pending jobs bound to the cluster (by spec or by their first attempt), oldest first;
        not those waiting out a retry backoff or their workspace's quota (a machine would not help)."""
        rows = s.execute(
            select(Job.id, Job.name, Job.spec, Job.reason, Job.next_attempt_at, Job.cluster)
            .where(Job.state == JobState.PENDING.value, Job.cancel_requested.is_(False),
                   or_(Job.cluster == cluster, Job.cluster.is_(None)))
            .order_by(Job.created_at, Job.id)
        ).all()
        out = []
        for job_id, job_name, raw, reason, next_at, bound in rows:
            spec = JobSpec.model_validate(raw)
            if spec.cluster != cluster and bound != cluster:
                continue
            if (next_at is not None and next_at > now) or (reason or "").startswith("workspace quota"):
                continue
            r = spec.resources
            out.append(PendingWork(f"job:{job_id}", f"job {job_name}",
                                   Request(r.cpu, r.memory, r.gpu, spec.workers, gpu_type=r.gpu_type), spec.placement))
        return out

    def _quotas_left(self, s) -> dict[tuple[str, str], dict[str, float]]:
        """What the providers' quotas leave after every live cloud node (control/provider_quotas.py)."""
        return provider_quotas.left(s, self.quotas() or {})

    def _apply(self, name: str, token: str, spec: NodePoolSpec, d: PoolDecision, old_notes: dict,
               now: datetime) -> list[str] | None:
        """Write the decision in one transaction, guarded by the lease (None: lease lost, nothing written)."""
        launched = []
        with self.db.tx() as s:
            if not leases.guarded_update(
                s, NodePool, name, token, next_seq=d.next_seq, notes=dict(d.notes), reason=d.reason, updated_at=now,
                idle_since={k: v.isoformat() for k, v in d.idle_since.items()},
            ):
                return None
            for launch in d.launches:
                o = launch.offering
                pool_id = uuid.uuid5(uuid.NAMESPACE_URL, f"cumulo-nodepool/{launch.node}").hex[:12]
                request = {"nodes": [{"instance_type": o.instance_type}],
                           "providers": list(spec.providers) or [o.provider], "regions": list(spec.regions),
                           "spot": launch.spot, "max_price": None, "idle_ttl": None}
                s.add(Pool(id=pool_id, workspace="default", created_at=now, request=request, count=1, idle_ttl=None))
                s.flush()
                s.add(Node(
                    name=launch.node, provider=o.provider, cluster=spec.cluster, node_pool=name,
                    state=NodeState.PROVISIONING.value, cpu=o.vcpus, memory=int(o.memory_gib * 2**30),
                    gpus=list(range(o.accelerator_count)),
                    gpu_names=[o.accelerator] * o.accelerator_count if o.accelerator else [], updated_at=now,
                    pool_id=pool_id, region=o.region, zone=o.zone, instance_type=o.instance_type, spot=launch.spot,
                    price=launch.price, reason=launch.reason, created_at=now, blocked=[], labels={},
                ))
                events.record(s, now=now, kind="NodePool", name=name, object_id=launch.node, type="Normal",
                              reason="ScaleUp", message=f"{launch.node}: {launch.reason}")
                launched.append(launch.node)
            for r in d.releases:
                node = s.get(Node, r.node)
                if node is not None and not node.release_requested:
                    node.release_requested = True
                    events.record(s, now=now, kind="NodePool", name=name, object_id=r.node, type="Normal",
                                  reason="ScaleDown", message=f"{r.node}: {r.reason}")
            for key, why in d.blocked.items():
                if old_notes.get(key) != why:
                    events.record(s, now=now, kind="NodePool", name=name, object_id=key, type="Warning",
                                  reason="ScaleUpBlocked", message=f"{key}: {why}")
            if launched:
                s.flush()
                crash_at("nodepool-before-commit")  # crash-safety tests: die with the rows not committed
        if launched:
            crash_at("nodepool-after-commit")  # ... or committed, nothing launched yet
        return launched

    def _delete(self, s, row: NodePool, token: str, now: datetime) -> tuple[list[str], bool]:
        """Release every machine of a pool being deleted; remove the row once none is left.
        Returns the nodes to wake and whether the row is gone."""
        live = store.nodes(s, row.name)
        wake = []
        for n in live:
            if not n.release_requested:
                n.release_requested = True
                events.record(s, now=now, kind="NodePool", name=row.name, object_id=n.name, type="Normal",
                              reason="ScaleDown", message=f"{n.name}: the node pool is being deleted "
                                                          f"(${n.price:,.3f}/h)")
                wake.append(n.name)
        if live:
            leases.release(s, NodePool, row.name, token)
            return wake, False
        events.record(s, now=now, kind="NodePool", name=row.name, object_id=row.name, type="Normal",
                      reason="Deleted", message=f"node pool {row.name} deleted: its machines have ended")
        s.delete(row)
        return [], True
