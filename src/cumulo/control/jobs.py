"""The job reconciler: load a snapshot, observe the processes, decide (pure), act, apply.

Never holds a transaction open across a runtime call. Every write is guarded by the row lease,
so a pass whose lease was taken over writes nothing.
"""

from __future__ import annotations

import logging
import socket
import uuid
from pathlib import Path
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime

from cumulo.control.alerts import JOB_HEALTH_RULES, open_job_health_alert
from cumulo.control.clusters import Runtimes
from cumulo.control.environment import no_secrets, workload_env
from cumulo.core.faults import crash_at
from cumulo.core.specs import JobSpec
from cumulo.core.states import AttemptState, JobState, ProcessPhase
from cumulo.control.placement import Placement
from cumulo.policy.capacity import Allocation
from cumulo.policy.jobs import STOP_GRACE, Act, AttemptSnapshot, JobDecision, JobSnapshot, Observed, StopCause, decide_job
from cumulo.runtimes.base import Handle, LaunchSpec, Observation, Runtime, RuntimeUnavailable, WorkerResources
from cumulo.store import events, leases
from cumulo.store import jobs as jobs_store
from cumulo.store import node_pools as node_pools_store
from cumulo.store import nodes as nodes_store
from cumulo.store.db import Database
from cumulo.store.models import Attempt, Job

log = logging.getLogger(__name__)

