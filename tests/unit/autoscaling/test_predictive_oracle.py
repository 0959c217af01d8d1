"""The predictive policy and the clairvoyant oracle."""

from __future__ import annotations

import math

import numpy as np
import pytest

from cumulo.policy.autoscaling import oracle, predictive
from cumulo.policy.autoscaling.oracle import OracleConfig
from cumulo.policy.autoscaling.predictive import DAY, PredictiveConfig, coefficients

from .helpers import inp


def _run(rates_per_second: np.ndarray, cfg: PredictiveConfig, *, cold_start=30.0, min_replicas=1, target_rps=10.0):
    """Drive the policy over a per-second rate series; returns (times, desired) per tick."""
    state = None
    times, desired = [], []
    tick = int(cfg.tick)
    for end in range(tick, len(rates_per_second) + 1, tick):
        window = rates_per_second[max(0, end - 600) : end]
        d = predictive.decide(
            inp(float(end), rate=list(window), conc=list(window * 0.1), ready=desired[-1] if desired else 1,
                state=state, cold_start=cold_start, min_replicas=min_replicas, target_rps=target_rps),
            cfg,
        )
        state = d.state
        times.append(end)
        desired.append(d.desired)
    return np.array(times), np.array(desired), state


def test_untrained_policy_acts_like_the_reactive_rule():
    d = predictive.decide(inp(10.0, rate=55.0, conc=5.0, target_rps=10.0), PredictiveConfig())
    assert d.desired == 6
    assert "reactive" in d.reason or "forecast" in d.reason


def test_never_below_what_the_reactive_rule_asks_now():
    # a history that teaches "load falls", then a surprise burst: the burst still wins
    st = predictive.PredictiveState(xtx=np.eye(3) * 1e6, xty=np.array([0.0, 0.0, 0.0]) * 1e6, samples=100.0)
    d = predictive.decide(inp(10.0, rate=[0.0] * 580 + [200.0] * 20, conc=0.0, target_rps=10.0, state=st), PredictiveConfig())
    assert d.desired >= 20


def test_a_backlog_the_replicas_up_drain_in_time_asks_for_nothing_more():
    # 100 req/s on 15 replicas of 10 req/s: a one-second spike left 500 requests queued; the 50 req/s
    # to spare drain them long before a new replica (30 s cold start) could help
    conc = [100.0] * 599 + [600.0]
    d = predictive.decide(inp(10.0, rate=100.0, conc=conc, ready=15, target_rps=10.0), PredictiveConfig())
    assert d.desired == 10
    old = predictive.decide(inp(10.0, rate=100.0, conc=conc, ready=15, target_rps=10.0), PredictiveConfig(floor="concurrency"))
    assert old.desired == 13  # the old floor counted the queue as concurrency (mean over 20 s)


def test_a_backlog_that_outlasts_the_cold_start_is_drained_over_the_horizon():
    # no capacity to spare and 4000 queued: drain them over cold start + tick (40 s) = +100 req/s
    conc = [100.0] * 599 + [4100.0]
    d = predictive.decide(inp(10.0, rate=100.0, conc=conc, ready=10, target_rps=10.0), PredictiveConfig())
    assert d.desired == 20
    assert "reaction decides" in d.reason


def test_floor_options_are_validated():
    with pytest.raises(Exception, match="floor"):
        PredictiveConfig(floor="queue")
    with pytest.raises(Exception, match="drain_horizon"):
        PredictiveConfig(drain_horizon=0.0)


def test_learns_a_daily_step_and_scales_ahead_of_it():
    # 4 days: 10 req/s, jumping to 100 req/s at 12:00 for two hours every day
    days = 4
    t = np.arange(days * int(DAY))
    rates = np.where((t % DAY >= 12 * 3600) & (t % DAY < 14 * 3600), 100.0, 10.0)
    # ungated: with the gate (the default) the 22 flat hours before the step make the forecast no
    # tighter than persistence over the 6 h calibration window, so the default policy reacts here
    cfg = PredictiveConfig(gate=False)
    times, desired, state = _run(rates, cfg, cold_start=120.0)
    jump = 3 * DAY + 12 * 3600  # the fourth day's step
    before = desired[(times > jump - 120) & (times <= jump)]
    assert before.max() >= 5, "on day four half the replicas are up before the step (learnt from days 1-3)"
    # first day: no history, it can only react
    day1 = desired[(times > 12 * 3600 - 120) & (times <= 12 * 3600)]
    assert day1.max() <= 2
    a, b, c = coefficients(state, cfg.ridge)
    assert b > 0.3, f"the seasonal term carries weight: a={a:.2f} b={b:.2f} c={c:.2f}"


def test_recovers_linear_coefficients_on_a_ramp():
    # a steady ramp: the best forecast of L(t+h) is L + slope*h, i.e. c ~ 1
    t = np.arange(6 * 3600)
    rates = 10 + t * 0.01
    times, desired, state = _run(rates, PredictiveConfig(), cold_start=120.0, target_rps=1.0)
    a, b, c = coefficients(state, PredictiveConfig().ridge)
    forecast = a * rates[-1] + b * rates[-1] + c * (0.01 * (120 + 10))
    assert forecast == pytest.approx(rates[-1] + 0.01 * 130, rel=0.02)


