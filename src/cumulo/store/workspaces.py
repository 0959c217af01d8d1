"""Workspaces in the store."""

from __future__ import annotations

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from cumulo.core.states import JobState
from cumulo.store.models import Deployment, Job, Pool, Secret, Token, Workspace

_LIVE_JOB = [st.value for st in JobState if not st.terminal]


def get(s: Session, name: str) -> Workspace | None:
    return s.get(Workspace, name)


def every(s: Session) -> list[Workspace]:
    return list(s.scalars(select(Workspace).order_by(Workspace.name)))


def object_counts(s: Session) -> tuple[dict[str, int], dict[str, int]]:
    """Jobs and deployments per workspace."""
    jobs = dict(s.execute(select(Job.workspace, func.count()).group_by(Job.workspace)).all())
    deps = dict(s.execute(select(Deployment.workspace, func.count()).group_by(Deployment.workspace)).all())
    return jobs, deps


def holdings(s: Session, name: str) -> dict[str, int]:
    """What keeps a workspace from being deleted: its jobs, deployments and resource pools (non-zero only)."""
    held = {what: s.scalar(select(func.count()).select_from(model).where(model.workspace == name)) or 0
            for what, model in (("jobs", Job), ("deployments", Deployment), ("resource pools", Pool))}
    return {k: v for k, v in held.items() if v}


def remove(s: Session, row: Workspace) -> None:
    """Delete a workspace with its tokens and secrets."""
    for model in (Token, Secret):
        s.execute(delete(model).where(model.workspace == row.name))
    s.delete(row)


def live_owners(s: Session, name: str) -> set[str]:
    """Ids of the workspace's unfinished jobs and of its deployments (what may hold resources)."""
    owners = set(s.scalars(select(Job.id).where(Job.workspace == name, Job.state.in_(_LIVE_JOB))))
    return owners | set(s.scalars(select(Deployment.id).where(Deployment.workspace == name)))
