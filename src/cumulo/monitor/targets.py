"""What the sampler measures, read from the store in one short transaction: running job attempts and
live replicas (with where their processes are), deployments, nodes, and the jobs' recent reports."""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import select
from sqlalchemy.orm import Session

from cumulo.core.states import AttemptState
from cumulo.core.tokens import route_key
from cumulo.store import jobs as jobs_store
from cumulo.store.models import Attempt, Deployment, Job, Node, Replica

LIVE_REPLICA = ("Starting", "Ready", "Draining")


@dataclass(frozen=True)
class JobTarget:
    workspace: str
    name: str
    job_id: str
    attempt: int
    cluster: str
    run_dir: str | None  # the local runtime's run folder (its workers.json), None on an engine
    workers: tuple[dict, ...]  # what the reconciler last observed (pid, cpu, rss per rank)
    total_steps: float | None
    steps: tuple[tuple[float, int], ...]  # (Unix time, step) of recent reports


@dataclass(frozen=True)
class ReplicaTarget:
    ordinal: int
    state: str
    host: str
    port: int
    cluster: str
    run_dir: str | None


@dataclass(frozen=True)
class DeploymentTarget:
    workspace: str
    name: str
    route: str  # the gateway's key for it
    replicas: tuple[ReplicaTarget, ...] = ()
    ready: int = 0


@dataclass(frozen=True)
class NodeTarget:
    name: str
    cluster: str
    state: str
    cpu: float
    memory: int
    gpus: int
    free: dict = field(default_factory=dict)  # an engine's free cpu / memory / gpus, when it says


@dataclass(frozen=True)
class Targets:
    jobs: tuple[JobTarget, ...]
    deployments: tuple[DeploymentTarget, ...]
    nodes: tuple[NodeTarget, ...]


def _run_dir(runtime: str, handle: dict) -> str | None:
    return handle.get("dir") if runtime == "local" else None


def read(s: Session) -> Targets:
    running = s.execute(
        select(Job.workspace, Job.name, Job.id, Attempt.number, Attempt.cluster, Attempt.runtime, Attempt.handle,
               Attempt.workers)
        .join(Attempt, Attempt.job_id == Job.id)
        .where(Attempt.state == AttemptState.RUNNING.value)
    ).all()
    totals = _total_steps(s, [r[2] for r in running])
    jobs = tuple(
        JobTarget(w, name, jid, number, cluster, _run_dir(runtime, handle or {}), tuple(workers or ()),
                  totals.get(jid), tuple((t.timestamp(), step) for t, step in jobs_store.recent_steps(s, jid)))
        for w, name, jid, number, cluster, runtime, handle, workers in running
    )
    deps: dict[str, list] = {}
    meta: dict[str, tuple[str, str]] = {}
    for did, w, name in s.execute(select(Deployment.id, Deployment.workspace, Deployment.name)):
        deps[did] = []
        meta[did] = (w, name)
    for r in s.scalars(select(Replica).where(Replica.state.in_(LIVE_REPLICA))):
        if r.deployment_id in deps:
            deps[r.deployment_id].append(ReplicaTarget(r.ordinal, r.state, r.host, r.port, r.cluster,
                                                       _run_dir(r.runtime, r.handle or {})))
    deployments = tuple(
        DeploymentTarget(w, name, route_key(name, w), tuple(sorted(deps[d], key=lambda x: x.ordinal)),
                         sum(1 for x in deps[d] if x.state == "Ready"))
        for d, (w, name) in sorted(meta.items(), key=lambda kv: kv[1])
    )
    nodes = tuple(
        NodeTarget(n.name, n.cluster, n.state, n.cpu, n.memory, len(n.gpus or ()), dict((n.labels or {}).get("cumulo.free") or {}))
        for n in s.scalars(select(Node).where(Node.state.not_in(("Lost", "Terminated", "Failed"))))
    )
    return Targets(jobs, deployments, nodes)


def _total_steps(s: Session, job_ids: list[str]) -> dict[str, float]:
    if not job_ids:
        return {}
    latest = jobs_store.latest_metrics(s, job_ids)
    return {j: m["total_steps"] for j, m in latest.items() if "total_steps" in m}