def test_scales_to_zero_after_the_idle_period_and_back_on_traffic():
    cfg = PredictiveConfig(scale_to_zero_after=300.0)
    rates = np.concatenate([np.full(600, 5.0), np.zeros(1200), np.full(100, 5.0)])
    times, desired, _ = _run(rates, cfg, min_replicas=0)
    zero_at = times[desired == 0]
    assert len(zero_at) and zero_at[0] >= 600 + 300
    assert zero_at[0] <= 600 + 300 + 60 + cfg.tick  # the 60 s rate window must empty first
    assert desired[-1] >= 1


def test_does_not_scale_to_zero_unless_allowed():
    rates = np.concatenate([np.full(600, 5.0), np.zeros(1800)])
    _, desired, _ = _run(rates, PredictiveConfig(), min_replicas=0)
    assert desired.min() == 1


def test_scale_down_waits_for_the_downscale_window():
    rates = np.concatenate([np.full(600, 100.0), np.full(600, 10.0)])
    times, desired, _ = _run(rates, PredictiveConfig(downscale_window=120.0, min_calibration=0.0, calibration_window=600.0))
    first_low = times[desired < desired[55]][0]
    assert first_low >= 600 + 120 - 10


def test_oracle_scales_one_cold_start_ahead():
    rates = np.concatenate([np.full(100, 10.0), np.full(100, 100.0)])
    cfg = OracleConfig(rates=rates, tick=5.0, smooth=0.0)
    before = oracle.decide(inp(60.0, ready=1, target_rps=10.0, cold_start=30.0), cfg)
    assert before.desired == 1
    ahead = oracle.decide(inp(70.0, ready=1, target_rps=10.0, cold_start=30.0), cfg)
    assert ahead.desired == 10  # 100 req/s arrives at 100 s = 70 + 30
    after = oracle.decide(inp(70.0, ready=10, target_rps=10.0, cold_start=30.0, max_replicas=4), cfg)
    assert after.desired == 4


def test_oracle_smoothing():
    s = oracle.smoothed(np.array([0.0, 10.0, 0.0, 10.0]), 2)
    assert list(s) == [0.0, 5.0, 5.0, 5.0]
    assert math.isclose(float(oracle.smoothed(np.array([3.0]), 1)[0]), 3.0)


def test_level_floor_default_follows_the_cold_start():
    cfg = PredictiveConfig()
    assert predictive.level_half_life(cfg, 120.0) == 1200.0  # 10 cold starts
    assert predictive.level_half_life(cfg, 30.0) == 0.0  # off below a minute
    assert predictive.level_half_life(PredictiveConfig(level_half_life=0.0), 120.0) == 0.0
    assert predictive.level_half_life(PredictiveConfig(level_half_life=500.0), 30.0) == 500.0
    with pytest.raises(Exception, match="level_half_life"):
        PredictiveConfig(level_half_life=-1.0)


def test_level_floor_holds_the_recent_level_through_a_dip_and_releases_it_slowly():
    # an hour at 100 req/s, then a dip to 50: with a 120 s cold start the plan stays near the recent
    # level (half-life 1200 s) instead of following the dip at once, and comes down as the level decays
    rates = np.concatenate([np.full(3600, 100.0), np.full(3600, 50.0)])
    times, with_level, _ = _run(rates, PredictiveConfig(min_calibration=600.0), cold_start=120.0)
    _, without, _ = _run(rates, PredictiveConfig(min_calibration=600.0, level_half_life=0.0), cold_start=120.0)
    early = (times > 3600 + 300) & (times <= 3600 + 600)
    assert without[early].max() <= 6  # follows the dip: 50 req/s at 10 req/s per replica (+ headroom)
    assert with_level[early].min() >= 8  # the level is still ~0.8-0.9 x 100 req/s
    late = times > 3600 + 3000
    assert with_level[late].max() <= with_level[early].min()  # released as the level decays
    assert with_level[-1] <= 6 + 1


def test_level_floor_never_goes_below_the_reactive_rule():
    # the level floor only adds capacity: a burst above the level is still served by the reactive rule
    rates = np.concatenate([np.full(1800, 10.0), np.full(60, 300.0)])
    times, desired, _ = _run(rates, PredictiveConfig(), cold_start=120.0)
    assert desired[-1] >= 30


def test_level_floor_does_not_block_scale_to_zero():
    cfg = PredictiveConfig(scale_to_zero_after=300.0)
    rates = np.concatenate([np.full(1800, 5.0), np.zeros(1200), np.full(100, 5.0)])
    times, desired, state = _run(rates, cfg, min_replicas=0, cold_start=120.0)
    zero_at = times[desired == 0]
    assert len(zero_at) and 1800 + 300 <= zero_at[0] <= 1800 + 300 + 60 + cfg.tick
    assert state.level > 0  # the level had not decayed to zero: idleness alone lets it go
    assert desired[-1] >= 1
