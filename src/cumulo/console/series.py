"""Time series the console charts, shaped for uPlot: {"x": [unix seconds], "series": {label: [y]}}.

- Training metrics come from what a job reported with `cumulo.report()` (JobService.metrics):
  one chart per metric (loss and accuracy first), plus steps/s derived from successive steps.
- MONITORING ADAPTER: `deployment_series` and `process_series` are where the monitoring service
  (replica req/s, p50/p99 latency, errors; a job's process CPU and memory over time) plugs in.
  Today they return None and the pages show the current numbers instead (the gateway's live
  counters, the attempt's last observed CPU/RSS). When `app.state.monitor` exists, fill these in
  (same return shape) and the charts appear on /deployments/NAME and /jobs/NAME with no template
  change: the templates draw every chart these functions return.
"""

from __future__ import annotations

import math
from typing import Any

from cumulo.core.views import MetricPoint

#: charts shown first, in this order; any other reported metric follows, alphabetically
FIRST = ("loss", "accuracy")
#: at most this many points per chart (older points are thinned evenly)
MAX_POINTS = 600


def training_charts(points: list[MetricPoint]) -> list[dict[str, Any]]:
    """Charts of a job's reported metrics: [{"title", "unit", "x", "series": {label: ys}}]."""
    by_name: dict[str, list[tuple[float, float | None]]] = {}
    steps: list[tuple[float, int]] = []
    for p in sorted(points, key=lambda p: (p.time, p.attempt)):
        t = p.time.timestamp()
        if p.step is not None:
            steps.append((t, p.step))
        for name, value in p.values.items():
            by_name.setdefault(name, []).append((t, value if math.isfinite(value) else None))
    names = [n for n in FIRST if n in by_name] + sorted(n for n in by_name if n not in FIRST)
    charts = [_chart(name, "", by_name[name]) for name in names]
    rate = _rates(steps)
    if rate:
        charts.append(_chart("steps/s", "steps/s", rate))
    return charts


def _rates(steps: list[tuple[float, int]]) -> list[tuple[float, float | None]]:
    out = []
    for (t0, s0), (t1, s1) in zip(steps, steps[1:], strict=False):
        if t1 > t0 and s1 >= s0:  # a restarted attempt resumes at an older step: no rate across it
            out.append((t1, round((s1 - s0) / (t1 - t0), 6)))
    return out


def _chart(title: str, unit: str, pts: list[tuple[float, float | None]]) -> dict[str, Any]:
    if len(pts) > MAX_POINTS:
        stride = len(pts) / MAX_POINTS
        pts = [pts[int(i * stride)] for i in range(MAX_POINTS - 1)] + [pts[-1]]
    return {"title": title, "unit": unit, "x": [round(t, 3) for t, _ in pts], "series": {title: [v for _, v in pts]}}


# -- MONITORING ADAPTER: the monitoring service's sampled series (monitor/) ----------------------------
#: deployment-wide series charted on /deployments/NAME, in this order (title, metric, unit, scale)
DEPLOYMENT_CHARTS = (("requests/s", "request_rate", "req/s", 1.0),
                     ("p50 latency", "latency_p50_seconds", "ms", 1000.0),
                     ("p99 latency", "latency_p99_seconds", "ms", 1000.0),
                     ("error rate", "error_rate", "%", 100.0))
#: per-rank series charted on /jobs/NAME
PROCESS_CHARTS = (("CPU", "cpu_percent", "%", 1.0), ("memory", "memory_bytes", "MiB", 1 / 2**20))


def _sampled(app: Any, kind: str, workspace: str, name: str, since: str = "1h"):
    monitor = getattr(app.state, "monitor", None)
    if monitor is None:
        return None
    from cumulo.core.tokens import Scope

    try:
        return monitor.series(kind, name, Scope(workspace=workspace), since=since)
    except Exception:  # a chart must never take the page down
        return None


def _charts(report, wanted, *, per_instance: bool) -> list[dict[str, Any]]:
    out = []
    for title, metric, unit, scale in wanted:
        rows = [d for d in report.series if d.metric == metric and (per_instance or d.instance == "")]
        if not rows:
            continue
        xs = sorted({int(p[0]) for d in rows for p in d.points})
        if len(xs) > MAX_POINTS:
            xs = xs[-MAX_POINTS:]
        series = {}
        for d in sorted(rows, key=lambda d: d.instance):
            by_t = {int(p[0]): p[1] for p in d.points}
            label = f"rank {d.instance}" if per_instance and d.instance else title
            series[label] = [None if by_t.get(x) is None else round(by_t[x] * scale, 4) for x in xs]
        out.append({"title": title, "unit": unit, "x": xs, "series": series})
    return out


def deployment_series(app: Any, workspace: str, name: str) -> list[dict[str, Any]] | None:
    """Charts of a deployment's req/s, p50/p99 latency and errors over the last hour (the sampler's
    series), or None when no monitoring service is wired (app.state.monitor)."""
    report = _sampled(app, "deployment", workspace, name)
    return None if report is None else _charts(report, DEPLOYMENT_CHARTS, per_instance=False)


def process_series(app: Any, workspace: str, job: str) -> list[dict[str, Any]] | None:
    """Charts of a job's processes' CPU % and memory per rank over the last hour, or None."""
    report = _sampled(app, "job", workspace, job)
    return None if report is None else _charts(report, PROCESS_CHARTS, per_instance=True)
