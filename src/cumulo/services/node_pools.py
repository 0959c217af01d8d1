"""Node pools (kind: NodePool): apply (create or update), read, delete. Installation-wide, like
clusters: anyone reads them, an admin writes them."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select

from cumulo.core.errors import InvalidSpec
from cumulo.core.specs import NodePoolSpec, parse_spec
from cumulo.core.states import NodeState
from cumulo.core.tokens import Scope
from cumulo.core.views import NodeDetail, NodePoolView
from cumulo.store import clusters as clusters_store
from cumulo.store import events
from cumulo.store import node_pools as store
from cumulo.store.db import Database
from cumulo.store.models import Job, Node, NodePool
from cumulo.store.node_pools import spent_this_month

SYSTEM = Scope()


def utcnow() -> datetime:
    return datetime.now(UTC)


def detail(n: Node, now: datetime) -> NodeDetail:
    end = n.finished_at or now
    hours = (end - n.ready_at).total_seconds() / 3600 if n.ready_at else 0.0
    return NodeDetail(
        id=n.name, pool=n.node_pool, provider=n.provider, region=n.region, zone=n.zone,
        instance_type=n.instance_type, spot=n.spot, state=n.state, reason=n.reason, machine_id=n.machine_id,
        price_per_hour=n.price, cost=round(max(hours, 0.0) * n.price, 6), created_at=n.created_at,
        ready_at=n.ready_at, finished_at=n.finished_at,
    )


def _named(s, notes: dict) -> dict[str, str]:
    """The notes keyed by what people know a workload by: "job NAME" (and its workspace, when not default)."""
    ids = [k[4:] for k in notes if k.startswith("job:")]
    rows = {i: (n, w) for i, n, w in s.execute(select(Job.id, Job.name, Job.workspace).where(Job.id.in_(ids)))} if ids else {}
    out = {}
    for key, note in notes.items():
        name, ws = rows.get(key[4:], (None, None)) if key.startswith("job:") else (None, None)
        label = key if name is None else f"job {name}" + (f" (workspace {ws})" if ws != "default" else "")
        out[label] = note
    return out


class NodePoolService:
    def __init__(self, db: Database, *, providers: list[str], wake: Callable[[str], None] = lambda name: None,
                 clock: Callable[[], datetime] = utcnow) -> None:
        self.db = db
        self.providers = providers  # providers with a driver
        self.wake = wake
        self.clock = clock

    def apply(self, data: Any, scope: Scope = SYSTEM) -> tuple[NodePoolView, str, list[str]]:
        """Create the pool or update its spec. Returns (view, "created" | "updated" | "unchanged",
        the top-level fields that changed)."""
        spec = data if isinstance(data, NodePoolSpec) else parse_spec(data, source="node pool", kind="NodePool")
        if "local" in spec.providers:
            raise InvalidSpec("providers: 'local' is this machine, which cannot join a cluster as a new node; "
                              "use local-vm for machines started on this host (tests and demos)",
                              errors=[{"field": "providers", "message": "'local' cannot be a node pool's provider"}])
        for p in spec.providers:
            if p not in self.providers:
                raise InvalidSpec(
                    f"providers: {p!r} has no driver here; use some of: {', '.join(self.providers)}",
                    errors=[{"field": "providers", "message": f"no driver for {p!r}; use some of: "
                                                              f"{', '.join(self.providers)}"}])
        now = self.clock()
        body = spec.model_dump(mode="json")
        with self.db.tx() as s:
            cluster = clusters_store.get(s, spec.cluster)
            if cluster is None or cluster.kind == "local":
                known = ", ".join(c.name for c in clusters_store.listing(s) if c.kind != "local") or "none yet"
                raise InvalidSpec(
                    f"cluster: {spec.cluster!r} is not a cluster a pool can grow; name a Ray cluster "
                    f"(`cumulo cluster list`: {known}; `cumulo cluster add NAME --ray ...` adds one)",
                    errors=[{"field": "cluster", "message": f"no such cluster; use one of: {known}"}])
            row = store.get(s, spec.name)
            if row is None:
                row = NodePool(name=spec.name, cluster=spec.cluster, created_at=now, updated_at=now, spec=body,
                               state="Ready", reason="created", next_seq=1, idle_since={}, notes={})
                s.add(row)
                action, changed = "created", []
            else:
                if row.deleting:
                    raise InvalidSpec(f"node pool {spec.name!r} is being deleted; apply it again once it is gone "
                                      "(`cumulo pool status " + spec.name + "`)")
                if row.cluster != spec.cluster and store.nodes(s, spec.name):
                    raise InvalidSpec(
                        f"cluster: node pool {spec.name!r} has machines in cluster {row.cluster!r}; delete the pool "
                        "(its machines are released) before moving it to another cluster",
                        errors=[{"field": "cluster", "message": "cannot change while the pool has machines"}])
                changed = sorted(k for k in set(body) | set(row.spec) if body.get(k) != row.spec.get(k))
                action = "updated" if changed else "unchanged"
                if changed:
                    row.spec, row.cluster, row.updated_at = body, spec.cluster, now
            if action != "unchanged":
                events.record(s, now=now, kind="NodePool", name=spec.name, object_id=spec.name, type="Normal",
                              reason="Created" if action == "created" else "Updated",
                              message=f"node pool {spec.name} {action}" + (f": {', '.join(changed)}" if changed else ""),
                              actor=scope.actor)
            view = self._view(s, row, now)
        self.wake(spec.name)
        return view, action, changed

    def list(self) -> list[NodePoolView]:
        now = self.clock()
        with self.db.tx() as s:
            return [self._view(s, row, now) for row in store.listing(s)]

    def get(self, name: str) -> NodePoolView:
        now = self.clock()
        with self.db.tx() as s:
            return self._view(s, store.by_name(s, name), now, ended=True)

    def delete(self, name: str, scope: Scope = SYSTEM) -> NodePoolView:
        """Release every machine of the pool; the row goes once they have all ended."""
        now = self.clock()
        with self.db.tx() as s:
            row = store.by_name(s, name)
            if not row.deleting:
                row.deleting, row.state, row.reason, row.updated_at = True, "Deleting", "releasing its machines", now
                events.record(s, now=now, kind="NodePool", name=name, object_id=name, type="Normal",
                              reason="DeleteRequested", message=f"node pool {name}: releasing its machines",
                              actor=scope.actor)
            view = self._view(s, row, now)
        self.wake(name)
        return view

    def _view(self, s, row: NodePool, now: datetime, *, ended: bool = False) -> NodePoolView:
        nodes = store.nodes(s, row.name, include_ended=True)
        live = [n for n in nodes if not NodeState(n.state).terminal]
        shown = nodes if ended else live
        return NodePoolView(
            name=row.name, cluster=row.cluster, spec=row.spec, state=row.state, reason=row.reason,
            nodes=[detail(n, now) for n in shown], nodes_up=len(live),
            price_per_hour=round(sum(n.price for n in live), 6), spent_month=round(spent_this_month(nodes, now), 6),
            notes=_named(s, row.notes or {}), created_at=row.created_at, updated_at=row.updated_at,
        )


__all__ = ["NodePoolService", "detail"]
