"""Routers: parse the request, call one service method, return a view."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Path, Query, Request, Response
from fastapi.responses import PlainTextResponse

from cumulo.api.auth import admin, authorize, reporter, reporter_scope, scraper
from cumulo.api.auth import scope as scope_of
from cumulo.api.schemas import (
    MAX_INT, Accepted, ClusterBody, CordonBody, GatewaySync, MetricsBody, QuotaBody, ReleaseBody, RouteEndpoint, Routes, RouteSplit, ScaleBody,
    SecretBody,
    TokenBody, WorkspaceBody,
)
from cumulo.core.errors import Forbidden, InvalidSpec
from cumulo.core.tokens import Role, Scope, route_key
from cumulo.core.views import (
    AlertRuleView, AlertView, ClusterInfo, CostReport, DeploymentView, EventView, Health, JobView, LogChunk, MetricPoint,
    MonitorOverview, NodeDetail, NodePoolApplied, NodePoolView, NodeView, PoolView, RolloutView, SecretView, SeriesReport,
    System, TokenView, WorkspaceView,
)
from cumulo.monitor.service import MonitorService
from cumulo.services.alerts import AlertService
from cumulo.services.cluster import ClusterService
from cumulo.services.deployments import DeploymentService
from cumulo.services.gateways import Counters, GatewayRegistry, GatewayReport
from cumulo.services.jobs import JobService
from cumulo.services.resources import ResourceService
from cumulo.services.tokens import Principal
from cumulo.store.gateway_view import GatewayView

#: /health: no token (it says only that the server is up)
public = APIRouter(prefix="/api/v1")
#: everything else: a token with the viewer role to read, member to write (api/auth.py)
router = APIRouter(prefix="/api/v1", dependencies=[Depends(authorize)])
#: what a job's own processes call with their workload token
workload = APIRouter(prefix="/api/v1")
#: installation-wide operations: workspaces, the secret key, the gateways' route table
admin_only = APIRouter(prefix="/api/v1", dependencies=[Depends(admin)])

JOB_EXAMPLE = {"kind": "Job", "name": "digits", "command": "python train.py", "workdir": "/abs/path",
               "resources": {"cpu": 1, "memory": "1Gi"}, "max_retries": 2}


def _jobs(request: Request) -> JobService:
    return request.app.state.jobs


def _alerts(request: Request) -> AlertService:
    return request.app.state.alerts


def _cluster(request: Request) -> ClusterService:
    return request.app.state.cluster


@public.get("/health", response_model=Health, tags=["system"])
def health() -> Health:
    """Whether the control plane is up. Needs no token, and says nothing else (see /system)."""
    return Health(status="ok")


@router.get("/system", response_model=System, tags=["system"])
def system(request: Request) -> System:
    """Version, database backend, state folder and reconcile passes."""
    return request.app.state.system()


@router.post("/jobs", response_model=JobView, status_code=201, tags=["jobs"])
def submit_job(request: Request, scope: Annotated[Scope, Depends(scope_of)], spec: Annotated[dict[str, Any], Body(examples=[JOB_EXAMPLE])]) -> JobView:
    """Submit a Job spec (the YAML's content as JSON). 409 if the name is taken."""
    return _jobs(request).submit(spec, scope)


@router.get("/jobs", response_model=list[JobView], tags=["jobs"])
def list_jobs(
    request: Request,
    scope: Annotated[Scope, Depends(scope_of)],
    state: Annotated[list[str] | None, Query(description="only jobs in these states")] = None,
    limit: Annotated[int, Query(ge=1, le=10000)] = 1000,
) -> list[JobView]:
    return _jobs(request).list(state, limit, scope)


@router.get("/jobs/{name}", response_model=JobView, tags=["jobs"])
def get_job(request: Request, name: str, scope: Annotated[Scope, Depends(scope_of)]) -> JobView:
    return _jobs(request).get(name, scope)


@router.post("/jobs/{name}/cancel", response_model=JobView, tags=["jobs"])
def cancel_job(request: Request, name: str, scope: Annotated[Scope, Depends(scope_of)]) -> JobView:
    return _jobs(request).cancel(name, scope)


@router.delete("/jobs/{name}", status_code=204, tags=["jobs"])
def delete_job(request: Request, name: str, scope: Annotated[Scope, Depends(scope_of)]) -> Response:
    _jobs(request).delete(name, scope)
    return Response(status_code=204)


@router.get("/jobs/{name}/logs", response_model=LogChunk, tags=["jobs"])
def job_logs(
    request: Request,
    scope: Annotated[Scope, Depends(scope_of)],
    name: str,
    attempt: Annotated[int | None, Query(ge=1, le=MAX_INT)] = None,
    rank: Annotated[int, Query(ge=0, le=255)] = 0,
    offset: Annotated[int, Query(ge=0, le=2**62)] = 0,
) -> LogChunk:
    return _jobs(request).logs(name, attempt=attempt, rank=rank, offset=offset, scope=scope)


@workload.post("/jobs/{name}/metrics", response_model=Accepted, tags=["jobs"])
def report_metrics(request: Request, name: str, body: MetricsBody,
                   caller: Annotated[Principal, Depends(reporter)],
                   scope: Annotated[Scope, Depends(reporter_scope)]) -> Accepted:
    """Training metrics from `cumulo.report()` inside the job (its CUMULO_TOKEN), or from a member."""
    if caller.job_id is not None and _jobs(request).get(name, scope).id != caller.job_id:
        raise Forbidden(f"this workload token belongs to another job; it may not report metrics for {name!r}")
    n = _jobs(request).report(name, body.attempt, [p.model_dump() for p in body.points], scope)
    return Accepted(accepted=n)


@router.get("/jobs/{name}/metrics", response_model=list[MetricPoint], tags=["jobs"])
def job_metrics(request: Request, name: str, scope: Annotated[Scope, Depends(scope_of)], metric: str | None = None) -> list[MetricPoint]:
    return _jobs(request).metrics(name, metric, scope)


@router.get("/alerts", response_model=list[AlertView], tags=["alerts"])
def list_alerts(request: Request, scope: Annotated[Scope, Depends(scope_of)],
                state: Annotated[list[str] | None, Query()] = None,
                limit: Annotated[int, Query(ge=1, le=10000)] = 500) -> list[AlertView]:
    """Firing alerts, newest first; `state=pending&state=resolved` for others."""
    return _alerts(request).alerts(states=state, limit=limit, scope=scope)


@router.get("/alertrules", response_model=list[AlertRuleView], tags=["alerts"])
def list_alert_rules(request: Request, scope: Annotated[Scope, Depends(scope_of)]) -> list[AlertRuleView]:
    return _alerts(request).rules(scope)


@router.put("/alertrules/{name}", response_model=AlertRuleView, tags=["alerts"])
def put_alert_rule(request: Request, name: str, scope: Annotated[Scope, Depends(scope_of)],
                   spec: Annotated[dict[str, Any], Body()], response: Response) -> AlertRuleView:
    """Create or replace the rule `name` (a `kind: AlertRule` spec; its name must match the path)."""
    if spec.get("name", name) != name:
        raise InvalidSpec(f"name: the spec says {spec.get('name')!r} but the path says {name!r}; make them agree",
                          errors=[{"field": "name", "message": "must match the path"}])
    view, created = _alerts(request).put_rule({**spec, "name": name, "kind": spec.get("kind", "AlertRule")}, scope)
    response.status_code = 201 if created else 200
    return view


@router.delete("/alertrules/{name}", status_code=204, tags=["alerts"])
def delete_alert_rule(request: Request, name: str, scope: Annotated[Scope, Depends(scope_of)]) -> Response:
    _alerts(request).delete_rule(name, scope)
    return Response(status_code=204)


@router.get("/events", response_model=list[EventView], tags=["system"])
def list_events(
    request: Request,
    scope: Annotated[Scope, Depends(scope_of)],
    kind: str | None = None,
    name: str | None = None,
    after: Annotated[int, Query(ge=0, le=MAX_INT)] = 0,  # events.id is an INTEGER on PostgreSQL
    limit: Annotated[int, Query(ge=1, le=10000)] = 100,
) -> list[EventView]:
    return _cluster(request).events(kind=kind, name=name, after=after, limit=limit, workspace=scope.workspace)


@router.get("/nodes", response_model=list[NodeView], tags=["clusters"])
def list_nodes(request: Request, cluster: Annotated[str | None, Query(max_length=63)] = None) -> list[NodeView]:
    """Every node (this machine, cloud machines, the nodes each engine reports), or one cluster's."""
    return _cluster(request).nodes(cluster)


@router.get("/clusters", response_model=list[ClusterInfo], tags=["clusters"])
def list_clusters(request: Request) -> list[ClusterInfo]:
    """Every cluster: `local` and each Ray or Slurm cluster, with its state and capacity."""
    return _cluster(request).list()


@router.get("/clusters/{name}", response_model=ClusterInfo, tags=["clusters"])
def get_cluster(request: Request, name: str) -> ClusterInfo:
    """One cluster with the work running on it."""
    return _cluster(request).get(name, with_work=True)


@admin_only.post("/nodes/{name}/cordon", response_model=NodeView, tags=["clusters"])
def cordon_node(request: Request, name: str, body: CordonBody,
                caller: Annotated[Principal, Depends(admin)]) -> NodeView:
    """No new work lands on the node (what runs there goes on) until it is uncordoned."""
    return _cluster(request).cordon(name, body.reason, actor=caller.name)


@admin_only.post("/nodes/{name}/uncordon", response_model=NodeView, tags=["clusters"])
def uncordon_node(request: Request, name: str, caller: Annotated[Principal, Depends(admin)]) -> NodeView:
    return _cluster(request).uncordon(name, actor=caller.name)


@admin_only.post("/clusters", response_model=ClusterInfo, status_code=201, tags=["clusters"])
def add_cluster(request: Request, body: ClusterBody) -> ClusterInfo:
    """Add a Ray cluster (its dashboard address) or this machine's Slurm. Its nodes are read from
    the engine within seconds; an unreachable one shows why and is retried."""
    return _cluster(request).add(body.name, body.kind, address=body.address, partition=body.partition,
                                 artifacts=body.artifacts, join=body.join)


NODEPOOL_EXAMPLE = {"kind": "NodePool", "name": "cpu", "cluster": "ray", "providers": ["local-vm"],
                    "shapes": [{"cpu": 2}, {"cpu": 4}], "max_nodes": 3, "idle_ttl": "5m"}


@router.get("/nodepools", response_model=list[NodePoolView], tags=["nodepools"])
def list_node_pools(request: Request) -> list[NodePoolView]:
    """Every node pool with its live machines, their $/h and this month's spend."""
    return request.app.state.node_pools.list()


@router.get("/nodepools/{name}", response_model=NodePoolView, tags=["nodepools"])
def get_node_pool(request: Request, name: str) -> NodePoolView:
    """One node pool: its machines (ended ones too), last decision and what it says of waiting work."""
    return request.app.state.node_pools.get(name)


@admin_only.post("/nodepools", response_model=NodePoolApplied, tags=["nodepools"],
                 responses={201: {"model": NodePoolApplied, "description": "created"}})
def apply_node_pool(request: Request, response: Response, scope: Annotated[Scope, Depends(scope_of)],
                    spec: Annotated[dict[str, Any], Body(examples=[NODEPOOL_EXAMPLE])]) -> NodePoolApplied:
    """Create a node pool (201) or update its spec (200; `action` says whether anything changed)."""
    view, action, changed = request.app.state.node_pools.apply(spec, scope)
    response.status_code = 201 if action == "created" else 200
    return NodePoolApplied(**view.model_dump(), action=action, changed=changed)


@admin_only.delete("/nodepools/{name}", response_model=NodePoolView, status_code=202, tags=["nodepools"])
def delete_node_pool(request: Request, name: str, scope: Annotated[Scope, Depends(scope_of)]) -> NodePoolView:
    """Release every machine of the pool, then remove it (it shows as Deleting meanwhile)."""
    return request.app.state.node_pools.delete(name, scope)


@admin_only.delete("/clusters/{name}", status_code=204, tags=["clusters"])
def remove_cluster(request: Request, name: str) -> Response:
    """Remove a cluster; refused (409, with the list) while work runs on it."""
    _cluster(request).remove(name)
    return Response(status_code=204)


# -- deployments -----------------------------------------------------------------------------------
DEPLOYMENT_EXAMPLE = {"kind": "Deployment", "name": "digits", "service": "service.py:Digits", "workdir": "/abs/path",
                      "replicas": 2}


def _deployments(request: Request) -> DeploymentService:
    return request.app.state.deployments


@router.post("/deployments", response_model=DeploymentView, tags=["deployments"],
             responses={201: {"model": DeploymentView, "description": "created"}})
def deploy(request: Request, response: Response, scope: Annotated[Scope, Depends(scope_of)],
           spec: Annotated[dict[str, Any], Body(examples=[DEPLOYMENT_EXAMPLE])]) -> DeploymentView:
    """Create a deployment, or update it: a changed spec replaces its replicas one by one."""
    view, created = _deployments(request).deploy(spec, scope)
    response.status_code = 201 if created else 200
    return view


@router.get("/deployments", response_model=list[DeploymentView], tags=["deployments"])
def list_deployments(request: Request, scope: Annotated[Scope, Depends(scope_of)]) -> list[DeploymentView]:
    return _deployments(request).list(scope)


@router.get("/deployments/{name}", response_model=DeploymentView, tags=["deployments"])
def get_deployment(request: Request, name: str, scope: Annotated[Scope, Depends(scope_of)]) -> DeploymentView:
    return _deployments(request).get(name, scope)


@router.post("/deployments/{name}/scale", response_model=DeploymentView, tags=["deployments"])
def scale_deployment(request: Request, name: str, body: ScaleBody, scope: Annotated[Scope, Depends(scope_of)]) -> DeploymentView:
    return _deployments(request).scale(name, body.replicas, scope)


@router.delete("/deployments/{name}", response_model=DeploymentView, status_code=202, tags=["deployments"])
def delete_deployment(request: Request, name: str, scope: Annotated[Scope, Depends(scope_of)]) -> DeploymentView:
    """Drain every replica, then remove the deployment (it shows as Deleting meanwhile)."""
    return _deployments(request).delete(name, scope)


@router.get("/deployments/{name}/logs", response_model=LogChunk, tags=["deployments"])
def deployment_logs(
    request: Request, name: str, scope: Annotated[Scope, Depends(scope_of)],
    replica: Annotated[int | None, Query(ge=1, le=MAX_INT)] = None,
    offset: Annotated[int, Query(ge=0, le=2**62)] = 0,
) -> LogChunk:
    return _deployments(request).logs(name, replica=replica, offset=offset, scope=scope)


@router.get("/deployments/{name}/rollout", response_model=RolloutView, tags=["deployments"])
def get_rollout(request: Request, name: str, scope: Annotated[Scope, Depends(scope_of)]) -> RolloutView:
    """The deployment's latest canary rollout: phase, step, traffic weight, and the evidence of its
    latest judgement (both versions' requests, failures, error rate and p99 over the same window)."""
    return _deployments(request).rollout(name, scope)


@router.post("/deployments/{name}/rollout/promote", response_model=RolloutView, tags=["deployments"])
def promote_rollout(request: Request, name: str, scope: Annotated[Scope, Depends(scope_of)]) -> RolloutView:
    """Move the canary to its next step now, without waiting for its analysis (409 when no rollout
    is in progress)."""
    return _deployments(request).rollout_command(name, "promote", scope)


@router.post("/deployments/{name}/rollout/abort", response_model=RolloutView, tags=["deployments"])
def abort_rollout(request: Request, name: str, scope: Annotated[Scope, Depends(scope_of)]) -> RolloutView:
    """Roll the canary back now: its replicas go, the stable version takes all the traffic again."""
    return _deployments(request).rollout_command(name, "abort", scope)


def _routes(view: GatewayView) -> Routes:
    splits = view.splits or {}
    return Routes(deployments={
        name: [RouteEndpoint(replica_id=str(o), host=h, port=p, ready=True,
                             generation=splits[name].generations.get(o, 0) if name in splits else 0)
               for o, h, p in eps]
        for name, eps in view.routes.items()
    }, hold=sorted(view.hold), auth=view.auth,
        splits={name: RouteSplit(canary_generation=sp.canary_generation, weight=sp.weight,
                                 stable_generation=sp.stable_generation) for name, sp in splits.items()})


@admin_only.get("/gateway/routes", response_model=Routes, tags=["gateway"])
def gateway_routes(request: Request) -> Routes:
    """Ready replicas of every deployment and the hold list. A gateway that only reads this is
    invisible to the autoscaler and to the drain wait: `cumulo gateway` uses POST /gateway/sync."""
    return _routes(request.app.state.routes())


@admin_only.post("/gateway/sync", response_model=Routes, tags=["gateway"])
def gateway_sync(request: Request, body: GatewaySync) -> Routes:
    """A standalone gateway's poll: it reports its per-deployment counters and what it has in flight
    to each replica address (counted by the autoscaler and the drain wait while it keeps reporting),
    and gets the routes and the hold list back."""
    gateways: GatewayRegistry = request.app.state.gateways
    view = gateways.sync(GatewayReport(
        gateway_id=body.gateway_id,
        deployments={name: Counters(c.arrivals_total, c.requests_total, c.in_flight, c.latency_sum, c.latency_count,
                                       c.in_flight_seconds,
                                       {int(g): (x.requests, x.errors, tuple(x.buckets)) for g, x in c.generations.items()})
                     for name, c in body.deployments.items()},
        in_flight={(r.host, r.port): r.in_flight for r in body.replicas if r.in_flight},
        routed=frozenset((r.host, r.port) for r in body.replicas if r.routed),
    ))
    return _routes(view)


@router.get("/deployments/{name}/metrics", tags=["deployments"])
def deployment_metrics(request: Request, name: str, scope: Annotated[Scope, Depends(scope_of)]) -> dict:
    """Load the gateway sees for this deployment: request rate, in-flight, latency, status codes
    (this process's gateway); `load`: what the autoscaler reads, summed over this gateway and every
    standalone one (`cumulo gateway`) that synced within the last seconds, with each of those
    gateways' own arrivals count (`standalone_gateways`: gateway id -> arrivals)."""
    _deployments(request).get(name, scope)  # 404 for an unknown name
    key = route_key(name, scope.workspace)
    return {**request.app.state.gateway.stats(key), "load": request.app.state.load(key)}


# -- resources -------------------------------------------------------------------------------------
def _resources(request: Request) -> ResourceService:
    return request.app.state.resources


@router.post("/resources", response_model=PoolView, status_code=201, tags=["resources"])
def create_resources(request: Request, scope: Annotated[Scope, Depends(scope_of)], body: Annotated[dict[str, Any], Body(examples=[
        {"nodes": [{"instance_type": "g4dn.xlarge"}] * 2, "providers": ["aws"], "spot": False}])]) -> PoolView:
    """Provision machines, each placed at the lowest price that fits (with failover); a pool that
    fails part way is rolled back."""
    return _resources(request).create(body, scope)


@router.get("/resources", response_model=list[NodeDetail], tags=["resources"])
def list_resources(request: Request, scope: Annotated[Scope, Depends(scope_of)], all: bool = False) -> list[NodeDetail]:  # noqa: A002
    return _resources(request).list(include_ended=all, scope=scope)


@router.get("/pools/{pool_id}", response_model=PoolView, tags=["resources"])
def get_pool(request: Request, pool_id: str, scope: Annotated[Scope, Depends(scope_of)]) -> PoolView:
    return _resources(request).pool(pool_id, scope)


@router.post("/resources/release", response_model=list[NodeDetail], tags=["resources"])
def release_resources(request: Request, body: ReleaseBody, scope: Annotated[Scope, Depends(scope_of)]) -> list[NodeDetail]:
    return _resources(request).release(body.ids, scope)


# -- tokens (admin) --------------------------------------------------------------------------------
tokens = APIRouter(prefix="/api/v1/tokens", tags=["tokens"], dependencies=[Depends(admin)])


@tokens.post("", response_model=TokenView, status_code=201)
def create_token(request: Request, body: TokenBody) -> TokenView:
    """A new token; the answer is the only place its value is ever shown."""
    return request.app.state.tokens.create(name=body.name, workspace=body.workspace, role=body.role,
                                                 expires=body.expires, deployment=body.deployment)


@tokens.get("", response_model=list[TokenView])
def list_tokens(request: Request, workspace: str | None = None) -> list[TokenView]:
    return request.app.state.tokens.list(workspace)


@tokens.post("/{token_id}/revoke", response_model=TokenView)
def revoke_token(request: Request, token_id: str) -> TokenView:
    return request.app.state.tokens.revoke(token_id)


# -- secrets (member; values are write-only) --------------------------------------------------------
@router.post("/secrets", response_model=SecretView, status_code=201, tags=["secrets"])
def create_secret(request: Request, body: SecretBody, scope: Annotated[Scope, Depends(scope_of)]) -> SecretView:
    """Store a secret, sealed with AES-256-GCM. Specs use it as `env: {VAR: {secret: NAME}}`; no
    route ever returns its value."""
    return request.app.state.secrets.create(body.name, body.value, overwrite=body.overwrite, scope=scope)


@router.get("/secrets", response_model=list[SecretView], tags=["secrets"])
def list_secrets(request: Request, scope: Annotated[Scope, Depends(scope_of)]) -> list[SecretView]:
    return request.app.state.secrets.list(scope)


@router.delete("/secrets/{name}", status_code=204, tags=["secrets"])
def delete_secret(request: Request, name: str, scope: Annotated[Scope, Depends(scope_of)]) -> Response:
    """Refused (409, naming them) while a live job or a deployment uses it."""
    request.app.state.secrets.delete(name, scope)
    return Response(status_code=204)


@admin_only.post("/secrets/rotate-key", tags=["secrets"])
def rotate_secret_key(request: Request) -> dict:
    """A new key encrypts from now on; every secret is re-sealed with it; old keys still decrypt."""
    return {"resealed": request.app.state.secrets.rotate_key()}


# -- workspaces (admin) ----------------------------------------------------------------------------
@admin_only.post("/workspaces", response_model=WorkspaceView, status_code=201, tags=["workspaces"])
def create_workspace(request: Request, body: WorkspaceBody,
                     caller: Annotated[Principal, Depends(admin)]) -> WorkspaceView:
    quota = body.quota.model_dump() if body.quota else None
    return request.app.state.workspaces.create(body.name, quota=quota, actor=caller.name)


@admin_only.put("/workspaces/{name}/quota", response_model=WorkspaceView, tags=["workspaces"])
def set_workspace_quota(request: Request, name: str, body: QuotaBody,
                        caller: Annotated[Principal, Depends(admin)]) -> WorkspaceView:
    """Replace a workspace's limits (an absent field is no limit). Running work keeps running."""
    return request.app.state.workspaces.set_quota(name, body.model_dump(), actor=caller.name)


@router.get("/costs", response_model=CostReport, tags=["costs"])
def costs(request: Request, scope: Annotated[Scope, Depends(scope_of)],
          caller: Annotated[Principal, Depends(authorize)],
          by: Annotated[str, Query(description="workspace, job, deployment or node")] = "workspace",
          since: Annotated[datetime | None, Query(description="start (default: the 1st of this month, UTC)")] = None,
          all: Annotated[bool, Query(description="every workspace (admin)")] = False) -> CostReport:  # noqa: A002
    """What work cost since a date: cloud nodes at their price, local work at its share of the
    machine's price (`cumulo up --local-price`)."""
    if all:
        caller.require(Role.ADMIN)
    return request.app.state.costs.report(by=by, since=since, scope=scope, all_workspaces=all)


@admin_only.get("/workspaces", response_model=list[WorkspaceView], tags=["workspaces"])
def list_workspaces(request: Request) -> list[WorkspaceView]:
    return request.app.state.workspaces.list()


@admin_only.delete("/workspaces/{name}", status_code=204, tags=["workspaces"])
def delete_workspace(request: Request, name: str) -> Response:
    """Only an empty workspace (no jobs, deployments or pools); its tokens and secrets go with it."""
    request.app.state.workspaces.delete(name)
    return Response(status_code=204)


# -- monitoring ------------------------------------------------------------------------------------
def _monitor(request: Request) -> MonitorService:
    return request.app.state.monitor


Since = Annotated[str | None, Query(max_length=64, description="start: a duration back from now (15m, 2h, 1d) or an "
                                                             "ISO time (default: 1 h before until)")]
Until = Annotated[str | None, Query(max_length=64, description="end: 'now' (default), a duration back or an ISO time")]
Step = Annotated[int | None, Query(ge=1, le=86400, description="seconds per point (default: ~300 points)")]
Metric = Annotated[str | None, Query(max_length=64, description="only this metric")]


@router.get("/jobs/{name}/series", response_model=SeriesReport, tags=["monitoring"])
def job_series(request: Request, name: str, scope: Annotated[Scope, Depends(scope_of)], since: Since = None,
               until: Until = None, step: Step = None, metric: Metric = None) -> SeriesReport:
    """A job's sampled series: per rank CPU %, memory and GPU memory; steps/s, step, progress and ETA."""
    return _monitor(request).series("job", name, scope, since=since, until=until, step=step, metric=metric)


@router.get("/deployments/{name}/series", response_model=SeriesReport, tags=["monitoring"])
def deployment_series(request: Request, name: str, scope: Annotated[Scope, Depends(scope_of)], since: Since = None,
                      until: Until = None, step: Step = None, metric: Metric = None) -> SeriesReport:
    """A deployment's sampled series: request rate, p50/p99 latency, error rate, in flight; per replica
    CPU %, memory and in flight."""
    return _monitor(request).series("deployment", name, scope, since=since, until=until, step=step, metric=metric)


@router.get("/nodes/series", response_model=SeriesReport, tags=["monitoring"])
def nodes_series(request: Request, scope: Annotated[Scope, Depends(scope_of)], since: Since = None,
                 until: Until = None, step: Step = None, metric: Metric = None) -> SeriesReport:
    """Every node's sampled series (this machine: CPU, memory, GPUs; engine nodes: free and total)."""
    return _monitor(request).series("node", None, scope, since=since, until=until, step=step, metric=metric)


@router.get("/nodes/{name}/series", response_model=SeriesReport, tags=["monitoring"])
def node_series(request: Request, name: Annotated[str, Path(max_length=63)], scope: Annotated[Scope, Depends(scope_of)],
                since: Since = None, until: Until = None, step: Step = None, metric: Metric = None) -> SeriesReport:
    return _monitor(request).series("node", name, scope, since=since, until=until, step=step, metric=metric)


@router.get("/monitor", response_model=MonitorOverview, tags=["monitoring"])
def monitor_overview(request: Request, scope: Annotated[Scope, Depends(scope_of)],
                     events: Annotated[int, Query(ge=1, le=100)] = 10) -> MonitorOverview:
    """What `cumulo monitor` shows: nodes, jobs (progress, steps/s, ETA), deployments (req/s, p99,
    errors), firing alerts and the newest events."""
    return _monitor(request).overview(scope, events=events)


#: Prometheus exposition of every deployment's gateway metrics and every sampled series (all
#: workspaces): an admin token or a `--role metrics` token (Prometheus: `authorization:
#: {credentials_file: ...}`); a standalone gateway's own /metrics is open
metrics = APIRouter(dependencies=[Depends(scraper)])


@metrics.get("/metrics", tags=["system"], response_class=PlainTextResponse)
def prometheus(request: Request) -> PlainTextResponse:
    """Prometheus exposition: the gateway's request counters and the newest sample of every node,
    job and deployment series. An admin token, or one made with `cumulo token create NAME --role metrics`."""
    return PlainTextResponse(request.app.state.metrics_text(), media_type="text/plain; version=0.0.4; charset=utf-8")


ROUTERS = (public, admin_only, router, workload, tokens, metrics)
