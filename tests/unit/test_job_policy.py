"""The job state machine, decision by decision (no clock, no processes)."""

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cumulo.core.specs import parse_spec
from cumulo.core.states import AttemptState, JobState
from cumulo.policy.capacity import Allocation, Capacity
from cumulo.policy.jobs import (
    BOOT_TIMEOUT,
    STOP_GRACE,
    Act,
    AttemptSnapshot,
    JobSnapshot,
    Observed,
    Phase,
    StopCause,
    decide_job,
)

T0 = datetime(2026, 1, 1, tzinfo=UTC)
GiB = 2**30
NODE = Capacity(cpu=2, memory=8 * GiB)


def spec(**kw):
    return parse_spec({"kind": "Job", "name": "j", "command": "true", **kw})


def running(number=1, *, started=T0, stop=None, stop_at=None, state=AttemptState.RUNNING):
    return AttemptSnapshot(number=number, state=state, created_at=started, started_at=started,
                           stop_cause=stop, stop_requested_at=stop_at)


def snap(**kw):
    base = dict(now=T0, spec=spec(), state=JobState.PENDING, attempts=0, capacity=NODE)
    base.update(kw)
    return JobSnapshot(**base)


def test_pending_job_that_fits_starts_attempt_1():
    d = decide_job(snap())
    assert d.act == Act.START and d.state == JobState.STARTING
    assert d.allocation == Allocation(cpu=1, memory=512 * 2**20, worker_gpus=((),))
    assert [e[1] for e in d.events] == ["Starting"]


def test_pending_job_waits_for_resources_with_the_reason():
    d = decide_job(snap(used=(Allocation(cpu=1.5, memory=GiB),)))
    assert d.act == Act.NONE and d.state == JobState.PENDING
    assert d.reason == "waiting for resources: needs 1 CPU (0.5 free)"


def test_pending_job_waits_for_backoff():
    d = decide_job(snap(attempts=1, next_attempt_at=T0 + timedelta(seconds=4)))
    assert d.act == Act.NONE and d.reason == "retrying in 4s" and d.requeue_after == 4


def test_backoff_elapsed_starts_next_attempt():
    d = decide_job(snap(attempts=1, next_attempt_at=T0 - timedelta(seconds=1)))
    assert d.act == Act.START and d.reason == "starting attempt 2"


def test_cancel_before_start():
    d = decide_job(snap(cancel_requested=True))
    assert d.state == JobState.CANCELLED and d.act == Act.NONE


def test_first_running_observation_moves_starting_to_running():
    d = decide_job(snap(state=JobState.STARTING, attempts=1, current=running(), observed=Observed(Phase.RUNNING)))
    assert d.state == JobState.RUNNING and [e[1] for e in d.events] == ["Running"]


def test_exit_zero_succeeds():
    d = decide_job(snap(state=JobState.RUNNING, attempts=1, current=running(), observed=Observed(Phase.EXITED, 0)))
    assert d.state == JobState.SUCCEEDED and d.attempt_state == AttemptState.SUCCEEDED and d.attempt_exit_code == 0


def test_failure_with_retries_left_goes_back_to_pending_with_backoff():
    s = spec(max_retries=2, backoff={"initial": 3})
    d = decide_job(snap(spec=s, state=JobState.RUNNING, attempts=2, current=running(2), observed=Observed(Phase.EXITED, 7)))
    assert d.state == JobState.PENDING and d.attempt_state == AttemptState.FAILED and d.attempt_exit_code == 7
    assert d.next_attempt_at == T0 + timedelta(seconds=6)  # retry 2: 3 * 2**1
    assert d.reason == "attempt 2 failed (exit code 7); retry 2 of 2 in 6s"


def test_failure_without_retries_left_fails_with_exit_code():
    s = spec(max_retries=2)
    d = decide_job(snap(spec=s, state=JobState.RUNNING, attempts=3, current=running(3), observed=Observed(Phase.EXITED, 7)))
    assert d.state == JobState.FAILED and d.attempt_exit_code == 7
    assert d.reason == "failed after 3 attempts: exit code 7"


def test_signal_exit_is_described():
    d = decide_job(snap(state=JobState.RUNNING, attempts=1, current=running(), observed=Observed(Phase.EXITED, 137)))
    assert d.reason == "failed after 1 attempt: exit code 137 (signal 9)"


