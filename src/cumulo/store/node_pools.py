"""Node pools (kind: NodePool) and the nodes each one launched."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from cumulo.core.errors import NotFound
from cumulo.core.states import NodeState
from cumulo.policy.quota import Usage, cost_of
from cumulo.store.models import Node, NodePool

LIVE = [s.value for s in NodeState if not s.terminal]


def get(s: Session, name: str) -> NodePool | None:
    return s.get(NodePool, name)


def by_name(s: Session, name: str) -> NodePool:
    row = s.get(NodePool, name)
    if row is None:
        raise NotFound(f"no node pool {name!r}; `cumulo pool list` shows the node pools there are")
    return row


def listing(s: Session) -> list[NodePool]:
    return list(s.scalars(select(NodePool).order_by(NodePool.name)))


def names(s: Session) -> list[str]:
    return list(s.scalars(select(NodePool.name).order_by(NodePool.name)))


def of_cluster(s: Session, cluster: str) -> list[NodePool]:
    return list(s.scalars(select(NodePool).where(NodePool.cluster == cluster).order_by(NodePool.name)))


def nodes(s: Session, pool: str, *, include_ended: bool = False, ended_since: datetime | None = None) -> list[Node]:
    """The pool's live nodes; with `include_ended` the ended ones too (those that ended since
    `ended_since`, when given)."""
    q = select(Node).where(Node.node_pool == pool)
    if not include_ended:
        q = q.where(Node.state.in_(LIVE))
    elif ended_since is not None:
        q = q.where(or_(Node.finished_at.is_(None), Node.finished_at >= ended_since))
    return list(s.scalars(q.order_by(Node.created_at, Node.name)))


def notes_for(s: Session, cluster: str | None, key: str) -> list[str]:
    """What the node pools of a cluster (every cluster when None) say about one workload."""
    q = select(NodePool.notes)
    if cluster is not None:
        q = q.where(NodePool.cluster == cluster)
    return [n[key] for n in s.scalars(q) if n and key in n]


def any_for(s: Session, cluster: str | None) -> bool:
    """Whether a node pool can add machines to this cluster (any cluster when None)."""
    q = select(NodePool.name)
    if cluster is not None:
        q = q.where(NodePool.cluster == cluster)
    return s.scalars(q.limit(1)).first() is not None


def month_start(now: datetime) -> datetime:
    return now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)


def spent_this_month(nodes: list[Node], now: datetime) -> float:
    """What these machines cost since the first of this month (UTC): price x hours since ready."""
    since = month_start(now)
    return sum(cost_of(Usage("default", "node", n.name, n.ready_at, n.finished_at, n.price), since, now)
               for n in nodes if n.ready_at is not None)
