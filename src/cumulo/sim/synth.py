"""Arrivals synthesised from per-window rates (ServeGen), always from a seeded generator.

Two ways, chosen by size:

- :func:`exact_arrivals`: every request, as a renewal process per client and window whose
  inter-arrival times follow the window's fitted distribution (Gamma or Weibull with shape ``p1``,
  else exponential), rescaled so the mean rate is the window's ``rate_rps`` (the publisher scaled
  the rates, so only the shape is used). For one client or a few hours.
- :func:`step_counts`: requests per time step for the whole trace without drawing each request
  (14 days of m-large are ~237 M requests). Each step's count is a gamma-mixed Poisson draw with the
  windows' summed mean and a summed variance ``sum(D_i * rate_i * step)``, where ``D_i`` is the
  index of dispersion of client i's renewal process over one step. It rises from 1 (steps much
  shorter than an inter-arrival gap) towards ``cv_i**2`` (its limit for long windows):
  ``D_i = 1 + (cv_i**2 - 1) * (1 - exp(-rate_i * step / max(cv_i**2, 1)))``, an interpolation
  between the two known limits, not an exact law. Steps are independent within a window, so
  bursts longer than one step are smoothed out; the 600 s rate changes themselves are kept exactly.
"""

from __future__ import annotations

import math

import numpy as np

from cumulo.sim.traces import Window, WindowTrace

__all__ = ["exact_arrivals", "expected_requests", "step_counts"]


def expected_requests(trace: WindowTrace) -> float:
    return sum(w.rate for c in trace.clients for w in c) * trace.window


def _iat(w: Window, n: int, rng: np.random.Generator) -> np.ndarray:
    mean = 1.0 / w.rate
    if w.distribution == "Gamma" and w.p1 > 0:
        return rng.gamma(w.p1, mean / w.p1, n)
    if w.distribution == "Weibull" and w.p1 > 0:
        return rng.weibull(w.p1, n) * (mean / math.gamma(1 + 1 / w.p1))
    return rng.exponential(mean, n)


def exact_arrivals(trace: WindowTrace, seed: int) -> np.ndarray:
    """Every request's arrival time (s), sorted, for all clients of ``trace``."""
    rng = np.random.default_rng(seed)
    parts: list[np.ndarray] = []
    for client in trace.clients:
        for w in client:
            if w.rate <= 0:
                continue
            end = w.start + trace.window
            expected = w.rate * trace.window
            # start at a random phase of the first gap, then draw until the window is covered
            t = w.start + rng.uniform() * _iat(w, 1, rng)[0]
            got: list[np.ndarray] = []
            while t < end:
                gaps = _iat(w, int(expected * 1.2) + 16, rng)
                times = t + np.concatenate(([0.0], np.cumsum(gaps[:-1])))
                got.append(times[times < end])
                t = times[-1] + gaps[-1]
            parts.append(np.concatenate(got) if got else np.zeros(0))
    if not parts:
        return np.zeros(0)
    out = np.concatenate(parts)
    out.sort(kind="stable")
    return out


def step_counts(trace: WindowTrace, step: float, seed: int) -> np.ndarray:
    """Requests arriving in each ``step`` seconds from 0 to the trace's end (see the module doc)."""
    rng = np.random.default_rng(seed)
    n_windows = int(round(trace.duration / trace.window))
    mean = np.zeros(n_windows)
    var = np.zeros(n_windows)
    for client in trace.clients:
        for w in client:
            if w.rate <= 0:
                continue
            i = int(round(w.start / trace.window))
            lam = w.rate * step
            c2 = w.cv * w.cv
            d = 1.0 + (c2 - 1.0) * (1.0 - math.exp(-lam / max(c2, 1.0)))
            mean[i] += lam
            var[i] += d * lam
    per_window = int(round(trace.window / step))
    m = np.repeat(mean, per_window)
    v = np.repeat(var, per_window)
    extra = np.maximum(v - m, 0.0)
    over = extra > 1e-12 * np.maximum(m, 1e-300)
    lam = m.copy()
    if over.any():
        shape = m[over] ** 2 / extra[over]
        lam[over] = rng.gamma(shape, m[over] / shape)
    return rng.poisson(lam).astype(float)
