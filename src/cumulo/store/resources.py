"""Reads and writes of cloud nodes and their pools."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from cumulo.core.errors import NotFound
from cumulo.core.states import NodeState
from cumulo.store.models import Node, Pool

LIVE = [s.value for s in NodeState if not s.terminal]


def pool(session: Session, pool_id: str, workspace: str = "default") -> Pool:
    p = session.get(Pool, pool_id)
    if p is None or p.workspace != workspace:
        raise NotFound(f"no resource pool {pool_id!r}; `cumulo resources list` shows the nodes there are")
    return p


def pool_nodes(session: Session, pool_id: str) -> list[Node]:
    return list(session.scalars(select(Node).where(Node.pool_id == pool_id).order_by(Node.name)))


def cloud_nodes(session: Session, *, workspace: str = "default", include_ended: bool = False) -> list[Node]:
    stmt = select(Node).join(Pool, Pool.id == Node.pool_id).where(Pool.workspace == workspace)
    if not include_ended:
        stmt = stmt.where(Node.state.in_(LIVE))
    return list(session.scalars(stmt.order_by(Node.created_at, Node.name)))


def node(session: Session, node_id: str, workspace: str = "default") -> Node:
    n = session.get(Node, node_id)
    if n is None or n.pool_id is None or session.get(Pool, n.pool_id).workspace != workspace:
        raise NotFound(f"no node {node_id!r}; `cumulo resources list --all` shows the nodes there are")
    return n


def live_ids(session: Session) -> list[str]:
    return list(session.scalars(select(Node.name).where(Node.pool_id.is_not(None), Node.state.in_(LIVE))))


def known_locations(session: Session) -> set[tuple[str, str]]:
    """(provider, region) of every cloud node ever placed: where the orphan sweep looks."""
    rows = session.execute(select(Node.provider, Node.region).where(Node.pool_id.is_not(None)).distinct())
    return {(p, r) for p, r in rows if r}
