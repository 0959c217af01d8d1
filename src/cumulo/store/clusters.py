"""Clusters and the nodes their engines report."""

from __future__ import annotations

import re
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from cumulo.core.errors import InvalidSpec
from cumulo.policy.capacity import Capacity, Request
from cumulo.policy.clusters import LOCAL, ClusterView, NodeShape, never_fits_anywhere
from cumulo.store.models import Attempt, Cluster, Deployment, Job, Node, Replica

LIVE_ATTEMPT = ("Starting", "Running")
LIVE_REPLICA = ("Starting", "Ready", "Draining")


def get(s: Session, name: str) -> Cluster | None:
    return s.get(Cluster, name)


def listing(s: Session) -> list[Cluster]:
    return list(s.scalars(select(Cluster).order_by(Cluster.name)))


def nodes_of(s: Session, cluster: str | None = None) -> list[Node]:
    q = select(Node).order_by(Node.cluster, Node.name)
    if cluster is not None:
        q = q.where(Node.cluster == cluster)
    return list(s.scalars(q))


def node_name(cluster: str, engine_id: str) -> str:
    """A stable, readable Node.name for an engine node (Ray's 56-hex ids are cut to 12)."""
    slug = re.sub(r"[^a-z0-9]+", "-", engine_id.lower()).strip("-") or "node"
    if re.fullmatch(r"[0-9a-f]{20,}", slug):
        slug = slug[:12]
    return f"{cluster}-{slug}"[:63]


def sync_nodes(s: Session, cluster: str, provider: str, seen: list[dict], now: datetime) -> tuple[list[str], list[str]]:
    """Make the cluster's node rows what the engine reports. Returns (joined, lost) node names: a
    node the engine no longer lists, or lists as dead, is kept with state Lost."""
    # a machine a node pool launched for the cluster has its own row (the node reconciler's): the
    # engine's row for it is the one synced here
    rows = {n.name: n for n in nodes_of(s, cluster) if n.node_pool is None}
    joined, lost = [], []
    names = set()
    for d in seen:
        name = node_name(cluster, d["engine_id"])
        names.add(name)
        node = rows.get(name)
        if node is None:
            node = Node(name=name, cluster=cluster, provider=provider, created_at=now)
            s.add(node)
        was = node.state
        node.provider, node.engine_id, node.address = provider, d["engine_id"], d["address"]
        node.cpu, node.memory, node.labels = d["cpu"], d["memory"], d.get("labels") or {}
        node.gpus = list(range(d.get("gpus", 0)))
        node.gpu_names = [d["gpu_type"]] * d.get("gpus", 0) if d.get("gpu_type") else []
        node.state = "Ready" if d.get("alive", True) else "Lost"
        node.reason = "" if node.state == "Ready" else "the engine reports it dead"
        node.updated_at = now
        if node.state == "Ready" and was != "Ready":
            node.ready_at = now
            joined.append(name)
        elif node.state == "Lost" and was == "Ready":
            lost.append(name)
    for name, node in rows.items():
        if name not in names and node.state == "Ready":
            node.state, node.reason, node.updated_at = "Lost", "the engine no longer lists it", now
            lost.append(name)
    return joined, lost


def work_on(s: Session, cluster: str) -> list[str]:
    """What still runs (or waits to run again) on a cluster: 'job NAME' / 'deployment NAME'."""
    jobs = s.execute(
        select(Job.name, Job.workspace).join(Attempt, Attempt.job_id == Job.id)
        .where(Attempt.cluster == cluster, Attempt.state.in_(LIVE_ATTEMPT))
    ).all()
    live = s.execute(
        select(Job.name, Job.workspace, Job.cluster, Job.spec).where(Job.state.in_(("Pending", "Starting", "Running")))
    ).all()
    bound = [(n, w) for n, w, c, spec in live if c == cluster or (spec or {}).get("cluster") == cluster]
    deps = s.execute(
        select(Deployment.name, Deployment.workspace).join(Replica, Replica.deployment_id == Deployment.id)
        .where(Replica.cluster == cluster, Replica.state.in_(LIVE_REPLICA))
    ).all()
    out = sorted({f"job {n} (workspace {w})" for n, w in [*jobs, *bound]})
    named = s.execute(select(Deployment.name, Deployment.workspace, Deployment.spec)).all()
    deps = [*deps, *((n, w) for n, w, spec in named if (spec or {}).get("cluster") == cluster)]
    out += sorted({f"deployment {n} (workspace {w})" for n, w in deps})
    return out


def views(s, local_capacity: Capacity | None) -> tuple[ClusterView, ...]:
    """What placement knows of every cluster (policy/clusters.py), read in one transaction."""
    nodes: dict[str, list] = {}
    for n in nodes_of(s):
        nodes.setdefault(n.cluster, []).append(n)
    here = s.get(Node, LOCAL)
    out = [ClusterView(LOCAL, LOCAL, capacity=local_capacity, gpu_names=tuple(here.gpu_names) if here else ())]
    for c in listing(s):
        if c.kind == LOCAL:
            continue
        shapes = tuple(
            NodeShape(name=n.name, cpu=n.cpu, memory=n.memory, gpus=len(n.gpus), alive=n.state == "Ready",
                      gpu_type=n.gpu_names[0] if n.gpu_names else None,
                      **_free(n.labels))
            for n in nodes.get(c.name, [])
        )
        out.append(ClusterView(c.name, c.kind, reachable=c.state != "Unreachable", reason=c.reason, nodes=shapes))
    return tuple(out)


def _free(labels: dict | None) -> dict:
    free = (labels or {}).get("cumulo.free") or {}
    return {"cpu_free": free.get("cpu"), "memory_free": free.get("memory"), "gpus_free": free.get("gpus")}


def why_never(s: Session, request: Request, placement: str, cluster: str | None, local_node: str) -> str | None:
    """Why a workload can never run (it is larger than every cluster, or than the one it names),
    or None. A cluster it names that does not exist is a 422 on `cluster`."""
    if cluster is not None and cluster != LOCAL and get(s, cluster) is None:
        known = ", ".join([LOCAL, *(c.name for c in listing(s) if c.kind != LOCAL)])
        raise InvalidSpec(f"cluster: {cluster!r} does not exist; use one of: {known} (`cumulo cluster list`)",
                          errors=[{"field": "cluster", "message": f"no such cluster; use one of: {known}"}])
    node = s.get(Node, local_node)
    local = Capacity(node.cpu, node.memory, tuple(node.gpus)) if node is not None else None
    candidates = [c for c in views(s, local) if cluster is None or c.name == cluster]
    if any(c.kind == LOCAL and c.capacity is None for c in candidates):
        return None  # the local node has not reported yet: nothing to judge by
    return never_fits_anywhere(request, placement, candidates)
