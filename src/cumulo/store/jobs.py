"""Reads and writes of jobs, their attempts and their reported metrics."""

from __future__ import annotations

import math

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import delete, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from cumulo.core.errors import Conflict, NotFound
from cumulo.core.states import AttemptState, JobState
from cumulo.store.models import Attempt, Job, Metric

ACTIVE_ATTEMPT = (AttemptState.STARTING.value, AttemptState.RUNNING.value)


def insert(session: Session, job: Job) -> Job:
    session.add(job)
    try:
        session.flush()
    except IntegrityError:
        raise Conflict(
            f"a job named {job.name!r} already exists; choose another name, or delete the old one "
            f"with `cumulo job delete {job.name}` once it has finished"
        ) from None
    return job


def by_name(session: Session, name: str, workspace: str = "default") -> Job:
    job = session.scalars(select(Job).where(Job.workspace == workspace, Job.name == name)).one_or_none()
    if job is None:
        raise NotFound(f"no job named {name!r}; `cumulo job list` shows the jobs there are")
    return job


def listing(session: Session, *, workspace: str = "default", states: Sequence[str] = (), limit: int = 1000) -> list[Job]:
    stmt = select(Job).where(Job.workspace == workspace)
    if states:
        stmt = stmt.where(Job.state.in_(list(states)))
    return list(session.scalars(stmt.order_by(Job.created_at.desc(), Job.id).limit(limit)))


def active_ids(session: Session) -> list[str]:
    """Jobs a reconciler must look at, oldest first (the order pending jobs are started in)."""
    live = [s.value for s in JobState if not s.terminal]
    return list(session.scalars(select(Job.id).where(Job.state.in_(live)).order_by(Job.created_at, Job.id)))


def attempts(session: Session, job_id: str) -> list[Attempt]:
    return list(session.scalars(select(Attempt).where(Attempt.job_id == job_id).order_by(Attempt.number)))


def preempted_attempts(session: Session, job_id: str) -> int:
    """Attempts of the job that ended NodePreempted (policy/jobs.py): they use up no retry."""
    return session.scalar(select(func.count()).select_from(Attempt).where(
        Attempt.job_id == job_id, Attempt.reason.like("NodePreempted:%"))) or 0


def attempt(session: Session, job_id: str, number: int) -> Attempt | None:
    return session.scalars(
        select(Attempt).where(Attempt.job_id == job_id, Attempt.number == number)
    ).one_or_none()


def add_metrics(session: Session, job_id: str, attempt: int, points: list[tuple[int | None, datetime, dict]]) -> int:
    rows = [
        Metric(job_id=job_id, attempt=attempt, step=step, time=t, name=name,
               value=None if math.isnan(value) else float(value))  # NULL is NaN: SQLite cannot store NaN
        for step, t, values in points
        for name, value in values.items()
    ]
    session.add_all(rows)
    return len(rows)


def latest_metrics(session: Session, job_ids: Sequence[str]) -> dict[str, dict[str, float]]:
    """Per job: the newest value of each metric name, plus the newest `step`. One query."""
    if not job_ids:
        return {}
    newest = (
        select(func.max(Metric.id).label("id"))
        .where(Metric.job_id.in_(list(job_ids)))
        .group_by(Metric.job_id, Metric.name)
        .subquery()
    )
    rows = session.execute(
        select(Metric.job_id, Metric.name, Metric.value, Metric.step).join(newest, Metric.id == newest.c.id)
    )
    out: dict[str, dict[str, float]] = {}
    steps: dict[str, int] = {}
    for job_id, name, value, step in rows:
        out.setdefault(job_id, {})[name] = math.nan if value is None else value
        if step is not None:
            steps[job_id] = max(step, steps.get(job_id, step))
    return {j: ({"step": steps[j], **m} if j in steps else m) for j, m in out.items()}


def metric_series(session: Session, job_id: str, *, name: str | None = None, limit: int = 10000) -> list[Metric]:
    stmt = select(Metric).where(Metric.job_id == job_id)
    if name:
        stmt = stmt.where(Metric.name == name)
    return list(session.scalars(stmt.order_by(Metric.id).limit(limit)))


def remove(session: Session, job: Job) -> None:
    session.execute(delete(Metric).where(Metric.job_id == job.id))
    session.execute(delete(Attempt).where(Attempt.job_id == job.id))
    session.delete(job)


def recent_steps(session: Session, job_id: str, limit: int = 200) -> list[tuple[datetime, int]]:
    """(time, step) of the job's newest reports that carry a step (from its newest `limit` rows)."""
    rows = session.execute(select(Metric.time, Metric.step).where(Metric.job_id == job_id, Metric.step.is_not(None))
                           .order_by(Metric.id.desc()).limit(limit))
    return sorted({(t, step) for t, step in rows})
