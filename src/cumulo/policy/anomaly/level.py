"""Level and seasonal-residual detector for one service metric (latency, error rate, throughput).

Streaming and pure: ``step_level(params, state, t, value) -> (state, Verdict)``; constant work and
constant memory per point (a handful of floats, plus ``season_bins`` floats when seasonality is on).

How it scores a point:
1. expected = level + seasonal[bin(t)] (bin = position of ``t`` within ``season_s``; off when 0);
   both adapt with exponential weights (``alpha`` for the level and its variance, ``season_alpha``
   for the bins).
2. z = |value - expected| / spread, spread = the exponentially weighted standard deviation of the
   residual (floored at ``rel_floor`` x |level| so a near-constant series is not hair-triggered).
3. deviation = a fast exponential average of z (``fast``): one wild point moves it less than a
   sustained change.
4. The threshold adapts: deviation is compared with its own long-run mean and spread (``slow``), and
   the upper-tail probability p of that standardized value gives score = min(1, -log10(p) / 10).
   It fires when score >= ``fire_score`` after ``warmup`` points, then stays quiet (score 0) for
   ``cooldown`` points, so one incident is one alert.

``run_level`` is the same computation over a batch (the fast path used by the NAB benchmark);
``step_level`` is one point of it with the evidence an alert shows.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from cumulo.policy.anomaly.verdict import Verdict

_LOG10_TAIL_CAP = 10.0  # score 1.0 = an upper-tail probability of 1e-10
_TINY = 1e-300


@dataclass(frozen=True, slots=True)
class LevelParams:
    alpha: float = 0.01
    fast: float = 0.3
    slow: float = 0.003
    rel_floor: float = 1e-3
    z_cap: float = 20.0
    season_s: float = 0.0
    season_bins: int = 24
    season_alpha: float = 0.05
    fire_score: float = 0.5
    warmup: int = 60
    cooldown: int = 50

    def __post_init__(self) -> None:
        for name in ("alpha", "fast", "slow", "season_alpha"):
            v = getattr(self, name)
            if not 0.0 < v <= 1.0:
                raise ValueError(f"LevelParams.{name} must be in (0, 1], got {v}")
        if self.season_s < 0 or self.season_bins < 1:
            raise ValueError("LevelParams.season_s must be >= 0 and season_bins >= 1")
        if not 0.0 < self.fire_score <= 1.0:
            raise ValueError(f"LevelParams.fire_score must be in (0, 1], got {self.fire_score}")
        if self.warmup < 1 or self.cooldown < 0:
            raise ValueError("LevelParams.warmup must be >= 1 and cooldown >= 0")


@dataclass(frozen=True, slots=True)
class LevelState:
    n: int = 0
    level: float = 0.0
    var: float = 0.0
    dev: float = 0.0
    dev_mean: float = 0.0
    dev_var: float = 0.0
    quiet: int = 0
    season: tuple[float, ...] = field(default=())


def run_level(p: LevelParams, s: LevelState, times, values) -> tuple[LevelState, list[float], list[bool]]:
    """Score a batch of points (times in seconds); returns the new state, scores and firings."""
    alpha, fast, slow, floor_rel, z_cap = p.alpha, p.fast, p.slow, p.rel_floor, p.z_cap
    period, bins, s_alpha = p.season_s, p.season_bins, p.season_alpha
    fire, warmup, cooldown = p.fire_score, p.warmup, p.cooldown
    n, level, var, dev, dmean, dvar, quiet = s.n, s.level, s.var, s.dev, s.dev_mean, s.dev_var, s.quiet
    season = list(s.season) if period > 0 else []
    if period > 0 and len(season) != bins:
        season = [0.0] * bins
    erfc, log10, sqrt = math.erfc, math.log10, math.sqrt
    scores: list[float] = []
    fired: list[bool] = []
    for t, x in zip(times, values):
        x = float(x)
        if n == 0:
            level = x
            n = 1
            scores.append(0.0)
            fired.append(False)
            continue
        if period > 0:
            b = int((t % period) * bins / period) % bins
            seas = season[b]
        else:
            b, seas = -1, 0.0
        resid = x - level - seas
        spread = sqrt(var)
        fl = floor_rel * abs(level)
        if spread < fl:
            spread = fl
        if resid == 0.0:
            z = 0.0
        elif spread > 0.0:
            z = abs(resid) / spread
            if z > z_cap:
                z = z_cap
        else:
            z = z_cap
        dev += fast * (z - dev)
        score = 0.0
        if n >= warmup and dvar > 0.0:
            q = (dev - dmean) / sqrt(dvar)
            if q > 0.0:
                tail = 0.5 * erfc(q * 0.7071067811865476)
                score = -log10(tail if tail > _TINY else _TINY) / _LOG10_TAIL_CAP
                if score > 1.0:
                    score = 1.0
        elif n >= warmup and dev > dmean * (1.0 + 1e-9) + 1e-300:
            score = 1.0  # any deviation from a series that never deviated
        d = dev - dmean
        dmean += slow * d
        dvar = (1.0 - slow) * (dvar + slow * d * d)
        level += alpha * resid
        var = (1.0 - alpha) * (var + alpha * resid * resid)
        if b >= 0:
            season[b] += s_alpha * (x - level - seas)
        n += 1
        if quiet > 0:
            quiet -= 1
            scores.append(0.0)
            fired.append(False)
            continue
        f = score >= fire
        if f:
            quiet = cooldown
        scores.append(score)
        fired.append(f)
    state = LevelState(n=n, level=level, var=var, dev=dev, dev_mean=dmean, dev_var=dvar, quiet=quiet,
                       season=tuple(season))
    return state, scores, fired


def expected_value(p: LevelParams, s: LevelState, t: float) -> float:
    """What the detector expects at time ``t`` (level plus the seasonal bin)."""
    if p.season_s > 0 and len(s.season) == p.season_bins:
        return s.level + s.season[int((t % p.season_s) * p.season_bins / p.season_s) % p.season_bins]
    return s.level


def step_level(p: LevelParams, s: LevelState, t: float, value: float,
               window_s: float = 0.0) -> tuple[LevelState, Verdict]:
    """One observation at time ``t`` (seconds): the new state and the verdict with its evidence.

    ``window_s`` is reported as the evidence's window (the caller's sampling interval times the
    points the detector remembers); the detector itself counts points, not seconds.
    """
    expected = expected_value(p, s, t)
    spread = max(math.sqrt(s.var), p.rel_floor * abs(s.level))
    new, scores, fired = run_level(p, s, (t,), (value,))
    score, fires = scores[0], fired[0]
    reason = ""
    if fires:
        reason = (f"value {value:.6g} is {abs(value - expected) / spread if spread > 0 else float('inf'):.1f} "
                  f"spreads from the expected {expected:.6g}")
    return new, Verdict(score=score, fires=fires, value=float(value), expected=expected,
                        threshold=p.fire_score, window=window_s, reason=reason)


def initial_level() -> LevelState:
    return LevelState()


__all__ = ["LevelParams", "LevelState", "run_level", "step_level", "expected_value", "initial_level"]
