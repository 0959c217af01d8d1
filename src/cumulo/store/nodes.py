"""Nodes: the machines workloads run on and their capacity."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

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
