"""A running job's health from its own reports (`cumulo.report`), as pure functions.

Two steps, both pure (times are passed in):

- ``observe(progress, points, received_at)``: fold a batch of reported points into the attempt's
  progress record (a small dict kept on the attempt row): when it last made progress (the control
  plane's clock, when the batch arrived), its own report cadence (the training detectors'
  ``ProgressState``: its last 8 intervals between progress points, on the job's clock), the newest
  step, the first non-finite loss, and the divergence detector's state. Constant work per point;
  the record stays a handful of numbers.
- ``assess(health, progress, now, started_at)``: is the attempt stalled, or did its loss go
  non-finite or diverge? A ``Verdict`` with the evidence, or None.

The detectors are `policy/anomaly/training.py`'s; this module holds what a job's spec makes of them.
Progress is a point whose ``step`` went up (a point without a step counts as progress). A loss is any
metric whose name contains "loss".
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from cumulo.core.specs import JobHealth
from cumulo.policy.anomaly import training

#: divergence, for a detector whose default action fails the job: the smoothed loss stays above ten
#: times its best (and 1e-3 above it) for 3 reports, after 10 reports of warm-up
DIVERGENCE = training.DivergenceParams(rise=9.0, min_rise=1e-3, warmup=10, patience=3)


def is_loss(metric: str) -> bool:
    return "loss" in metric.lower()


def _cadence(p: dict[str, Any]) -> training.ProgressState:
    c = p.get("cadence") or {}
    return training.ProgressState(last_t=c.get("last_t"), intervals=tuple(c.get("intervals", ())))


def observe(progress: dict[str, Any] | None, points: list[tuple[int | None, datetime, dict[str, float]]],
            received_at: datetime) -> dict[str, Any]:
    """The attempt's progress record after these points (in the order the job reported them)."""
    p = dict(progress or {})
    cadence = _cadence(p)
    div = training.DivergenceState(**p["div"]) if p.get("div") else training.DivergenceState()
    for step, t, values in points:
        ts = t.timestamp()
        if step is None or p.get("step") is None or step > p["step"]:
            cadence = training.record_report(cadence, ts)
            p["at"] = received_at.isoformat()
            p["reports"] = p.get("reports", 0) + 1
            if step is not None:
                p["step"] = step
        for name, v in values.items():
            if not is_loss(name):
                continue
            if training.check_finite(name, v).fires:
                p.setdefault("bad", {"metric": name, "value": repr(v), "step": step})
                continue
            div, verdict = training.step_divergence(DIVERGENCE, div, ts, v)
            if verdict.fires and "diverged" not in p:
                p["diverged"] = {"metric": name, "value": v, "best": verdict.expected, "step": step}
    p["cadence"] = {"last_t": cadence.last_t, "intervals": list(cadence.intervals)}
    p["div"] = {k: x for k, x in asdict(div).items() if not (k == "best" and math.isinf(x))}  # JSON has no inf
    return p


def progress_timeout(health: JobHealth, progress: dict[str, Any] | None) -> float | None:
    """Seconds without progress after which the attempt is stalled; None: not judged (yet)."""
    if health.progress_timeout is None:
        return None
    return training.progress_timeout(_cadence(progress or {}), health.progress_timeout)


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
    how = f"auto: 3x its longest recent report interval, at least {training.MIN_PROGRESS_TIMEOUT_S:g}s" \
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
