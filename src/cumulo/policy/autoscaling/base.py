"""The shared autoscaling interface: one frozen input in, one Decision out.

Every policy in this package is ``decide(inp, config) -> Decision``. The input carries ``now``
(seconds on any monotonic axis), the recent load window, the replicas that are ready and starting,
per-replica targets, bounds, and the policy's own previous state; the Decision carries the desired
replica count, the next state and a reason a person can read. No clock, no I/O, no randomness.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from cumulo.core.errors import InvalidSpec

__all__ = [
    "AutoscaleInput",
    "Decision",
    "LoadWindow",
    "clamp",
    "require",
    "validate_input",
]


@dataclass(frozen=True)
class LoadWindow:
    """Recent load, one sample per ``step`` seconds, oldest first; the last sample ends at ``now``.

    ``rates`` is the mean request arrival rate (requests/s) in each sample; ``concurrency`` the mean
    number of requests in the system (queued + in service) in each sample. The arrays are
    read-only views: policies never write to them.
    """

    step: float
    rates: np.ndarray
    concurrency: np.ndarray

    def mean_rate(self, seconds: float) -> float:
        return _tail_mean(self.rates, seconds, self.step)

    def mean_concurrency(self, seconds: float) -> float:
        return _tail_mean(self.concurrency, seconds, self.step)

    def covers(self) -> float:
        """Seconds of history the window holds."""
        return len(self.rates) * self.step


def _tail_mean(values: np.ndarray, seconds: float, step: float) -> float:
    n = len(values)
    if n == 0:
        return 0.0
    k = max(1, min(n, int(round(seconds / step))))
    return float(values[n - k :].sum()) / k


EMPTY = np.zeros(0)


@dataclass(frozen=True)
class AutoscaleInput:
    """What a policy sees at one decision.

    ``target_concurrency`` is the in-flight requests one replica should carry (the HPA/KPA/Ray Serve
    target); ``target_rps`` the request rate one replica should carry (SkyServe, predictive).
    ``cold_start`` is how long a new replica takes to become ready (the predictive horizon).
    ``state`` is what this policy returned last time (``None`` on the first call).
    """

    now: float
    load: LoadWindow
    ready: int
    starting: int
    target_concurrency: float
    target_rps: float
    min_replicas: int = 1
    max_replicas: int = 100
    cold_start: float = 30.0
    state: Any = None

    @property
    def current(self) -> int:
        return self.ready + self.starting


@dataclass(frozen=True)
class Decision:
    desired: int
    state: Any
    reason: str


def require(ok: bool, field: str, message: str) -> None:
    """Raise InvalidSpec naming ``field`` unless ``ok``."""
    if not ok:
        raise InvalidSpec(f"{field}: {message}", errors=[{"field": field, "message": message}])


def validate_input(inp: AutoscaleInput) -> None:
    """Reject impossible settings with the field named (min > max, negative targets, ...)."""
    require(inp.min_replicas >= 0, "min_replicas", f"must be >= 0, got {inp.min_replicas}")
    require(
        inp.max_replicas >= inp.min_replicas,
        "max_replicas",
        f"must be >= min_replicas ({inp.min_replicas}), got {inp.max_replicas}",
    )
    require(inp.target_concurrency > 0, "target_concurrency", f"must be > 0, got {inp.target_concurrency}")
    require(inp.target_rps > 0, "target_rps", f"must be > 0, got {inp.target_rps}")
    require(inp.ready >= 0 and inp.starting >= 0, "ready", "replica counts must be >= 0")
    require(inp.cold_start >= 0, "cold_start", f"must be >= 0, got {inp.cold_start}")
    require(inp.load.step > 0, "load.step", f"must be > 0, got {inp.load.step}")


def clamp(n: float, inp: AutoscaleInput) -> int:
    """``n`` rounded up and held inside ``[min_replicas, max_replicas]``."""
    if math.isnan(n):
        n = inp.min_replicas
    if n == math.inf:
        return inp.max_replicas
    return int(max(inp.min_replicas, min(inp.max_replicas, math.ceil(n - 1e-9))))
