"""The deployment state machine: rollout, repair, scaling, deletion (no clock, no processes)."""

from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from cumulo.core.specs import parse_spec
from cumulo.core.states import DeploymentState, ProcessPhase, ReplicaState
from cumulo.policy.capacity import Capacity
from cumulo.policy.deployments import (
    STOP_GRACE,
    DeploymentSnapshot,
    ReplicaSnapshot,
    decide_deployment,
)

T0 = datetime(2026, 1, 1, tzinfo=UTC)
NODE = Capacity(cpu=16, memory=64 * 2**30)
READY, STARTING, DRAINING = ReplicaState.READY, ReplicaState.STARTING, ReplicaState.DRAINING
RUNNING, EXITED = ProcessPhase.RUNNING, ProcessPhase.EXITED


def spec(**kw):
    return parse_spec({"kind": "Deployment", "name": "d", "command": "serve", "workdir": "/tmp",
                       "resources": {"cpu": 1, "memory": "1Gi"}, **kw})


def rep(i, state=READY, gen=1, phase=RUNNING, **kw):
    return ReplicaSnapshot(id=str(i), generation=gen, state=state, created_at=T0 + timedelta(seconds=i), phase=phase, **kw)


def snap(replicas=(), **kw):
    base = dict(now=T0 + timedelta(minutes=1), spec=spec(replicas=2), generation=1, replicas=tuple(replicas), capacity=NODE)
    base.update(kw)
    return DeploymentSnapshot(**base)


def test_new_deployment_starts_every_replica():
    d = decide_deployment(snap())
    assert len(d.start) == 2 and d.state == DeploymentState.PROGRESSING and d.reason == "0/2 ready; starting replicas"


def test_all_ready_is_available_and_does_nothing():
    d = decide_deployment(snap([rep(1), rep(2)]))
    assert d.state == DeploymentState.AVAILABLE and not d.start and not d.stop and d.reason == "2/2 ready"


def test_a_passing_check_makes_a_starting_replica_ready():
    d = decide_deployment(snap([rep(1), rep(2, STARTING, probe_ok=True)]))
    assert [(c.id, c.state) for c in d.changes] == [("2", READY)]
    assert d.state == DeploymentState.AVAILABLE and d.events[0][1] == "ReplicaReady"


def test_a_crashed_replica_is_marked_failed_and_replaced_after_backoff():
    crashed = rep(2, phase=EXITED, exit_code=1, detail="ValueError: bad weights")
    d = decide_deployment(snap([rep(1), crashed]))
    assert [(c.id, c.state) for c in d.changes] == [("2", ReplicaState.FAILED)]
    assert d.failures == 1 and not d.start and "restarting in 1s" in d.reason
    assert d.last_failure == "exit code 1: ValueError: bad weights"
    later = decide_deployment(snap([rep(1)], now=d.next_start_at, failures=1, next_start_at=d.next_start_at))
    assert len(later.start) == 1


def test_repeated_failures_back_off_exponentially_and_show_a_crash_loop():
    d = None
    failures, next_at = 0, None
    delays = []
    for _ in range(5):
        now = next_at or T0
        d = decide_deployment(snap([rep(9, STARTING, phase=EXITED, exit_code=1, detail="ImportError: no module x")],
                                   now=now, failures=failures, next_start_at=next_at))
        delays.append((d.next_start_at - now).total_seconds())
        failures, next_at = d.failures, d.next_start_at
    assert delays == [1, 2, 4, 8, 16]
    assert d.state == DeploymentState.CRASH_LOOP and "ImportError: no module x" in d.reason


def test_a_replica_that_becomes_ready_ends_the_crash_loop():
    d = decide_deployment(snap([rep(1, STARTING, probe_ok=True)], spec=spec(replicas=1), failures=4,
                               next_start_at=T0))
    assert d.failures == 0 and d.state == DeploymentState.AVAILABLE


def test_unhealthy_ready_replica_is_replaced_after_the_threshold():
    s = spec(replicas=2, health={"failure_threshold": 3})
    d = decide_deployment(snap([rep(1), rep(2, probe_ok=False, probe_failures=1)], spec=s))
    assert [(c.id, c.state, c.probe_failures) for c in d.changes] == [("2", READY, 2)] and not d.stop
    d = decide_deployment(snap([rep(1), rep(2, probe_ok=False, probe_failures=2)], spec=s))
    assert d.stop == ("2",) and "failed 3 health checks in a row" in d.last_failure


