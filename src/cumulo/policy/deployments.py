"""The deployment state machine as a pure function: replicas to start, stop, mark ready or failed.

Keeps `spec.replicas` ready replicas of the current spec generation. An update replaces replicas
one by one (at most `max_surge` extra, at most `max_unavailable` missing, so with the defaults a new
replica is ready before an old one drains). A crashed or unhealthy replica is replaced after an
exponential backoff; repeated failures show as CrashLoopBackOff with the last failure's reason.

During a canary rollout (`canary` set; policy/rollout.py decides its steps) the stable generation
keeps `desired` replicas and the new one runs `canary.replicas` beside them; replicas of any other
generation are drained. A stable replica that fails is replaced with the stable generation
(`start_stable`). Once the rollout finishes or rolls back, the ordinary rolling logic takes over.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from cumulo.core.specs import DeploymentSpec, Resources
from cumulo.core.states import DeploymentState, ProcessPhase, ReplicaState
from cumulo.policy.backoff import backoff_delay
from cumulo.policy.capacity import Allocation, Capacity, Request
from cumulo.policy.clusters import LOCAL, ClusterView, choose
from cumulo.policy.quota import Quota, over_quota

#: consecutive replica failures from which the deployment shows as crash-looping
CRASH_LOOP_AFTER = 3
RESTART_BACKOFF_INITIAL = 1.0
RESTART_BACKOFF_MAX = 60.0
STOP_GRACE = timedelta(seconds=30)
POLL = 1.0


@dataclass(frozen=True)
class ReplicaSnapshot:
    id: str
    generation: int
    state: ReplicaState
    created_at: datetime
    phase: ProcessPhase | None = None  # what the runtime sees now
    exit_code: int | None = None
    detail: str = ""  # why it ended, e.g. the last lines of its log
    probe_ok: bool | None = None  # the health check made this pass (None: none made)
    probe_failures: int = 0  # consecutive failed checks before this pass
    stop_requested_at: datetime | None = None
    #: self-repair asked for its replacement (why): replaced like a replica of an old version
    replace: str | None = None


@dataclass(frozen=True)
class Canary:
    """A canary rollout in progress: the generation that keeps serving, and how many replicas of the
    new one (the snapshot's `generation`) run beside it now."""

    stable_generation: int
    replicas: int
    rolled_back: bool = False  # the new generation's replicas go now (replicas is 0)
    stable_resources: Resources | None = None  # what one stable replica needs (default: the spec's)


@dataclass(frozen=True)
class DeploymentSnapshot:
    now: datetime
    spec: DeploymentSpec
    generation: int
    replicas: tuple[ReplicaSnapshot, ...]  # every replica not yet Stopped or Failed
    deleting: bool = False
    failures: int = 0  # consecutive replica failures
    next_start_at: datetime | None = None
    last_failure: str = ""
    capacity: Capacity | None = None
    used: tuple[Allocation, ...] = ()
    #: the workspace's quota, what its running work holds, and what it spent this month
    quota: Quota | None = None
    quota_used: tuple[Allocation, ...] = ()
    spent: float = 0.0
    #: replicas the autoscaler wants; None: the spec's count
    desired: int | None = None
    #: every cluster (policy/clusters.py); empty: only the local node, with `capacity`
    clusters: tuple[ClusterView, ...] = ()
    canary: Canary | None = None


@dataclass(frozen=True)
class ReplicaChange:
    id: str
    state: ReplicaState
    reason: str = ""
    exit_code: int | None = None
    probe_failures: int | None = None


@dataclass(frozen=True)
class DeploymentDecision:
    state: DeploymentState
    reason: str
    start: tuple[Allocation, ...] = ()  # one new replica of the current generation per allocation
    start_stable: tuple[Allocation, ...] = ()  # canary rollout: one new replica of the stable generation each
    stop: tuple[str, ...] = ()  # replica ids to drain (SIGTERM, grace)
    kill: tuple[str, ...] = ()  # replica ids whose drain outlasted the grace
    changes: tuple[ReplicaChange, ...] = ()
    failures: int = 0
    next_start_at: datetime | None = None
    last_failure: str = ""
    deleted: bool = False  # every replica is gone: remove the deployment
    requeue_after: float | None = POLL
    events: tuple[tuple[str, str, str], ...] = field(default_factory=tuple)


def decide_deployment(s: DeploymentSnapshot) -> DeploymentDecision:
    now, spec = s.now, s.spec
    changes: list[ReplicaChange] = []
    events: list[tuple[str, str, str]] = []
    stop: list[str] = []
    kill: list[str] = []
    failures, next_start_at, last_failure = s.failures, s.next_start_at, s.last_failure
    state_of: dict[str, ReplicaState] = {}

    def fail(r: ReplicaSnapshot, why: str, *, replace_running: bool = False) -> None:
        nonlocal failures, next_start_at, last_failure
        failures += 1
        delay = backoff_delay(failures, initial=RESTART_BACKOFF_INITIAL, maximum=RESTART_BACKOFF_MAX)
        next_start_at = now + timedelta(seconds=delay)
        last_failure = why
        if replace_running:
            stop.append(r.id)
            state_of[r.id] = ReplicaState.DRAINING
            changes.append(ReplicaChange(r.id, ReplicaState.DRAINING, why))
        else:
            state_of[r.id] = ReplicaState.FAILED
            changes.append(ReplicaChange(r.id, ReplicaState.FAILED, why, exit_code=r.exit_code))
        events.append(("Warning", "ReplicaFailed", f"replica {r.id}: {why}; next start in {delay:g}s"))

    # 1. each replica on its own
    for r in s.replicas:
        state_of[r.id] = r.state
        ended = r.phase in (ProcessPhase.EXITED, ProcessPhase.LOST)
        if r.state == ReplicaState.DRAINING:
            if ended:
                # keep why it was drained (scaled down, unhealthy, replaced ...); a replica that
                # vanished rather than exited (its node lost) says so
                why = r.detail if r.phase == ProcessPhase.LOST and r.detail else ""
                state_of[r.id] = ReplicaState.STOPPED
                changes.append(ReplicaChange(r.id, ReplicaState.STOPPED, why, exit_code=r.exit_code))
            elif r.stop_requested_at is not None and now - r.stop_requested_at > STOP_GRACE:
                kill.append(r.id)
            continue
        if ended:
            code = "" if r.exit_code is None else f"exit code {r.exit_code}"
            fail(r, ": ".join(x for x in (code or "ended", r.detail) if x))
            continue
        if r.state == ReplicaState.STARTING:
            if r.probe_ok:
                state_of[r.id] = ReplicaState.READY
                changes.append(ReplicaChange(r.id, ReplicaState.READY, "ready", probe_failures=0))
                events.append(("Normal", "ReplicaReady", f"replica {r.id} is ready"))
                failures, next_start_at = 0, None  # a replica came up: the crash loop is over
            elif (now - r.created_at).total_seconds() > spec.health.startup_timeout:
                fail(r, f"not ready after {spec.health.startup_timeout:g}s", replace_running=True)
        elif r.state == ReplicaState.READY and r.probe_ok is not None:
            n = 0 if r.probe_ok else r.probe_failures + 1
            if n >= spec.health.failure_threshold:
                fail(r, f"failed {n} health checks in a row ({spec.health_path})", replace_running=True)
            elif n != r.probe_failures:
                changes.append(ReplicaChange(r.id, ReplicaState.READY, probe_failures=n))

    live = [r for r in s.replicas if state_of[r.id] in (ReplicaState.STARTING, ReplicaState.READY)]
    draining = [r for r in s.replicas if state_of[r.id] == ReplicaState.DRAINING]

    def drain(victims: list[ReplicaSnapshot], why: str) -> None:
        for r in victims:
            said = r.replace if r.replace and r.generation == s.generation else why
            stop.append(r.id)
            state_of[r.id] = ReplicaState.DRAINING
            changes.append(ReplicaChange(r.id, ReplicaState.DRAINING, said))
            events.append(("Normal", "ReplicaStopping", f"replica {r.id}: {said}"))

    # 2. deleting: drain everything, then go
    if s.deleting:
        drain(live, "deployment deleted")
        remaining = len(live) + len(draining)
        done = remaining == 0
        return DeploymentDecision(
            DeploymentState.DELETING, "deleted" if done else f"draining {remaining} replicas",
            stop=tuple(stop), kill=tuple(kill), changes=tuple(changes), failures=failures,
            next_start_at=next_start_at, last_failure=last_failure, deleted=done,
            requeue_after=None if done else POLL, events=tuple(events),
        )

    # 3. rollout and scaling
    desired = spec.replicas if s.desired is None else s.desired
    # a replica self-repair wants replaced is rolled like one of an old version: its replacement
    # starts first (max_surge), then it drains (max_unavailable), so no request fails
    cur = [r for r in live if r.generation == s.generation and (s.canary is not None or not r.replace)]
    waiting = ""

    def allocate(want: int, r: Resources = spec.resources) -> list[Allocation]:
        nonlocal waiting
        got: list[Allocation] = []
        if want <= 0 or waiting:
            return got
        if next_start_at is not None and now < next_start_at:
            waiting = f"restarting in {(next_start_at - now).total_seconds():.0f}s"
        elif s.capacity is None and not s.clusters:
            waiting = "waiting for a node to report its capacity"
        else:
            clusters = s.clusters or (ClusterView(LOCAL, LOCAL, capacity=s.capacity),)
            used = list(s.used) + taken
            mine = list(s.quota_used) + taken
            for _ in range(want):
                request = Request(r.cpu, r.memory, r.gpu, 1, gpu_type=r.gpu_type)
                over = over_quota(request, s.quota, mine, s.spent)
                if over:
                    waiting = over
                    break
                fit = choose(request, "pack", clusters, used, only=spec.cluster)
                if isinstance(fit, str):
                    waiting = fit
                    break
                got.append(fit)
                used.append(fit)
                mine.append(fit)
        taken.extend(got)
        return got

    def trim(group: list[ReplicaSnapshot], keep: int, why: str = "scaled down") -> list[ReplicaSnapshot]:
        """Scale a group down to `keep`: replicas that are not ready first, then the newest."""
        excess = len(group) - keep
        if excess <= 0:
            return group
        victims = sorted(group, key=lambda r: (state_of[r.id] == ReplicaState.READY, -r.created_at.timestamp()))[:excess]
        drain(victims, why)
        return [r for r in group if r not in victims]

    taken: list[Allocation] = []
    starts_stable: list[Allocation] = []
    if s.canary is not None:
        c = s.canary
        stable = [r for r in live if r.generation == c.stable_generation and r.generation != s.generation]
        drain([r for r in live if r not in cur and r not in stable], "replaced by the new version")
        cur = trim(cur, c.replicas, "rolled back" if c.rolled_back else "scaled down")
        stable = trim(stable, desired)
        starts = allocate(c.replicas - len(cur))
        starts_stable = allocate(desired - len(stable), c.stable_resources or spec.resources)
        old = stable
    else:
        old = [r for r in live if r.generation != s.generation or r.replace]
        ready = [r for r in live if state_of[r.id] == ReplicaState.READY]
        not_ready_old = [r for r in old if state_of[r.id] != ReplicaState.READY]
        drain(not_ready_old, "replaced by the new version")
        old = [r for r in old if r not in not_ready_old]
        min_available = max(desired - spec.rollout.max_unavailable, 0)
        can_stop = len(ready) - min_available
        old_ready = sorted((r for r in old if state_of[r.id] == ReplicaState.READY), key=lambda r: r.created_at)
        if can_stop > 0 and old_ready:
            drain(old_ready[:can_stop], "replaced by the new version")
            old = [r for r in old if r not in old_ready[:can_stop]]
        cur = trim(cur, desired)
        total = len(cur) + len(old)
        starts = allocate(min(desired - len(cur), desired + spec.rollout.max_surge - total))

    # 4. how it stands
    ready_cur = sum(1 for r in cur if state_of[r.id] == ReplicaState.READY)
    summary = f"{ready_cur}/{desired} ready"
    if s.canary is not None:
        ready_stable = sum(1 for r in old if state_of[r.id] == ReplicaState.READY)
        summary = (f"canary: {ready_cur}/{s.canary.replicas} new ready, {ready_stable}/{desired} "
                   f"stable (version {s.canary.stable_generation}) ready")
    if failures >= CRASH_LOOP_AFTER and ready_cur < desired:
        state, reason = DeploymentState.CRASH_LOOP, f"{summary}; replicas keep failing: {last_failure}"
        if failures == CRASH_LOOP_AFTER and failures != s.failures:
            events.append(("Warning", "CrashLoopBackOff", f"{failures} replica failures in a row: {last_failure}"))
    elif s.canary is not None:
        state, reason = DeploymentState.PROGRESSING, summary
    elif old or (ready_cur < desired and not failures):
        state = DeploymentState.PROGRESSING
        replacing = sum(1 for r in old if r.generation == s.generation)
        reason = (f"{summary}; replacing {replacing} replica(s) self-repair flagged" if old and replacing == len(old)
                  else f"{summary}; rolling out ({len(old)} old replicas left)" if old else f"{summary}; starting replicas")
    elif ready_cur < desired:
        state, reason = DeploymentState.DEGRADED, f"{summary}; replacing failed replicas ({last_failure})"
    else:
        state, reason = DeploymentState.AVAILABLE, summary
    if waiting:
        reason += f"; {waiting}"
    requeue = POLL
    if waiting.startswith("restarting") and next_start_at is not None:
        requeue = min(POLL, max((next_start_at - now).total_seconds(), 0.05))
    return DeploymentDecision(
        state, reason, start=tuple(starts), start_stable=tuple(starts_stable), stop=tuple(stop), kill=tuple(kill),
        changes=tuple(changes), failures=failures, next_start_at=next_start_at, last_failure=last_failure,
        requeue_after=0.2 if starts or starts_stable else requeue, events=tuple(events),
    )
