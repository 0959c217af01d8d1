"""Training detectors: NaN/inf loss, divergence, stalls against the job's cadence, idle GPU, memory ETA."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cumulo.policy.anomaly import (
    DivergenceParams,
    DivergenceState,
    IdleParams,
    IdleState,
    MemoryParams,
    MemoryState,
    ProgressState,
    check_finite,
    check_stall,
    progress_deadline,
    progress_timeout,
    record_report,
    step_divergence,
    step_gpu_idle,
    step_memory,
)


@pytest.mark.parametrize("value,fires", [(float("nan"), True), (float("inf"), True), (-float("inf"), True),
                                         (0.0, False), (1e308, False), (-3.5, False)])
def test_check_finite(value, fires):
    v = check_finite("loss", value)
    assert v.fires is fires
    if fires:
        assert "loss is" in v.reason


def losses(kind: str, n: int = 300, seed: int = 0) -> list[float]:
    rng = np.random.default_rng(seed)
    steps = np.arange(n)
    base = 2.5 * np.exp(-steps / 60.0) + 0.3
    noise = base * 0.1 * rng.normal(size=n)
    x = base + noise
    if kind == "diverges":
        x[200:] = x[200:] * np.exp((steps[200:] - 200) / 10.0)
    if kind == "jumps":
        x[200:] += 2.0
    return x.tolist()


def run_div(xs, p=DivergenceParams()):
    s = DivergenceState()
    out = []
    for i, x in enumerate(xs):
        s, v = step_divergence(p, s, float(i), x)
        out.append(v)
    return s, out


@pytest.mark.parametrize("kind,fires", [("normal", False), ("diverges", True), ("jumps", True)])
def test_divergence_table(kind, fires):
    _, out = run_div(losses(kind))
    when = [i for i, v in enumerate(out) if v.fires]
    assert bool(when) is fires, kind
    if fires:
        assert 200 <= when[0] <= 240
        v = out[when[0]]
        assert v.value > v.threshold > v.expected and "rose above" in v.reason


def test_divergence_ignores_non_finite_values():
    s, _ = run_div(losses("normal", 50))
    s2, v = step_divergence(DivergenceParams(), s, 51.0, float("nan"))
    assert s2 == s and not v.fires


@settings(max_examples=50, deadline=None)
@given(value=st.floats(min_value=-1e6, max_value=1e6), n=st.integers(1, 500))
def test_divergence_never_fires_on_constant_loss(value, n):
    _, out = run_div([value] * n)
    assert not any(v.fires for v in out)


@settings(max_examples=50, deadline=None)
@given(scale=st.floats(min_value=1e-6, max_value=1e6), seed=st.integers(0, 2**32 - 1))
def test_divergence_never_fires_on_noise_around_a_level(scale, seed):
    rng = np.random.default_rng(seed)
    _, out = run_div((scale * (1.0 + 0.1 * rng.normal(size=500))).tolist())
    assert not any(v.fires for v in out)


def reports(times):
    s = ProgressState()
    for t in times:
        s = record_report(s, t)
    return s


def test_progress_timeout_auto_is_three_recent_intervals_and_at_least_30s():
    assert progress_timeout(reports([0.0])) is None  # cadence unknown yet
    assert progress_timeout(reports([0.0, 5.0, 10.0])) == 30.0  # 3 x 5 s = 15 s -> floor 30 s
    assert progress_timeout(reports([0.0, 20.0, 40.0])) == 60.0
    assert progress_timeout(reports([0.0, 20.0, 40.0]), "auto", minimum=10.0) == 60.0
    assert progress_timeout(reports([0.0, 5.0]), 90) == 90.0
    assert progress_deadline(reports([100.0, 120.0, 140.0])) == 200.0
    with pytest.raises(ValueError, match="progress_timeout"):
        progress_timeout(reports([0.0]), -5)


def test_progress_timeout_follows_the_recent_cadence_only():
    s = reports([0.0, 100.0] + [100.0 + 2.0 * i for i in range(1, 20)])  # one slow interval, then fast
    assert progress_timeout(s) == 30.0  # the 100 s gap has left the last 8 intervals
    assert len(s.intervals) == 8


@pytest.mark.parametrize("now,fires", [(140.0, False), (199.0, False), (200.0, False), (200.5, True), (1e6, True)])
def test_check_stall(now, fires):
    s = reports([100.0, 120.0, 140.0])
    v = check_stall(s, now)
    assert v.fires is fires
    assert v.threshold == 60.0
    if fires:
        assert "no progress report" in v.reason


def test_stall_not_judged_before_the_cadence_is_known():
    assert not check_stall(reports([0.0]), 1e9).fires
    assert check_stall(reports([0.0]), 100.0, setting=30).fires


@pytest.mark.parametrize("samples,fires", [
    ([(t, 90.0, True) for t in range(0, 1000, 10)], False),
    ([(t, 0.0, True) for t in range(0, 1000, 10)], True),
    ([(t, 0.0, False) for t in range(0, 1000, 10)], False),  # not running: not an anomaly
    ([(t, 0.0 if (t // 100) % 2 else 80.0, True) for t in range(0, 1000, 10)], False),  # idles between epochs
    ([(t, float("nan"), True) for t in range(0, 1000, 10)], False),  # unknown utilization
])
def test_gpu_idle(samples, fires):
    s = IdleState()
    out = []
    for t, u, running in samples:
        s, v = step_gpu_idle(IdleParams(for_s=300.0), s, float(t), u, running)
        out.append(v)
    assert any(v.fires for v in out) is fires
    if fires:
        first = next(i for i, v in enumerate(out) if v.fires)
        assert samples[first][0] == 300


GIB = 2**30


def run_mem(samples, limit=8 * GIB, p=MemoryParams()):
    s = MemoryState()
    out = []
    for t, used in samples:
        s, v = step_memory(p, s, float(t), used, limit)
        out.append(v)
    return s, out


def test_memory_leak_fires_with_an_eta():
    # 4 GiB + 5 MiB/s: 8 GiB reached at t = 4 GiB / 5 MiB/s ~ 819 s
    _, out = run_mem([(t, 4 * GIB + 5 * 2**20 * t) for t in range(0, 600, 10)])
    first = next(i for i, v in enumerate(out) if v.fires)
    t_first = first * 10
    assert t_first <= 230  # ETA under 600 s from about t=219 on
    eta = out[first].window
    assert abs((t_first + eta) - 819.2) < 15.0
    assert "limit in about" in out[first].reason


@pytest.mark.parametrize("name,samples", [
    ("flat", [(t, 6 * GIB) for t in range(0, 3000, 10)]),
    ("slow growth, limit far away", [(t, 1 * GIB + 2**10 * t) for t in range(0, 3000, 10)]),
    ("sawtooth (gc)", [(t, 5 * GIB + (t % 300) * 2**20) for t in range(0, 3000, 10)]),
    ("decreasing", [(t, 7 * GIB - 2**20 * t) for t in range(0, 3000, 10)]),
])
def test_memory_silent(name, samples):
    _, out = run_mem(samples)
    assert not any(v.fires for v in out), name


@settings(max_examples=40, deadline=None)
@given(scale=st.floats(min_value=1e3, max_value=1e9), seed=st.integers(0, 2**32 - 1))
def test_memory_never_fires_on_noise_and_state_bounded(scale, seed):
    rng = np.random.default_rng(seed)
    limit = 100 * scale
    samples = [(1e9 + t, scale * (10.0 + rng.normal())) for t in range(0, 5000, 5)]
    s, out = run_mem(samples, limit=limit)
    assert not any(v.fires for v in out)
    assert all(math.isfinite(x) for x in (s.w, s.st, s.sx, s.stt, s.stx))
    assert abs(s.st) < 1e4 and s.stt < 1e7  # sums around the newest time stay small


def test_memory_trend_is_exact_on_a_line_far_from_time_zero():
    _, out = run_mem([(1.7e9 + t, 4 * GIB + 5 * 2**20 * t) for t in range(0, 600, 10)])
    assert out[-1].fires
    assert abs(out[-1].window - (819.2 - 590)) < 1.0


def test_memory_skips_missing_samples_and_refuses_a_bad_limit():
    s, _ = run_mem([(t, 4 * GIB + 5 * 2**20 * t) for t in range(0, 300, 10)])
    s2, v = step_memory(MemoryParams(), s, 300.0, float("nan"), 8 * GIB)
    assert s2 == s and not v.fires
    with pytest.raises(ValueError, match="memory limit"):
        step_memory(MemoryParams(), s, 300.0, 1.0, 0.0)
