"""Peer outliers (a slow or failing replica) and stragglers (a slow rank)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cumulo.policy.anomaly import PeerParams, PeerState, error_rate_peers, latency_peers, step_peers, straggler_params


def run(params, frames):
    s = PeerState()
    out = []
    for t, values in enumerate(frames):
        s, verdicts = step_peers(params, s, float(t), values, window_s=10.0)
        out.append(verdicts)
    return s, out


P = PeerParams()


@pytest.mark.parametrize("name,params,frames,outlier", [
    ("one replica 10x slower", latency_peers(), [{"r0": 0.10, "r1": 0.11, "r2": 0.09, "r3": 1.0}] * 5, "r3"),
    ("one replica failing", error_rate_peers(), [{"a": 0.0, "b": 0.01, "c": 0.0, "d": 0.5}] * 5, "d"),
    ("two replicas, one slow", P, [{"a": 0.1, "b": 0.1, "c": 0.95}] * 5, "c"),
])
def test_fires_on_the_outlier_only(name, params, frames, outlier):
    _, out = run(params, frames)
    last = out[-1]
    assert last[outlier].fires, name
    assert [k for k, v in last.items() if v.fires] == [outlier]
    assert last[outlier].expected < last[outlier].threshold < last[outlier].value
    assert "median" in last[outlier].reason


@pytest.mark.parametrize("name,frames", [
    ("equal peers", [{"a": 0.1, "b": 0.1, "c": 0.1}] * 5),
    ("spread-out but normal", [{"a": 0.1, "b": 0.14, "c": 0.12, "d": 0.09}] * 5),
    ("all slow together", [{"a": 1.0, "b": 1.1, "c": 0.9}] * 5),
    ("too few peers", [{"a": 0.1, "b": 5.0}] * 5),
    ("error rates near zero", [{"a": 0.0, "b": 0.02, "c": 0.0, "d": 0.01}] * 5),
    ("fast replicas with jitter", [{"a": 0.0005, "b": 0.0004, "c": 0.0005, "d": 0.003}] * 5),
    ("outlier for one sample only", [{"a": 0.1, "b": 0.1, "c": 0.1, "d": 2.0}] + [{"a": 0.1, "b": 0.1, "c": 0.1, "d": 0.1}] * 4),
])
def test_silent_on_normal_groups(name, frames):
    params = error_rate_peers() if "error" in name else latency_peers()
    _, out = run(params, frames)
    assert not any(v.fires for frame in out for v in frame.values()), name


def test_needs_consecutive_observations():
    bad = {"a": 0.1, "b": 0.1, "c": 0.1, "d": 2.0}
    _, out = run(P, [bad, bad])
    assert not out[-1]["d"].fires
    _, out = run(P, [bad, bad, bad])
    assert out[-1]["d"].fires


def test_straggler_rank_is_a_low_side_peer_outlier():
    params = straggler_params()
    frames = [{"0": 10.0, "1": 9.8, "2": 10.1, "3": 3.0}] * 3
    _, out = run(params, frames)
    assert out[-1]["3"].fires and not out[-1]["0"].fires
    _, out = run(params, [{"0": 10.0, "1": 9.0, "2": 10.5, "3": 8.0}] * 5)
    assert not any(v.fires for v in out[-1].values())
    _, out = run(params, [{"0": 10.0, "1": 4.0}] * 3)  # two ranks: the slower one is the straggler
    assert out[-1]["1"].fires and not out[-1]["0"].fires


def test_departed_peers_are_forgotten():
    s, _ = run(P, [{f"r{i}": 0.1 for i in range(50)}])
    s, _ = step_peers(P, s, 1.0, {"r0": 0.1, "r1": 0.1, "r2": 0.1})
    assert set(s.streak) == {"r0", "r1", "r2"}


def test_bad_params_are_refused():
    with pytest.raises(ValueError, match="side"):
        PeerParams(side="up")


@settings(max_examples=50, deadline=None)
@given(value=st.floats(min_value=-1e9, max_value=1e9, allow_nan=False), n=st.integers(2, 30))
def test_never_fires_on_identical_peers(value, n):
    _, out = run(P, [{f"r{i}": value for i in range(n)}] * 4)
    assert not any(v.fires for frame in out for v in frame.values())


@settings(max_examples=50, deadline=None)
@given(scale=st.floats(min_value=1e-6, max_value=1e6), seed=st.integers(0, 2**32 - 1), n=st.integers(3, 40))
def test_never_fires_on_iid_noise_among_peers(scale, seed, n):
    rng = np.random.default_rng(seed)
    frames = [{f"r{i}": scale * (10.0 + rng.normal()) for i in range(n)} for _ in range(20)]
    _, out = run(P, frames)
    assert not any(v.fires for frame in out for v in frame.values())


def test_non_finite_values_are_skipped():
    _, out = run(latency_peers(), [{"a": 0.1, "b": 0.1, "c": 0.1, "d": float("nan"), "e": float("inf")}] * 4)
    assert set(out[-1]) == {"a", "b", "c"} and not any(v.fires for v in out[-1].values())
