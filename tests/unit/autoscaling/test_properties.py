"""Properties every policy keeps: bounds hold; no flapping inside the documented delays."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from cumulo.policy.autoscaling import POLICIES
from cumulo.policy.autoscaling.hpa import HPAConfig
from cumulo.policy.autoscaling.oracle import OracleConfig
from cumulo.policy.autoscaling.rayserve import RayServeConfig
from cumulo.policy.autoscaling.skyserve import SkyServeConfig

from .helpers import inp

loads = st.lists(st.floats(min_value=0, max_value=500, allow_nan=False), min_size=1, max_size=60)
bounds = st.tuples(st.integers(0, 5), st.integers(0, 30)).map(lambda t: (t[0], max(t[0], 1) + t[1]))


def _config(name, series):
    cls, _ = POLICIES[name]
    return cls(rates=np.repeat(np.array(series), 10), tick=5.0) if name == "oracle" else cls()


def _drive(name, series, lo, hi, step):
    cfg = _config(name, series)
    _, decide = POLICIES[name]
    state, n, out = None, lo, []
    for i, x in enumerate(series):
        now = (i + 1) * step
        d = decide(inp(now, rate=[x] * 60, conc=[x / 5] * 60, ready=n, min_replicas=lo, max_replicas=hi, state=state, target_rps=5.0, target_concurrency=2.0), cfg)
        state, n = d.state, d.desired
        out.append((now, n))
        assert isinstance(d.reason, str) and d.reason
    return out


@settings(max_examples=60, deadline=None)
@given(series=loads, b=bounds, name=st.sampled_from(sorted(POLICIES)), step=st.sampled_from([1.0, 2.0, 10.0, 20.0]))
def test_bounds_always_hold(series, b, name, step):
    lo, hi = b
    for _, n in _drive(name, series, lo, hi, step):
        assert lo <= n <= hi


def _changes(out):
    return [(t, n) for (t, n), (_, prev) in zip(out[1:], out[:-1]) if n != prev]


@settings(max_examples=40, deadline=None)
@given(series=loads)
def test_rayserve_changes_are_at_least_one_delay_apart(series):
    cfg = RayServeConfig()
    changes = _changes(_drive("rayserve", series * 20, 1, 50, 1.0))
    gap = min(cfg.upscale_delay_s, cfg.downscale_delay_s)
    for (t0, _), (t1, _) in zip(changes, changes[1:]):
        assert t1 - t0 >= gap - 1e-9


@settings(max_examples=40, deadline=None)
@given(series=loads)
def test_skyserve_changes_are_at_least_one_delay_apart(series):
    cfg = SkyServeConfig()
    changes = _changes(_drive("skyserve", series, 1, 50, 20.0))
    gap = min(cfg.upscale_delay, cfg.downscale_delay) - cfg.decision_interval
    for (t0, _), (t1, _) in zip(changes, changes[1:]):
        assert t1 - t0 >= gap - 1e-9


@settings(max_examples=40, deadline=None)
@given(series=loads)
def test_hpa_never_scales_down_below_a_recommendation_inside_the_stabilization_window(series):
    """Kubernetes' rule: a scale-down goes no lower than the highest recommendation of the last
    300 s. (A rate-limited scale-up can still be catching up to an older recommendation, so the
    scale-down may come less than 300 s after the last scale-up; it never undercuts the window.)"""
    cfg = HPAConfig()
    _, decide = POLICIES["hpa"]
    state, n = None, 1
    history: list[tuple[float, int]] = []  # (time, raw recommendation) as the policy recorded them
    for i, x in enumerate(series):
        now = (i + 1) * cfg.sync_period
        d = decide(inp(now, rate=[x] * 60, conc=[x / 5] * 60, ready=n, min_replicas=1, max_replicas=50, state=state,
                       target_rps=5.0, target_concurrency=2.0), cfg)
        if d.desired < n:
            window = [r for t, r in history if t > now - cfg.downscale_stabilization]
            assert d.desired >= min(max(window, default=0), 50), (now, d.desired, window)
        history = list(d.state.recommendations)
        state, n = d.state, d.desired


@settings(max_examples=40, deadline=None)
@given(series=loads)
def test_predictive_never_below_the_reactive_rule(series):
    _, decide = POLICIES["predictive"]
    cfg = POLICIES["predictive"][0]()
    for cold_start in (30.0, 120.0):  # without and with the level floor
        state, n = None, 1
        for i, x in enumerate(series):
            d = decide(inp((i + 1) * 10.0, rate=[x] * 60, conc=[0.0] * 60, ready=n, state=state, target_rps=5.0,
                           max_replicas=1000, cold_start=cold_start), cfg)
            state, n = d.state, d.desired
            assert n >= int(np.ceil(x / 5.0 - 1e-9))


def test_oracle_config_default_is_empty():
    assert len(OracleConfig().rates) == 0
