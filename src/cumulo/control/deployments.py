"""The deployment reconciler: observe and health-check replicas, decide (pure), act, apply.

Replicas are processes on a cluster's runtime (local processes, or a Ray or Slurm job on an engine's
node), one per replica incarnation (a replacement is a new row and a new process). On an engine the
runtime picks the node and the port: the replica's host and port are recorded once it reports them,
and only then is it health-checked and routed to. Health checks are HTTP GETs made off the reconcile thread (control/probes.py):
a pass starts the checks that are due and acts on those that finished since, so a replica that never
answers holds up nothing but itself. After a pass that changed which replicas are ready, the
gateway's routes are republished.
"""

from __future__ import annotations

import logging
import os
import socket
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime

from cumulo.control.alerts import REPAIR_RULES, open_repair_alert
from cumulo.control.clusters import Runtimes
from cumulo.control.environment import no_secrets, workload_env
from cumulo.control.placement import Placement
from cumulo.control.probes import Prober
from cumulo.control.rollouts import RolloutPass, rollout_pass, stored
from cumulo.core.specs import DeploymentSpec
from cumulo.core.states import ProcessPhase, ReplicaState
from cumulo.core.tokens import route_key
from cumulo.policy.capacity import Allocation
from cumulo.policy.deployments import STOP_GRACE, DeploymentDecision, DeploymentSnapshot, ReplicaSnapshot, decide_deployment
from cumulo.runtimes.base import Handle, LaunchSpec, Observation, Runtime, RuntimeUnavailable, WorkerResources
from cumulo.store import deployments as store
from cumulo.store import events, leases
from cumulo.store.db import Database
from cumulo.store.gateway_view import GatewayView, gateway_view
from cumulo.store.models import Deployment, Replica

log = logging.getLogger(__name__)

LEASE_TTL = 60.0
HOST = "127.0.0.1"
#: how long a replica out of the routes waits for its in-flight requests before SIGTERM (below
#: the policy's STOP_GRACE, after which it is killed)
DRAIN_WAIT = 10.0
#: a starting replica is checked this often, so it gets traffic soon after it is ready
STARTING_PROBE_PERIOD = 0.2
LOG_TAIL_LINES = 1  # the error's last line; `cumulo deployment logs` has the rest



def utcnow() -> datetime:
    return datetime.now(UTC)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def log_tail(path: str, lines: int = LOG_TAIL_LINES) -> str:
    """The last non-empty lines of a log file, joined with ' | ' (for a one-line reason)."""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(f.tell() - 8192, 0))
            text = f.read().decode("utf-8", errors="replace")
    except OSError:
        return ""
    kept = [ln.strip() for ln in text.splitlines() if ln.strip()][-lines:]
    return " | ".join(kept)


@dataclass(frozen=True)
class _Loaded:
    snapshot: DeploymentSnapshot
    dep_id: str
    name: str
    workdir: str
    next_ordinal: int
    handles: dict[str, Handle]
    ports: dict[str, int]
    workspace: str = "default"
    clusters: dict[str, str] | None = None  # replica id -> its cluster
    hosts: dict[str, str] | None = None  # replica id -> its host ("" until an engine reports it)
    rollout: dict | None = None  # the stored canary rollout (control/rollouts.py)


