"""A trace turned into what the simulator replays: requests and work per time step.

Work is counted in slot-seconds: a request that takes ``s`` seconds holds one of a replica's
``concurrency`` slots for ``s`` seconds. Service time is constant (``service_time``) unless the
trace has token counts, then ``base + prefill * input_tokens + decode * output_tokens``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cumulo.core.errors import InvalidSpec
from cumulo.sim.synth import exact_arrivals, expected_requests, step_counts
from cumulo.sim.traces import RequestTrace, WindowTrace

__all__ = ["Load", "ServiceModel", "build_load"]

#: above this many requests a window trace is replayed as counts per step, not request by request
EXACT_LIMIT = 3_000_000


@dataclass(frozen=True)
class ServiceModel:
    service_time: float = 1.0
    base_s: float = 0.05
    prefill_s_per_token: float = 0.0002
    decode_s_per_token: float = 0.02
    use_tokens: bool = True

    def __post_init__(self) -> None:
        if self.service_time <= 0:
            raise InvalidSpec("service_time: must be > 0", errors=[{"field": "service_time", "message": "must be > 0"}])


@dataclass(frozen=True)
class Load:
    """Per-step arrivals. ``times``/``service`` are set when individual requests are known."""

    name: str
    step: float
    counts: np.ndarray
    work: np.ndarray
    mean_service: float
    times: np.ndarray | None = None
    service: np.ndarray | None = None

    @property
    def steps(self) -> int:
        return len(self.counts)

    @property
    def rates(self) -> np.ndarray:
        return self.counts / self.step


def _from_requests(name: str, times: np.ndarray, service: np.ndarray, step: float, duration: float) -> Load:
    n = max(1, int(np.ceil(duration / step)))
    idx = np.minimum((times / step).astype(np.int64), n - 1)
    counts = np.bincount(idx, minlength=n).astype(float)
    work = np.bincount(idx, weights=service, minlength=n)
    mean = float(service.mean()) if len(service) else 1.0
    return Load(name, step, counts, work, mean, times, service)


def build_load(
    trace: RequestTrace | WindowTrace,
    model: ServiceModel = ServiceModel(),
    *,
    step: float = 1.0,
    seed: int = 0,
    exact: bool | None = None,
) -> Load:
    if step <= 0:
        raise InvalidSpec("step: must be > 0", errors=[{"field": "step", "message": "must be > 0"}])
    if isinstance(trace, RequestTrace):
        if model.use_tokens and trace.input_tokens is not None and trace.output_tokens is not None:
            service = model.base_s + model.prefill_s_per_token * trace.input_tokens + model.decode_s_per_token * trace.output_tokens
        else:
            service = np.full(len(trace.times), model.service_time)
        return _from_requests(trace.name, trace.times, service, step, trace.duration)
    if exact is None:
        exact = expected_requests(trace) <= EXACT_LIMIT
    if exact:
        times = exact_arrivals(trace, seed)
        service = np.full(len(times), model.service_time)
        return _from_requests(trace.name, times, service, step, trace.duration)
    counts = step_counts(trace, step, seed)
    return Load(trace.name, step, counts, counts * model.service_time, model.service_time)
