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


# --- the predictive policy's conformal bound, gate and fallback -------------------------------

from cumulo.policy.autoscaling import predictive
from cumulo.policy.autoscaling.predictive import PredictiveConfig, conformal_quantile

FAST = PredictiveConfig(coverage=0.9, min_calibration=0.0, calibration_window=600.0)


def _drive_predictive(series, cfg, *, per=60, lo=1, hi=1000, cold_start=30.0):
    """Each value of ``series`` is the rate for ``per`` seconds; decide every tick with 1 s samples."""
    rates = np.repeat(np.asarray(series, dtype=float), per)
    state, n, out = None, lo, []
    for end in range(int(cfg.tick), len(rates) + 1, int(cfg.tick)):
        w = rates[max(0, end - 600) : end]
        d = predictive.decide(inp(float(end), rate=list(w), conc=list(w * 0.2), ready=n, state=state, target_rps=5.0,
                                  target_concurrency=1.0, min_replicas=lo, max_replicas=hi, cold_start=cold_start), cfg)
        state, n = d.state, d.desired
        out.append((end, n, d.reason))
    return out, state


@settings(max_examples=25, deadline=None)
@given(series=st.lists(st.floats(min_value=0, max_value=300, allow_nan=False), min_size=1, max_size=40),
       b=bounds, cold_start=st.sampled_from([30.0, 120.0]))
def test_predictive_bounds_hold_with_calibration_on(series, b, cold_start):
    lo, hi = b
    out, _ = _drive_predictive(series, FAST, lo=lo, hi=hi, cold_start=cold_start)
    assert all(lo <= n <= hi for _, n, _ in out)


@settings(max_examples=25, deadline=None)
@given(rate=st.floats(min_value=0.5, max_value=300), minutes=st.integers(20, 40))
def test_predictive_does_not_flap_under_a_constant_load(rate, minutes):
    """A constant rate: once the first cold start and the calibration are behind it, the count never
    changes again."""
    out, _ = _drive_predictive([rate] * minutes, FAST)
    settled = [n for t, n, _ in out if t > 15 * 60]
    assert len(set(settled)) == 1, settled


@settings(max_examples=20, deadline=None)
@given(lie=st.floats(min_value=3.0, max_value=50.0), rate=st.floats(min_value=5.0, max_value=200.0))
def test_predictive_falls_back_to_reaction_when_its_forecasts_fail(lie, rate):
    """A seasonal profile that lies (every bin says ``lie`` x the real rate) and a forecast that trusts
    it fully: its calibrated bound is wider than persistence's, so the policy plans with persistence's
    bound (the rate now, a constant here, times a quantile of 1), i.e. what the rate needs."""
    out, state = _drive_predictive([rate] * 30, FAST)
    nday = int(86400 / FAST.bin_seconds)
    st_lie = predictive.replace(state, day=np.full(nday, rate * lie), day_n=np.ones(nday),
                                xtx=np.eye(3) * 1e9, xty=np.array([0.0, 1e9, 0.0]), samples=1e9)
    w = np.full(600, rate)
    t = out[-1][0]
    s = st_lie
    for k in range(1, 120):  # 20 min: the lying forecasts come due and fill the calibration window
        d = predictive.decide(inp(float(t + 10 * k), rate=list(w), conc=list(w * 0.2), ready=out[-1][1], state=s,
                                  target_rps=5.0, target_concurrency=1.0, max_replicas=1000), FAST)
        s = d.state
    assert "reacting" in d.reason, d.reason
    assert d.desired == int(np.ceil(rate / 5.0 - 1e-9))


def test_conformal_quantile():
    v = np.arange(1.0, 20.0)  # 19 values: the 0.95 conformal quantile is the largest
    assert conformal_quantile(v, 0.95) == 19.0
    assert conformal_quantile(v, 0.5) == 10.0
    assert conformal_quantile(v[:5], 0.95) == float("inf")  # too few values for that coverage
    assert conformal_quantile(np.zeros(0), 0.5) == float("inf")
