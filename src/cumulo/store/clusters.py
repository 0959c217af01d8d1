"""Clusters and the nodes their engines report."""

from __future__ import annotations

import re
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from cumulo.core.errors import InvalidSpec
from cumulo.core.offerings import GENERATION_LABEL, NODE_ID_LABEL
from cumulo.core.states import NodeState
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
    node the engine no longer lists, or lists as dead, is kept with state Lost.

    An engine node labelled with the id of a machine cumulo launched for this cluster (a node with a
    pool) is that machine: the engine's view (its id, address, labels, alive or not) goes on the
    machine's own row as `engine_state`, and its state stays the node reconciler's. Of the engine
    nodes carrying one id, only the node's current machine counts (its generation label: a replaced
    machine's engine node may still be listed), and of those the alive one."""
    rows = {n.name: n for n in nodes_of(s, cluster)}
    machines = {name: n for name, n in rows.items() if n.pool_id is not None}
    joined, lost = [], []
    names = set()
    by_machine: dict[str, dict] = {}
    for d in seen:
        labels = d.get("labels") or {}
        owner = labels.get(NODE_ID_LABEL)
        if owner in machines:
            if labels.get(GENERATION_LABEL, "0") != str(machines[owner].replacements or 0):
                continue  # a machine the node had before: gone, or going
            if owner not in by_machine or (d.get("alive", True) and not by_machine[owner].get("alive", True)):
                by_machine[owner] = d
            continue
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
        if name in machines or name in names:
            continue
        if node.state == "Ready":
            node.state, node.reason, node.updated_at = "Lost", "the engine no longer lists it", now
            lost.append(name)
    for name, node in machines.items():
        if NodeState(node.state).terminal:
            continue  # the machine is gone; the engine may list its dead node a while longer
        d = by_machine.get(name)
        was = node.engine_state
        if d is None:
            if was is not None and was != "absent":
                node.engine_state = "absent"
        else:
            node.engine_id, node.address = d["engine_id"], d["address"]
            node.labels = d.get("labels") or {}
            node.engine_state = "alive" if d.get("alive", True) else "dead"
        if node.engine_state == "alive" and was != "alive":
            joined.append(name)
        elif was == "alive" and node.engine_state != "alive":
            lost.append(name)
    return joined, lost


def joining(s: Session, cluster: str) -> bool:
    """A machine launched for the cluster is waiting to join it."""
    return s.scalar(select(Node.name).where(Node.cluster == cluster, Node.pool_id.is_not(None),
                                            Node.state == NodeState.JOINING.value).limit(1)) is not None


def machines_of(s: Session, names: list[str]) -> list[str]:
    """Which of these node names are machines cumulo launched (the node reconciler follows them)."""
    return [n for n in names if (row := s.get(Node, n)) is not None and row.pool_id is not None]


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
    machines = s.scalars(select(Node).where(Node.cluster == cluster, Node.pool_id.is_not(None),
                                            Node.state.not_in([st.value for st in NodeState if st.terminal])))
    out += [f"node {n.name} ({n.provider} {n.instance_type}; release it with `cumulo resources release {n.name}`)"
            for n in machines]
    return out


def views(s, local_capacity: Capacity | None) -> tuple[ClusterView, ...]:
    """What placement knows of every cluster (policy/clusters.py), read in one transaction."""
    nodes: dict[str, list] = {}
    for n in nodes_of(s):
        nodes.setdefault(n.cluster, []).append(n)
    here = s.get(Node, LOCAL)
    out = [ClusterView(LOCAL, LOCAL, capacity=local_capacity, gpu_names=tuple(here.gpu_names) if here else (),
                       reachable=not (here and here.cordoned),
                       reason=f"node {LOCAL} is cordoned ({here.cordoned})" if here and here.cordoned else "")]
    for c in listing(s):
        if c.kind == LOCAL:
            continue
        shapes = tuple(
            NodeShape(name=n.name, cpu=n.cpu, memory=n.memory, gpus=len(n.gpus), alive=_alive(n),
                      gpu_type=n.gpu_names[0] if n.gpu_names else None,
                      **_free(n.labels))
            for n in nodes.get(c.name, [])
        )
        out.append(ClusterView(c.name, c.kind, reachable=c.state != "Unreachable", reason=c.reason, nodes=shapes))
    return tuple(out)


def _alive(n: Node) -> bool:
    """Work can be placed on it: an engine node the engine lists alive; a launched machine that
    joined (Ready), that the engine still lists alive and that is not being released; never a
    cordoned one."""
    if n.cordoned:
        return False
    if n.pool_id is not None:  # a machine being released takes no new work (a node pool's drain)
        return n.state == "Ready" and n.engine_state == "alive" and not n.release_requested
    return n.state == "Ready"


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