def test_cancel_while_running_stops_then_ends_cancelled():
    d = decide_job(snap(state=JobState.RUNNING, attempts=1, cancel_requested=True, current=running(),
                        observed=Observed(Phase.RUNNING)))
    assert d.act == Act.STOP and d.stop_cause == StopCause.CANCEL
    d = decide_job(snap(state=JobState.RUNNING, attempts=1, cancel_requested=True,
                        current=running(stop=StopCause.CANCEL, stop_at=T0), observed=Observed(Phase.RUNNING)))
    assert d.act == Act.NONE  # asked once; waiting for the grace period
    d = decide_job(snap(state=JobState.RUNNING, attempts=1, cancel_requested=True,
                        current=running(stop=StopCause.CANCEL, stop_at=T0), observed=Observed(Phase.EXITED, 143)))
    assert d.state == JobState.CANCELLED and d.attempt_state == AttemptState.CANCELLED


def test_stop_that_outlasts_the_grace_is_killed():
    late = T0 + STOP_GRACE + timedelta(seconds=6)
    d = decide_job(snap(now=late, state=JobState.RUNNING, attempts=1, cancel_requested=True,
                        current=running(stop=StopCause.CANCEL, stop_at=T0), observed=Observed(Phase.RUNNING)))
    assert d.act == Act.KILL


def test_timeout_stops_and_counts_as_a_failure():
    s = spec(timeout=60, max_retries=1)
    now = T0 + timedelta(seconds=61)
    d = decide_job(snap(now=now, spec=s, state=JobState.RUNNING, attempts=1, current=running(),
                        observed=Observed(Phase.RUNNING)))
    assert d.act == Act.STOP and d.stop_cause == StopCause.TIMEOUT and d.events[0][1] == "TimedOut"
    d = decide_job(snap(now=now, spec=s, state=JobState.RUNNING, attempts=1,
                        current=running(stop=StopCause.TIMEOUT, stop_at=now), observed=Observed(Phase.EXITED, 143)))
    assert d.state == JobState.PENDING and d.attempt_reason == "timed out after 60s"


def test_not_yet_timed_out_requeues_at_the_deadline():
    s = spec(timeout=10)
    d = decide_job(snap(now=T0 + timedelta(seconds=9.5), spec=s, state=JobState.RUNNING, attempts=1,
                        current=running(), observed=Observed(Phase.RUNNING)))
    assert d.act == Act.NONE and 0 < d.requeue_after <= 0.52


def test_launch_that_never_boots_is_abandoned_then_retried_as_lost():
    booting = AttemptSnapshot(number=1, state=AttemptState.STARTING, created_at=T0)
    d = decide_job(snap(now=T0 + timedelta(seconds=1), state=JobState.STARTING, attempts=1, current=booting,
                        observed=Observed(Phase.BOOTING)))
    assert d.act == Act.NONE and d.state == JobState.STARTING
    d = decide_job(snap(now=T0 + BOOT_TIMEOUT + timedelta(seconds=1), state=JobState.STARTING, attempts=1,
                        current=booting, observed=Observed(Phase.BOOTING)))
    assert d.act == Act.ABANDON
    d = decide_job(snap(spec=spec(max_retries=1), state=JobState.STARTING, attempts=1, current=booting,
                        observed=Observed(Phase.LOST, detail="never came up")))
    assert d.state == JobState.PENDING and d.attempt_state == AttemptState.FAILED and "never came up" in d.reason


def test_terminal_job_is_left_alone():
    for state in (JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED):
        assert decide_job(snap(state=state)).act == Act.NONE


@given(
    exit_code=st.integers(0, 255),
    attempts=st.integers(1, 5),
    max_retries=st.integers(0, 5),
)
def test_an_exited_attempt_always_ends_or_retries_within_the_budget(exit_code, attempts, max_retries):
    s = spec(max_retries=max_retries)
    d = decide_job(snap(spec=s, state=JobState.RUNNING, attempts=attempts, current=running(attempts),
                        observed=Observed(Phase.EXITED, exit_code)))
    assert d.attempt_state is not None
    if exit_code == 0:
        assert d.state == JobState.SUCCEEDED
    elif attempts <= max_retries:
        assert d.state == JobState.PENDING and d.next_attempt_at is not None and d.next_attempt_at >= T0
    else:
        assert d.state == JobState.FAILED and d.attempt_exit_code == exit_code


