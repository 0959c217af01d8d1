"""Reads behind the REST routes, the CLI and `cumulo monitor`: ranged series of a job, a
deployment or nodes (workspace-checked), and the overview of everything now."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime

from cumulo.core.errors import InvalidSpec, NotFound
from cumulo.core.states import JobState
from cumulo.core.tokens import Scope
from cumulo.core.units import parse_duration
from cumulo.core.views import (
    AlertsSection, DeploymentStatus, JobStatus, MonitorOverview, NodeStatus, SeriesReport, SeriesView,
)
from cumulo.monitor.sampler import Sampler
from cumulo.services.cluster import ClusterService
from cumulo.services.deployments import DeploymentService
from cumulo.services.jobs import JobService
from cumulo.store import metrics as store
from cumulo.store import nodes as nodes_store
from cumulo.store.db import Database
from cumulo.store.metrics import SeriesKey

KINDS = ("node", "job", "deployment")
#: finished jobs the overview still lists (newest first)
RECENT_FINISHED = 5
NO_ALERTS = "alert rules are not evaluated by this control plane yet"


def parse_time(value: str | None, now: float, field: str) -> float | None:
    """Unix seconds from 'now', a duration back from now ('15m', '2h', '30s', '1d') or an ISO 8601
    time (UTC when it has no offset). None stays None."""
    if value is None or value == "":
        return None
    text = value.strip()
    if text == "now":
        return now
    try:
        return now - parse_duration(text)
    except ValueError:
        pass
    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise InvalidSpec(f"{field}: {value!r} is neither a duration back from now (15m, 2h, 1d) nor an ISO time "
                          "(2026-11-29T10:00:00Z)", errors=[{"field": field, "message": "not a time"}]) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when.timestamp()


class MonitorService:
    def __init__(self, db: Database, sampler: Sampler, *, jobs: JobService, deployments: DeploymentService,
                 cluster: ClusterService, clock: Callable[[], float] = time.time) -> None:
        self.db = db
        self.sampler = sampler
        self.jobs = jobs
        self.deployments = deployments
        self.cluster = cluster
        self.clock = clock
        #: (scope) -> firing alerts; set by the alert evaluator once there is one
        self.alerts: Callable[[Scope], list[dict]] | None = None

    # -- ranged series ---------------------------------------------------------------------------
    def series(self, kind: str, name: str | None, scope: Scope, *, since: str | None = None, until: str | None = None,
               step: int | None = None, metric: str | None = None) -> SeriesReport:
        if kind not in KINDS:
            raise InvalidSpec(f"kind {kind!r}: use one of {', '.join(KINDS)}")
        now = self.clock()
        lo = parse_time(since, now, "since")
        hi = parse_time(until, now, "until")
        hi = now if hi is None else hi
        lo = hi - 3600 if lo is None else lo
        if lo >= hi:
            raise InvalidSpec(f"since ({_iso(lo)}) must be before until ({_iso(hi)})",
                              errors=[{"field": "since", "message": "not before until"}])
        if step is not None and not 1 <= step <= 86400:
            raise InvalidSpec("step: give between 1 and 86400 seconds", errors=[{"field": "step", "message": "out of range"}])
        workspace: str | None = scope.workspace
        if kind == "job" and name is not None:
            self.jobs.get(name, scope)  # 404 naming it
        elif kind == "deployment" and name is not None:
            self.deployments.get(name, scope)
        elif kind == "node":
            workspace = ""
            if name is not None:
                with self.db.tx() as s:
                    if nodes_store.get(s, name) is None:
                        raise NotFound(f"no node named {name!r}; `cumulo nodes` lists them")
        step_ = step or store.default_step(int(lo), int(hi), minimum=max(int(self.sampler.interval), 1))
        with self.db.tx() as s:
            data = store.query(s, kind=kind, workspace=workspace, object=name, metric=metric, since=int(lo),
                               until=int(hi) + 1, step=step_, now=int(now), retention=self.sampler.retention)
        return SeriesReport(kind=kind, object=name, since=_dt(lo), until=_dt(hi), step=step_, series=[
            SeriesView(kind=d.key.kind, workspace=d.key.workspace, object=d.key.object, instance=d.key.instance,
                       metric=d.key.metric, points=d.points) for d in data])

    # -- overview --------------------------------------------------------------------------------
    def overview(self, scope: Scope, events: int = 10) -> MonitorOverview:
        now = self.clock()
        t, latest = self.sampler.latest_t, self.sampler.latest
        by_object: dict[tuple[str, str, str], dict[str, dict[str, float]]] = {}
        for k, v in latest.items():
            by_object.setdefault((k.kind, k.workspace, k.object), {}).setdefault(k.instance, {})[k.metric] = v
        nodes = []
        for n in self.cluster.nodes(None):
            if n.engine_id and n.state == "Lost":
                continue
            got = by_object.get(("node", "", n.name), {})
            nodes.append(NodeStatus(name=n.name, cluster=n.cluster, state=n.state, values=got.get("", {}),
                                    gpus={i: m for i, m in sorted(got.items()) if i}))
        jobs = []
        listed = self.jobs.list(limit=1000, scope=scope)
        live = [j for j in listed if not j.state.terminal]
        ended = [j for j in listed if j.state.terminal][:RECENT_FINISHED]
        for j in live + ended:
            got = by_object.get(("job", scope.workspace, j.name), {})
            whole = got.get("", {}) if j.state == JobState.RUNNING else {}
            ranks = [m for i, m in got.items() if i] if j.state == JobState.RUNNING else []
            total = j.metrics.get("total_steps")
            step = j.metrics.get("step")
            jobs.append(JobStatus(
                name=j.name, state=j.state.value, reason=j.reason, attempts=j.attempts, cluster=j.cluster,
                started_at=j.started_at, finished_at=j.finished_at,
                step=None if step is None else int(step), total_steps=None if total is None else int(total),
                progress=whole.get("progress", min(step / total, 1.0) if step is not None and total else None),
                steps_per_second=whole.get("steps_per_second"), eta_seconds=whole.get("eta_seconds"),
                loss=j.metrics.get("loss"), metrics=j.metrics,
                cpu_percent=round(sum(m.get("cpu_percent", 0.0) for m in ranks), 1) if ranks else None,
                memory_bytes=int(sum(m.get("memory_bytes", 0.0) for m in ranks)) if ranks else None,
            ))
        deployments = []
        for d in self.deployments.list(scope):
            got = by_object.get(("deployment", scope.workspace, d.name), {})
            whole = got.get("", {})
            reps = [m for i, m in got.items() if i]
            deployments.append(DeploymentStatus(
                name=d.name, state=d.state, reason=d.reason, ready=d.ready, desired=d.desired,
                request_rate=whole.get("request_rate"), in_flight=whole.get("in_flight"),
                latency_p50_seconds=whole.get("latency_p50_seconds"), latency_p99_seconds=whole.get("latency_p99_seconds"),
                error_rate=whole.get("error_rate"),
                cpu_percent=round(sum(m.get("cpu_percent", 0.0) for m in reps), 1) if reps else None,
                memory_bytes=int(sum(m.get("memory_bytes", 0.0) for m in reps)) if reps else None,
            ))
        alerts = (AlertsSection(available=True, firing=self.alerts(scope)) if self.alerts is not None
                  else AlertsSection(available=False, note=NO_ALERTS))
        recent = self.cluster.events(limit=events, workspace=scope.workspace)
        return MonitorOverview(time=_dt(now), interval=self.sampler.interval, sampled_at=None if t is None else _dt(t),
                               nodes=nodes, jobs=jobs, deployments=deployments, alerts=alerts, events=recent)

    def latest(self) -> tuple[int | None, dict[SeriesKey, float]]:
        return self.sampler.latest_t, self.sampler.latest


def _dt(t: float) -> datetime:
    return datetime.fromtimestamp(t, UTC)


def _iso(t: float) -> str:
    return _dt(t).isoformat(timespec="seconds")

