"""Reads and writes of deployments and their replicas."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from cumulo.core.errors import Conflict, NotFound
from cumulo.core.states import ReplicaState
from cumulo.core.tokens import route_key
from cumulo.store.models import Deployment, Replica

LIVE = (ReplicaState.STARTING.value, ReplicaState.READY.value, ReplicaState.DRAINING.value)


def insert(session: Session, d: Deployment) -> Deployment:
    session.add(d)
    try:
        session.flush()
    except IntegrityError:
        raise Conflict(f"a deployment named {d.name!r} already exists") from None
    return d


def by_name(session: Session, name: str, workspace: str = "default") -> Deployment:
    d = find(session, name, workspace)
    if d is None:
        raise NotFound(f"no deployment named {name!r}; `cumulo deployment list` shows the deployments there are")
    return d


def find(session: Session, name: str, workspace: str = "default") -> Deployment | None:
    return session.scalars(
        select(Deployment).where(Deployment.workspace == workspace, Deployment.name == name)
    ).one_or_none()


def listing(session: Session, workspace: str = "default") -> list[Deployment]:
    return list(session.scalars(select(Deployment).where(Deployment.workspace == workspace).order_by(Deployment.name)))


def ids(session: Session) -> list[str]:
    return list(session.scalars(select(Deployment.id).order_by(Deployment.created_at)))


def live_replicas(session: Session, deployment_id: str) -> list[Replica]:
    return list(session.scalars(
        select(Replica).where(Replica.deployment_id == deployment_id, Replica.state.in_(LIVE)).order_by(Replica.ordinal)
    ))


def replicas(session: Session, deployment_id: str, *, limit: int = 50) -> list[Replica]:
    """The newest `limit` replicas, live or ended, oldest first."""
    rows = session.scalars(
        select(Replica).where(Replica.deployment_id == deployment_id).order_by(Replica.ordinal.desc()).limit(limit)
    )
    return list(reversed(list(rows)))


def replica(session: Session, deployment_id: str, ordinal: int) -> Replica | None:
    return session.scalars(
        select(Replica).where(Replica.deployment_id == deployment_id, Replica.ordinal == ordinal)
    ).one_or_none()


def ready_endpoints(session: Session) -> dict[str, list[tuple[int, str, int]]]:
    """Route key (core.tokens.route_key: the name, `name.workspace` outside the default
    workspace) -> [(ordinal, host, port)] of its ready replicas: the gateway's routes."""
    rows = session.execute(
        select(Deployment.name, Deployment.workspace, Replica.ordinal, Replica.host, Replica.port)
        .join(Replica, Replica.deployment_id == Deployment.id)
        .where(Replica.state == ReplicaState.READY.value)
    )
    out: dict[str, list[tuple[int, str, int]]] = {
        route_key(name, ws): [] for name, ws in session.execute(select(Deployment.name, Deployment.workspace))
    }
    for name, ws, ordinal, host, port in rows:
        out[route_key(name, ws)].append((ordinal, host, port))
    return out


def scale_from_zero_names(session: Session) -> set[str]:
    """Deployments whose autoscaling may take them to zero replicas (the gateway holds their requests)."""
    rows = session.execute(select(Deployment.name, Deployment.workspace, Deployment.spec))
    return {route_key(name, ws) for name, ws, spec in rows if (spec.get("autoscaling") or {}).get("min", 1) == 0}


def autoscaled_ids(session: Session) -> list[str]:
    rows = session.execute(select(Deployment.id, Deployment.spec).where(Deployment.deleting.is_(False)))
    return [i for i, spec in rows if spec.get("autoscaling")]
