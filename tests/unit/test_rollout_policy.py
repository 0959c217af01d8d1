"""The canary rollout policy (policy/rollout.py): state and counters in, decision out; no clock."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cumulo.core.specs import Rollout
from cumulo.policy.rollout import (
    PROGRESSING, ROLLED_BACK, SUCCEEDED, Counts, RolloutInput, RolloutState, canary_replicas, decide_rollout, quantile,
    start_rollout,
)

T0 = datetime(2026, 1, 1, tzinfo=UTC)
BOUNDS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)  # seconds; +Inf after
FAST = 1  # bucket index of a 5-10 ms answer
SLOW = 8  # bucket index of a 1-2.5 s answer
CFG = Rollout(strategy="canary", steps=[10, 50, 100], interval=30,
              analysis={"max_error_rate": 0.01, "max_p99_ms": 500, "min_requests": 50})


def counts(requests: int, errors: int = 0, slow: int = 0) -> Counts:
    b = [0] * (len(BOUNDS) + 1)
    b[FAST] = requests - slow
    b[SLOW] = slow
    return Counts(requests, errors, tuple(b))


def window(step: int = 0, start: datetime = T0, base=None) -> RolloutState:
    return RolloutState(1, 2, PROGRESSING, step, started_at=T0, window_start=start,
                        baseline=base if base is not None else {1: counts(0), 2: counts(0)})


def decide(state, stable=counts(0), canary=counts(0), *, at: float = 0.0, ready: int = 1, cfg=CFG, **kw):
    return decide_rollout(RolloutInput(now=T0 + timedelta(seconds=at), config=cfg, state=state,
                                       counters={1: stable, 2: canary}, canary_ready=ready, bounds=BOUNDS, **kw))


# -- table: one row per situation ------------------------------------------------------------------
CASES = [
    # (what, state, stable, canary, seconds into the window, canary ready, action, step after, in the reason)
    ("no canary replica ready yet", window(start=None), counts(900), counts(0), 5, 0, "wait", 0,
     "waiting for a replica of version 2"),
    ("the first ready canary starts the window", window(start=None, base={}), counts(900), counts(0), 5, 1, "wait", 0,
     "measuring both versions from now"),
    ("too few canary requests to judge", window(), counts(900), counts(49, errors=49), 60, 1, "wait", 0,
     "49/50 requests"),
    ("passing but the interval has not elapsed", window(), counts(900), counts(100), 10, 1, "wait", 0,
     "promoting in 20s"),
    ("passing for the whole interval: next step", window(), counts(900), counts(100), 30, 1, "promote", 1,
     "analysis passed"),
    ("the last step before 100 passes: finished", window(step=1), counts(500), counts(500), 30, 1, "finish", 2,
     "takes all the traffic"),
    ("errors over the threshold roll back at once", window(), counts(900), counts(100, errors=20), 5, 1, "rollback", 0,
     "error rate 20.00% > 1.00%"),
    ("exactly at the threshold passes", window(), counts(900), counts(100, errors=1), 30, 1, "promote", 1, "passed"),
    ("a slow canary rolls back", window(), counts(900), counts(100, slow=5), 5, 1, "rollback", 0, "p99"),
    ("both versions as bad: the canary is not to blame", window(), counts(900, errors=90), counts(100, errors=10), 30, 1,
     "wait", 0, "holding"),
    ("both bad, the canary worse: rolled back", window(), counts(900, errors=18), counts(100, errors=10), 30, 1,
     "rollback", 0, "error rate"),
    ("both slow alike: holding", window(), counts(900, slow=90), counts(100, slow=10), 30, 1, "wait", 0, "holding"),
]


@pytest.mark.parametrize(("what", "state", "stable", "canary", "at", "ready", "action", "step", "why"), CASES,
                         ids=[c[0] for c in CASES])
def test_decisions(what, state, stable, canary, at, ready, action, step, why):
    d = decide(state, stable, canary, at=at, ready=ready)
    assert d.action == action, d.reason
    assert d.state.step == step
    assert why in d.reason
    if action == "rollback":
        assert d.state.phase == ROLLED_BACK and d.state.weight(CFG.steps) == 0
        assert d.events and d.events[0][:2] == ("Warning", "RolloutRolledBack") and why in d.events[0][2]
    if action == "finish":
        assert d.state.phase == SUCCEEDED and d.state.weight(CFG.steps) == 100
        assert [e[1] for e in d.events] == ["RolloutSucceeded"]
    if action == "promote":
        assert [e[1] for e in d.events] == ["RolloutPromoted"] and d.state.weight(CFG.steps) == 50
        assert d.state.window_start == T0 + timedelta(seconds=at)  # the next step's window starts now


def test_the_evidence_has_both_versions_over_the_same_window_and_the_thresholds():
    base = {1: counts(1000, errors=3), 2: counts(40, errors=1)}
    d = decide(window(base=base), counts(1900, errors=3), counts(140, errors=21), at=12)
    assert d.action == "rollback"
    ev = d.evidence.to_dict()
    assert ev["canary"] == {"generation": 2, "requests": 100, "errors": 20, "error_rate": 0.2, "p99_ms": ev["canary"]["p99_ms"]}
    assert ev["stable"]["requests"] == 900 and ev["stable"]["errors"] == 0 and ev["stable"]["error_rate"] == 0.0
    assert ev["window_seconds"] == 12 and ev["max_error_rate"] == 0.01 and ev["max_p99_ms"] == 500
    assert ev["min_requests"] == 50
    msg = d.events[0][2]
    assert "version 2: 20/100 failed (20.00%)" in msg and "version 1 (stable): 0/900 failed (0.00%)" in msg
    assert d.state.evidence == d.evidence


def test_a_counter_that_went_backwards_restarts_the_window():
    d = decide(window(base={1: counts(5000), 2: counts(500)}), counts(30), counts(3), at=40)
    assert d.action == "wait" and "restarted" in d.reason
    assert d.state.window_start == T0 + timedelta(seconds=40) and d.state.baseline[2] == counts(3)


def test_commands_promote_and_abort_whatever_the_numbers():
    d = decide(window(), counts(10), counts(1), at=1, command="promote", actor="alice")
    assert d.action == "promote" and d.state.step == 1 and "promoted by alice" in d.reason
    d = decide(window(step=1), counts(10), counts(1), at=1, command="promote")
    assert d.action == "finish"
    d = decide(window(), counts(900), counts(100), at=1, command="abort", actor="bob")
    assert d.action == "rollback" and "aborted by bob" in d.reason and d.events[0][1] == "RolloutAborted"


def test_a_canary_that_keeps_failing_to_start_is_rolled_back():
    d = decide(window(start=None), ready=0, canary_failing="exit code 1: ImportError: no module named torch")
    assert d.action == "rollback" and "keeps failing to start" in d.reason and "ImportError" in d.reason


def test_finished_and_rolled_back_rollouts_are_final():
    for phase in (SUCCEEDED, ROLLED_BACK):
        st_ = RolloutState(1, 2, phase, 1)
        d = decide(st_, counts(10), counts(100, errors=100), at=999, command="promote")
        assert d.action == "wait" and d.state == st_ and not d.events


def test_a_promotion_before_the_canary_serves_waits_for_it_to_start_the_window():
    d = decide(window(), counts(900), counts(100), at=30, ready=0, command="promote")
    assert d.action == "promote" and d.state.window_start is None


def test_state_round_trips_through_json():
    d = decide(window(), counts(900), counts(100, errors=20), at=5)
    for s in (d.state, start_rollout(3, 4, T0, [25, 100]), window()):
        assert RolloutState.from_dict(s.to_dict()) == s


def test_quantile_and_canary_replicas():
    assert quantile(BOUNDS, (0,) * 10, 0.99) is None
    assert quantile((1.0, 2.0), (0, 10, 0), 0.5) == 1.5
    assert quantile((1.0, 2.0), (0, 0, 5), 0.99) == 2.0  # beyond the last bound: that bound
    assert [canary_replicas(4, w) for w in (1, 10, 25, 50, 100)] == [1, 1, 1, 2, 4]
    assert canary_replicas(0, 50) == 1


@pytest.mark.parametrize(("rollout", "message"), [
    ({"strategy": "canary", "steps": [50, 10, 100]}, "steps must increase"),
    ({"strategy": "canary", "steps": [10, 50]}, "the last step must be 100"),
    ({"strategy": "canary", "steps": [0, 100]}, "1..100"),
    ({"strategy": "canary", "steps": [10, 120]}, "1..100"),
    ({"strategy": "canary", "steps": []}, "at least 1"),
    ({"strategy": "canary", "interval": 0}, "greater than 0"),
    ({"strategy": "canary", "interval": "soon"}, "not a duration"),
    ({"strategy": "canary", "analysis": {"max_error_rate": 2}}, "less than or equal to 1"),
    ({"strategy": "canary", "analysis": {"min_requests": 0}}, "greater than or equal to 1"),
    ({"strategy": "canary", "analysis": {"max_p99": 5}}, "unknown field"),
    ({"strategy": "blue-green"}, "'rolling' or 'canary'"),
    ({"steps": [10, 100]}, "only apply to strategy: canary"),
])
def test_bad_rollout_specs_name_the_field(rollout, message):
    from cumulo.core.errors import InvalidSpec
    from cumulo.core.specs import parse_spec

    with pytest.raises(InvalidSpec) as e:
        parse_spec({"kind": "Deployment", "name": "d", "command": "x", "rollout": rollout})
    assert message in str(e.value) and "rollout" in str(e.value)


@pytest.mark.parametrize("rollout", [None, {"strategy": "rolling"}, {"strategy": "canary"},
                                     {"strategy": "canary", "steps": [5, 100], "interval": "1m"}])
def test_a_stored_spec_validates_again(rollout):
    """The store keeps `model_dump()` (defaults included); the reconciler validates it again."""
    from cumulo.core.specs import DeploymentSpec, parse_spec

    spec = parse_spec({"kind": "Deployment", "name": "d", "command": "x", **({"rollout": rollout} if rollout else {})})
    assert DeploymentSpec.model_validate(spec.model_dump(mode="json")) == spec


def test_rolling_stays_the_default_and_canary_defaults_are_the_documented_ones():
    from cumulo.core.specs import parse_spec

    assert parse_spec({"kind": "Deployment", "name": "d", "command": "x"}).rollout.strategy == "rolling"
    r = parse_spec({"kind": "Deployment", "name": "d", "command": "x", "rollout": {"strategy": "canary"}}).rollout
    assert (r.steps, r.interval, r.analysis.max_error_rate, r.analysis.max_p99_ms) == ([10, 50, 100], 30.0, 0.01, 500.0)
    assert parse_spec({"kind": "Deployment", "name": "d", "command": "x",
                       "rollout": {"strategy": "canary", "interval": "500ms", "steps": [100]}}).rollout.interval == 0.5


# -- properties -------------------------------------------------------------------------------------
steps_st = st.lists(st.integers(1, 99), max_size=5, unique=True).map(lambda xs: sorted(xs) + [100])


@st.composite
def situations(draw):
    steps = draw(steps_st)
    cfg = Rollout(strategy="canary", steps=steps, interval=draw(st.floats(0.5, 120)),
                  analysis={"max_error_rate": draw(st.floats(0, 1)), "max_p99_ms": draw(st.sampled_from([None, 50.0, 500.0])),
                            "min_requests": draw(st.integers(1, 200))})
    step = draw(st.integers(0, len(steps) - 1))
    started = draw(st.booleans())
    base = {g: counts(draw(st.integers(0, 1000)), 0) for g in (1, 2)} if started else {}
    state = RolloutState(1, 2, draw(st.sampled_from([PROGRESSING, PROGRESSING, SUCCEEDED, ROLLED_BACK])), step,
                         started_at=T0, window_start=T0 if started else None, baseline=base)
    grown = {}
    for g in (1, 2):
        n = draw(st.integers(0, 2000))
        e = draw(st.integers(0, n))
        s_ = draw(st.integers(0, n))
        c = counts(n, e, s_)
        b = base.get(g, Counts())
        grown[g] = Counts(c.requests + b.requests, c.errors + b.errors,
                          tuple(x + y for x, y in zip(c.buckets, b.buckets or (0,) * len(c.buckets), strict=True)))
    return cfg, state, grown, draw(st.floats(0, 600)), draw(st.integers(0, 3))


@settings(max_examples=400, deadline=None)
@given(situations())
def test_properties(situation):
    cfg, state, counters, at, ready = situation
    d = decide_rollout(RolloutInput(now=T0 + timedelta(seconds=at), config=cfg, state=state, counters=counters,
                                    canary_ready=ready, bounds=BOUNDS))
    if not state.active:  # final phases never move
        assert d.state == state and d.action == "wait"
        return
    # the step only moves forward, by one, and the weight is one of the steps (or 0 / 100 when done)
    assert d.state.step in (state.step, state.step + 1, len(cfg.steps) - 1)
    assert d.state.weight(cfg.steps) in {*cfg.steps, 0, 100}
    ev = d.evidence
    if d.action in ("promote", "finish"):
        # promoted only with enough requests, within the thresholds, after the whole interval
        assert ev is not None and ev.canary.requests >= cfg.analysis.min_requests
        assert ev.window_seconds >= cfg.interval
        assert ev.canary.error_rate is not None and ev.canary.error_rate <= cfg.analysis.max_error_rate
        assert cfg.analysis.max_p99_ms is None or ev.canary.p99_ms is None or ev.canary.p99_ms <= cfg.analysis.max_p99_ms
    if d.action == "rollback":  # only on evidence of a failure, and the evidence says so
        assert ev is not None and ev.canary.requests >= cfg.analysis.min_requests
        assert (ev.canary.error_rate > cfg.analysis.max_error_rate
                or (cfg.analysis.max_p99_ms is not None and ev.canary.p99_ms > cfg.analysis.max_p99_ms))
        assert d.state.phase == ROLLED_BACK and d.events[0][1] == "RolloutRolledBack"
    if ready == 0:
        assert d.action == "wait" and d.state.window_start is None
    # deciding again on the same inputs from the new state never skips a step (no flapping)
    again = decide_rollout(RolloutInput(now=T0 + timedelta(seconds=at), config=cfg, state=d.state, counters=counters,
                                        canary_ready=ready, bounds=BOUNDS))
    if d.action == "promote":
        assert again.action == "wait"  # the new window has no requests yet
