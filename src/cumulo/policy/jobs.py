"""The job state machine as a pure function: what to do next with one job.

Pending -> Starting -> Running -> Succeeded | Failed | Cancelled. A failed attempt goes back to
Pending with a backoff until ``max_retries`` is used up. The reconciler observes the processes,
calls ``decide_job`` and carries out the one action it returns.

An attempt ended by the loss of its node fails with reason ``NodeLost: ...`` and counts as a try;
one whose node was a spot machine the provider took back ends ``NodePreempted: ...`` and does not
count against ``max_retries`` (it is retried at once: the capacity was the cloud's to take).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum

from cumulo.core.specs import JobSpec
from cumulo.core.states import AttemptState, JobState
from cumulo.core.states import ProcessPhase as Phase
from cumulo.policy.backoff import backoff_delay
from cumulo.policy.capacity import Allocation, Capacity, Request
from cumulo.policy.clusters import LOCAL, ClusterView, choose
from cumulo.policy.job_health import assess, next_check, progress_timeout
from cumulo.policy.quota import Quota, over_quota

#: an attempt whose supervisor has not shown up after this long is declared lost
BOOT_TIMEOUT = timedelta(seconds=15)
#: after asking an attempt to stop, how long before its processes are killed outright
STOP_GRACE = timedelta(seconds=10)
#: how often a running attempt is looked at
POLL = 1.0
#: on an engine's cluster (Ray, Slurm): a driver or batch job under load takes longer to report
#: than a local supervisor, and the engine itself stops the other ranks when one fails, so a steady
#: running attempt is looked at less often (a cancel wakes it at once; a timeout bounds the wait)
ENGINE_BOOT_TIMEOUT = timedelta(seconds=60)
ENGINE_POLL = 5.0


class StopCause(StrEnum):
    CANCEL = "cancel"
    TIMEOUT = "timeout"
    # the job's health (policy/job_health.py): stopped for what its own reports showed
    STALLED = "stalled"
    NAN = "nan"
    DIVERGED = "diverged"


#: the event reason of each health verdict
HEALTH_EVENTS = {"stalled": "Stalled", "nan": "LossNotFinite", "diverged": "LossDiverged"}


@dataclass(frozen=True)
class Observed:
    phase: Phase
    exit_code: int | None = None
    detail: str = ""
    node_lost: str | None = None  # the node whose loss ended the attempt
    #: that node was a spot machine its provider took back: why, as the node's record says
    node_preempted: str | None = None


@dataclass(frozen=True)
class AttemptSnapshot:
    number: int
    state: AttemptState
    created_at: datetime
    started_at: datetime | None = None
    stop_cause: StopCause | None = None
    stop_requested_at: datetime | None = None
    #: its progress record from its reports (policy/job_health.observe)
    progress: dict | None = None
    #: the health verdict already recorded as an alert (on_stall/on_nan: alert), so it is told once
    alerted: str | None = None


@dataclass(frozen=True)
class JobSnapshot:
    now: datetime
    spec: JobSpec
    state: JobState
    attempts: int
    cancel_requested: bool = False
    next_attempt_at: datetime | None = None
    current: AttemptSnapshot | None = None
    observed: Observed | None = None
    capacity: Capacity | None = None
    #: the workspace's quota, what its running work holds, and what it spent this month
    quota: Quota | None = None
    quota_used: tuple[Allocation, ...] = ()
    spent: float = 0.0
    used: tuple[Allocation, ...] = ()
    #: every cluster (policy/clusters.py); empty: only the local node, with `capacity`
    clusters: tuple[ClusterView, ...] = ()
    #: the cluster the job's first attempt ran on: its retries stay there
    bound_cluster: str | None = None
    #: the current attempt runs on an engine's cluster (Ray, Slurm), not on this machine
    on_engine: bool = False
    #: earlier attempts that ended NodePreempted: they do not count against max_retries
    preemptions: int = 0


class Act(StrEnum):
    NONE = "none"
    START = "start"  # launch attempt `attempts + 1` with `allocation`
    STOP = "stop"  # ask the current attempt to stop (SIGTERM, grace)
    KILL = "kill"  # kill the current attempt's processes now
    ABANDON = "abandon"  # make sure a launch that never came up never will


@dataclass(frozen=True)
class JobDecision:
    state: JobState
    reason: str
    act: Act = Act.NONE
    allocation: Allocation | None = None
    stop_cause: StopCause | None = None
    #: the current attempt's new state and exit code, when it changes
    attempt_state: AttemptState | None = None
    attempt_exit_code: int | None = None
    attempt_reason: str = ""
    #: a health verdict recorded as an alert on the current attempt
    attempt_alerted: str | None = None
    next_attempt_at: datetime | None = None
    requeue_after: float | None = None
    #: (type, reason, message) events to record
    events: tuple[tuple[str, str, str], ...] = field(default_factory=tuple)


def _request(spec: JobSpec) -> Request:
    r = spec.resources
    return Request(cpu=r.cpu, memory=r.memory, gpu=r.gpu, workers=spec.workers, gpu_type=r.gpu_type)


def _describe_exit(code: int | None) -> str:
    if code is None:
        return "exit status unknown"
    if code > 128:
        return f"exit code {code} (signal {code - 128})"
    return f"exit code {code}"


def decide_job(s: JobSnapshot) -> JobDecision:
    if s.state.terminal:
        return JobDecision(state=s.state, reason="")
    if s.state == JobState.PENDING or s.current is None or s.current.state.terminal:
        return _decide_pending(s)
    return _decide_active(s)


def _decide_pending(s: JobSnapshot) -> JobDecision:
    if s.cancel_requested:
        msg = "cancelled before it started" if s.attempts == 0 else "cancelled while waiting to retry"
        return JobDecision(JobState.CANCELLED, msg, events=(("Normal", "Cancelled", msg),))
    if s.next_attempt_at is not None and s.now < s.next_attempt_at:
        wait = (s.next_attempt_at - s.now).total_seconds()
        return JobDecision(
            JobState.PENDING, f"retrying in {wait:.0f}s", next_attempt_at=s.next_attempt_at, requeue_after=wait
        )
    clusters = s.clusters or ((ClusterView(LOCAL, LOCAL, capacity=s.capacity),) if s.capacity else ())
    if not clusters or (len(clusters) == 1 and clusters[0].kind == LOCAL and clusters[0].capacity is None):
        return JobDecision(JobState.PENDING, "waiting for a node to report its capacity", requeue_after=1.0)
    over = over_quota(_request(s.spec), s.quota, s.quota_used, s.spent)
    if over:
        return JobDecision(JobState.PENDING, over, requeue_after=None)  # woken when the workspace's work ends
    fit = choose(_request(s.spec), s.spec.placement, clusters, s.used, only=s.spec.cluster or s.bound_cluster)
    if isinstance(fit, str):
        # woken again when something finishes or a cluster grows; the periodic pass is the safety net
        return JobDecision(JobState.PENDING, fit, requeue_after=None if fit.startswith("waiting") else 5.0)
    number = s.attempts + 1
    msg = f"starting attempt {number}" + (f" with {s.spec.workers} workers" if s.spec.workers > 1 else "")
    if fit.cluster != LOCAL:
        msg += f" on cluster {fit.cluster}"
    if fit.gpus:
        msg += f" on GPU {','.join(map(str, fit.gpus))}"
    return JobDecision(
        JobState.STARTING,
        msg,
        act=Act.START,
        allocation=fit,
        requeue_after=0.2,
        events=(("Normal", "Starting", msg),),
    )


def _decide_active(s: JobSnapshot) -> JobDecision:
    cur = s.current
    assert cur is not None
    obs = s.observed or Observed(Phase.BOOTING)
    if obs.phase == Phase.EXITED:
        return _finish_attempt(s, obs.exit_code, obs.detail)
    if obs.phase == Phase.LOST:
        return _finish_attempt(s, None, obs.detail or "the attempt's supervisor disappeared")
    if obs.phase == Phase.QUEUED:  # the engine has it and waits for room: no boot timeout
        if s.cancel_requested and cur.stop_cause is None:
            return JobDecision(
                s.state, "stopping (cancel)", act=Act.STOP, stop_cause=StopCause.CANCEL, requeue_after=POLL,
                events=(("Normal", "Cancelling", f"stopping attempt {cur.number} on request"),),
            )
        return JobDecision(JobState.STARTING, "queued by the engine" + (f": {obs.detail}" if obs.detail else ""),
                           requeue_after=POLL)
    if obs.phase == Phase.BOOTING:
        if s.now - cur.created_at > (ENGINE_BOOT_TIMEOUT if s.on_engine else BOOT_TIMEOUT):
            return JobDecision(
                s.state,
                "attempt never came up; abandoning it",
                act=Act.ABANDON,
                requeue_after=0.0,
            )
        return JobDecision(JobState.STARTING, "starting processes", requeue_after=0.2)

    # running
    state, events = s.state, ()
    reason = "running" if s.spec.workers == 1 else f"running {s.spec.workers} workers"
    if s.state == JobState.STARTING:
        state = JobState.RUNNING
        events = (("Normal", "Running", f"attempt {cur.number} is running"),)
    started = cur.started_at or s.now
    if cur.stop_cause is not None:
        requested = cur.stop_requested_at or s.now
        if s.now - requested > STOP_GRACE + timedelta(seconds=5):
            return JobDecision(state, f"stopping ({cur.stop_cause}): killing processes", act=Act.KILL, requeue_after=POLL)
        return JobDecision(state, f"stopping ({cur.stop_cause})", requeue_after=POLL, events=events)
    if s.cancel_requested:
        return JobDecision(
            state, "stopping (cancel)", act=Act.STOP, stop_cause=StopCause.CANCEL, requeue_after=POLL,
            events=events + (("Normal", "Cancelling", f"stopping attempt {cur.number} on request"),),
        )
    timeout = s.spec.timeout
    if timeout is not None and (s.now - started).total_seconds() > timeout:
        msg = f"attempt {cur.number} ran past its timeout of {timeout:g}s; stopping it"
        return JobDecision(
            state, "stopping (timeout)", act=Act.STOP, stop_cause=StopCause.TIMEOUT, requeue_after=POLL,
            events=events + (("Warning", "TimedOut", msg),),
        )
    alerted = None
    verdict = assess(s.spec.health, cur.progress, s.now, started)
    if verdict is not None and verdict.action != "alert":
        then = "failing the job" if verdict.action == "fail" else "restarting it from its newest checkpoint"
        msg = f"attempt {cur.number}: {verdict.message}; {then}"
        return JobDecision(
            state, f"stopping ({verdict.kind})", act=Act.STOP, stop_cause=StopCause(verdict.kind), requeue_after=POLL,
            events=events + (("Warning", HEALTH_EVENTS[verdict.kind], msg),),
        )
    if verdict is not None and cur.alerted != verdict.kind:
        alerted = verdict.kind
        events = events + (("Warning", HEALTH_EVENTS[verdict.kind],
                            f"attempt {cur.number}: {verdict.message} (health says alert only)"),)
    poll = ENGINE_POLL if s.on_engine and not events else POLL
    requeue = poll
    if timeout is not None:
        requeue = max(0.0, min(poll, timeout - (s.now - started).total_seconds() + 0.01))
    check = next_check(s.spec.health, cur.progress, s.now, started) if verdict is None else None
    if check is not None:
        requeue = min(requeue, check)
    return JobDecision(state, reason, requeue_after=requeue, events=events, attempt_alerted=alerted)


def _health_reason(s: JobSnapshot, cause: StopCause) -> str:
    """Why a health stop ended the attempt, from its progress record (the same on every pass)."""
    p = (s.current.progress if s.current else None) or {}
    if cause == StopCause.STALLED:
        timeout = progress_timeout(s.spec.health, p)
        after = f"after step {p['step']}" if p.get("step") is not None else "since its last report" \
            if p.get("at") else "since it started"
        return f"stalled: no progress {after} for over {timeout or 0:.0f}s"
    bad = p.get("bad") if cause == StopCause.NAN else p.get("diverged")
    if not bad:
        return f"stopped by its health check ({cause})"
    where = f" at step {bad['step']}" if bad.get("step") is not None else ""
    if cause == StopCause.NAN:
        return f"{bad['metric']} is {bad['value']}{where}"
    return f"{bad['metric']} diverged to {bad['value']:.4g}{where} (best so far {bad['best']:.4g})"


def _finish_attempt(s: JobSnapshot, code: int | None, detail: str) -> JobDecision:
    cur = s.current
    assert cur is not None
    n = cur.number
    if cur.stop_cause == StopCause.CANCEL:
        msg = f"cancelled; attempt {n} stopped ({_describe_exit(code)})"
        return JobDecision(
            JobState.CANCELLED, msg, attempt_state=AttemptState.CANCELLED, attempt_exit_code=code,
            attempt_reason="cancelled", events=(("Normal", "Cancelled", msg),),
        )
    if code == 0 and cur.stop_cause is None:
        msg = f"attempt {n} succeeded"
        return JobDecision(
            JobState.SUCCEEDED, msg, attempt_state=AttemptState.SUCCEEDED, attempt_exit_code=0,
            attempt_reason="exit code 0", events=(("Normal", "Succeeded", msg),),
        )
    lost = s.observed.node_lost if s.observed is not None else None
    preempted = s.observed.node_preempted if s.observed is not None else None
    events: tuple[tuple[str, str, str], ...] = ()
    if cur.stop_cause in (StopCause.NAN, StopCause.DIVERGED) and s.spec.health.on_nan == "fail":
        why = _health_reason(s, cur.stop_cause)
        msg = f"failed: {why} (health.on_nan: fail, so not retried)"
        return JobDecision(
            JobState.FAILED, msg, attempt_state=AttemptState.FAILED, attempt_exit_code=code, attempt_reason=why,
            events=(("Warning", "Failed", msg),),
        )
    if cur.stop_cause == StopCause.TIMEOUT:
        why = f"timed out after {s.spec.timeout:g}s"
    elif cur.stop_cause in (StopCause.STALLED, StopCause.NAN, StopCause.DIVERGED):
        why = _health_reason(s, cur.stop_cause)
    elif lost and preempted:
        why = f"NodePreempted: node {lost} was preempted ({preempted})" + (f": {detail}" if detail else "")
        msg = f"attempt {n} ended: {why}; retrying now (preemptions do not count against max_retries)"
        return JobDecision(
            JobState.PENDING, msg, attempt_state=AttemptState.FAILED, attempt_exit_code=code, attempt_reason=why,
            requeue_after=0.0, events=(("Warning", "NodePreempted", f"attempt {n}: {why}"),),
        )
    elif lost:
        why = detail or f"node {lost} was lost"
        if lost not in why:
            why = f"node {lost} was lost: {why}"
        why = f"NodeLost: {why}"
        events = (("Warning", "NodeLost", f"attempt {n}: {why}"),)
    elif detail and code is None:
        why = detail
    else:
        why = _describe_exit(code) + (f": {detail}" if detail else "")
    retries_used = n - 1 - s.preemptions
    if retries_used < s.spec.max_retries:
        b = s.spec.backoff
        delay = backoff_delay(retries_used + 1, initial=b.initial, factor=b.factor, maximum=b.max)
        msg = f"attempt {n} failed ({why}); retry {retries_used + 1} of {s.spec.max_retries} in {delay:g}s"
        return JobDecision(
            JobState.PENDING, msg, attempt_state=AttemptState.FAILED, attempt_exit_code=code, attempt_reason=why,
            next_attempt_at=s.now + timedelta(seconds=delay), requeue_after=delay,
            events=events + (("Warning", "AttemptFailed", msg),),
        )
    tries = f"{n} attempts" if n > 1 else "1 attempt"
    if s.preemptions:
        tries += f" ({s.preemptions} preempted)"
    msg = f"failed after {tries}: {why}"
    return JobDecision(
        JobState.FAILED, msg, attempt_state=AttemptState.FAILED, attempt_exit_code=code, attempt_reason=why,
        events=events + (("Warning", "Failed", msg),),
    )
