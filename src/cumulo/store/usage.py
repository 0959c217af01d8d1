"""What held resources since a time, as rows (control/usage.py prices them)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from cumulo.store.models import Attempt, Deployment, Job, Node, Pool, Replica

#: (workspace, name, start, end or None, allocation as stored)
Held = tuple[str, str, datetime, datetime | None, dict]


def _in(q, model, workspace: str | None):
    return q.where(model.workspace == workspace) if workspace is not None else q


def attempts(s: Session, since: datetime, workspace: str | None = None) -> Iterator[Held]:
    q = (select(Job.workspace, Job.name, Attempt.started_at, Attempt.created_at, Attempt.finished_at,
                Attempt.allocation)
         .join(Attempt, Attempt.job_id == Job.id)
         .where(or_(Attempt.finished_at.is_(None), Attempt.finished_at >= since)))
    for w, name, started, created, finished, alloc in s.execute(_in(q, Job, workspace)):
        yield w, name, started or created, finished, alloc


def replicas(s: Session, since: datetime, workspace: str | None = None) -> Iterator[Held]:
    q = (select(Deployment.workspace, Deployment.name, Replica.created_at, Replica.finished_at, Replica.allocation)
         .join(Replica, Replica.deployment_id == Deployment.id)
         .where(or_(Replica.finished_at.is_(None), Replica.finished_at >= since)))
    yield from s.execute(_in(q, Deployment, workspace))


def cloud_nodes(s: Session, since: datetime, workspace: str | None = None) -> Iterator[tuple[str, str, datetime, datetime | None, float]]:
    """(workspace, node name, ready at, finished at or None, $/h) of nodes that were ready after `since`."""
    q = (select(Pool.workspace, Node.name, Node.ready_at, Node.finished_at, Node.price)
         .join(Pool, Pool.id == Node.pool_id)
         .where(Node.ready_at.is_not(None), or_(Node.finished_at.is_(None), Node.finished_at >= since)))
    yield from s.execute(_in(q, Pool, workspace))