@pytest.mark.parametrize("workers, gpu", [(1, 0), (2, 0), (2, 1)])
def test_start_reports_workers_and_gpus(workers, gpu):
    node = Capacity(cpu=8, memory=64 * GiB, gpus=(0, 1))
    d = decide_job(snap(spec=spec(workers=workers, resources={"gpu": gpu}), capacity=node))
    assert d.act == Act.START
    assert len(d.allocation.worker_gpus) == workers
    assert len(d.allocation.gpus) == workers * gpu


def test_on_an_engine_a_launch_gets_longer_to_come_up_and_a_steady_attempt_is_looked_at_less_often():
    from cumulo.policy.jobs import ENGINE_BOOT_TIMEOUT, ENGINE_POLL, POLL

    booting = AttemptSnapshot(number=1, state=AttemptState.STARTING, created_at=T0)
    late = T0 + BOOT_TIMEOUT + timedelta(seconds=1)
    on_engine = dict(state=JobState.STARTING, attempts=1, current=booting, observed=Observed(Phase.BOOTING),
                     on_engine=True)
    assert decide_job(snap(now=late, **on_engine)).act == Act.NONE  # a loaded engine's driver is still starting
    assert decide_job(snap(now=T0 + ENGINE_BOOT_TIMEOUT + timedelta(seconds=1), **on_engine)).act == Act.ABANDON
    queued = decide_job(snap(now=T0 + timedelta(hours=1), **{**on_engine, "observed": Observed(Phase.QUEUED, detail="Resources")}))
    assert queued.act == Act.NONE and "Resources" in queued.reason  # queued by the engine: no boot timeout
    running = AttemptSnapshot(number=1, state=AttemptState.RUNNING, created_at=T0, started_at=T0)
    steady = dict(state=JobState.RUNNING, attempts=1, current=running, observed=Observed(Phase.RUNNING))
    assert decide_job(snap(now=T0 + timedelta(seconds=30), **steady)).requeue_after == POLL
    assert decide_job(snap(now=T0 + timedelta(seconds=30), on_engine=True, **steady)).requeue_after == ENGINE_POLL
    # a timeout still bounds the wait
    timed = snap(now=T0 + timedelta(seconds=30), on_engine=True, spec=spec(timeout=31), **steady)
    assert decide_job(timed).requeue_after == pytest.approx(1.01)


# -- node loss: a preempted spot node does not use up a retry; a dead node does ------------------

def lost(number, preempted=None, **kw):
    return snap(spec=spec(max_retries=1, backoff={"initial": 3}), state=JobState.RUNNING, attempts=number,
                current=running(number), observed=Observed(Phase.LOST, None, "rank 0 gone", node_lost="127.0.0.12",
                                                           node_preempted=preempted), **kw)


def test_an_attempt_on_a_dead_node_ends_nodelost_and_counts_as_a_try():
    d = decide_job(lost(1))
    assert d.state == JobState.PENDING and d.attempt_state == AttemptState.FAILED
    assert d.attempt_reason == "NodeLost: node 127.0.0.12 was lost: rank 0 gone"
    assert [e[1] for e in d.events] == ["NodeLost", "AttemptFailed"] and d.next_attempt_at == T0 + timedelta(seconds=3)
    d = decide_job(lost(2))  # max_retries=1 used up
    assert d.state == JobState.FAILED and d.reason == "failed after 2 attempts: NodeLost: node 127.0.0.12 was lost: rank 0 gone"


def test_an_attempt_on_a_preempted_node_ends_nodepreempted_and_is_retried_at_once_without_using_a_retry():
    why = "spot machine lvm-1 (lvm.c4 in local-1a) was taken back"
    d = decide_job(lost(1, preempted=why))
    assert d.state == JobState.PENDING and d.attempt_state == AttemptState.FAILED
    assert d.attempt_reason == f"NodePreempted: node 127.0.0.12 was preempted ({why}): rank 0 gone"
    assert [e[1] for e in d.events] == ["NodePreempted"] and d.next_attempt_at is None and d.requeue_after == 0
    assert "do not count against max_retries" in d.reason
    # preempted again and again: never runs out of retries
    assert decide_job(lost(5, preempted=why, preemptions=4)).state == JobState.PENDING
    # after 3 preemptions, a real failure still has its one retry (attempt 4 is try 1 of 2) ...
    d = decide_job(lost(4, preemptions=3))
    assert d.state == JobState.PENDING and d.reason.endswith("retry 1 of 1 in 3s")
    # ... and the next one is the last
    d = decide_job(lost(5, preemptions=3))
    assert d.state == JobState.FAILED and d.reason.startswith("failed after 5 attempts (3 preempted): NodeLost")
