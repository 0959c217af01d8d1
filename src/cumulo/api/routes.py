"""Routers: parse the request, call one service method, return a view."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Query, Request, Response

from cumulo.api.schemas import Accepted, MetricsBody
from cumulo.core.views import EventView, Health, JobView, LogChunk, MetricPoint, NodeView
from cumulo.services.cluster import ClusterService
from cumulo.services.jobs import JobService

router = APIRouter(prefix="/api/v1")

JOB_EXAMPLE = {"kind": "Job", "name": "digits", "command": "python train.py", "workdir": "/abs/path",
               "resources": {"cpu": 1, "memory": "1Gi"}, "max_retries": 2}


def _jobs(request: Request) -> JobService:
    return request.app.state.jobs


def _cluster(request: Request) -> ClusterService:
    return request.app.state.cluster


@router.get("/health", response_model=Health, tags=["system"])
def health(request: Request) -> Health:
    return request.app.state.health()


@router.post("/jobs", response_model=JobView, status_code=201, tags=["jobs"])
def submit_job(request: Request, spec: Annotated[dict[str, Any], Body(examples=[JOB_EXAMPLE])]) -> JobView:
    """Submit a Job spec (the YAML's content as JSON). 409 if the name is taken."""
    return _jobs(request).submit(spec)


@router.get("/jobs", response_model=list[JobView], tags=["jobs"])
def list_jobs(
    request: Request,
    state: Annotated[list[str] | None, Query(description="only jobs in these states")] = None,
    limit: Annotated[int, Query(ge=1, le=10000)] = 1000,
) -> list[JobView]:
    return _jobs(request).list(state, limit)


@router.get("/jobs/{name}", response_model=JobView, tags=["jobs"])
def get_job(request: Request, name: str) -> JobView:
    return _jobs(request).get(name)


@router.post("/jobs/{name}/cancel", response_model=JobView, tags=["jobs"])
def cancel_job(request: Request, name: str) -> JobView:
    return _jobs(request).cancel(name)


@router.delete("/jobs/{name}", status_code=204, tags=["jobs"])
def delete_job(request: Request, name: str) -> Response:
    _jobs(request).delete(name)
    return Response(status_code=204)


@router.get("/jobs/{name}/logs", response_model=LogChunk, tags=["jobs"])
def job_logs(
    request: Request,
    name: str,
    attempt: Annotated[int | None, Query(ge=1)] = None,
    rank: Annotated[int, Query(ge=0)] = 0,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> LogChunk:
    return _jobs(request).logs(name, attempt=attempt, rank=rank, offset=offset)


@router.post("/jobs/{name}/metrics", response_model=Accepted, tags=["jobs"])
def report_metrics(request: Request, name: str, body: MetricsBody) -> Accepted:
    """Training metrics from `cumulo.report()` inside the job."""
    n = _jobs(request).report(name, body.attempt, [p.model_dump() for p in body.points])
    return Accepted(accepted=n)


@router.get("/jobs/{name}/metrics", response_model=list[MetricPoint], tags=["jobs"])
def job_metrics(request: Request, name: str, metric: str | None = None) -> list[MetricPoint]:
    return _jobs(request).metrics(name, metric)


@router.get("/events", response_model=list[EventView], tags=["system"])
def list_events(
    request: Request,
    kind: str | None = None,
    name: str | None = None,
    after: Annotated[int, Query(ge=0)] = 0,
    limit: Annotated[int, Query(ge=1, le=10000)] = 100,
) -> list[EventView]:
    return _cluster(request).events(kind=kind, name=name, after=after, limit=limit)


@router.get("/nodes", response_model=list[NodeView], tags=["system"])
def list_nodes(request: Request) -> list[NodeView]:
    return _cluster(request).nodes()
