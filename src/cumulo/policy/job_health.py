"""A running job's health from its own reports (`cumulo.report`), as pure functions.

Two steps, both pure (times are passed in):

- ``observe(progress, points, received_at)``: fold a batch of reported points into the attempt's
  progress record (a small dict kept on the attempt row): when it last made progress (the control
  plane's clock, when the batch arrived), its own report cadence (an EWMA of the gaps between
  points, on the job's clock), the newest step, the first non-finite loss, the best loss so far.
  Constant work per point; the record stays a handful of numbers.
- ``assess(health, progress, now, started_at)``: is the attempt stalled, or did its loss go
  non-finite or diverge? A ``Verdict`` with the evidence, or None.

Progress is a point whose ``step`` went up (a point without a step counts as progress). A loss is any
metric whose name contains "loss".
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from cumulo.core.specs import JobHealth

#: `progress_timeout: auto` waits this many of the job's own report intervals ...
AUTO_INTERVALS = 3.0
#: ... and never less than this
AUTO_MINIMUM = 30.0
#: weight of the newest gap in the report-interval average
EWMA = 0.3
#: a loss this many times its best so far (and above it by more than DIVERGE_MARGIN) has diverged
DIVERGE_FACTOR = 100.0
DIVERGE_MARGIN = 1.0
#: losses seen before divergence is judged at all
DIVERGE_WARMUP = 5


def is_loss(metric: str) -> bool:
    return "loss" in metric.lower()


def observe(progress: dict[str, Any] | None, points: list[tuple[int | None, datetime, dict[str, float]]],
            received_at: datetime) -> dict[str, Any]:
    """The attempt's progress record after these points (in the order the job reported them)."""
    p = dict(progress or {})
    for step, t, values in points:
        ts = t.timestamp()
        advanced = step is None or p.get("step") is None or step > p["step"]
        if advanced:
            last = p.get("time")
            if last is not None and ts > last:
                gap = ts - last
                p["interval"] = gap if p.get("interval") is None else EWMA * gap + (1 - EWMA) * p["interval"]
            p["time"] = ts
            p["at"] = received_at.isoformat()
            p["reports"] = p.get("reports", 0) + 1
            if step is not None:
                p["step"] = step
        for name, v in values.items():
            if not is_loss(name):
                continue
            if not math.isfinite(v):
                p.setdefault("bad", {"metric": name, "value": repr(v), "step": step})
                continue
            p["losses"] = p.get("losses", 0) + 1
            best = p.get("best")
            if best is None or v < best:
                p["best"] = v
            elif (p["losses"] > DIVERGE_WARMUP and v > best + DIVERGE_MARGIN
                  and v > best + DIVERGE_FACTOR * abs(best) and "diverged" not in p):
                p["diverged"] = {"metric": name, "value": v, "best": best, "step": step}
    return p


def progress_timeout(health: JobHealth, progress: dict[str, Any] | None) -> float | None:
    """Seconds without progress after which the attempt is stalled; None: not judged (yet)."""
    t = health.progress_timeout
    if t is None:
        return None
    if t == "auto":
        interval = (progress or {}).get("interval")
        if interval is None:  # fewer than two reports: no cadence of its own to hold it to
            return None
        return max(AUTO_MINIMUM, AUTO_INTERVALS * interval)
    return float(t)


@dataclass(frozen=True)
class Verdict:
    kind: str  # "stalled" | "nan" | "diverged"
    #: what the attempt's reason and the event say, with the evidence
    message: str
    #: what the job's health spec says to do: "restart" | "fail" | "alert"
    action: str


def assess(health: JobHealth, progress: dict[str, Any] | None, now: datetime, started_at: datetime) -> Verdict | None:
    p = progress or {}
    bad = p.get("bad")
    if bad is not None:
        where = f" at step {bad['step']}" if bad.get("step") is not None else ""
        return Verdict("nan", f"{bad['metric']} is {bad['value']}{where}", health.on_nan)
    div = p.get("diverged")
    if div is not None:
        where = f" at step {div['step']}" if div.get("step") is not None else ""
        return Verdict("diverged", f"{div['metric']} diverged to {div['value']:.4g}{where} "
                       f"(best so far {div['best']:.4g})", health.on_nan)
    timeout = progress_timeout(health, p)
    if timeout is None:
        return None
    since = datetime.fromisoformat(p["at"]) if p.get("at") else started_at
    quiet = (now - since).total_seconds()
    if quiet <= timeout:
        return None
    last = f"step {p['step']}" if p.get("step") is not None else ("its last report" if p.get("at") else "its start")
    how = "auto: 3x its report interval of " + f"{p['interval']:.3g}s, at least 30s" \
        if health.progress_timeout == "auto" else f"progress_timeout {timeout:g}s"
    return Verdict("stalled", f"no progress for {quiet:.0f}s since {last} ({how})", health.on_stall)


def next_check(health: JobHealth, progress: dict[str, Any] | None, now: datetime, started_at: datetime) -> float | None:
    """Seconds until a stall could be declared (for the reconciler's requeue), None: never."""
    timeout = progress_timeout(health, progress)
    if timeout is None:
        return None
    p = progress or {}
    since = datetime.fromisoformat(p["at"]) if p.get("at") else started_at
    return max(0.0, timeout - (now - since).total_seconds()) + 0.01
