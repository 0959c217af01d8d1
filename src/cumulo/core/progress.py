"""Training progress from a job's own reports: steps/s, fraction done and ETA. Pure (now passed in)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

#: steps/s is measured over the reports of this many seconds before the newest one
RATE_WINDOW = 60.0


@dataclass(frozen=True)
class Progress:
    step: int | None
    total_steps: int | None
    #: step / total_steps, when the job reports total_steps
    fraction: float | None
    steps_per_second: float | None
    #: seconds to total_steps at the current rate, counted from `now`
    eta_seconds: float | None
    #: seconds since the newest report
    since_report: float | None
    #: mean seconds between the recent reports (what "stalled" is measured against)
    report_interval: float | None


def estimate(points: Sequence[tuple[float, int]], total_steps: float | None, now: float) -> Progress:
    """`points`: (Unix time, step) of reports, any order. The rate is over the last RATE_WINDOW
    seconds of reports (at least the two newest); the ETA counts from the newest report."""
    pts = sorted({(t, s) for t, s in points if s is not None})
    total = int(total_steps) if total_steps is not None and total_steps > 0 else None
    if not pts:
        return Progress(None, total, None, None, None, None, None)
    t1, s1 = pts[-1]
    window = [p for p in pts if p[0] >= t1 - RATE_WINDOW]
    if len(window) < 2:
        window = pts[-2:]
    rate = interval = None
    if len(window) >= 2:
        t0, s0 = window[0]
        if t1 > t0:
            rate = max((s1 - s0) / (t1 - t0), 0.0)
            interval = (t1 - t0) / (len(window) - 1)
    fraction = min(s1 / total, 1.0) if total else None
    eta = None
    if total is not None and rate:
        eta = max((total - s1) / rate - (now - t1), 0.0)
    elif total is not None and s1 >= total:
        eta = 0.0
    return Progress(s1, total, fraction, None if rate is None else round(rate, 4), eta, max(now - t1, 0.0), interval)