class DeploymentReconciler:
    name = "deployments"
    resync = 10.0

    def __init__(
        self,
        db: Database,
        runtime: Runtime | Runtimes,
        *,
        placement: Placement,
        server_url: str,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.db = db
        self.runtimes = runtime if isinstance(runtime, Runtimes) else Runtimes(db, runtime)
        self.placement = placement
        self.server_url = server_url
        self.clock = clock
        #: routes, and the deployments whose requests the gateway holds while a first replica starts
        #: hands the gateways' view (routes, hold list, deployment tokens) to the in-process gateway
        self.publish: Callable[[GatewayView], None] = lambda view: None
        #: called when replicas ended and gave their resources back (jobs waiting for room look again)
        self.capacity_freed: Callable[[], None] = lambda: None
        #: the CUMULO_TOKEN a replica gets (deployment id, ordinal -> token), None without auth
        self.workload_token: Callable[[str, int], str | None] = lambda dep_id, ordinal: None
        #: a spec's env with each {secret: NAME} replaced by its value (services/secrets.py)
        self.secret_values: Callable[[dict], dict[str, str]] = no_secrets
        #: requests the gateway is proxying to (host, port) right now
        self.in_flight: Callable[[str, int], int] = lambda host, port: 0
        #: per generation of a deployment (by route key), what every gateway counted:
        #: generation -> (requests, 5xx or failed, latency bucket counts), cumulative
        self.generation_counts: Callable[[str], dict[int, tuple[int, int, tuple[int, ...]]]] = lambda key: {}
        #: the upper bounds (s) of those latency buckets (the gateway's)
        self.latency_bounds: tuple[float, ...] = ()
        #: replicas out of the routes whose SIGTERM waits for their in-flight requests:
        #: (deployment id, replica id) -> (cluster, handle, host, port, give up at (monotonic))
        self._stopping: dict[tuple[str, str], tuple[str, Handle, str, int, float]] = {}
        self._signaled: set[tuple[str, str]] = set()  # SIGTERM sent (a restart forgets: sent once more)
        self._last_probe: dict[str, float] = {}
        #: wakes a deployment when one of its probes finished (the loop's enqueue; app.py sets it)
        self.wake: Callable[[str], None] = lambda dep_id: None
        self.prober = Prober(wake=lambda dep_id: self.wake(dep_id))

    def keys(self) -> list[str]:
        self.publish_routes()
        with self.db.tx() as s:
            return store.ids(s)

    def publish_routes(self) -> None:
        with self.db.tx() as s:
            view = gateway_view(s, utcnow())
        self.publish(view)

    # -- one pass ------------------------------------------------------------------------------
    def reconcile(self, dep_id: str) -> float | None:
        token = uuid.uuid4().hex
        loaded = self._load(dep_id, token)
        if loaded is None:
            return None
        if loaded is ...:
            return 1.0
        snap, endpoints = self._observe(loaded)
        ro = None
        if loaded.rollout and loaded.rollout.get("phase") == "Progressing":
            ro, snap = rollout_pass(loaded.rollout, snap, self.generation_counts(route_key(loaded.name, loaded.workspace)),
                                    self.latency_bounds)
        decision = decide_deployment(snap)
        if ro is not None:
            decision = replace(decision, reason=f"{decision.reason}; {ro.decision.reason}")
        return self._act_and_apply(loaded, snap, token, decision, endpoints, ro)

    def _load(self, dep_id: str, token: str):
        now = self.clock()
        with self.db.tx() as s:
            if not leases.claim(s, Deployment, dep_id, token, now, LEASE_TTL):
                return ... if s.get(Deployment, dep_id) is not None else None
            d = s.get(Deployment, dep_id)
            assert d is not None
            reps = store.live_replicas(s, dep_id)
            spec = DeploymentSpec.model_validate(d.spec)
            desired = None
            if spec.autoscaling is not None:
                desired = d.desired_replicas if d.desired_replicas is not None else spec.initial_replicas()
            used = self.placement.used(s)
            quota, quota_used, spent = self.placement.quota(s, d.workspace, now)  # after `used`
            snap = DeploymentSnapshot(
                now=now,
                spec=spec,
                desired=desired,
                generation=d.generation,
                replicas=tuple(
                    ReplicaSnapshot(
                        id=str(r.ordinal), generation=r.generation, state=ReplicaState(r.state),
                        created_at=r.created_at, probe_failures=r.probe_failures,
                        stop_requested_at=r.stop_requested_at, replace=r.replace_reason,
                    )
                    for r in reps
                ),
                deleting=d.deleting,
                failures=d.failures,
                next_start_at=d.next_start_at,
                last_failure=d.last_failure,
                capacity=self.placement.capacity(s),
                used=used,
                quota=quota,
                quota_used=quota_used,
                spent=spent,
                clusters=self.placement.clusters(s),
            )
            handles = {str(r.ordinal): Handle(r.runtime, r.handle) for r in reps}
            ports = {str(r.ordinal): r.port for r in reps}
            return _Loaded(snap, d.id, d.name, d.workdir, d.next_ordinal, handles, ports, d.workspace,
                           clusters={str(r.ordinal): r.cluster for r in reps},
                           hosts={str(r.ordinal): r.host for r in reps}, rollout=d.rollout)

    def _observe(self, loaded: _Loaded) -> tuple[DeploymentSnapshot, dict[str, tuple[str, int, str | None]]]:
        """The snapshot with what each replica's runtime sees, and the (host, port, node) of the
        replicas an engine placed, where they differ from what is recorded."""
        snap = loaded.snapshot
        spec = snap.spec
        observed = []
        endpoints: dict[str, tuple[str, int, str | None]] = {}
        mono = time.monotonic()
        for r in snap.replicas:
            handle = loaded.handles[r.id]
            runtime = self._runtime_of(loaded, r.id)
            try:
                obs: Observation = runtime.observe(handle)
            except RuntimeUnavailable as exc:  # the engine is away: the replica's state stays as it was
                observed.append(r)
                log.warning("deployment %s: replica %s: %s", loaded.name, r.id, exc)
                continue
            host, port = self._host(loaded, r.id), loaded.ports[r.id]
            placed = obs.workers[0] if obs.workers else None
            if placed is not None and placed.host and placed.port and (placed.host, placed.port) != (host, port):
                host, port = placed.host, placed.port
                endpoints[r.id] = (host, port, placed.node)
            probe = None
            detail = obs.detail
            if obs.phase in (ProcessPhase.EXITED, ProcessPhase.LOST):
                detail = log_tail(runtime.log_path(handle)) or detail
                if obs.node_lost and obs.node_lost not in detail:
                    detail = f"node {obs.node_lost} was lost" + (f": {detail}" if detail else "")
            elif obs.phase == ProcessPhase.RUNNING and r.state in (ReplicaState.STARTING, ReplicaState.READY) \
                    and host and port:
                key = f"{loaded.dep_id}/{r.id}"
                probe = self.prober.take(key)  # a check that finished since the last pass
                period = STARTING_PROBE_PERIOD if r.state == ReplicaState.STARTING else spec.health.period
                age = (snap.now - r.created_at).total_seconds()
                if age >= spec.health.initial_delay and mono - self._last_probe.get(key, 0.0) >= period \
                        and self.prober.start(loaded.dep_id, key, f"http://{_url_host(host)}:{port}{spec.health_path}",
                                              spec.health.timeout):
                    self._last_probe[key] = mono
            observed.append(ReplicaSnapshot(
                id=r.id, generation=r.generation, state=r.state, created_at=r.created_at, phase=obs.phase,
                exit_code=obs.exit_code, detail=detail, probe_ok=probe, probe_failures=r.probe_failures,
                stop_requested_at=r.stop_requested_at, replace=r.replace,
            ))
        return DeploymentSnapshot(**{**snap.__dict__, "replicas": tuple(observed)}), endpoints

    def _runtime_of(self, loaded: _Loaded, rid: str) -> Runtime:
        return self.runtimes.get((loaded.clusters or {}).get(rid, "local"))

    @staticmethod
    def _host(loaded: _Loaded, rid: str) -> str:
        return (loaded.hosts or {}).get(rid, HOST)

    def _act_and_apply(self, loaded: _Loaded, snap: DeploymentSnapshot, token: str, d: DeploymentDecision,
                       endpoints: dict[str, tuple[str, int, str | None]] | None = None,
                       ro: RolloutPass | None = None) -> float | None:
        now = snap.now
        endpoints = endpoints or {}
        for rid in d.kill:
            self._runtime_of(loaded, rid).kill(loaded.handles[rid])
        launches: list[tuple[str, LaunchSpec]] = []
        routes_changed = False
        # secrets are read before the transaction below (one at a time on SQLite: never nest them)
        base_env = workload_env(self.secret_values(snap.spec.env, loaded.workspace)) if d.start else {}
        stable_env = workload_env(self.secret_values(ro.stable_spec.env, loaded.workspace)) \
            if ro is not None and d.start_stable else {}
        # and each cluster's runtime, which may read its cluster's row the first time (never nested)
        runtimes: dict[str, Runtime] = {}
        for alloc in (*d.start, *d.start_stable):
            try:
                runtimes[alloc.cluster] = self.runtimes.get(alloc.cluster)
            except RuntimeUnavailable as exc:
                log.warning("deployment %s: cluster %s: %s", loaded.name, alloc.cluster, exc)
        with self.placement.lock, self.db.tx() as s:
            values = dict(state=d.state.value, reason=d.reason, failures=d.failures, next_start_at=d.next_start_at,
                          last_failure=d.last_failure)
            if not leases.guarded_update(s, Deployment, loaded.dep_id, token, **values):
                return 0.0  # stale: another worker owns this deployment now; nothing was written
            dep = s.get(Deployment, loaded.dep_id)
            if d.deleted:
                s.delete(dep)
                events.record(s, now=now, kind="Deployment", name=loaded.name, object_id=loaded.dep_id,
                              type="Normal", reason="Deleted", message="every replica drained; deployment deleted",
                              workspace=loaded.workspace)
                routes_changed = True
            else:
                by_id = {str(r.ordinal): r for r in store.live_replicas(s, loaded.dep_id)}
                for rid, (host, port, node) in endpoints.items():  # an engine placed it: route there
                    if rid in by_id:
                        by_id[rid].host, by_id[rid].port, by_id[rid].node = host, port, node
                        routes_changed |= by_id[rid].state == ReplicaState.READY.value
                for c in d.changes:
                    routes_changed |= self._apply_change(by_id.get(c.id), c, now)
                    if c.state.terminal:
                        self._last_probe.pop(f"{loaded.dep_id}/{c.id}", None)
                        self.prober.forget(f"{loaded.dep_id}/{c.id}")
                starts = [a for a in d.start if a.cluster in runtimes]
                stable_starts = [a for a in d.start_stable if a.cluster in runtimes] if ro is not None else []
                if (starts or stable_starts) and self.placement.confirm(s, starts + stable_starts, loaded.workspace):
                    for alloc in starts:  # (else: the room was taken; decide again)
                        launches.append((alloc.cluster,
                                         self._new_replica(s, loaded, snap, dep.next_ordinal, alloc, now, base_env,
                                                           runtimes[alloc.cluster])))
                        dep.next_ordinal += 1
                    for alloc in stable_starts:  # a canary rollout's stable generation lost a replica
                        assert ro is not None
                        launches.append((alloc.cluster, self._new_replica(
                            s, loaded, snap, dep.next_ordinal, alloc, now, stable_env, runtimes[alloc.cluster],
                            spec=ro.stable_spec, generation=ro.decision.state.stable_generation,
                            workdir=ro.stable_workdir or loaded.workdir)))
                        dep.next_ordinal += 1
                if ro is not None:
                    routes_changed |= self._apply_rollout(s, dep, loaded, snap, ro, now)
                for type_, reason, message in d.events:
                    events.record(s, now=now, kind="Deployment", name=loaded.name, object_id=loaded.dep_id,
                                  type=type_, reason=reason, message=message, workspace=loaded.workspace)
        if routes_changed:
            self.publish_routes()
        # stop only once the gateway no longer routes to them and the requests it had sent them have
        # finished (a server without a graceful SIGTERM would cut those off), waiting at most DRAIN_WAIT
        def where(rid: str) -> tuple[str, str, int]:
            host, port, _node = endpoints.get(rid, (self._host(loaded, rid), loaded.ports[rid], None))
            return (loaded.clusters or {}).get(rid, "local"), host, port

        for rid in d.stop:
            cluster, host, port = where(rid)
            self._stopping[(loaded.dep_id, rid)] = (cluster, loaded.handles[rid], host, port,
                                                   time.monotonic() + DRAIN_WAIT)
        for r in snap.replicas:  # draining before a control-plane restart: signal it (again) now
            key = (loaded.dep_id, r.id)
            if r.state == ReplicaState.DRAINING and key not in self._stopping and key not in self._signaled \
                    and r.id in loaded.handles and r.id in loaded.ports:
                cluster, host, port = where(r.id)
                self._stopping[key] = (cluster, loaded.handles[r.id], host, port, time.monotonic())
        waiting = self._stop_drained(loaded.dep_id)
        ended = [c for c in d.changes if c.state.terminal]
        for c in ended:
            self._stopping.pop((loaded.dep_id, c.id), None)
            self._signaled.discard((loaded.dep_id, c.id))
            if c.id in loaded.handles:
                self._runtime_of(loaded, c.id).forget(loaded.handles[c.id])
        if ended:
            self.capacity_freed()
        for cluster, spec in launches:
            try:
                runtime = self.runtimes.get(cluster)
                runtime.launch(spec)
            except Exception:  # the next pass sees it as lost and replaces it by policy
                log.exception("deployment %s: launch of %s failed", loaded.name, spec.key)
                try:
                    runtime = self.runtimes.get(cluster)
                    runtime.abandon(runtime.handle_for(spec.key))
                except Exception:
                    log.exception("deployment %s: abandoning %s failed", loaded.name, spec.key)
        if waiting:
            return min(d.requeue_after, 0.05) if d.requeue_after is not None else 0.05
        return d.requeue_after

    def _stop_drained(self, dep_id: str) -> bool:
        """SIGTERM this deployment's drained-out replicas with no request in flight (or waited on
        long enough); True while some still wait."""
        waiting = False
        for key, (cluster, handle, host, port, give_up) in list(self._stopping.items()):
            if key[0] != dep_id:
                continue
            if host and self.in_flight(host, port) and time.monotonic() < give_up:
                waiting = True
                continue
            del self._stopping[key]
            self._signaled.add(key)
            self.runtimes.get(cluster).stop(handle)
        return waiting

    @staticmethod
    def _apply_rollout(s, dep: Deployment, loaded: _Loaded, snap: DeploymentSnapshot, ro: RolloutPass,
                       now: datetime) -> bool:
        """Write a canary rollout's pass; True when what the gateways are told changed."""
        new = stored(ro, dep.rollout)
        if new is None or dep.generation != snap.generation:
            return False  # a deploy started another rollout meanwhile: it decides from now on
        before = dep.rollout or {}
        dep.rollout = new
        if ro.decision.action == "rollback":  # the stable generation is the deployment's spec again
            dep.spec = ro.stable_spec.model_dump(mode="json")
            dep.generation = ro.decision.state.stable_generation
            if ro.stable_workdir:
                dep.workdir = ro.stable_workdir
            dep.failures, dep.next_start_at, dep.last_failure = 0, None, ""
        for type_, reason, message in ro.decision.events:
            events.record(s, now=now, kind="Deployment", name=loaded.name, object_id=loaded.dep_id,
                          type=type_, reason=reason, message=message, workspace=loaded.workspace)
            if reason in REPAIR_RULES:
                open_repair_alert(s, workspace=loaded.workspace, deployment=loaded.name, reason=reason,
                                  message=message, now=now)
        return (before.get("phase"), before.get("weight")) != (new.get("phase"), new.get("weight"))

    @staticmethod
    def _apply_change(row: Replica | None, c, now: datetime) -> bool:
        """Write one replica's change; True if it entered or left Ready (the routes change)."""
        if row is None:
            return False
        moved = (row.state == ReplicaState.READY.value) != (c.state == ReplicaState.READY)
        row.state = c.state.value
        if c.reason:
            row.reason = c.reason
        if c.probe_failures is not None:
            row.probe_failures = c.probe_failures
        if c.exit_code is not None:
            row.exit_code = c.exit_code
        if c.state == ReplicaState.READY and row.ready_at is None:
            row.ready_at = now
        if c.state == ReplicaState.DRAINING and row.stop_requested_at is None:
            row.stop_requested_at = now
        if c.state.terminal:
            row.finished_at = now
        return moved

    def _new_replica(self, s, loaded: _Loaded, snap: DeploymentSnapshot, ordinal: int, alloc: Allocation, now,
                     base_env: dict[str, str], runtime: Runtime, *, spec: DeploymentSpec | None = None,
                     generation: int | None = None, workdir: str | None = None) -> LaunchSpec:
        """A new replica row and what to launch: of the current generation, or (a canary rollout's
        stable replicas) of the `generation` that runs `spec` in `workdir`."""
        spec = spec or snap.spec
        generation = snap.generation if generation is None else generation
        workdir = workdir or loaded.workdir
        local = alloc.cluster == "local"
        # on an engine's cluster the runtime picks the node and the port ($HOST, $PORT), reported later
        host, port = (HOST, _free_port()) if local else ("", 0)
        key = f"{loaded.dep_id}/replica-{ordinal}"
        handle = runtime.handle_for(key)
        s.add(Replica(
            deployment_id=loaded.dep_id, ordinal=ordinal, generation=generation,
            state=ReplicaState.STARTING.value, created_at=now, host=host, port=port,
            runtime=handle.runtime, cluster=alloc.cluster, handle={**handle.data, "logs": [runtime.log_path(handle, 0)]},
            allocation=alloc.to_dict(), reason="starting", probe_failures=0,
        ))
        where = f"on port {port}" if local else f"on cluster {alloc.cluster}"
        events.record(s, now=now, kind="Deployment", name=loaded.name, object_id=loaded.dep_id, type="Normal",
                      reason="ReplicaStarting", message=f"starting replica {ordinal} {where}",
                      workspace=loaded.workspace)
        if spec.service:
            command: str | list[str] = [sys.executable, "-m", "cumulo.serving", spec.service]
            if local:
                command += ["--host", HOST, "--port", str(port)]
        else:
            command = spec.command  # type: ignore[assignment]
        env = dict(base_env)  # never the control plane's own environment (control/environment.py)
        gpus = alloc.worker_gpus[0] if alloc.worker_gpus else ()
        env.update({
            **({"PORT": str(port), "HOST": HOST} if local else {}),
            "CUMULO_DEPLOYMENT": spec.name,
            "CUMULO_REPLICA": str(ordinal),
            "CUMULO_URL": self.server_url,
            "CUDA_VISIBLE_DEVICES": ",".join(map(str, gpus)),
        })
        token = self.workload_token(loaded.dep_id, ordinal)
        if token:
            env["CUMULO_TOKEN"] = token  # reads its workspace (e.g. the job that trained its model)
        r = spec.resources
        return LaunchSpec(key=key, command=command, workdir=workdir, env=env,
                          stop_grace=STOP_GRACE.total_seconds() - 5,
                          resources=WorkerResources(cpu=r.cpu, memory=r.memory, gpu=r.gpu, gpu_type=r.gpu_type),
                          serve=not local)


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host
