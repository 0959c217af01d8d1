"""What has held resources, and at what price, for cost accounting (policy/quota.py prices it)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from cumulo.policy.capacity import Allocation
from cumulo.policy.quota import Usage, share
from cumulo.store.models import Attempt, Deployment, Job, Node, Pool, Replica


def usages(session: Session, *, local_node: str, since: datetime, workspace: str | None = None) -> list[Usage]:
    """Everything that ran at some time after `since` (all workspaces, or one)."""
    local = session.get(Node, local_node)
    node_cpu, node_gpus, price = (local.cpu, len(local.gpus), local.price) if local else (1.0, 0, 0.0)
    out: list[Usage] = []

    def ws(q, model):
        return q.where(model.workspace == workspace) if workspace is not None else q

    if price > 0:
        q = (select(Job.workspace, Job.name, Attempt.started_at, Attempt.created_at, Attempt.finished_at,
                    Attempt.allocation)
             .join(Attempt, Attempt.job_id == Job.id)
             .where(or_(Attempt.finished_at.is_(None), Attempt.finished_at >= since)))
        for w, name, started, created, finished, alloc in session.execute(ws(q, Job)):
            p = share(Allocation.from_dict(alloc), node_cpu, node_gpus) * price
            out.append(Usage(w, "job", name, started or created, finished, p))
        q = (select(Deployment.workspace, Deployment.name, Replica.created_at, Replica.finished_at, Replica.allocation)
             .join(Replica, Replica.deployment_id == Deployment.id)
             .where(or_(Replica.finished_at.is_(None), Replica.finished_at >= since)))
        for w, name, created, finished, alloc in session.execute(ws(q, Deployment)):
            p = share(Allocation.from_dict(alloc), node_cpu, node_gpus) * price
            out.append(Usage(w, "deployment", name, created, finished, p))
    q = (select(Pool.workspace, Node.name, Node.ready_at, Node.finished_at, Node.price)
         .join(Pool, Pool.id == Node.pool_id)
         .where(Node.ready_at.is_not(None), or_(Node.finished_at.is_(None), Node.finished_at >= since)))
    for w, name, ready, finished, node_price in session.execute(ws(q, Pool)):
        out.append(Usage(w, "node", name, ready, finished, node_price))
    return out
