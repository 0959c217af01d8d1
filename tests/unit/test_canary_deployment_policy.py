"""The deployment policy during a canary rollout: which replicas run beside which (no clock, no processes)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from cumulo.core.specs import parse_spec
from cumulo.core.states import DeploymentState, ProcessPhase, ReplicaState
from cumulo.policy.capacity import Capacity
from cumulo.policy.deployments import Canary, DeploymentSnapshot, ReplicaSnapshot, decide_deployment

T0 = datetime(2026, 1, 1, tzinfo=UTC)
NODE = Capacity(cpu=16, memory=64 * 2**30)
READY, STARTING, DRAINING = ReplicaState.READY, ReplicaState.STARTING, ReplicaState.DRAINING


def spec(replicas=4):
    return parse_spec({"kind": "Deployment", "name": "d", "command": "serve", "workdir": "/tmp", "replicas": replicas,
                       "resources": {"cpu": 1, "memory": "1Gi"}, "rollout": {"strategy": "canary"}})


def rep(i, gen, state=READY, phase=ProcessPhase.RUNNING, **kw):
    return ReplicaSnapshot(id=str(i), generation=gen, state=state, created_at=T0 + timedelta(seconds=i), phase=phase, **kw)


def snap(replicas, canary, replicas_wanted=4, **kw):
    return DeploymentSnapshot(now=T0 + timedelta(minutes=1), spec=spec(replicas_wanted), generation=2,
                              replicas=tuple(replicas), capacity=NODE, canary=canary, **kw)


STABLE = [rep(i, 1) for i in range(1, 5)]


def test_the_canary_starts_beside_every_stable_replica():
    d = decide_deployment(snap(STABLE, Canary(1, 1)))
    assert len(d.start) == 1 and not d.start_stable and not d.stop
    assert d.state == DeploymentState.PROGRESSING and "canary: 0/1 new ready, 4/4 stable (version 1) ready" in d.reason


def test_a_step_up_adds_canary_replicas_and_keeps_the_stable_ones():
    d = decide_deployment(snap([*STABLE, rep(5, 2)], Canary(1, 2)))
    assert len(d.start) == 1 and not d.stop


def test_a_stable_replica_that_dies_is_replaced_with_the_stable_generation():
    crashed = rep(2, 1, phase=ProcessPhase.EXITED, exit_code=1)
    d = decide_deployment(snap([STABLE[0], crashed, *STABLE[2:], rep(5, 2)], Canary(1, 1),
                               next_start_at=None))
    assert [c.state for c in d.changes] == [ReplicaState.FAILED]
    assert not d.start and not d.start_stable and "restarting in" in d.reason  # after the backoff
    later = decide_deployment(snap([STABLE[0], *STABLE[2:], rep(5, 2)], Canary(1, 1)))
    assert len(later.start_stable) == 1 and not later.start


def test_a_rollback_drains_every_canary_replica_and_keeps_the_stable_ones():
    d = decide_deployment(snap([*STABLE, rep(5, 2), rep(6, 2, STARTING)], Canary(1, 0, rolled_back=True)))
    assert sorted(d.stop) == ["5", "6"] and not d.start and not d.start_stable
    assert {c.reason for c in d.changes} == {"rolled back"}


def test_replicas_of_any_other_generation_are_drained():
    d = decide_deployment(snap([*STABLE, rep(5, 2), rep(7, 0)], Canary(1, 1)))
    assert d.stop == ("7",)


def test_without_a_canary_the_rolling_update_is_unchanged():
    d = decide_deployment(snap([*STABLE, rep(5, 2)], None))
    assert d.stop == ("1",) and len(d.start) == 1  # the oldest old drains, one more new starts (surge 1)


def test_a_stable_replica_is_placed_with_the_stable_versions_resources():
    from cumulo.core.specs import Resources

    small = Resources(cpu=0.5, memory=2**28)
    d = decide_deployment(snap(STABLE[:3] + [rep(5, 2)], Canary(1, 1, stable_resources=small)))
    assert [(a.cpu, a.memory) for a in d.start_stable] == [(0.5, 2**28)]
