"""The built-in deployment detectors over a real metrics store: a latency jump opens
DeploymentLatencyAnomaly and it resolves once latency is back; steady noise opens nothing; an
error burst burns the error budget."""

from __future__ import annotations

import random
from datetime import UTC, datetime

import pytest

from cumulo.control.detectors import ServiceDetectors
from cumulo.policy.anomaly.burn_rate import BurnParams
from cumulo.services.alerts import AlertService
from cumulo.store import metrics
from cumulo.store.db import Database
from cumulo.store.migrate import upgrade

T0 = 1_780_000_000


@pytest.fixture
def db(database_url):
    d = Database(database_url)
    upgrade(d.engine)
    yield d
    d.dispose()


def key(metric, name="web"):
    return metrics.SeriesKey("deployment", "default", name, "", metric)


def feed(db, det, start, values: dict[str, list[float]]):
    """Write one sample per metric every 10 s, running the detectors after each (as the passes do)."""
    n = len(next(iter(values.values())))
    for i in range(n):
        t = start + 10 * i
        with db.tx() as s:
            metrics.write(s, t, {key(m): v[i] for m, v in values.items()})
        with db.tx() as s:
            det.run(s, datetime.fromtimestamp(t + 1, UTC))
    return start + 10 * n


def rules(db, states=("firing",)):
    return [a.rule for a in AlertService(db).alerts(states=list(states))]


def test_a_latency_jump_fires_and_resolves_and_noise_does_not(db):
    rnd = random.Random(7)
    det = ServiceDetectors(10)
    normal = [0.05 + rnd.gauss(0, 0.004) for _ in range(200)]
    t = feed(db, det, T0, {"latency_p99_seconds": normal, "request_rate": [50 + rnd.gauss(0, 2) for _ in normal]})
    assert rules(db, ("pending", "firing", "resolved")) == []  # 200 samples of noise: nothing
    t = feed(db, det, t, {"latency_p99_seconds": [0.5] * 5, "request_rate": [50.0] * 5})
    firing = AlertService(db).alerts()
    assert [a.rule for a in firing] == ["DeploymentLatencyAnomaly"], [a.summary for a in firing]
    assert firing[0].object == "web" and firing[0].evidence["value"] == pytest.approx(0.5)
    feed(db, det, t, {"latency_p99_seconds": [0.05 + rnd.gauss(0, 0.004) for _ in range(60)],
                      "request_rate": [50.0] * 60})
    assert rules(db) == [] and rules(db, ("resolved",)) == ["DeploymentLatencyAnomaly"]


def test_an_error_burst_burns_the_budget(db):
    det = ServiceDetectors(10, burn=BurnParams(objective=0.99, pairs=((300.0, 60.0, 10.0),), bucket_s=10.0))
    t = feed(db, det, T0, {"error_rate": [0.0] * 30, "request_rate": [20.0] * 30})
    assert "DeploymentErrorBudgetBurn" not in rules(db)
    t = feed(db, det, t, {"error_rate": [0.5] * 10, "request_rate": [20.0] * 10})
    assert "DeploymentErrorBudgetBurn" in rules(db)
    feed(db, det, t, {"error_rate": [0.0] * 12, "request_rate": [20.0] * 12})
    assert "DeploymentErrorBudgetBurn" not in rules(db)  # the short window reset it