LEASE_TTL = 60.0


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class _Loaded:
    snapshot: JobSnapshot
    job_id: str
    job_name: str
    artifacts: str
    handle: Handle | None
    created_at: datetime
    workspace: str = "default"
    cluster: str = "local"  # the current attempt's cluster
    #: what the cluster's node pools say about this job while it waits (a launch, or the limit that stops one)
    pool_note: str = ""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class JobReconciler:
    name = "jobs"
    resync = 10.0

    def __init__(
        self,
        db: Database,
        runtime: Runtime | Runtimes,
        *,
        node: str,
        server_url: str,
        placement: Placement | None = None,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.db = db
        self.runtimes = runtime if isinstance(runtime, Runtimes) else Runtimes(db, runtime)
        self.placement = placement or Placement(node)
        self.server_url = server_url
        self.clock = clock
        self.wake: Callable[[str], None] = lambda key: None
        #: a spec's env with each {secret: NAME} replaced by its value (services/secrets.py)
        self.secret_values: Callable[[dict], dict[str, str]] = no_secrets
        #: the CUMULO_TOKEN a job's processes get (job id, attempt -> token), None without auth
        self.workload_token: Callable[[str, int], str | None] = lambda job_id, attempt: None
        #: a job began waiting for room on this cluster (None: any): the node pools look at it
        self.began_waiting: Callable[[str | None], None] = lambda cluster: None
        #: pending jobs that did not fit when last looked at (the periodic resync covers a restart)
        self._waiting: dict[str, datetime] = {}

    def keys(self) -> list[str]:
        with self.db.tx() as s:
            return jobs_store.active_ids(s)

    # -- one pass ------------------------------------------------------------------------------
    def reconcile(self, job_id: str) -> float | None:
        token = uuid.uuid4().hex
        loaded = self._load(job_id, token)
        if loaded is None:
            self._waiting.pop(job_id, None)
            return None
        if loaded is ...:
            return 1.0  # leased by another worker
        observation = None
        if loaded.handle is not None:
            try:
                observation = self.runtimes.get(loaded.cluster).observe(loaded.handle)
            except RuntimeUnavailable as exc:  # the engine is away: decide nothing until it answers
                self._note_unreachable(job_id, token, loaded, str(exc))
                return 5.0
        snap = loaded.snapshot
        if observation is not None:
            snap = _with_observation(snap, observation)
            if observation.phase in (ProcessPhase.EXITED, ProcessPhase.LOST):  # the attempt may end now
                snap = self._with_node_loss(job_id, loaded.cluster, snap, observation)
        decision = decide_job(snap)
        if decision.state == JobState.PENDING and decision.act == Act.NONE and loaded.pool_note:
            decision = replace(decision, reason=f"{decision.reason}; {loaded.pool_note}")
        if decision.state == JobState.PENDING and decision.act == Act.NONE and decision.requeue_after is None:
            if job_id not in self._waiting:  # began waiting for room: a node pool may add some
                self.began_waiting(snap.spec.cluster or snap.bound_cluster)
            self._waiting[job_id] = loaded.created_at  # waits for room: woken when something finishes
        else:
            self._waiting.pop(job_id, None)
        return self._act_and_apply(job_id, token, loaded, observation, decision)

    def _load(self, job_id: str, token: str):
        now = self.clock()
        with self.db.tx() as s:
            if not leases.claim(s, Job, job_id, token, now, LEASE_TTL):
                return ... if s.get(Job, job_id) is not None else None
            job = s.get(Job, job_id)
            assert job is not None
            if JobState(job.state).terminal:
                leases.release(s, Job, job_id, token)
                return None
            current = jobs_store.attempt(s, job_id, job.attempts) if job.attempts else None
            capacity, used, (quota, quota_used, spent) = None, (), (None, (), 0.0)
            clusters = ()
            pool_note = ""
            if job.state == JobState.PENDING.value:
                pool_note = "; ".join(node_pools_store.notes_for(s, job.cluster or job.spec.get("cluster"), f"job:{job.id}"))
            if job.state == JobState.PENDING.value or current is None or AttemptState(current.state).terminal:
                # only a job that may start next needs what is free on the clusters and in its workspace
                capacity, used = self.placement.capacity(s), self.placement.used(s)
                quota, quota_used, spent = self.placement.quota(s, job.workspace, now)
                clusters = self.placement.clusters(s)
            attempt_snap = handle = None
            if current is not None:
                attempt_snap = AttemptSnapshot(
                    number=current.number,
                    state=AttemptState(current.state),
                    created_at=current.created_at,
                    started_at=current.started_at,
                    stop_cause=StopCause(current.stop_cause) if current.stop_cause else None,
                    stop_requested_at=current.stop_requested_at,
                    progress=current.progress,
                    alerted=current.alerted,
                )
                if not attempt_snap.state.terminal:
                    handle = Handle(current.runtime, current.handle)
            snapshot = JobSnapshot(
                now=now,
                spec=JobSpec.model_validate(job.spec),
                state=JobState(job.state),
                attempts=job.attempts,
                cancel_requested=job.cancel_requested,
                next_attempt_at=job.next_attempt_at,
                current=attempt_snap,
                capacity=capacity,
                used=used,
                quota=quota,
                quota_used=quota_used,
                spent=spent,
                clusters=clusters,
                bound_cluster=job.cluster,
                on_engine=current is not None and current.cluster != "local",
            )
            return _Loaded(snapshot, job.id, job.name, job.artifacts_dir, handle, job.created_at, job.workspace,
                           cluster=current.cluster if current is not None else "local", pool_note=pool_note)

    def _act_and_apply(
        self, job_id: str, token: str, loaded: _Loaded, obs: Observation | None, d: JobDecision
    ) -> float | None:
        snap = loaded.snapshot
        now = snap.now
        if d.act == Act.START:
            assert d.allocation is not None
            number = snap.attempts + 1
            key = f"{job_id}/attempt-{number}"
            cluster = d.allocation.cluster
            try:
                runtime = self.runtimes.get(cluster)
            except RuntimeUnavailable as exc:
                self._note_unreachable(job_id, token, loaded, str(exc))
                return 5.0
            handle = runtime.handle_for(key)
            artifacts = loaded.artifacts
            if cluster != "local" and snap.bound_cluster != cluster:
                # on an engine's cluster, where every node sees it: a retry resumes wherever it lands
                artifacts = str(Path(self.runtimes.artifacts(cluster)) / loaded.workspace
                                / f"{loaded.job_name}-{loaded.job_id[:8]}")
            loaded = replace(loaded, artifacts=artifacts, cluster=cluster)
            # record the attempt BEFORE launching: a crash in between leaves a launch that never
            # came up (abandoned later), never a process the store does not know
            with self.placement.lock, self.db.tx() as s:
                if not self.placement.confirm(s, [d.allocation], loaded.workspace):
                    leases.release(s, Job, job_id, token)
                    return 0.0  # something else took the room meanwhile: decide again
                if not leases.guarded_update(
                    s, Job, job_id, token, state=d.state.value, reason=d.reason, attempts=number,
                    next_attempt_at=None, cluster=cluster, artifacts_dir=artifacts,
                    **({"started_at": now} if number == 1 else {}),
                ):
                    return 0.0
                s.add(Attempt(
                    job_id=job_id, number=number, state=AttemptState.STARTING.value, created_at=now,
                    runtime=handle.runtime, cluster=cluster, allocation=d.allocation.to_dict(),
                    handle={**handle.data, "logs": [runtime.log_path(handle, r) for r in range(snap.spec.workers)]},
                    reason="", workers=[],
                ))
                self._events(s, loaded, d, now)
            crash_at("before-launch")  # crash-safety tests: recorded, not launched
            try:
                if cluster != "local":
                    Path(artifacts).mkdir(parents=True, exist_ok=True)
                runtime.launch(self._launch_spec(key, snap.spec, loaded, number, d.allocation))
            except Exception as exc:  # the next pass sees it as lost and retries by policy
                log.exception("job %s: launch failed", loaded.job_name)
                try:
                    runtime.abandon(handle)
                except Exception:  # an engine that refused the launch may refuse this too; observe decides
                    log.exception("job %s: abandoning the failed launch failed", loaded.job_name)
                with self.db.tx() as s:
                    events.record(s, now=now, kind="Job", name=loaded.job_name, object_id=job_id,
                                  type="Warning", reason="LaunchFailed", message=f"could not launch: {exc}",
                                  workspace=loaded.workspace)
                return 0.0
            return d.requeue_after

        handle = loaded.handle
        runtime = self.runtimes.get(loaded.cluster) if handle is not None else None
        if d.act == Act.STOP and runtime is not None:
            runtime.stop(handle)
        elif d.act == Act.KILL and runtime is not None:
            runtime.kill(handle)
        elif d.act == Act.ABANDON and runtime is not None:
            runtime.abandon(handle)

        finished = d.state.terminal or d.attempt_state is not None
        with self.db.tx() as s:
            values: dict = {"state": d.state.value, "reason": d.reason}
            if d.state.terminal:
                values["finished_at"] = now
            if d.attempt_state is not None:
                values["exit_code"] = d.attempt_exit_code
            if d.next_attempt_at is not None or snap.next_attempt_at is not None:
                values["next_attempt_at"] = d.next_attempt_at
            if not leases.guarded_update(s, Job, job_id, token, **values):
                return 0.0  # stale: someone else owns this job now
            if snap.current is not None and not snap.current.state.terminal:
                self._apply_attempt(s, job_id, snap, obs, d, now)
            self._events(s, loaded, d, now)
        if finished:
            if runtime is not None:
                runtime.forget(handle)
            self.wake_waiting()
        return d.requeue_after

    def _apply_attempt(self, s, job_id: str, snap: JobSnapshot, obs: Observation | None, d: JobDecision, now) -> None:
        att = jobs_store.attempt(s, job_id, snap.current.number)
        if att is None:
            return
        if obs is not None and obs.phase == ProcessPhase.RUNNING:
            if att.state == AttemptState.STARTING.value:
                att.state = AttemptState.RUNNING.value
                att.started_at = now
            att.workers = [_worker(w) for w in obs.workers]
        if obs is not None and obs.phase == ProcessPhase.EXITED:
            where = {w["rank"]: w for w in att.workers or []}  # keep the node each rank ran on
            att.workers = [{**_where(where.get(w.rank, {})), **_worker(w, exited=True)} for w in obs.workers]
        if d.attempt_alerted is not None:
            att.alerted = d.attempt_alerted
        if d.stop_cause is not None:
            att.stop_cause = d.stop_cause.value
            att.stop_requested_at = now
        if d.attempt_state is not None:
            att.state = d.attempt_state.value
            att.exit_code = d.attempt_exit_code
            att.reason = d.attempt_reason
            att.finished_at = now

    def _with_node_loss(self, job_id: str, cluster: str, snap: JobSnapshot, obs: Observation) -> JobSnapshot:
        """What an ending attempt's retry accounting needs: how many earlier attempts were
        preempted, and whether the node the engine lost was a spot machine its provider took back
        (the node reconciler records that within seconds; an engine declares a node dead later)."""
        with self.db.tx() as s:
            preemptions = jobs_store.preempted_attempts(s, job_id)
            preempted = None
            if obs.node_lost:
                att = jobs_store.attempt(s, job_id, snap.current.number) if snap.current else None
                engine_ids = {w.get("node_id") for w in (att.workers if att else None) or [] if w.get("node_id")}
                engine_ids |= {w.node for w in obs.workers if w.node}
                preempted = nodes_store.preemption(s, cluster, obs.node_lost, engine_ids)
        observed = replace(snap.observed, node_preempted=preempted) if snap.observed else None
        return replace(snap, preemptions=preemptions, observed=observed)

    def _note_unreachable(self, job_id: str, token: str, loaded: _Loaded, why: str) -> None:
        with self.db.tx() as s:
            leases.guarded_update(s, Job, job_id, token, reason=f"cluster {loaded.cluster} unreachable: {why}")

    def _events(self, s, loaded: _Loaded, d: JobDecision, now: datetime) -> None:
        for type_, reason, message in d.events:
            events.record(s, now=now, kind="Job", name=loaded.job_name, object_id=loaded.job_id,
                          type=type_, reason=reason, message=message, workspace=loaded.workspace)
            if reason in JOB_HEALTH_RULES and loaded.snapshot.current is not None:
                open_job_health_alert(s, workspace=loaded.workspace, job=loaded.job_name,
                                      attempt=loaded.snapshot.current.number, reason=reason, message=message, now=now)

    def wake_waiting(self) -> None:
        """Room was freed (a job or a replica ended): the jobs waiting for it look again, oldest
        first. Safe to call from another reconciler's thread."""
        for job_id, _ in sorted(list(self._waiting.items()), key=lambda item: item[1]):
            self.wake(job_id)

    def _launch_spec(self, key: str, spec: JobSpec, loaded: _Loaded, number: int, alloc: Allocation) -> LaunchSpec:
        env = workload_env(self.secret_values(spec.env, loaded.workspace))  # never the control plane's own environment
        env.update({
            "CUMULO_JOB": spec.name,
            "CUMULO_ATTEMPT": str(number),
            "CUMULO_ARTIFACTS": loaded.artifacts,
            "CUMULO_URL": self.server_url,
        })
        token = self.workload_token(loaded.job_id, number)
        if token:
            env["CUMULO_TOKEN"] = token  # enough to report this job's metrics, nothing else
        port = str(_free_port())
        worker_env = []
        for rank in range(spec.workers):
            gpus = alloc.worker_gpus[rank] if rank < len(alloc.worker_gpus) else ()
            worker_env.append({  # the local defaults; an engine's runtime sets what its placement decides
                "RANK": str(rank),
                "LOCAL_RANK": str(rank),
                "WORLD_SIZE": str(spec.workers),
                "LOCAL_WORLD_SIZE": str(spec.workers),
                "MASTER_ADDR": "127.0.0.1",
                "MASTER_PORT": port,
                "CUMULO_NODE_RANK": "0",
                "CUMULO_NUM_NODES": "1",
                "CUMULO_NODE_IPS": "127.0.0.1",
                "CUDA_VISIBLE_DEVICES": ",".join(map(str, gpus)),
            })
        r = spec.resources
        return LaunchSpec(
            key=key,
            command=spec.command,
            workdir=spec.workdir or loaded.artifacts,
            env=env,
            worker_env=tuple(worker_env),
            stop_grace=STOP_GRACE.total_seconds(),
            resources=WorkerResources(cpu=r.cpu, memory=r.memory, gpu=r.gpu, gpu_type=r.gpu_type),
            placement=spec.placement,
            timeout=spec.timeout,
        )


def _with_observation(snap: JobSnapshot, o: Observation) -> JobSnapshot:
    return replace(snap, observed=Observed(phase=o.phase, exit_code=o.exit_code, detail=o.detail, node_lost=o.node_lost))


def _worker(w, exited: bool = False) -> dict:
    """One worker as the attempt row keeps it: where it runs, and its usage or its exit code."""
    out: dict = {"rank": w.rank}
    if w.node is not None or w.host is not None:
        out.update(node_id=w.node, address=w.host)
    if exited:
        out["exit_code"] = w.exit_code
    else:
        out.update(pid=w.pid, cpu_percent=w.cpu_percent, memory_bytes=w.memory_bytes)
    return out


def _where(w: dict) -> dict:
    return {k: w[k] for k in ("node_id", "address") if w.get(k) is not None}
