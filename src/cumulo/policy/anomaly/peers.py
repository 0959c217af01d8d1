"""Outliers among peers: a replica whose latency or error rate is far above its siblings', or a
training rank whose steps/s is far below the others'.

Given each peer's value at one time, a peer is an outlier when it lies beyond the median of the
OTHERS by ``k`` robust spreads (1.4826 x the median absolute deviation, floored at ``rel_floor`` x
|median| and ``abs_floor``) AND by a factor ``ratio`` (``value >= ratio x median`` on the high side,
``value <= median / ratio`` on the low side). Comparing with the others' median keeps one outlier from
dragging its own baseline. It fires after ``for_points`` consecutive outlying observations.

Pure and streaming: ``step_peers(params, state, t, values) -> (state, {peer: Verdict})``; the state
holds one counter per peer currently present (peers that disappear are forgotten), so it is bounded
by the number of peers; work per call is O(peers^2) in the worst case for small groups, O(peers log
peers) through the sort.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

from cumulo.policy.anomaly.verdict import Verdict

_MAD_TO_SIGMA = 1.4826


@dataclass(frozen=True, slots=True)
class PeerParams:
    side: str = "high"  # "high": larger is worse (latency, errors); "low": smaller is worse (steps/s)
    k: float = 5.0
    ratio: float = 2.0
    rel_floor: float = 0.05
    abs_floor: float = 0.0
    min_peers: int = 3
    for_points: int = 3

    def __post_init__(self) -> None:
        if self.side not in ("high", "low"):
            raise ValueError(f"PeerParams.side must be 'high' or 'low', got {self.side!r}")
        if self.k <= 0 or self.ratio < 1.0:
            raise ValueError("PeerParams.k must be > 0 and ratio >= 1")
        if self.min_peers < 2 or self.for_points < 1:
            raise ValueError("PeerParams.min_peers must be >= 2 and for_points >= 1")


@dataclass(frozen=True, slots=True)
class PeerState:
    streak: Mapping[str, int] = field(default_factory=dict)


def latency_peers(for_points: int = 3) -> PeerParams:
    """Replica latency (seconds): an outlier is 2x the others' median and 5 spreads above it, and at
    least 25 ms above it (abs_floor 5 ms), so sub-millisecond jitter between fast replicas is ignored."""
    return PeerParams(side="high", k=5.0, ratio=2.0, rel_floor=0.05, abs_floor=0.005, for_points=for_points)


def error_rate_peers(for_points: int = 3) -> PeerParams:
    """Replica error rate (0..1): an outlier is 2x the others' median and at least 5 percentage points
    above it (abs_floor 0.01), so one failed request among few is not an outlier."""
    return PeerParams(side="high", k=5.0, ratio=2.0, rel_floor=0.05, abs_floor=0.01, for_points=for_points)


def _median(xs: list[float]) -> float:
    n = len(xs)
    m = n // 2
    return xs[m] if n % 2 else 0.5 * (xs[m - 1] + xs[m])


def _others(sorted_vals: list[float], v: float) -> list[float]:
    out = list(sorted_vals)
    out.remove(v)
    return out


def step_peers(p: PeerParams, s: PeerState, t: float, values: Mapping[str, float],
               window_s: float = 0.0) -> tuple[PeerState, dict[str, Verdict]]:
    """Judge every peer's value at time ``t`` against the others'; NaN and inf values are skipped
    (no verdict for that peer, its streak restarts)."""
    vals = {k: float(v) for k, v in values.items() if math.isfinite(v)}
    verdicts: dict[str, Verdict] = {}
    streak: dict[str, int] = {}
    if len(vals) < p.min_peers:
        return PeerState(streak={}), {k: Verdict(0.0, False, v, v, 0.0, window_s, "too few peers")
                                      for k, v in vals.items()}
    ordered = sorted(vals.values())
    for name, v in vals.items():
        others = _others(ordered, v)
        med = _median(others)
        mad = _median(sorted(abs(o - med) for o in others))
        spread = max(_MAD_TO_SIGMA * mad, p.rel_floor * abs(med), p.abs_floor)
        if p.side == "high":
            bound = max(med + p.k * spread, med * p.ratio if med > 0 else med + p.k * spread)
            excess = v - med
            out = v > bound
        else:
            bound = min(med - p.k * spread, med / p.ratio if med > 0 else med - p.k * spread)
            excess = med - v
            out = v < bound
        n = s.streak.get(name, 0) + 1 if out else 0
        streak[name] = n
        distance = excess / spread if spread > 0 else (float("inf") if excess > 0 else 0.0)
        score = 0.0 if distance <= 0 else min(1.0, distance / (2.0 * p.k))
        fires = n >= p.for_points
        reason = ""
        if fires:
            reason = (f"{name}: {v:.6g} vs the others' median {med:.6g} "
                      f"({'above' if p.side == 'high' else 'below'} {bound:.6g}) for {n} observations")
        verdicts[name] = Verdict(score=score, fires=fires, value=v, expected=med, threshold=bound,
                                 window=window_s, reason=reason)
    return PeerState(streak=streak), verdicts
