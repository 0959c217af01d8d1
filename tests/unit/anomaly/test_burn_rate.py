"""SLO burn rate over several windows (window lengths in seconds so the tests stay small)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cumulo.policy.anomaly import BurnParams, BurnState, burn_rates, step_burn

# scaled-down SRE pairs: "1 h / 5 min" -> 60 s / 5 s, "6 h / 30 min" -> 360 s / 30 s
P = BurnParams(objective=0.99, pairs=((60.0, 5.0, 14.4), (360.0, 30.0, 6.0)), bucket_s=1.0)


def feed(params, samples, state=None):
    s = state or BurnState()
    verdicts = []
    for t, bad, total in samples:
        s, v = step_burn(params, s, t, bad, total)
        verdicts.append(v)
    return s, verdicts


def steady(t0, t1, error_rate, rps=100):
    return [(float(t), error_rate * rps, float(rps)) for t in range(t0, t1)]


@pytest.mark.parametrize("name,samples,fires", [
    ("no errors", steady(0, 600, 0.0), False),
    ("errors within budget", steady(0, 600, 0.009), False),
    ("a fast burn: 50 % errors", steady(0, 400, 0.0) + steady(400, 460, 0.5), True),
    ("a slow burn: 8 % errors for long", steady(0, 100, 0.0) + steady(100, 700, 0.08), True),
    ("a short blip (long window not reached)", steady(0, 600, 0.0) + steady(600, 602, 1.0) + steady(602, 610, 0.0), False),
])
def test_table(name, samples, fires):
    _, verdicts = feed(P, samples)
    assert verdicts[-1].fires is fires, (name, verdicts[-1])


def test_fast_burn_fires_quickly_and_resets_after():
    s, v = feed(P, steady(0, 400, 0.0) + steady(400, 430, 1.0))
    first = next(i for i, x in enumerate(v) if x.fires)
    assert 400 <= first <= 410
    assert v[-1].threshold == 14.4 and v[-1].window == 60.0 and v[-1].value > 14.4
    assert "burning" in v[-1].reason
    _, v = feed(P, steady(430, 440, 0.0), s)
    assert v[-1].fires and v[-1].threshold == 6.0  # the 1 h pair cleared with its 5 s window; 6 h pair still burns
    _, v = feed(P, steady(430, 462, 0.0), s)
    assert not v[-1].fires  # both short windows (5 s, 30 s) are clean again


def test_burn_rates_match_a_direct_count():
    samples = steady(0, 100, 0.0) + steady(100, 130, 0.2)
    s, _ = feed(P, samples)
    rates = burn_rates(P, s)
    for window in (5.0, 30.0, 60.0, 360.0):
        inside = [x for x in samples if x[0] > 129 - window]
        expect = sum(b for _, b, _ in inside) / sum(t for _, _, t in inside) / 0.01
        assert rates[window] == pytest.approx(expect, rel=1e-9), window


def test_gap_longer_than_every_window_clears_everything():
    s, _ = feed(P, steady(0, 50, 1.0))
    s, v = step_burn(P, s, 10_000.0, 0.0, 100.0)
    assert not v.fires and all(r == 0.0 for r in burn_rates(P, s).values())


def test_bad_input_is_refused():
    with pytest.raises(ValueError, match="objective"):
        BurnParams(objective=1.0)
    with pytest.raises(ValueError, match="short_s <= long_s"):
        BurnParams(pairs=((5.0, 60.0, 14.4),))
    with pytest.raises(ValueError, match="bad <= total"):
        step_burn(P, BurnState(), 0.0, 5.0, 1.0)


def test_default_buckets_are_a_tenth_of_the_shortest_window():
    assert BurnParams().bucket == 30.0
    s, _ = step_burn(BurnParams(), BurnState(), 0.0, 0.0, 1.0)
    assert len(s.bad) == 21600 // 30


@settings(max_examples=20, deadline=None)
@given(rate=st.floats(min_value=0.0, max_value=0.0099), seed=st.integers(0, 1000),
       rps=st.floats(min_value=1e-3, max_value=1e6))
def test_never_fires_within_budget_and_state_is_bounded(rate, seed, rps):
    s, v = feed(P, [(float(t), rate * rps, rps) for t in range(0, 1200, 1 + seed % 7)])
    assert not any(x.fires for x in v)
    assert len(s.bad) == len(s.total) == 360 and len(s.sums) == 4


@pytest.mark.parametrize("bad,total", [(float("nan"), 1.0), (0.0, float("inf")), (-1.0, 5.0)])
def test_non_finite_or_negative_counts_are_refused(bad, total):
    with pytest.raises(ValueError, match="finite counts"):
        step_burn(P, BurnState(), 0.0, bad, total)
