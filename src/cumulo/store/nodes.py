"""Nodes: the machines workloads run on and their capacity."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from cumulo.core.states import NodeState
from cumulo.store.models import Node


def upsert(session: Session, *, name: str, provider: str, state: str, cpu: float, memory: int,
           gpus: list[int], gpu_names: list[str], now: datetime, price: float = 0.0) -> Node:
    node = session.get(Node, name)
    if node is None:
        node = Node(name=name)
        session.add(node)
    node.provider, node.state, node.cpu, node.memory = provider, state, cpu, memory
    node.gpus, node.gpu_names, node.updated_at, node.price = gpus, gpu_names, now, price
    return node


def listing(session: Session) -> list[Node]:
    return list(session.scalars(select(Node).order_by(Node.name)))


def get(session: Session, name: str) -> Node | None:
    return session.get(Node, name)


def preemption(session: Session, cluster: str, lost: str, engine_ids: set[str]) -> str | None:
    """Why the node an engine lost (`lost`: its address or engine id) was preempted, or None when it
    was not a machine cumulo launched for `cluster` that its provider took back. Of the machines
    that had that address (a loopback address may be reused), the one the attempt's workers ran
    on (`engine_ids`) counts, else the newest."""
    rows = list(session.scalars(select(Node).where(
        Node.cluster == cluster, Node.pool_id.is_not(None), or_(Node.address == lost, Node.engine_id == lost))))
    if not rows:
        return None
    n = max(rows, key=lambda r: (r.engine_id in engine_ids, r.created_at or datetime.min.replace(tzinfo=UTC)))
    what = f"spot machine {n.machine_id} ({n.provider} {n.instance_type} in {n.zone or n.region})"
    if n.state == NodeState.PREEMPTED.value:
        return f"{what} was taken back: {n.reason}" if n.reason else f"{what} was taken back"
    if n.spot and n.state == NodeState.TERMINATED.value and not n.release_requested:
        return f"{what} is gone from the cloud"
    return None
