"""cumulo.Client: the one way to talk to a control plane (the CLI uses nothing else)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

from cumulo.core import settings
from cumulo.core.errors import CumuloError, ServerUnavailable, from_problem
from cumulo.core.specs import DeploymentSpec, JobSpec
from cumulo.core.views import (
    AlertRuleView, AlertView, ApplyResult, ClusterInfo, CostReport, DeploymentView, EventView, Health, JobView, LogChunk,
    MetricPoint, MonitorOverview, NodePoolView, NodeView, RolloutView, SecretView, SeriesReport, System, TokenView,
    WorkspaceView,
)
from cumulo.sdk.handle import DeploymentHandle
from cumulo.sdk.apply import APPLIERS
from cumulo.sdk.specs import load_spec, load_specs


class Client:
    """A control plane at `url` (default: CUMULO_URL, else http://127.0.0.1:8200), called with
    `token` (default: CUMULO_TOKEN, else $CUMULO_HOME/token, which `cumulo up` writes), acting in
    `workspace` (default: CUMULO_WORKSPACE, else the token's own workspace).

    Every error the server reports is raised as a CumuloError subclass (NotFound, Conflict,
    InvalidSpec, Unschedulable) carrying the server's message.
    """

    def __init__(self, url: str | None = None, *, token: str | None = None, workspace: str | None = None,
                 timeout: float = 30.0) -> None:
        self.url = (url or settings.server_url()).rstrip("/")
        self.workspace = workspace or settings.workspace()
        headers = settings.auth_headers(token)
        if self.workspace:
            headers["x-cumulo-workspace"] = self.workspace
        self._http = httpx.Client(base_url=self.url + "/api/v1", timeout=timeout, headers=headers)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- plumbing ----------------------------------------------------------------------------------
    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            r = self._http.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            raise ServerUnavailable(
                f"cannot reach the cumulo control plane at {self.url} ({type(exc).__name__}); "
                "start it with `cumulo up`, or point CUMULO_URL at it"
            ) from None
        if r.status_code >= 400:
            try:
                problem = r.json()
            except ValueError:
                problem = {"detail": r.text or r.reason_phrase}
            raise from_problem(r.status_code, problem if isinstance(problem, dict) else {"detail": str(problem)})
        if r.status_code == 204:
            return None
        return r.json()

    # -- system ------------------------------------------------------------------------------------
    def health(self) -> Health:
        return Health.model_validate(self._call("GET", "/health"))

    def system(self) -> System:
        """Version, database backend, state folder (needs a token, unlike health())."""
        return System.model_validate(self._call("GET", "/system"))

    # -- secrets -----------------------------------------------------------------------------------
    def create_secret(self, name: str, value: str, *, overwrite: bool = False) -> SecretView:
        """Store a secret (sealed at rest); specs use it as `env: {VAR: {secret: name}}`."""
        body = {"name": name, "value": value, "overwrite": overwrite}
        return SecretView.model_validate(self._call("POST", "/secrets", json=body))

    def secrets(self) -> list[SecretView]:
        return [SecretView.model_validate(x) for x in self._call("GET", "/secrets")]

    def delete_secret(self, name: str) -> None:
        self._call("DELETE", f"/secrets/{name}")

    def rotate_secret_key(self) -> int:
        """A new key seals every secret from now on (admin); returns how many were re-sealed."""
        return int(self._call("POST", "/secrets/rotate-key")["resealed"])

    # -- tokens (admin) ----------------------------------------------------------------------------
    def create_token(self, name: str, *, role: str = "member", workspace: str = "default",
                     expires: str | None = None, deployment: str | None = None) -> TokenView:
        """A new token; `.token` holds its value, which is shown only this once. With `deployment`:
        a token for that deployment's handlers only (when its spec sets `auth: token`)."""
        body = {"name": name, "role": role, "workspace": workspace, "expires": expires, "deployment": deployment}
        return TokenView.model_validate(self._call("POST", "/tokens", json=body))

    def tokens(self, *, workspace: str | None = None) -> list[TokenView]:
        params = {"workspace": workspace} if workspace else None
        return [TokenView.model_validate(t) for t in self._call("GET", "/tokens", params=params)]

    def revoke_token(self, token_id: str) -> TokenView:
        return TokenView.model_validate(self._call("POST", f"/tokens/{token_id}/revoke"))

    def events(self, *, kind: str | None = None, name: str | None = None, after: int = 0, limit: int = 100) -> list[EventView]:
        params = {k: v for k, v in {"kind": kind, "name": name, "after": after, "limit": limit}.items() if v is not None}
        return [EventView.model_validate(e) for e in self._call("GET", "/events", params=params)]

    # -- alerts ------------------------------------------------------------------------------------
    def alerts(self, *, states: list[str] | None = None, limit: int = 500) -> list[AlertView]:
        """Firing alerts, newest first; `states=["firing", "resolved"]` for more."""
        params: dict = {"limit": limit}
        if states:
            params["state"] = list(states)
        return [AlertView.model_validate(a) for a in self._call("GET", "/alerts", params=params)]

    def alert_rules(self) -> list[AlertRuleView]:
        return [AlertRuleView.model_validate(r) for r in self._call("GET", "/alertrules")]

    def apply_alert_rule(self, spec: dict) -> AlertRuleView:
        """Create or replace an alert rule (a `kind: AlertRule` mapping)."""
        name = spec.get("name") if isinstance(spec, dict) else None
        if not name:
            raise ValueError("an alert rule needs a name: {'kind': 'AlertRule', 'name': ..., ...}")
        return AlertRuleView.model_validate(self._call("PUT", f"/alertrules/{name}", json=spec))

    def delete_alert_rule(self, name: str) -> None:
        self._call("DELETE", f"/alertrules/{name}")

    def cordon_node(self, name: str, reason: str = "") -> NodeView:
        """No new work lands on the node until `uncordon_node` (admin)."""
        return NodeView.model_validate(self._call("POST", f"/nodes/{name}/cordon", json={"reason": reason}))

    def uncordon_node(self, name: str) -> NodeView:
        return NodeView.model_validate(self._call("POST", f"/nodes/{name}/uncordon"))

    def nodes(self, cluster: str | None = None) -> list[NodeView]:
        params = {"cluster": cluster} if cluster else {}
        return [NodeView.model_validate(n) for n in self._call("GET", "/nodes", params=params)]

    # -- clusters ----------------------------------------------------------------------------------
    def add_cluster(self, name: str, *, ray: str | None = None, slurm: bool = False, partition: str | None = None,
                    artifacts: str | None = None, join: str | None = None) -> ClusterInfo:
        """Add a Ray cluster (`ray=` its dashboard address, what `ray job submit --address` takes)
        or this machine's Slurm (`slurm=True`). `artifacts`: a folder every node sees. `join`: the
        Ray GCS address (HOST:PORT) machines launched for the cluster join (default: the
        dashboard's host, port 6379)."""
        if (ray is None) == (not slurm):
            raise ValueError("give exactly one of ray='http://HOST:PORT' or slurm=True")
        body = {"name": name, "kind": "ray" if ray is not None else "slurm", "address": ray, "partition": partition,
                "artifacts": artifacts, "join": join}
        return ClusterInfo.model_validate(self._call("POST", "/clusters", json={k: v for k, v in body.items() if v is not None}))

    def clusters(self) -> list[ClusterInfo]:
        return [ClusterInfo.model_validate(c) for c in self._call("GET", "/clusters")]

    def cluster(self, name: str) -> ClusterInfo:
        return ClusterInfo.model_validate(self._call("GET", f"/clusters/{name}"))

    def remove_cluster(self, name: str) -> None:
        self._call("DELETE", f"/clusters/{name}")

    def wait_cluster(self, name: str, *, timeout: float = 30.0, poll: float = 0.3) -> ClusterInfo:
        """Until the cluster's engine has been asked once (Ready or Unreachable, with why)."""
        deadline = time.monotonic() + timeout
        while True:
            info = self.cluster(name)
            if info.state != "Unknown" or time.monotonic() > deadline:
                return info
            time.sleep(poll)

    # -- node pools --------------------------------------------------------------------------------
    def apply_node_pool(self, spec: Any) -> NodePoolView:
        """Create or update a node pool (admin) from a NodePoolSpec, a dict or a YAML file."""
        if isinstance(spec, (str, Path)):
            spec = load_spec(spec)
        body = spec.model_dump(mode="json") if hasattr(spec, "model_dump") else {"kind": "NodePool", **dict(spec)}
        return NodePoolView.model_validate(self._call("POST", "/nodepools", json=body))

    def node_pools(self) -> list[NodePoolView]:
        return [NodePoolView.model_validate(p) for p in self._call("GET", "/nodepools")]

    def node_pool(self, name: str) -> NodePoolView:
        return NodePoolView.model_validate(self._call("GET", f"/nodepools/{name}"))

    def delete_node_pool(self, name: str) -> NodePoolView:
        """Release the pool's machines; the pool goes once they have ended (admin)."""
        return NodePoolView.model_validate(self._call("DELETE", f"/nodepools/{name}"))

    # -- apply (every kind) ------------------------------------------------------------------------
    def apply(self, specs: Any) -> list[ApplyResult]:
        """Create or update every object of a YAML file (several documents allowed), a spec, or a
        list of specs: node pools first (the work in the same file may need their machines), then
        the rest in order. Every document is validated before anything is applied."""
        if isinstance(specs, (str, Path)):
            specs = load_specs(specs)
        elif not isinstance(specs, list):
            specs = [specs]
        ordered = sorted(specs, key=lambda sp: 0 if sp.kind == "NodePool" else 1)
        return [APPLIERS[sp.kind](self, sp) for sp in ordered]

    # -- jobs --------------------------------------------------------------------------------------
    def submit_job(self, spec: JobSpec | dict | str | Path, *, name: str | None = None) -> JobView:
        """Submit a JobSpec, a dict, or the path of a YAML file. `name` overrides the spec's name."""
        if isinstance(spec, (str, Path)):
            spec = load_spec(spec)
        body = spec.model_dump(mode="json", exclude_defaults=True) if isinstance(spec, JobSpec) else dict(spec)
        body.setdefault("kind", "Job")
        if name:
            body["name"] = name
        return JobView.model_validate(self._call("POST", "/jobs", json=body))

    def list_jobs(self, *, states: list[str] | None = None, limit: int = 1000) -> list[JobView]:
        return [JobView.model_validate(j) for j in self._call("GET", "/jobs", params={"state": states or [], "limit": limit})]

    def get_job(self, name: str) -> JobView:
        return JobView.model_validate(self._call("GET", f"/jobs/{name}"))

    def cancel_job(self, name: str) -> JobView:
        return JobView.model_validate(self._call("POST", f"/jobs/{name}/cancel"))

    def delete_job(self, name: str) -> None:
        self._call("DELETE", f"/jobs/{name}")

    def job_logs(self, name: str, *, attempt: int | None = None, rank: int = 0, offset: int = 0) -> LogChunk:
        params: dict[str, Any] = {"rank": rank, "offset": offset}
        if attempt is not None:
            params["attempt"] = attempt
        return LogChunk.model_validate(self._call("GET", f"/jobs/{name}/logs", params=params))

    def follow_logs(
        self, name: str, *, attempt: int | None = None, rank: int = 0, from_first: bool = False, poll: float = 0.3
    ) -> Iterator[str]:
        """Yield log text as it is written until the job ends, moving on to each retry.

        Starts at the latest attempt, or at attempt 1 with `from_first` (what `submit --follow`
        shows: every attempt, even one that ended before following began). With `attempt` given,
        only that attempt's log, until it ends.
        """
        current, offset = attempt, 0
        while True:
            if current is None and from_first:
                job = self.get_job(name)
                if job.attempts == 0:
                    if job.state.terminal:
                        return
                    time.sleep(poll)
                    continue
                current = 1
            chunk = self.job_logs(name, attempt=current, rank=rank, offset=offset)
            if chunk.data:
                yield chunk.data
            if current is None and chunk.attempt:
                current = chunk.attempt
            offset = chunk.offset
            if chunk.complete:
                job = self.get_job(name)
                if attempt is None and job.attempts > (current or 0):
                    current, offset = (current or 0) + 1, 0  # the next retry: follow it
                    yield f"--- attempt {current} ---\n"
                    continue
                if attempt is not None or job.state.terminal:
                    return
            if not chunk.data:
                time.sleep(poll)

    def wait_job(self, name: str, *, timeout: float | None = None, poll: float = 0.3) -> JobView:
        """Block until the job has ended (Succeeded, Failed or Cancelled) and return it."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            job = self.get_job(name)
            if job.state.terminal:
                return job
            if deadline is not None and time.monotonic() > deadline:
                raise CumuloError(f"job {name!r} is still {job.state} after {timeout:g}s")
            time.sleep(poll)

    def job_metrics(self, name: str, metric: str | None = None) -> list[MetricPoint]:
        params = {"metric": metric} if metric else {}
        return [MetricPoint.model_validate(p) for p in self._call("GET", f"/jobs/{name}/metrics", params=params)]

    # -- monitoring --------------------------------------------------------------------------------
    def _series(self, path: str, since: str | None, until: str | None, step: int | None, metric: str | None) -> SeriesReport:
        params = {k: v for k, v in {"since": since, "until": until, "step": step, "metric": metric}.items() if v is not None}
        return SeriesReport.model_validate(self._call("GET", path, params=params))

    def job_series(self, name: str, *, since: str | None = None, until: str | None = None, step: int | None = None,
                   metric: str | None = None) -> SeriesReport:
        """A job's sampled series (CPU, memory, GPU memory per rank; steps/s, progress, ETA).
        `since`/`until`: a duration back from now ('15m', '2h') or an ISO time; default the last hour."""
        return self._series(f"/jobs/{name}/series", since, until, step, metric)

    def deployment_series(self, name: str, *, since: str | None = None, until: str | None = None,
                          step: int | None = None, metric: str | None = None) -> SeriesReport:
        """A deployment's sampled series (req/s, p50/p99, error rate, in flight; CPU and memory per replica)."""
        return self._series(f"/deployments/{name}/series", since, until, step, metric)

    def node_series(self, name: str | None = None, *, since: str | None = None, until: str | None = None,
                    step: int | None = None, metric: str | None = None) -> SeriesReport:
        """One node's sampled series, or every node's."""
        return self._series(f"/nodes/{name}/series" if name else "/nodes/series", since, until, step, metric)

    def monitor(self, *, events: int = 10) -> MonitorOverview:
        """Nodes, jobs, deployments, firing alerts and the newest events, as `cumulo monitor` shows them."""
        return MonitorOverview.model_validate(self._call("GET", "/monitor", params={"events": events}))

    # -- deployments -------------------------------------------------------------------------------
    def deploy(self, spec: DeploymentSpec | dict | str | Path) -> DeploymentView:
        """Create or update a deployment from a DeploymentSpec, a dict, or the path of a YAML file."""
        if isinstance(spec, (str, Path)):
            spec = load_spec(spec)
        body = spec.model_dump(mode="json", exclude_defaults=True) if isinstance(spec, DeploymentSpec) else dict(spec)
        body.setdefault("kind", "Deployment")
        return DeploymentView.model_validate(self._call("POST", "/deployments", json=body))

    def list_deployments(self) -> list[DeploymentView]:
        return [DeploymentView.model_validate(d) for d in self._call("GET", "/deployments")]

    def get_deployment(self, name: str) -> DeploymentView:
        return DeploymentView.model_validate(self._call("GET", f"/deployments/{name}"))

    def scale_deployment(self, name: str, replicas: int) -> DeploymentView:
        return DeploymentView.model_validate(self._call("POST", f"/deployments/{name}/scale", json={"replicas": replicas}))

    def delete_deployment(self, name: str) -> DeploymentView:
        return DeploymentView.model_validate(self._call("DELETE", f"/deployments/{name}"))

    def deployment_logs(self, name: str, *, replica: int | None = None, offset: int = 0) -> LogChunk:
        params: dict[str, Any] = {"offset": offset}
        if replica is not None:
            params["replica"] = replica
        return LogChunk.model_validate(self._call("GET", f"/deployments/{name}/logs", params=params))

    def rollout(self, name: str) -> RolloutView:
        """The deployment's latest canary rollout: phase, step, weight, and the evidence of its latest
        judgement (NotFound when it never had one)."""
        return RolloutView.model_validate(self._call("GET", f"/deployments/{name}/rollout"))

    def promote_rollout(self, name: str) -> RolloutView:
        """Move the canary rollout in progress to its next step now (Conflict when none is in progress)."""
        return RolloutView.model_validate(self._call("POST", f"/deployments/{name}/rollout/promote"))

    def abort_rollout(self, name: str) -> RolloutView:
        """Roll the canary rollout in progress back now (Conflict when none is in progress)."""
        return RolloutView.model_validate(self._call("POST", f"/deployments/{name}/rollout/abort"))

    def wait_deployment(self, name: str, *, timeout: float = 300.0, poll: float = 0.3) -> DeploymentView:
        """Block until every desired replica is ready on the current spec (state Available)."""
        deadline = time.monotonic() + timeout
        while True:
            d = self.get_deployment(name)
            if d.state == "Available":
                return d
            if time.monotonic() > deadline:
                raise CumuloError(f"deployment {name!r} is {d.state} after {timeout:g}s: {d.reason}")
            time.sleep(poll)

    def deployment(self, name: str, *, token: str | None = None) -> DeploymentHandle:
        """A handle whose methods call the deployment's handlers through the gateway: d.predict(pixels=[...]);
        `token`: one made for it with `--deployment`, when its spec sets `auth: token`."""
        key = name if self.workspace in (None, "default") else f"{name}.{self.workspace}"
        return DeploymentHandle(f"{self.url}/d/{key}", name, token=token)

    # -- workspaces (admin) ------------------------------------------------------------------------
    def create_workspace(self, name: str, *, quota: dict | None = None) -> WorkspaceView:
        """A workspace; `quota` may cap cpu, gpu, nodes, price_per_hour and budget_per_month."""
        return WorkspaceView.model_validate(self._call("POST", "/workspaces", json={"name": name, "quota": quota}))

    def set_quota(self, workspace: str, **quota: float | None) -> WorkspaceView:
        """Replace a workspace's limits (cpu, gpu, nodes, price_per_hour, budget_per_month)."""
        return WorkspaceView.model_validate(self._call("PUT", f"/workspaces/{workspace}/quota", json=quota))

    def costs(self, *, by: str = "workspace", since: str | None = None, all_workspaces: bool = False) -> CostReport:
        params = {"by": by, "all": all_workspaces, **({"since": since} if since else {})}
        return CostReport.model_validate(self._call("GET", "/costs", params=params))

    def workspaces(self) -> list[WorkspaceView]:
        return [WorkspaceView.model_validate(w) for w in self._call("GET", "/workspaces")]

    def delete_workspace(self, name: str) -> None:
        self._call("DELETE", f"/workspaces/{name}")
