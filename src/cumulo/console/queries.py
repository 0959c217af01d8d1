"""Reads the console's list pages need in one or two queries each (the services build a whole view
per object, which is right for one job and too much for a page of a thousand)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select

from cumulo.core.states import JobState, ReplicaState
from cumulo.store.db import Database
from cumulo.store.models import Deployment, Job, Replica

LIVE_REPLICAS = (ReplicaState.STARTING.value, ReplicaState.READY.value, ReplicaState.DRAINING.value)


@dataclass(frozen=True)
class JobRow:
    name: str
    state: str
    reason: str
    attempts: int
    exit_code: int | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    cluster: str | None


@dataclass(frozen=True)
class JobPage:
    rows: list[JobRow]
    #: jobs matching the filter (rows holds at most `limit` of them)
    matching: int
    #: every job of the workspace by state (for the filter's counts)
    by_state: dict[str, int]


@dataclass(frozen=True)
class ReplicaCount:
    deployments: int
    live: int
    ready: int
    by_state: dict[str, int]


class Queries:
    def __init__(self, db: Database) -> None:
        self.db = db

    def jobs(self, workspace: str, *, states: list[str] | None = None, search: str = "", limit: int = 200) -> JobPage:
        where = [Job.workspace == workspace]
        if states:
            where.append(Job.state.in_(states))
        if search:
            where.append(Job.name.contains(search, autoescape=True))
        cols = (Job.name, Job.state, Job.reason, Job.attempts, Job.exit_code, Job.created_at, Job.started_at,
                Job.finished_at, Job.cluster)
        with self.db.tx() as s:
            rows = [JobRow(*r) for r in s.execute(
                select(*cols).where(*where).order_by(Job.created_at.desc(), Job.id).limit(limit))]
            matching = len(rows) if len(rows) < limit else s.scalar(select(func.count()).select_from(Job).where(*where))
            by_state = dict(s.execute(select(Job.state, func.count()).where(Job.workspace == workspace)
                                      .group_by(Job.state)).all())
        return JobPage(rows, matching or 0, {st.value: by_state.get(st.value, 0) for st in JobState})

    def job_counts(self, workspace: str) -> dict[str, int]:
        """Every job of the workspace by state (one grouped query)."""
        with self.db.tx() as s:
            by_state = dict(s.execute(select(Job.state, func.count()).where(Job.workspace == workspace)
                                      .group_by(Job.state)).all())
        return {st.value: by_state.get(st.value, 0) for st in JobState}

    def replicas(self, workspace: str) -> ReplicaCount:
        with self.db.tx() as s:
            deployments = s.scalar(select(func.count()).select_from(Deployment)
                                   .where(Deployment.workspace == workspace)) or 0
            by_state = dict(s.execute(
                select(Replica.state, func.count()).join(Deployment, Replica.deployment_id == Deployment.id)
                .where(Deployment.workspace == workspace, Replica.state.in_(LIVE_REPLICAS))
                .group_by(Replica.state)).all())
        return ReplicaCount(deployments, sum(by_state.values()), by_state.get(ReplicaState.READY.value, 0), by_state)


@dataclass(frozen=True)
class DeploymentRow:
    name: str
    state: str
    reason: str
    generation: int
    desired: int
    ready: int
    live: int
    autoscaled: bool
    updated_at: datetime


def _desired(d: Deployment) -> int:
    auto = d.spec.get("autoscaling")
    if auto and d.desired_replicas is not None:
        return d.desired_replicas
    replicas = int(d.spec.get("replicas", 1))
    if auto:  # DeploymentSpec.initial_replicas
        return max(int(auto.get("min", 0)), min(int(auto.get("max", replicas)), replicas))
    return replicas


def deployment_rows(db: Database, workspace: str, limit: int | None = None) -> list[DeploymentRow]:
    """The deployments of a workspace (by name, at most `limit`) with their replica counts, in two queries."""
    with db.tx() as s:
        deps = list(s.scalars(select(Deployment).where(Deployment.workspace == workspace).order_by(Deployment.name)
                              .limit(limit)))
        counts: dict[str, list[int]] = {}
        for dep_id, state, current, n in s.execute(
                select(Replica.deployment_id, Replica.state, Replica.generation == Deployment.generation, func.count())
                .join(Deployment, Replica.deployment_id == Deployment.id)
                .where(Deployment.workspace == workspace, Replica.state.in_(LIVE_REPLICAS))
                .group_by(Replica.deployment_id, Replica.state, Replica.generation == Deployment.generation)):
            c = counts.setdefault(dep_id, [0, 0])
            c[0] += n
            if state == ReplicaState.READY.value and current:
                c[1] += n
        return [DeploymentRow(d.name, d.state, d.reason, d.generation, _desired(d), counts.get(d.id, [0, 0])[1],
                              counts.get(d.id, [0, 0])[0], bool(d.spec.get("autoscaling")), d.updated_at)
                for d in deps]
