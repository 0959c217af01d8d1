"""Deployments: create or update (deploy), read, scale, delete, logs."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cumulo.control.probes import MAX_TIMEOUT as MAX_PROBE_TIMEOUT
from cumulo.core.errors import Conflict, InvalidSpec, NotFound, Unschedulable
from cumulo.core.specs import DeploymentSpec, parse_spec
from cumulo.core.states import DeploymentState, ReplicaState
from cumulo.core.tokens import Scope, route_key
from cumulo.core.views import DeploymentView, LogChunk, ReplicaView, RolloutView
from cumulo.policy.autoscaling import configure
from cumulo.policy.capacity import Request
from cumulo.policy.rollout import start_rollout
from cumulo.services.logs import read_chunk
from cumulo.store import secrets as secrets_store
from cumulo.store import deployments as store
from cumulo.store import clusters as clusters_store
from cumulo.store import events
from cumulo.store.db import Database
from cumulo.store.models import Deployment, Replica

def utcnow() -> datetime:
    return datetime.now(UTC)


SYSTEM = Scope()  # callers inside the control plane: the default workspace


class DeploymentService:
    def __init__(self, db: Database, *, node: str, base_url: str, wake: Callable[[str], None],
                 clock: Callable[[], datetime] = utcnow) -> None:
        self.db = db
        self.node = node
        self.base_url = base_url
        self.wake = wake
        self.clock = clock

    def deploy(self, data: Any, scope: Scope = SYSTEM) -> tuple[DeploymentView, bool]:
        """Create the deployment, or update it (a changed spec rolls its replicas). True if created."""
        spec = data if isinstance(data, DeploymentSpec) else parse_spec(data, source="deployment", kind="Deployment")
        workdir = Path(spec.workdir) if spec.workdir else None
        if workdir is None or not workdir.is_absolute() or not workdir.is_dir():
            raise InvalidSpec(
                f"workdir: {spec.workdir!r} must be an existing absolute directory (the CLI sets it to the spec file's folder)",
                errors=[{"field": "workdir", "message": "must be an existing absolute directory"}],
            )
        if spec.service and not (workdir / spec.service.split(":")[0]).is_file():
            raise InvalidSpec(
                f"service: {spec.service.split(':')[0]!r} is not a file in {workdir}",
                errors=[{"field": "service", "message": "file not found"}],
            )
        if spec.health.timeout > MAX_PROBE_TIMEOUT:
            raise InvalidSpec(
                f"health.timeout: {spec.health.timeout:g} s is too long; a health check may take at most "
                f"{MAX_PROBE_TIMEOUT:g} s (a replica that answers nothing within that is not healthy)",
                errors=[{"field": "health.timeout", "message": f"must be at most {MAX_PROBE_TIMEOUT:g} s"}],
            )
        if spec.autoscaling is not None:  # unknown policy options are an error now, not at the first tick
            a = spec.autoscaling
            configure(a.policy, a.options, scale_to_zero_after=a.scale_to_zero_after)
        now = self.clock()
        with self.db.tx() as s:
            secrets_store.require(s, spec.env, scope.workspace)  # a 422 naming env.VAR, before anything is written
            r = spec.resources
            why = clusters_store.why_never(s, Request(r.cpu, r.memory, r.gpu, 1, gpu_type=r.gpu_type), "pack", spec.cluster, self.node)
            if why:
                raise Unschedulable(f"deployment {spec.name!r} can never run: one replica asks for more than any "
                                    f"cluster has ({why}). Lower its resources, or add a cluster that has it.")
            d = store.find(s, spec.name, scope.workspace)
            created = d is None
            body = spec.model_dump(mode="json")
            if d is None:
                d = store.insert(s, Deployment(
                    id=uuid.uuid4().hex[:16], name=spec.name, workspace=scope.workspace, created_at=now, updated_at=now, spec=body,
                    generation=1, deleting=False, workdir=str(workdir), state=DeploymentState.PROGRESSING.value,
                    reason="starting replicas", failures=0, last_failure="", next_ordinal=1,
                ))
                events.record(s, now=now, kind="Deployment", name=spec.name, object_id=d.id, type="Normal",
                              reason="Created", message=f"created with {spec.replicas} replicas",
                              workspace=scope.workspace, actor=scope.actor)
            else:
                if d.deleting:
                    raise Conflict(f"deployment {spec.name!r} is being deleted; wait until it is gone, then deploy again")
                old = DeploymentSpec.model_validate(d.spec)
                if old.rollout_fields() != spec.rollout_fields() or d.workdir != str(workdir):
                    stable = self._stable(s, d)  # (generation, spec, workdir) serving now, before the bump
                    # never reuse a generation a rolled-back canary had (its replicas may still drain)
                    d.generation = max(d.generation, int((d.rollout or {}).get("canary_generation", 0))) + 1
                    d.failures, d.next_start_at = 0, None
                    message = f"rolling out version {d.generation}"
                    if spec.rollout.strategy == "canary" and stable is not None:
                        gen, stable_spec, stable_workdir = stable
                        state = start_rollout(gen, d.generation, now, spec.rollout.steps)
                        d.rollout = {**state.to_dict(), "weight": spec.rollout.steps[0], "steps": spec.rollout.steps,
                                     "stable_spec": stable_spec, "stable_workdir": stable_workdir}
                        message = (f"canary rollout of version {d.generation}: steps {spec.rollout.steps} % of the "
                                   f"traffic, {spec.rollout.interval:g}s each at least, beside version {gen}")
                    else:
                        if spec.rollout.strategy == "canary":
                            message += " (no ready replica of the current version to compare with: replaced one by one)"
                        if d.rollout and d.rollout.get("phase") == "Progressing":
                            d.rollout = {**d.rollout, "phase": "Superseded", "weight": 0,
                                         "reason": f"superseded by version {d.generation}"}
                    events.record(s, now=now, kind="Deployment", name=spec.name, object_id=d.id, type="Normal",
                                  reason="RolloutStarted", message=message,
                                  workspace=scope.workspace, actor=scope.actor)
                if old.replicas != spec.replicas:
                    events.record(s, now=now, kind="Deployment", name=spec.name, object_id=d.id, type="Normal",
                                  reason="Scaled", message=f"replicas {old.replicas} -> {spec.replicas}",
                                  workspace=scope.workspace, actor=scope.actor)
                d.spec, d.workdir, d.updated_at = body, str(workdir), now
                a = spec.autoscaling
                if a is None:
                    d.desired_replicas = None
                elif d.desired_replicas is not None:
                    d.desired_replicas = max(a.min, min(a.max, d.desired_replicas))
            view = self._view(s, d)
        self.wake(view.id)
        return view, created

    @staticmethod
    def _stable(s, d: Deployment) -> tuple[int, dict, str] | None:
        """What serves now, to compare a canary with: the stable side of a rollout in progress, else
        the current generation if one of its replicas is ready; None when nothing serves."""
        ro = d.rollout or {}
        if ro.get("phase") == "Progressing":
            return int(ro["stable_generation"]), ro["stable_spec"], ro.get("stable_workdir") or d.workdir
        if any(r.generation == d.generation and r.state == ReplicaState.READY.value for r in store.live_replicas(s, d.id)):
            return d.generation, d.spec, d.workdir
        return None

    def rollout(self, name: str, scope: Scope = SYSTEM) -> RolloutView:
        """The deployment's latest canary rollout; 404 when it never had one."""
        with self.db.tx() as s:
            d = store.by_name(s, name, scope.workspace)
            view = _rollout_view(d)
        if view is None:
            raise NotFound(f"deployment {name!r} has had no canary rollout; set `rollout: {{strategy: canary}}` in "
                           "its spec and deploy a new version")
        return view

    def rollout_command(self, name: str, command: str, scope: Scope = SYSTEM) -> RolloutView:
        """Ask the rollout in progress to promote its canary to the next step now, or to abort (roll
        back); the reconciler acts on it at its next pass (at once: this wakes it)."""
        with self.db.tx() as s:
            d = store.by_name(s, name, scope.workspace)
            ro = d.rollout or {}
            if ro.get("phase") != "Progressing":
                what = f"its last rollout is {ro['phase']}" if ro else "it has had no canary rollout"
                raise Conflict(f"deployment {name!r} has no canary rollout in progress ({what}); nothing to {command}")
            d.rollout = {**ro, "command": command, "command_id": uuid.uuid4().hex[:12], "actor": scope.actor}
            events.record(s, now=self.clock(), kind="Deployment", name=name, object_id=d.id, type="Normal",
                          reason="RolloutPromoteRequested" if command == "promote" else "RolloutAbortRequested",
                          message=f"{command} requested for the rollout of version {ro.get('canary_generation')}",
                          workspace=scope.workspace, actor=scope.actor)
            view = _rollout_view(d)
            dep_id = d.id
        self.wake(dep_id)
        assert view is not None
        return view

    def scale(self, name: str, replicas: int, scope: Scope = SYSTEM) -> DeploymentView:
        if not 0 <= replicas <= 256:
            raise InvalidSpec("replicas must be between 0 and 256", errors=[{"field": "replicas", "message": "0..256"}])
        with self.db.tx() as s:
            d = store.by_name(s, name, scope.workspace)
            if d.deleting:
                raise Conflict(f"deployment {name!r} is being deleted")
            spec = DeploymentSpec.model_validate(d.spec)
            if spec.autoscaling is not None:
                raise Conflict(
                    f"deployment {name!r} is autoscaled ({spec.autoscaling.policy}, {spec.autoscaling.min}-"
                    f"{spec.autoscaling.max} replicas); change autoscaling.min/max in its spec and deploy it again"
                )
            if spec.replicas != replicas:
                d.spec = {**d.spec, "replicas": replicas}
                d.updated_at = self.clock()
                events.record(s, now=d.updated_at, kind="Deployment", name=name, object_id=d.id, type="Normal",
                              reason="Scaled", message=f"replicas {spec.replicas} -> {replicas}",
                              workspace=scope.workspace, actor=scope.actor)
            view = self._view(s, d)
        self.wake(view.id)
        return view

    def delete(self, name: str, scope: Scope = SYSTEM) -> DeploymentView:
        """Drain every replica, then remove the deployment."""
        with self.db.tx() as s:
            d = store.by_name(s, name, scope.workspace)
            if not d.deleting:
                d.deleting = True
                events.record(s, now=self.clock(), kind="Deployment", name=name, object_id=d.id, type="Normal",
                              reason="Deleting", message="draining replicas",
                              workspace=scope.workspace, actor=scope.actor)
            view = self._view(s, d)
        self.wake(view.id)
        return view

    def get(self, name: str, scope: Scope = SYSTEM) -> DeploymentView:
        with self.db.tx() as s:
            return self._view(s, store.by_name(s, name, scope.workspace))

    def list(self, scope: Scope = SYSTEM) -> list[DeploymentView]:
        with self.db.tx() as s:
            return [self._view(s, d) for d in store.listing(s, scope.workspace)]

    def logs(self, name: str, *, replica: int | None = None, offset: int = 0, scope: Scope = SYSTEM) -> LogChunk:
        with self.db.tx() as s:
            d = store.by_name(s, name, scope.workspace)
            if replica is None:
                live = store.live_replicas(s, d.id) or store.replicas(s, d.id, limit=1)
                if not live:
                    return LogChunk(data="", offset=0, attempt=0, rank=0, complete=True)
                row = live[0]
            else:
                row = store.replica(s, d.id, replica)
                if row is None:
                    raise NotFound(f"deployment {name!r} has no replica {replica}; `cumulo deployment status {name}` lists them")
            path, ended, ordinal = row.handle["logs"][0], ReplicaState(row.state).terminal, row.ordinal
        text, new_offset, more = read_chunk(path, offset)
        return LogChunk(data=text, offset=new_offset, attempt=ordinal, rank=0, complete=ended and not more)

    def _view(self, s, d: Deployment) -> DeploymentView:
        spec = DeploymentSpec.model_validate(d.spec)
        live = store.live_replicas(s, d.id)
        recent = [r for r in store.replicas(s, d.id, limit=len(live) + 5) if ReplicaState(r.state).terminal]
        return DeploymentView(
            id=d.id, name=d.name, state=d.state, reason=d.reason, url=f"{self.base_url}/d/{route_key(d.name, d.workspace)}",
            generation=d.generation,
            desired=spec.replicas if spec.autoscaling is None else
            (d.desired_replicas if d.desired_replicas is not None else spec.initial_replicas()),
            autoscaling=d.autoscale_reason,
            ready=sum(1 for r in live if r.state == ReplicaState.READY.value and r.generation == d.generation),
            created_at=d.created_at, updated_at=d.updated_at, spec=spec,
            replicas=[_replica_view(r) for r in live], ended=[_replica_view(r) for r in recent],
            rollout=_rollout_view(d),
        )


def _rollout_view(d: Deployment) -> RolloutView | None:
    ro = d.rollout
    if not ro:
        return None
    steps = ro.get("steps") or [100]
    return RolloutView.model_validate({
        "deployment": d.name, "phase": ro.get("phase", "Progressing"), "step": int(ro.get("step", 0)) + 1,
        "steps": steps, "weight": int(ro.get("weight", 0)), "stable_generation": ro["stable_generation"],
        "canary_generation": ro["canary_generation"], "started_at": ro.get("started_at"),
        "window_start": ro.get("window_start"), "reason": ro.get("reason", ""), "analysis": ro.get("evidence"),
        "pending": ro.get("command"),
    })


def _replica_view(r: Replica) -> ReplicaView:
    return ReplicaView(id=r.ordinal, state=r.state, generation=r.generation, host=r.host, port=r.port,
                       cluster=r.cluster, node=r.node,
                       created_at=r.created_at, ready_at=r.ready_at, finished_at=r.finished_at,
                       exit_code=r.exit_code, reason=r.reason)
