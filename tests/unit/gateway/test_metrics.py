"""Per-deployment stats: arrivals and queue time in the snapshot and the Prometheus exposition."""

from __future__ import annotations

from cumulo.gateway.metrics import DeploymentStats, exposition


def test_queue_time_histogram_and_arrivals():
    s = DeploymentStats("m", clock=lambda: 1000.0)
    for _ in range(3):
        s.started(1000.0)
    s.queue_buckets[0] += 1  # handed on at once
    s.queued(0.3)  # held while a replica started
    s.queued(2.0)
    s.finished(200, 0.01)
    snap = s.snapshot()
    assert snap["arrivals_total"] == 3 and snap["requests_total"] == 1 and snap["in_flight"] == 2
    q = snap["queue_seconds"]
    assert q["count"] == 3 and abs(q["sum"] - 2.3) < 1e-9 and abs(q["mean"] - 2.3 / 3) < 1e-9
    assert q["buckets"]["0.0005"] == 1 and q["buckets"]["0.5"] == 1 and q["buckets"]["2.5"] == 1
    assert 0.25 < q["p50"] <= 0.5
    assert DeploymentStats("x").snapshot()["queue_seconds"]["p50"] is None


def test_exposition_has_arrivals_and_queue_time():
    s = DeploymentStats("m")
    s.started(0.0)
    s.started(0.0)
    s.queue_buckets[0] += 1
    s.queued(0.3)
    s.finished(499, 0.5)
    text = exposition(lambda: [s]).decode()
    assert "# TYPE cumulo_gateway_arrivals_total counter" in text
    assert 'cumulo_gateway_arrivals_total{deployment="m"} 2.0' in text
    assert "# TYPE cumulo_gateway_queue_seconds histogram" in text
    assert 'cumulo_gateway_queue_seconds_bucket{deployment="m",le="0.0005"} 1.0' in text
    assert 'cumulo_gateway_queue_seconds_bucket{deployment="m",le="0.5"} 2.0' in text
    assert 'cumulo_gateway_queue_seconds_count{deployment="m"} 2.0' in text
    assert 'cumulo_gateway_queue_seconds_sum{deployment="m"} 0.3' in text
    assert 'cumulo_gateway_requests_total{code="499",deployment="m"} 1.0' in text


def test_in_flight_seconds_integrate_requests_in_flight_over_time():
    from cumulo.gateway.metrics import DeploymentStats

    t = [0.0]
    s = DeploymentStats("d", clock=lambda: t[0])
    s.started(0.0)
    s.started(1.0)
    s.finished(200, 2.0, start=0.0)  # the first ended at t = 2
    t[0] = 3.0
    assert s.in_flight_seconds() == 4.0  # 2 s of the first + 2 s (so far) of the second
    s.finished(200, 3.0, start=1.0)  # the second ends at t = 4
    t[0] = 10.0
    assert s.in_flight_seconds() == 5.0  # nothing in flight since
    assert s.snapshot()["in_flight_seconds_total"] == 5.0
