"""The console's pure parts: chart shaping and where a sign-in may send the browser."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

from cumulo.console.series import MAX_POINTS, training_charts
from cumulo.console.session import safe_next
from cumulo.core.views import MetricPoint

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def point(i: int, attempt: int = 1, step: int | None = None, **values: float) -> MetricPoint:
    return MetricPoint(attempt=attempt, step=i if step is None else step, time=T0 + timedelta(seconds=i), values=values)


def test_charts_put_loss_and_accuracy_first_and_derive_steps_per_second():
    pts = [point(i, loss=1 / (i + 1), accuracy=i / 10, lr=0.1) for i in range(4)]
    charts = training_charts(pts)
    assert [c["title"] for c in charts] == ["loss", "accuracy", "lr", "steps/s"]
    assert charts[0]["x"] == [(T0 + timedelta(seconds=i)).timestamp() for i in range(4)]
    assert charts[-1]["series"]["steps/s"] == [1.0, 1.0, 1.0]


def test_a_non_finite_value_is_a_gap_and_a_restart_has_no_rate_across_it():
    pts = [point(0, loss=1.0), point(1, loss=math.nan), point(2, step=0, attempt=2, loss=math.inf), point(3, step=1, attempt=2, loss=0.5)]
    charts = {c["title"]: c for c in training_charts(pts)}
    assert charts["loss"]["series"]["loss"] == [1.0, None, None, 0.5]
    assert charts["steps/s"]["series"]["steps/s"] == [1.0, 1.0]  # 0->1 and 0->1; none for 1->0


def test_long_series_are_thinned_and_keep_the_newest_point():
    pts = [point(i, loss=float(i)) for i in range(5000)]
    loss = training_charts(pts)[0]
    assert len(loss["x"]) == MAX_POINTS and loss["series"]["loss"][-1] == 4999.0


def test_no_reports_no_charts():
    assert training_charts([]) == []


def test_sign_in_only_returns_to_a_path_on_this_site():
    assert safe_next("/jobs/x?state=Running") == "/jobs/x?state=Running"
    for bad in (None, "", "https://evil.example/", "//evil.example/x", "/\\evil.example", "javascript:alert(1)"):
        assert safe_next(bad) == "/"


def test_sampled_series_become_charts_per_rank_and_for_the_whole_deployment():
    from datetime import UTC, datetime

    from cumulo.console.series import DEPLOYMENT_CHARTS, PROCESS_CHARTS, _charts
    from cumulo.core.views import SeriesReport, SeriesView

    t = datetime(2026, 1, 1, tzinfo=UTC)
    report = SeriesReport(kind="job", object="train", since=t, until=t, step=10, series=[
        SeriesView(kind="job", object="train", instance="0", metric="cpu_percent", points=[(10, 50.0, 60.0), (20, 70.0, 80.0)]),
        SeriesView(kind="job", object="train", instance="1", metric="cpu_percent", points=[(20, 30.0, 30.0)]),
        SeriesView(kind="job", object="train", instance="0", metric="memory_bytes", points=[(10, 2**21, 2**21)]),
    ])
    cpu, mem = _charts(report, PROCESS_CHARTS, per_instance=True)
    assert cpu == {"title": "CPU", "unit": "%", "x": [10, 20], "series": {"rank 0": [50.0, 70.0], "rank 1": [None, 30.0]}}
    assert mem["series"] == {"rank 0": [2.0]} and mem["unit"] == "MiB"
    dep = SeriesReport(kind="deployment", object="web", since=t, until=t, step=10, series=[
        SeriesView(kind="deployment", object="web", instance="", metric="latency_p99_seconds", points=[(10, 0.25, 0.3)]),
        SeriesView(kind="deployment", object="web", instance="2", metric="latency_p99_seconds", points=[(10, 9.0, 9.0)]),
    ])
    assert _charts(dep, DEPLOYMENT_CHARTS, per_instance=False) == [
        {"title": "p99 latency", "unit": "ms", "x": [10], "series": {"p99 latency": [250.0]}}]
