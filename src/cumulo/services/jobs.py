"""Jobs: submit, read, cancel, delete, logs and reported metrics."""

from __future__ import annotations

import math
import shutil
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cumulo.core.errors import Conflict, InvalidSpec, NotFound, Unschedulable
from cumulo.core.specs import JobSpec, parse_spec
from cumulo.core.states import AttemptState, JobState
from cumulo.core.tokens import Scope
from cumulo.core.views import AttemptView, JobView, LogChunk, MetricPoint, WorkerView
from cumulo.policy import job_health
from cumulo.core.progress import estimate
from cumulo.core.views import AttemptView, JobView, LogChunk, MetricPoint, ProgressView, WorkerView
from cumulo.policy.capacity import Request
from cumulo.services.logs import read_chunk
from cumulo.store import secrets as secrets_store
from cumulo.store import clusters as clusters_store
from cumulo.store import events
from cumulo.store import jobs as store
from cumulo.store import node_pools as node_pools_store
from cumulo.store.db import Database
from cumulo.store.models import Attempt, Job

SYSTEM = Scope()  # callers inside the control plane: the default workspace


def utcnow() -> datetime:
    return datetime.now(UTC)


class JobService:
    def __init__(
        self, db: Database, home: Path, *, node: str, wake: Callable[[str], None], clock: Callable[[], datetime] = utcnow
    ) -> None:
        self.db = db
        self.home = home
        self.node = node
        self.wake = wake
        self.clock = clock

    # -- writes ----------------------------------------------------------------------------------
    def submit(self, data: Any, scope: Scope = SYSTEM) -> JobView:
        spec = parse_spec(data, source="job", kind="Job") if not isinstance(data, JobSpec) else data
        if spec.workdir is not None:
            workdir = Path(spec.workdir)
            if not workdir.is_absolute():
                raise InvalidSpec(
                    f"workdir: {spec.workdir!r} is relative; give an absolute path (the CLI resolves it for you)",
                    errors=[{"field": "workdir", "message": "must be an absolute path"}],
                )
            if not workdir.is_dir():
                raise InvalidSpec(
                    f"workdir: {spec.workdir!r} is not a directory on the machine the control plane runs on",
                    errors=[{"field": "workdir", "message": "directory does not exist"}],
                )
        now = self.clock()
        job_id = uuid.uuid4().hex[:16]
        job_dir = self.home / "jobs" / job_id
        with self.db.tx() as s:
            secrets_store.require(s, spec.env, scope.workspace)  # a 422 naming env.VAR, before anything is written
            r = spec.resources
            why = clusters_store.why_never(s, Request(r.cpu, r.memory, r.gpu, spec.workers, gpu_type=r.gpu_type), spec.placement,
                                           spec.cluster, self.node)
            if why and not node_pools_store.any_for(s, spec.cluster):  # a node pool may launch a machine that fits
                raise Unschedulable(f"job {spec.name!r} can never run: it asks for more than any cluster has ({why}). "
                                    "Lower its resources or workers, or add a cluster that has it.")
            job = store.insert(s, Job(
                id=job_id, name=spec.name, workspace=scope.workspace, created_at=now, spec=spec.model_dump(mode="json"),
                cancel_requested=False, artifacts_dir=str(job_dir / "artifacts"),
                state=JobState.PENDING.value, reason="waiting to be scheduled", attempts=0,
            ))
            events.record(s, now=now, kind="Job", name=spec.name, object_id=job_id, type="Normal",
                          reason="Submitted", message="job submitted", workspace=scope.workspace, actor=scope.actor)
            view = self._view(s, job, metrics={})  # brand new: no attempts or metrics to look up
        (job_dir / "artifacts").mkdir(parents=True, exist_ok=True)
        self.wake(job_id)
        return view

    def cancel(self, name: str, scope: Scope = SYSTEM) -> JobView:
        with self.db.tx() as s:
            job = store.by_name(s, name, scope.workspace)
            if JobState(job.state).terminal:
                raise Conflict(f"job {name!r} has already ended ({job.state}); there is nothing to cancel")
            if not job.cancel_requested:
                job.cancel_requested = True
                events.record(s, now=self.clock(), kind="Job", name=name, object_id=job.id, type="Normal",
                              reason="CancelRequested", message="cancel requested", workspace=scope.workspace,
                              actor=scope.actor)
            view = self._view(s, job)
        self.wake(view.id)
        return view

    def delete(self, name: str, scope: Scope = SYSTEM) -> None:
        with self.db.tx() as s:
            job = store.by_name(s, name, scope.workspace)
            if not JobState(job.state).terminal:
                raise Conflict(
                    f"job {name!r} is {job.state}; cancel it first with `cumulo job cancel {name}`, then delete it"
                )
            job_dir = Path(job.artifacts_dir).parent
            store.remove(s, job)
            events.record(s, now=self.clock(), kind="Job", name=name, object_id=job.id, type="Normal",
                          reason="Deleted", message="job and its files deleted", workspace=scope.workspace,
                          actor=scope.actor)
        shutil.rmtree(job_dir, ignore_errors=True)

    def report(self, name: str, attempt: int | None, points: list[dict], scope: Scope = SYSTEM) -> int:
        """Store training metrics a job reported (cumulo.report)."""
        now = self.clock()
        clean = [(p.get("step"), p.get("time") or now, p.get("values") or {}) for p in points]
        with self.db.tx() as s:
            job = store.by_name(s, name, scope.workspace)
            number = attempt or job.attempts or 1
            n = store.add_metrics(s, job.id, number, clean)
            att = store.attempt(s, job.id, number)
            alarm = False
            if att is not None and not AttemptState(att.state).terminal:
                before = att.progress or {}
                att.progress = job_health.observe(before, clean, now)
                # a loss that went bad is acted on at once, not at the next poll
                alarm = any(k in att.progress and k not in before for k in ("bad", "diverged"))
            job_id = job.id
        if alarm:
            self.wake(job_id)
        return n

    # -- reads -----------------------------------------------------------------------------------
    def get(self, name: str, scope: Scope = SYSTEM) -> JobView:
        with self.db.tx() as s:
            return self._view(s, store.by_name(s, name, scope.workspace))

    def list(self, states: list[str] | None = None, limit: int = 1000, scope: Scope = SYSTEM) -> list[JobView]:
        for st in states or []:
            if st not in {s.value for s in JobState}:
                raise InvalidSpec(f"state {st!r} is not a job state; use one of: {', '.join(s.value for s in JobState)}")
        with self.db.tx() as s:
            rows = store.listing(s, workspace=scope.workspace, states=states or (), limit=limit)
            metrics = store.latest_metrics(s, [j.id for j in rows])
            return [self._view(s, j, metrics=metrics.get(j.id, {})) for j in rows]

    def metrics(self, name: str, metric: str | None = None, scope: Scope = SYSTEM) -> list[MetricPoint]:
        with self.db.tx() as s:
            job = store.by_name(s, name, scope.workspace)
            rows = store.metric_series(s, job.id, name=metric)
        points: dict[tuple[int, int | None, datetime], dict[str, float]] = {}
        for r in rows:
            points.setdefault((r.attempt, r.step, r.time), {})[r.name] = math.nan if r.value is None else r.value
        return [MetricPoint(attempt=a, step=st, time=t, values=v) for (a, st, t), v in points.items()]

    def logs(self, name: str, *, attempt: int | None = None, rank: int = 0, offset: int = 0,
             scope: Scope = SYSTEM) -> LogChunk:
        with self.db.tx() as s:
            job = store.by_name(s, name, scope.workspace)
            number = attempt or job.attempts
            if number == 0:
                return LogChunk(data="", offset=0, attempt=0, rank=rank, complete=JobState(job.state).terminal)
            att = store.attempt(s, job.id, number)
            if att is None:
                raise NotFound(f"job {name!r} has no attempt {number}; it has {job.attempts}")
            paths = att.handle.get("logs", [])
            if not 0 <= rank < len(paths):
                raise NotFound(f"job {name!r} has no rank {rank}; its ranks are 0..{max(len(paths) - 1, 0)}")
            ended = AttemptState(att.state).terminal
        text, new_offset, more = read_chunk(paths[rank], offset)
        return LogChunk(data=text, offset=new_offset, attempt=number, rank=rank, complete=ended and not more)

    # -- views -----------------------------------------------------------------------------------
    def _view(self, s, job: Job, *, metrics: dict[str, float] | None = None) -> JobView:
        """The whole view of one job; a listing passes `metrics` it fetched in bulk and gets no attempts."""
        attempts = store.attempts(s, job.id) if metrics is None else []
        cpu = mem = None
        if attempts and attempts[-1].state == AttemptState.RUNNING.value and attempts[-1].workers:
            ws = attempts[-1].workers
            cpu = round(sum(w.get("cpu_percent") or 0 for w in ws), 1)
            mem = sum(w.get("memory_bytes") or 0 for w in ws)
        latest = metrics if metrics is not None else store.latest_metrics(s, [job.id]).get(job.id, {})
        return JobView(
            id=job.id, name=job.name, state=JobState(job.state), reason=job.reason, exit_code=job.exit_code,
            attempts=job.attempts, created_at=job.created_at, started_at=job.started_at,
            finished_at=job.finished_at, cancel_requested=job.cancel_requested,
            spec=JobSpec.model_validate(job.spec), artifacts=job.artifacts_dir,
            metrics=latest, cpu_percent=cpu, memory_bytes=mem,
            attempt_list=[_attempt_view(a) for a in attempts], cluster=job.cluster,
            progress=self._progress(s, job, latest) if metrics is None else None,
        )

    def _progress(self, s, job: Job, latest: dict[str, float]) -> ProgressView | None:
        """Progress from the job's reports: steps/s and, with `total_steps` reported, fraction and ETA."""
        if "step" not in latest:
            return None
        points = [(t.timestamp(), step) for t, step in store.recent_steps(s, job.id)]
        end = job.finished_at or self.clock()
        p = estimate(points, latest.get("total_steps"), end.timestamp())
        running = not JobState(job.state).terminal
        return ProgressView(step=p.step, total_steps=p.total_steps, fraction=p.fraction,
                            steps_per_second=p.steps_per_second if running else None,
                            eta_seconds=p.eta_seconds if running else None, since_report=p.since_report)


def _attempt_view(a: Attempt) -> AttemptView:
    return AttemptView(
        number=a.number, state=AttemptState(a.state), exit_code=a.exit_code, reason=a.reason,
        created_at=a.created_at, started_at=a.started_at, finished_at=a.finished_at,
        workers=[WorkerView(**w) for w in a.workers],
        gpus=[g for ws in a.allocation.get("worker_gpus", []) for g in ws],
    )
