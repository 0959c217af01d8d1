"""Building inputs for the autoscaling policy tests."""

from __future__ import annotations

import numpy as np

from cumulo.policy.autoscaling.base import AutoscaleInput, LoadWindow


def inp(
    now: float,
    *,
    rate: float | list[float] = 0.0,
    conc: float | list[float] = 0.0,
    ready: int = 1,
    starting: int = 0,
    target_concurrency: float = 10.0,
    target_rps: float = 10.0,
    min_replicas: int = 1,
    max_replicas: int = 100,
    cold_start: float = 30.0,
    state: object = None,
    samples: int = 600,
) -> AutoscaleInput:
    r = np.asarray(rate, dtype=float) if isinstance(rate, list) else np.full(samples, float(rate))
    c = np.asarray(conc, dtype=float) if isinstance(conc, list) else np.full(len(r), float(conc))
    return AutoscaleInput(
        now=now,
        load=LoadWindow(1.0, r, c),
        ready=ready,
        starting=starting,
        target_concurrency=target_concurrency,
        target_rps=target_rps,
        min_replicas=min_replicas,
        max_replicas=max_replicas,
        cold_start=cold_start,
        state=state,
    )


def drive(decide, config, loads, *, start: float = 0.0, step: float = 1.0, replicas: int = 1, **kw):
    """Call ``decide`` every ``step`` seconds with (rate, conc) from ``loads``; replicas follow the
    decisions at once. Returns the list of (now, desired, reason)."""
    state = None
    out = []
    n = replicas
    for i, (rate, conc) in enumerate(loads):
        now = start + (i + 1) * step
        d = decide(inp(now, rate=rate, conc=conc, ready=n, state=state, **kw), config)
        state = d.state
        n = d.desired
        out.append((now, d.desired, d.reason))
    return out
