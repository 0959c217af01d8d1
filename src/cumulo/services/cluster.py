"""Clusters (add, list, status, remove), their nodes, and events."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit

from cumulo.control.resources import default_join_address
from cumulo.core.errors import Conflict, InvalidSpec, NotFound
from cumulo.core.specs import validate_name
from cumulo.core.views import ClusterInfo, EventView, NodeView
from cumulo.policy.capacity import Allocation
from cumulo.store import allocations as allocations_store
from cumulo.store import clusters as clusters_store
from cumulo.store import events as events_store
from cumulo.store import nodes as nodes_store
from cumulo.store.db import Database
from cumulo.store.models import Cluster

KINDS = ("ray", "slurm")


def _utcnow() -> datetime:
    return datetime.now(UTC)


class ClusterService:
    def __init__(self, db: Database, *, home: Path | None = None, clock: Callable[[], datetime] = _utcnow) -> None:
        self.db = db
        self.home = home
        self.clock = clock
        #: asks the cluster reconciler to read a cluster's nodes now (app.py sets it)
        self.wake: Callable[[str], None] = lambda name: None
        #: room came back (a node uncordoned): the work waiting for it looks again (app.py sets it)
        self.capacity_changed: Callable[[], None] = lambda: None

    # -- events and nodes ------------------------------------------------------------------------
    def events(self, *, kind: str | None = None, name: str | None = None, after: int = 0, limit: int = 100,
               workspace: str = "default") -> list[EventView]:
        if not 1 <= limit <= 10000:
            raise InvalidSpec("limit must be between 1 and 10000")
        with self.db.tx() as s:
            rows = events_store.query(s, workspace=workspace, kind=kind, name=name, after_id=after, limit=limit)
            return [
                EventView(id=e.id, time=e.time, kind=e.kind, name=e.name, type=e.type, reason=e.reason, message=e.message,
                          actor=e.actor)
                for e in rows
            ]

    def nodes(self, cluster: str | None = None) -> list[NodeView]:
        with self.db.tx() as s:
            if cluster is not None and cluster != "local" and clusters_store.get(s, cluster) is None:
                raise NotFound(f"cluster {cluster!r} not found (`cumulo cluster list` shows the clusters)")
            used = self._used(s)
            out = []
            for n in nodes_store.listing(s):
                if cluster is not None and n.cluster != cluster:
                    continue
                # what cumulo placed on this machine; on an engine's node the engine places the work
                # (`cumulo cluster status` shows the cluster's share)
                mine = [a for a in used if a.cluster == "local"] if n.name == "local" else []
                out.append(NodeView(
                    name=n.name, provider=n.provider, state=n.state, cpu=n.cpu, memory_bytes=n.memory,
                    gpus=n.gpus, gpu_names=n.gpu_names, cluster=n.cluster, address=n.address, engine_id=n.engine_id,
                    labels={k: str(v) for k, v in (n.labels or {}).items() if k != "cumulo.free"},
                    reason=n.reason or "",
                    pool=n.pool_id, instance_type=n.instance_type, zone=n.zone or n.region, spot=bool(n.spot),
                    price_per_hour=n.price or 0.0, cordoned=n.cordoned,
                    allocated_cpu=round(sum(a.cpu for a in mine), 3),
                    allocated_memory_bytes=sum(a.memory for a in mine),
                    allocated_gpus=sorted(g for a in mine for g in a.gpus),
                ))
            return out

    def cordon(self, name: str, reason: str, *, actor: str | None = None) -> NodeView:
        """No new work lands on the node (what runs there goes on); `uncordon` undoes it."""
        with self.db.tx() as s:
            node = nodes_store.get(s, name)
            if node is None:
                raise NotFound(f"node {name!r} not found (`cumulo nodes --all` lists them)")
            node.cordoned = reason or "cordoned by hand"
            events_store.record(s, now=self.clock(), kind="Node", name=name, object_id=name, type="Warning",
                                reason="NodeCordoned", message=f"no new work lands on {name}: {node.cordoned}",
                                actor=actor)
        return self._node_view(name)

    def uncordon(self, name: str, *, actor: str | None = None) -> NodeView:
        with self.db.tx() as s:
            node = nodes_store.get(s, name)
            if node is None:
                raise NotFound(f"node {name!r} not found (`cumulo nodes --all` lists them)")
            was, node.cordoned = node.cordoned, None
            if was:
                events_store.record(s, now=self.clock(), kind="Node", name=name, object_id=name, type="Normal",
                                    reason="NodeUncordoned", message=f"{name} takes new work again (was: {was})",
                                    actor=actor)
        self.capacity_changed()
        return self._node_view(name)

    def _node_view(self, name: str) -> NodeView:
        return next(n for n in self.nodes() if n.name == name)

    @staticmethod
    def _used(s) -> list[Allocation]:
        held = allocations_store.allocations_of(s, allocations_store.holders(s))
        return [Allocation.from_dict(a) for a in held.values()]

    # -- clusters --------------------------------------------------------------------------------
    def add(self, name: str, kind: str, *, address: str | None = None, partition: str | None = None,
            artifacts: str | None = None, join: str | None = None) -> ClusterInfo:
        try:
            validate_name(name)
        except ValueError as exc:
            raise InvalidSpec(f"name: {exc}", errors=[{"field": "name", "message": str(exc)}]) from None
        if name == "local":
            raise Conflict("cluster 'local' always exists (this machine); give the new cluster another name")
        if kind not in KINDS:
            raise InvalidSpec(f"kind: {kind!r} is not a cluster kind; use one of: {', '.join(KINDS)}",
                              errors=[{"field": "kind", "message": f"must be one of: {', '.join(KINDS)}"}])
        if kind == "ray":
            address = _ray_address(address)
            join = _join_address(join, address)
        elif join:
            raise InvalidSpec("join: only a Ray cluster is joined by launched machines",
                              errors=[{"field": "join", "message": "not for slurm"}])
        elif address:
            raise InvalidSpec("address: a Slurm cluster is driven through this machine's Slurm commands; "
                              "it takes no address", errors=[{"field": "address", "message": "not for slurm"}])
        if partition is not None and (kind != "slurm" or not re.fullmatch(r"[A-Za-z0-9_.-]{1,63}", partition)):
            raise InvalidSpec(f"partition: {partition!r}: only a Slurm cluster has partitions, named with "
                              "letters, digits, '_', '.' or '-'", errors=[{"field": "partition", "message": "invalid"}])
        folder = self._artifacts(name, artifacts)
        now = self.clock()
        with self.db.tx() as s:
            if clusters_store.get(s, name) is not None:
                raise Conflict(f"cluster {name!r} already exists; `cumulo cluster remove {name}` first to change it")
            s.add(Cluster(name=name, kind=kind, address=address, partition=partition, artifacts=folder,
                          join_address=join, created_at=now, state="Unknown", reason="not asked yet"))
            events_store.record(s, now=now, kind="Cluster", name=name, object_id=name, type="Normal",
                                reason="Added", message=f"{kind} cluster {name} added" + (f" at {address}" if address else ""))
        self.wake(name)
        return self.get(name)

    def _artifacts(self, name: str, artifacts: str | None) -> str:
        if artifacts is None:
            if self.home is None:
                raise InvalidSpec("artifacts: give a folder every node of the cluster sees",
                                  errors=[{"field": "artifacts", "message": "required"}])
            folder = self.home / "clusters" / name
        else:
            folder = Path(artifacts)
            if not folder.is_absolute():
                raise InvalidSpec(f"artifacts: {artifacts!r} must be an absolute path (a folder every node sees)",
                                  errors=[{"field": "artifacts", "message": "must be an absolute path"}])
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise InvalidSpec(f"artifacts: cannot use {str(folder)!r}: {exc.strerror}; give a folder this "
                              "machine can write and every node sees",
                              errors=[{"field": "artifacts", "message": exc.strerror or "not writable"}]) from None
        return str(folder)

    def list(self) -> list[ClusterInfo]:
        with self.db.tx() as s:
            used = self._used(s)
            return [self._info(s, c, used) for c in clusters_store.listing(s)]

    def get(self, name: str, *, with_work: bool = False) -> ClusterInfo:
        with self.db.tx() as s:
            c = clusters_store.get(s, name)
            if c is None:
                raise NotFound(f"cluster {name!r} not found (`cumulo cluster list` shows the clusters)")
            info = self._info(s, c, self._used(s))
            if with_work:
                info.work = clusters_store.work_on(s, name)
            return info

    def remove(self, name: str) -> None:
        if name == "local":
            raise Conflict("cluster 'local' is this machine and cannot be removed")
        now = self.clock()
        with self.db.tx() as s:
            c = clusters_store.get(s, name)
            if c is None:
                raise NotFound(f"cluster {name!r} not found (`cumulo cluster list` shows the clusters)")
            work = clusters_store.work_on(s, name)
            if work:
                raise Conflict(f"cluster {name!r} still runs work: {', '.join(work)}. Cancel or delete it first, "
                               "then remove the cluster.")
            for n in clusters_store.nodes_of(s, name):
                s.delete(n)
            s.delete(c)
            events_store.record(s, now=now, kind="Cluster", name=name, object_id=name, type="Normal",
                                reason="Removed", message=f"cluster {name} removed")

    @staticmethod
    def _info(s, c: Cluster, used: list[Allocation]) -> ClusterInfo:
        nodes = clusters_store.nodes_of(s, c.name)
        if c.kind == "local":
            nodes = [n for n in nodes if n.name == "local"]
        ready = [n for n in nodes if n.state == "Ready"]
        mine = [a for a in used if a.cluster == c.name]
        return ClusterInfo(
            name=c.name, kind=c.kind, address=c.address, partition=c.partition, artifacts=c.artifacts,
            join_address=c.join_address,
            state=c.state, reason=c.reason, checked_at=c.checked_at, nodes=len(nodes), nodes_ready=len(ready),
            cpu=sum(n.cpu for n in ready), memory_bytes=sum(n.memory for n in ready),
            gpus=sum(len(n.gpus) for n in ready),
            allocated_cpu=round(sum(a.cpu for a in mine), 3), allocated_memory_bytes=sum(a.memory for a in mine),
            allocated_gpus=sum(a.gpu_count for a in mine),
        )


def _join_address(join: str | None, dashboard: str) -> str:
    """The GCS address launched machines join: HOST:PORT as given, else the dashboard's host on
    Ray's default GCS port."""
    if join is None:
        return default_join_address(dashboard) or ""
    m = re.fullmatch(r"([A-Za-z0-9][A-Za-z0-9.-]*):(\d{1,5})", join.strip())
    if not m or not 0 < int(m.group(2)) < 65536:
        raise InvalidSpec(f"join: {join!r} is not HOST:PORT; give the address `ray start --address` takes on a "
                          "worker (the head's GCS, e.g. 10.0.0.5:6379)",
                          errors=[{"field": "join", "message": "must be HOST:PORT"}])
    return join.strip()


def _ray_address(address: str | None) -> str:
    hint = "give the address `ray job submit --address` takes, e.g. http://10.0.0.5:8265"
    if not address:
        raise InvalidSpec(f"address: a Ray cluster needs its dashboard address; {hint}",
                          errors=[{"field": "address", "message": "required for a Ray cluster"}])
    parts = urlsplit(address)
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.path not in ("", "/") or parts.query:
        raise InvalidSpec(f"address: {address!r} is not an http(s)://HOST:PORT address; {hint}",
                          errors=[{"field": "address", "message": "must be http(s)://HOST:PORT"}])
    try:
        parts.port  # noqa: B018 (raises on a bad port)
    except ValueError:
        raise InvalidSpec(f"address: {address!r} has an invalid port; {hint}",
                          errors=[{"field": "address", "message": "invalid port"}]) from None
    return address.rstrip("/")
