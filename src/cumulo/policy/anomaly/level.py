"""Level, seasonal-residual and rare-value detector for one service metric (latency, errors, throughput).

Streaming and pure: ``step_level(params, state, t, value) -> (state, Verdict)``; constant work and
constant memory per point (a few floats, ``hist_bins`` counts, ``season_bins`` seasonal offsets).
``run_level`` is the same computation over a batch (the fast path the NAB benchmark measures).

Two channels, each turned into a score in [0, 1] by the same adaptive threshold, and the larger wins:

1. Residual. expected = level + seasonal[bin(t)] (bin = where ``t`` falls in ``season_s``; off when 0).
   z = |value - expected| / spread (spread: the exponentially weighted standard deviation of the
   residual, floored at ``rel_floor`` x |level|), capped at ``z_cap``; dev = a fast average of z.
2. Rarity. The value, standardized by slow statistics, falls in one of ``hist_bins`` bins
   (``hist_per_sd`` per standard deviation) of a decaying histogram of past values; rarity =
   -log10 of that bin's frequency (a value between two usual levels is rare even when it is close
   to the mean); rdev = a fast average of rarity.

Adaptive threshold, per channel: the averaged deviation d is compared with its own history in two
ways, and the score is their mean: (a) the upper-tail probability p of d standardized by its slow
mean and spread, as -log10(p) / 10 (1.0 = p of 1e-10), and (b) how far d exceeds the decayed maximum
of its past values (log of the ratio, 1.0 at ``ratio_full`` times the maximum). A metric that is
always noisy or spiky raises its own bar. Early statistics use 1/n weights until the configured
rates take over, so the start of a series is not judged against half-learnt statistics.

A NaN or infinite value counts as missing: score 0, the state unchanged (a NaN loss has its own
detector, ``training.check_finite``). After ``warmup`` points the detector fires when the score reaches ``fire_score``; it then stays
quiet (score 0) for ``cooldown`` points, so one incident is one alert.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from cumulo.policy.anomaly.verdict import Verdict

_TAIL_DECADES = 10.0  # tail score 1.0 = an upper-tail probability of 1e-10
_INV_SQRT2 = 0.7071067811865476


@dataclass(frozen=True, slots=True)
class LevelParams:
    """Defaults: chosen on the fit half of NAB (docs/benchmarks/operations.md), except ``fire_score``,
    the alerting operating point, set so that i.i.d. noise of any scale does not fire
    (``NAB_PARAMS`` is the exact set the benchmark runs)."""

    alpha: float = 0.003602  # level and residual variance
    fast: float = 0.2692  # averaging of z
    slow: float = 0.001264  # the adaptive threshold's statistics
    decay: float = 0.9995  # per point, of the maxima the ratio compares with
    ratio_full: float = 30.0
    rel_floor: float = 0.0041
    z_cap: float = 40.0
    season_s: float = 604800.0  # one week
    season_bins: int = 168  # hourly bins
    season_alpha: float = 0.1968
    hist_bins: int = 40
    hist_per_sd: float = 2.0
    hist_alpha: float = 0.0004417
    hist_decay: float = 0.9995
    hist_fast: float = 0.2223
    fire_score: float = 0.62
    warmup: int = 60
    cooldown: int = 200

    def __post_init__(self) -> None:
        for name in ("alpha", "fast", "slow", "season_alpha", "hist_alpha", "hist_fast"):
            v = getattr(self, name)
            if not 0.0 < v <= 1.0:
                raise ValueError(f"LevelParams.{name} must be in (0, 1], got {v}")
        for name in ("decay", "hist_decay"):
            v = getattr(self, name)
            if not 0.0 < v < 1.0:
                raise ValueError(f"LevelParams.{name} must be in (0, 1), got {v}")
        if self.season_s < 0 or self.season_bins < 1:
            raise ValueError("LevelParams.season_s must be >= 0 and season_bins >= 1")
        if self.hist_bins < 2 or self.hist_per_sd <= 0 or self.ratio_full <= 1.0 or self.z_cap <= 0:
            raise ValueError("LevelParams: hist_bins >= 2, hist_per_sd > 0, ratio_full > 1, z_cap > 0")
        if not 0.0 < self.fire_score <= 1.0:
            raise ValueError(f"LevelParams.fire_score must be in (0, 1], got {self.fire_score}")
        if self.warmup < 1 or self.cooldown < 0:
            raise ValueError("LevelParams.warmup must be >= 1 and cooldown >= 0")


# What bench/nab.py runs: the defaults with the operating point NAB's cost model favours.
NAB_PARAMS = LevelParams(fire_score=0.3138)


@dataclass(frozen=True, slots=True)
class LevelState:
    n: int = 0
    level: float = 0.0
    var: float = 0.0
    dev: float = 0.0
    dev_mean: float = 0.0
    dev_var: float = 0.0
    dev_max: float = 0.0
    h_level: float = 0.0
    h_var: float = 0.0
    h_weight: float = 1.0  # lazy decay: new counts weigh 1/decay^n; renormalized when large
    h_total: float = 0.0
    rar: float = 0.0
    rar_mean: float = 0.0
    rar_var: float = 0.0
    rar_max: float = 0.0
    quiet: int = 0
    hist: tuple[float, ...] = field(default=())
    season: tuple[float, ...] = field(default=())


def run_level(p: LevelParams, s: LevelState, times, values) -> tuple[LevelState, list[float], list[bool]]:
    """Score a batch of points (times in seconds); returns the new state, the scores and firings."""
    alpha, fast, slow, decay, z_cap, floor_rel = p.alpha, p.fast, p.slow, p.decay, p.z_cap, p.rel_floor
    log_full = math.log(p.ratio_full)
    period, bins, s_alpha = p.season_s, p.season_bins, p.season_alpha
    h_n, h_per_sd, h_alpha, h_decay, h_fast = p.hist_bins, p.hist_per_sd, p.hist_alpha, p.hist_decay, p.hist_fast
    h_half = h_n // 2
    fire, warmup, cooldown = p.fire_score, p.warmup, p.cooldown
    n, level, var = s.n, s.level, s.var
    dev, dmean, dvar, dmax = s.dev, s.dev_mean, s.dev_var, s.dev_max
    hl, hv, hw, htot = s.h_level, s.h_var, s.h_weight, s.h_total
    rar, rmean, rvar, rmax = s.rar, s.rar_mean, s.rar_var, s.rar_max
    quiet = s.quiet
    hist = list(s.hist) if len(s.hist) == h_n else [0.0] * h_n
    season = (list(s.season) if len(s.season) == bins else [0.0] * bins) if period > 0 else []
    erfc, log10, log, sqrt, floor = math.erfc, math.log10, math.log, math.sqrt, math.floor
    prior = 0.5
    scores: list[float] = []
    fired: list[bool] = []
    for t, x in zip(times, values):
        x = float(x)
        if not -math.inf < x < math.inf:  # NaN or inf: a missing observation, learnt from nothing
            scores.append(0.0)
            fired.append(False)
            continue
        if n == 0:
            level = hl = x
            n = 1
            scores.append(0.0)
            fired.append(False)
            continue
        # 1. residual from level + season
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
        # 2. rarity of the value in the decaying histogram
        hs = sqrt(hv)
        fl = floor_rel * abs(hl)
        if hs < fl:
            hs = fl
        if hs > 0.0:
            u = (x - hl) / hs * h_per_sd
            hb = h_half + (int(floor(u)) if -h_n < u < h_n else (h_n if u > 0 else -h_n))
        else:
            hb = h_half if x == hl else (h_n - 1 if x > hl else 0)
        if hb < 0:
            hb = 0
        elif hb >= h_n:
            hb = h_n - 1
        rar += h_fast * (-log10((hist[hb] + prior * hw) / (htot + prior * hw * h_n)) - rar)
        # adaptive thresholds
        score = 0.0
        if n >= warmup:
            tail = 0.0
            if dvar > 0.0:
                q = (dev - dmean) / sqrt(dvar)
                if q > 0.0:
                    pr = 0.5 * erfc(q * _INV_SQRT2)
                    tail = 1.0 if pr < 1e-10 else -log10(pr) / _TAIL_DECADES
            elif dev > 0.0 and dmax == 0.0:
                tail = 1.0  # the first deviation of a series that never deviated
            r = dev / dmax if dmax > 0.0 else (math.inf if dev > 0.0 else 0.0)
            ratio = 0.0 if r <= 1.0 else (1.0 if r >= p.ratio_full else log(r) / log_full)
            score = 0.5 * (tail + ratio)
            tail = 0.0
            if rvar > 0.0:
                q = (rar - rmean) / sqrt(rvar)
                if q > 0.0:
                    pr = 0.5 * erfc(q * _INV_SQRT2)
                    tail = 1.0 if pr < 1e-10 else -log10(pr) / _TAIL_DECADES
            r = rar / rmax if rmax > 0.0 else 0.0
            ratio = 0.0 if r <= 1.0 else (1.0 if r >= p.ratio_full else log(r) / log_full)
            if 0.5 * (tail + ratio) > score:
                score = 0.5 * (tail + ratio)
        # learn (1/n weights until the configured rate is the larger)
        w = slow if slow * n >= 1.0 else 1.0 / n
        d = dev - dmean
        dmean += w * d
        dvar = (1.0 - w) * (dvar + w * d * d)
        d = rar - rmean
        rmean += w * d
        rvar = (1.0 - w) * (rvar + w * d * d)
        dmax = dmax * decay if dmax * decay > dev else dev
        rmax = rmax * decay if rmax * decay > rar else rar
        w = alpha if alpha * n >= 1.0 else 1.0 / (n + 1)
        level += w * resid
        var = (1.0 - w) * (var + w * resid * resid)
        w = h_alpha if h_alpha * n >= 1.0 else 1.0 / (n + 1)
        d = x - hl
        hl += w * d
        hv = (1.0 - w) * (hv + w * d * d)
        hist[hb] += hw
        htot += hw
        hw /= h_decay
        if hw > 1e100:
            hist = [c / hw for c in hist]
            htot /= hw
            hw = 1.0
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
    state = LevelState(n=n, level=level, var=var, dev=dev, dev_mean=dmean, dev_var=dvar, dev_max=dmax,
                       h_level=hl, h_var=hv, h_weight=hw, h_total=htot, rar=rar, rar_mean=rmean, rar_var=rvar,
                       rar_max=rmax, quiet=quiet, hist=tuple(hist), season=tuple(season))
    return state, scores, fired


def expected_value(p: LevelParams, s: LevelState, t: float) -> float:
    """What the detector expects at time ``t`` (level plus the seasonal bin)."""
    if p.season_s > 0 and len(s.season) == p.season_bins:
        return s.level + s.season[int((t % p.season_s) * p.season_bins / p.season_s) % p.season_bins]
    return s.level


def step_level(p: LevelParams, s: LevelState, t: float, value: float,
               window_s: float = 0.0) -> tuple[LevelState, Verdict]:
    """One observation at time ``t`` (seconds): the new state and the verdict with its evidence.

    ``threshold`` in the verdict is ``fire_score`` (on the score's scale). ``window_s`` is reported as
    the evidence's window (e.g. the sampling interval times ``cooldown``); the detector counts points.
    """
    expected = expected_value(p, s, t)
    spread = max(math.sqrt(s.var), p.rel_floor * abs(s.level))
    new, scores, fired = run_level(p, s, (t,), (value,))
    score, fires = scores[0], fired[0]
    reason = ""
    if fires:
        dist = abs(value - expected) / spread if spread > 0 else math.inf
        reason = f"value {value:.6g} is {dist:.1f} spreads from the expected {expected:.6g} (score {score:.2f})"
    return new, Verdict(score=score, fires=fires, value=float(value), expected=expected,
                        threshold=p.fire_score, window=window_s, reason=reason)


__all__ = ["LevelParams", "LevelState", "NAB_PARAMS", "run_level", "step_level", "expected_value"]