def test_a_replica_never_ready_is_replaced_after_the_startup_timeout():
    s = spec(replicas=1, health={"startup_timeout": 30})
    d = decide_deployment(snap([rep(1, STARTING, probe_ok=False)], spec=s, now=T0 + timedelta(seconds=40)))
    assert d.stop == ("1",) and d.last_failure == "not ready after 30s"


def test_rolling_update_surges_one_new_replica_before_draining_an_old_one():
    old = [rep(1), rep(2)]
    d = decide_deployment(snap(old, generation=2))
    assert len(d.start) == 1 and not d.stop and d.state == DeploymentState.PROGRESSING
    # the new one is up but not ready: nothing drains yet
    d = decide_deployment(snap([*old, rep(3, STARTING, gen=2)], generation=2))
    assert not d.start and not d.stop
    # it is ready: one old replica drains, and the next new one starts in the same pass
    d = decide_deployment(snap([*old, rep(3, STARTING, gen=2, probe_ok=True)], generation=2))
    assert d.stop == ("1",) and len(d.start) == 1
    # both new ready: the last old one drains, the rollout is done
    d = decide_deployment(snap([rep(2), rep(3, gen=2), rep(4, gen=2)], generation=2))
    assert d.stop == ("2",) and d.state == DeploymentState.AVAILABLE


def test_max_unavailable_lets_an_update_proceed_without_spare_capacity():
    s = spec(replicas=2, rollout={"max_surge": 0, "max_unavailable": 1})
    d = decide_deployment(snap([rep(1), rep(2)], spec=s, generation=2))
    assert d.stop == ("1",) and len(d.start) == 1  # one old drains, its new replacement starts: never 3 at once
    d = decide_deployment(snap([rep(2), rep(3, STARTING, gen=2)], spec=s, generation=2))
    assert not d.stop and not d.start  # the last old one stays until the new one is ready


def test_scale_down_stops_not_ready_replicas_first():
    d = decide_deployment(snap([rep(1), rep(2), rep(3, STARTING)], spec=spec(replicas=2)))
    assert d.stop == ("3",)


def test_draining_replica_is_killed_after_the_grace_and_stopped_once_gone():
    draining = rep(1, DRAINING, stop_requested_at=T0)
    d = decide_deployment(snap([draining], spec=spec(replicas=0), now=T0 + STOP_GRACE + timedelta(seconds=1)))
    assert d.kill == ("1",)
    d = decide_deployment(snap([rep(1, DRAINING, phase=EXITED, exit_code=0, stop_requested_at=T0)], spec=spec(replicas=0)))
    assert [(c.id, c.state) for c in d.changes] == [("1", ReplicaState.STOPPED)] and d.failures == 0


def test_delete_drains_everything_then_reports_deleted():
    d = decide_deployment(snap([rep(1), rep(2, STARTING)], deleting=True))
    assert set(d.stop) == {"1", "2"} and not d.deleted and d.state == DeploymentState.DELETING
    assert decide_deployment(snap([], deleting=True)).deleted


def test_waits_for_capacity_with_the_reason():
    d = decide_deployment(snap(capacity=Capacity(cpu=1, memory=64 * 2**30)))
    assert len(d.start) == 1 and "waiting for resources: needs 1 CPU (0 free)" in d.reason


replica_states = st.sampled_from([READY, STARTING])


@settings(max_examples=200)
@given(
    n_old=st.integers(0, 4), n_new=st.integers(0, 4), desired=st.integers(0, 4),
    surge=st.integers(0, 2), unavailable=st.integers(0, 2), states=st.lists(replica_states, min_size=8, max_size=8),
)
def test_rollout_never_exceeds_surge_nor_drops_below_min_available(n_old, n_new, desired, surge, unavailable, states):
    if surge == 0 and unavailable == 0:
        surge = 1
    s = spec(replicas=desired, rollout={"max_surge": surge, "max_unavailable": unavailable})
    reps = [rep(i, states[i], gen=1) for i in range(n_old)] + [rep(4 + i, states[4 + i], gen=2) for i in range(n_new)]
    d = decide_deployment(snap(reps, spec=s, generation=2))
    stopped = set(d.stop)
    remaining = [r for r in reps if r.id not in stopped]
    total_after = len(remaining) + len(d.start)
    assert total_after <= max(desired + surge, len(reps) - len(stopped))
    ready_before = sum(1 for r in reps if r.state == READY)
    ready_after = sum(1 for r in remaining if r.state == READY)
    assert ready_after >= min(ready_before, desired - unavailable)
