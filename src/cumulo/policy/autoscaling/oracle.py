"""A clairvoyant autoscaler: the lower bound the others are measured against.

It is handed the whole future arrival rate (``OracleConfig.rates``, one value per ``step`` seconds
from ``start``) and at each tick asks for the replicas that the highest smoothed rate of the next
``cold_start + tick`` seconds needs at ``target_rps`` per replica: capacity is ready exactly when
the load arrives (scale-ups are issued one cold start ahead) and released as soon as no load
within one cold start needs it. No real system can do this; it bounds what any policy could save.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from cumulo.policy.autoscaling.base import AutoscaleInput, Decision, clamp, require, validate_input

__all__ = ["OracleConfig", "decide", "smoothed"]


def smoothed(rates: np.ndarray, width: int) -> np.ndarray:
    """Trailing mean of ``rates`` over ``width`` samples (the first samples average what exists)."""
    if width <= 1 or len(rates) == 0:
        return np.asarray(rates, dtype=float)
    c = np.concatenate(([0.0], np.cumsum(rates, dtype=float)))
    idx = np.arange(1, len(rates) + 1)
    lo = np.maximum(0, idx - width)
    return (c[idx] - c[lo]) / (idx - lo)


@dataclass(frozen=True)
class OracleConfig:
    rates: np.ndarray = field(default_factory=lambda: np.zeros(0))
    start: float = 0.0
    step: float = 1.0
    tick: float = 5.0
    smooth: float = 10.0
    _smoothed: np.ndarray = field(default=None, repr=False, compare=False)  # type: ignore[assignment]

    def __post_init__(self) -> None:
        require(self.step > 0, "step", "must be > 0")
        require(self.tick > 0, "tick", "must be > 0")
        require(self.smooth >= 0, "smooth", "must be >= 0")
        width = max(1, int(round(self.smooth / self.step)))
        object.__setattr__(self, "_smoothed", smoothed(np.asarray(self.rates, dtype=float), width))


def decide(inp: AutoscaleInput, config: OracleConfig) -> Decision:
    validate_input(inp)
    current = inp.state if isinstance(inp.state, int) else max(inp.min_replicas, inp.current)
    s = config._smoothed
    i0 = int(math.floor((inp.now - config.start) / config.step))
    i1 = int(math.ceil((inp.now + inp.cold_start + config.tick - config.start) / config.step))
    i0, i1 = max(0, i0), min(len(s), max(i1, i0 + 1))
    peak = float(s[i0:i1].max()) if i1 > i0 else 0.0
    desired = clamp(peak / inp.target_rps, inp)
    verb = "scale up" if desired > current else "scale down" if desired < current else "hold"
    reason = f"oracle: {verb} {current}->{desired}: peak {peak:.2f} req/s in the next {inp.cold_start + config.tick:g}s"
    return Decision(desired, desired, reason)
