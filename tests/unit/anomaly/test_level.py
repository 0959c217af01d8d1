"""The level/seasonal detector: fires on faults, silent on normal data; hypothesis properties."""

from __future__ import annotations

import math
from dataclasses import fields

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cumulo.policy.anomaly import LevelParams, LevelState, Verdict, run_level, step_level

P = LevelParams()
WARM = 400
FAULT_AT = 1000


def normal(n: int, seed: int = 0, period: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = 100.0 + rng.normal(0.0, 2.0, n)
    if period:
        x += 20.0 * np.sin(2 * np.pi * np.arange(n) / period)
    return x


def spike(x):
    x = x.copy()
    x[FAULT_AT] += 60.0
    return x


def shift(x):
    x = x.copy()
    x[FAULT_AT:] += 25.0
    return x


def noisier(x):
    x = x.copy()
    x[FAULT_AT:] = 100.0 + (x[FAULT_AT:] - 100.0) * 20.0
    return x


def drop_to_zero(x):
    x = x.copy()
    x[FAULT_AT:] = 0.0
    return x


def run(params, x, dt=60.0):
    return run_level(params, LevelState(), [i * dt for i in range(len(x))], x)


@pytest.mark.parametrize("name,fault", [("spike", spike), ("level shift", shift), ("variance jump", noisier),
                                        ("throughput drops to zero", drop_to_zero)])
def test_fires_on_fault_soon_after_it_starts(name, fault):
    _, scores, fired = run(P, fault(normal(1500)))
    when = [i for i, f in enumerate(fired) if f]
    assert when, name
    assert FAULT_AT <= when[0] <= FAULT_AT + 10, (name, when[:3])


@pytest.mark.parametrize("seed", range(5))
def test_silent_on_normal_data(seed):
    _, _, fired = run(P, normal(5000, seed))
    assert not any(fired[WARM:])


def test_seasonal_residual_is_silent_on_the_daily_cycle_and_fires_off_it():
    daily = LevelParams(season_s=86400.0, season_bins=24)
    x = normal(24 * 60, seed=3, period=24)  # hourly points, 60 days, a strong daily cycle
    _, _, fired = run_level(daily, LevelState(), [i * 3600.0 for i in range(len(x))], x)
    assert not any(fired[24 * 14:])
    y = x.copy()
    y[24 * 40 + 6] = y[24 * 40 + 18]  # the daily low at the hour of the high: a usual value, not for this hour
    _, _, fired = run_level(daily, LevelState(), [i * 3600.0 for i in range(len(y))], y)
    assert any(fired[24 * 40 + 6: 24 * 40 + 9])
    flat = LevelParams(season_s=0.0)  # without the seasonal model the same point is unremarkable
    _, _, fired = run_level(flat, LevelState(), [i * 3600.0 for i in range(len(y))], y)
    assert not any(fired[24 * 40 + 6: 24 * 40 + 9])


def test_step_matches_batch_and_carries_evidence():
    x = spike(normal(1200))
    batch_state, scores, fired = run(P, x)
    s = LevelState()
    firing: list[Verdict] = []
    for i, v in enumerate(x):
        s, verdict = step_level(P, s, i * 60.0, v, window_s=600.0)
        assert verdict.score == scores[i] and verdict.fires == fired[i]
        if verdict.fires:
            firing.append(verdict)
    assert s == batch_state
    assert firing and firing[0].value == x[FAULT_AT]
    assert abs(firing[0].expected - 100.0) < 2.0
    assert firing[0].threshold == P.fire_score and firing[0].window == 600.0
    assert "spreads from the expected" in firing[0].reason
    assert firing[0].evidence()["value"] == x[FAULT_AT]


def test_cooldown_makes_one_incident_one_alert():
    _, _, fired = run(P, shift(normal(1500)))
    assert sum(fired[FAULT_AT:FAULT_AT + P.cooldown]) == 1


def test_bad_params_are_refused():
    with pytest.raises(ValueError, match="alpha"):
        LevelParams(alpha=0.0)
    with pytest.raises(ValueError, match="fire_score"):
        LevelParams(fire_score=1.5)


@settings(max_examples=40, deadline=None)
@given(value=st.floats(min_value=-1e9, max_value=1e9), n=st.integers(1, 3000))
def test_never_fires_on_constant_input(value, n):
    _, scores, fired = run(P, [value] * n)
    assert not any(fired) and max(scores) < 0.01


@pytest.mark.parametrize("after", [5.0, 0.001, -3.0])
def test_a_constant_series_that_changes_fires(after):
    _, _, fired = run(P, [0.0] * 500 + [after] * 20)
    assert any(fired[500:503])


@settings(max_examples=40, deadline=None)
@given(scale=st.floats(min_value=1e-6, max_value=1e6), offset=st.floats(min_value=-1e6, max_value=1e6),
       seed=st.integers(0, 2**32 - 1), uniform=st.booleans())
def test_never_fires_on_iid_noise_of_any_scale(scale, offset, seed, uniform):
    rng = np.random.default_rng(seed)
    noise = rng.uniform(-1.7, 1.7, 4000) if uniform else rng.normal(0.0, 1.0, 4000)
    _, _, fired = run(P, offset + scale * noise)
    assert not any(fired[WARM:])


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), season=st.booleans())
def test_state_stays_bounded(seed, season):
    params = LevelParams(season_s=86400.0 if season else 0.0)
    rng = np.random.default_rng(seed)
    x = rng.standard_cauchy(20000)  # wild values, including huge ones
    state, scores, _ = run(params, x)
    assert len(state.season) == (params.season_bins if season else 0)
    assert all(0.0 <= s <= 1.0 for s in scores)
    for f in fields(state):
        v = getattr(state, f.name)
        for item in (v if isinstance(v, tuple) else (v,)):
            assert not (isinstance(item, float) and math.isnan(item)), f.name


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), bad=st.sampled_from([float("nan"), float("inf"), -float("inf")]))
def test_missing_values_are_skipped_and_do_not_poison_the_state(seed, bad):
    rng = np.random.default_rng(seed)
    x = 100.0 + rng.normal(0.0, 2.0, 3000)
    holes = x.copy()
    holes[rng.choice(3000, 50, replace=False)] = bad
    state, scores, fired = run(P, holes)
    assert all(math.isfinite(getattr(state, f.name)) for f in fields(state) if isinstance(getattr(state, f.name), float))
    assert not any(fired[WARM:])
    _, _, fired = run_level(P, state, [3000 * 60.0 + i for i in range(5)], [160.0] * 5)
    assert any(fired)  # still detects after the holes
