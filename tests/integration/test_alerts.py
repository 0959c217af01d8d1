"""The alert reconciler on a real store with a real webhook receiver: rules fire after `for`,
resolve, notify in Alertmanager's format, retry a failing webhook, and survive a restart without
repeating what was acknowledged. The metric values come from the test (the sampler is not the
subject here: the values are written to the real metrics store and read back by the real reader);
tests/e2e covers alerts from real jobs."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from cumulo.control.alerts import AlertReconciler, metric_reader
from cumulo.services.alerts import AlertService
from cumulo.store import metrics
from cumulo.store.db import Database
from cumulo.store.migrate import upgrade
from tests.helpers import WebhookReceiver

T0 = datetime(2026, 3, 1, tzinfo=UTC)


class Clock:
    def __init__(self):
        self.now = T0

    def __call__(self):
        return self.now

    def tick(self, seconds):
        self.now += timedelta(seconds=seconds)


class Series:
    """The monitored values: each evaluation first writes them to the real metrics store as the
    sampler would (one sample per series at that second), then the real reader reads them back."""

    def __init__(self, db):
        self.db = db
        self.values: dict[tuple[str, str], float] = {}

    def __call__(self, spec, workspace, now):
        with self.db.tx() as s:
            metrics.write(s, int(now.timestamp()), {
                metrics.SeriesKey(spec.target, workspace, obj, inst, spec.metric): v
                for (obj, inst), v in self.values.items()})
        return metric_reader(self.db, 10)(spec, workspace, now)


@pytest.fixture
def db(database_url):
    d = Database(database_url)
    upgrade(d.engine)
    yield d
    d.dispose()


@pytest.fixture
def receiver():
    r = WebhookReceiver()
    yield r
    r.close()


RULE = {"kind": "AlertRule", "name": "web-slow", "target": "deployment", "object": "web*", "metric": "latency_p99_seconds",
        "threshold": {"above": 0.5}, "for": "30s", "severity": "critical"}


def make(db, receiver_urls, clock, series):
    return AlertReconciler(db, webhooks=receiver_urls, external_url="http://127.0.0.1:1", read_series=series,
                           clock=clock, period=10)


def test_a_rule_fires_after_for_resolves_and_tells_the_webhook_each_once(db, receiver):
    clock, series = Clock(), Series(db)
    svc = AlertService(db, clock=clock)
    svc.put_rule(RULE)
    rec = make(db, [receiver.url], clock, series)
    series.values = {("web", "0"): 0.9, ("web", "1"): 0.1, ("api", "0"): 5.0}  # api does not match web*
    rec.evaluate()
    assert [a.state for a in svc.alerts(states=["pending"])] == ["pending"]
    assert svc.alerts() == []  # pending is not firing
    clock.tick(31)
    rec.evaluate()
    rec.notify()
    firing = svc.alerts()
    assert [(a.object, a.instance, a.state) for a in firing] == [("web", "0", "firing")]
    assert firing[0].evidence["value"] == 0.9 and firing[0].evidence["threshold"] == {"above": 0.5}
    assert receiver.statuses("web-slow") == ["firing"]
    body = receiver.bodies[0]
    assert body["alerts"][0]["labels"]["deployment"] == "web" and body["alerts"][0]["labels"]["severity"] == "critical"
    rec.notify()  # nothing new to tell
    assert len(receiver.bodies) == 1
    series.values[("web", "0")] = 0.2
    clock.tick(10)
    rec.evaluate()
    rec.notify()
    assert receiver.statuses("web-slow") == ["firing", "resolved"]
    resolved = svc.alerts(states=["resolved"])
    assert len(resolved) == 1 and "within the threshold" in resolved[0].evidence["resolved"]
    assert svc.rules()[0].firing == 0


def test_a_failing_webhook_is_retried_with_backoff_until_it_takes_it(db):
    receiver = WebhookReceiver(fail_first=2)
    try:
        clock, series = Clock(), Series(db)
        AlertService(db, clock=clock).put_rule({**RULE, "for": 0})
        rec = make(db, [receiver.url], clock, series)
        series.values = {("web", "0"): 1.0}
        rec.evaluate()
        wait = rec.notify()
        assert receiver.attempts == 1 and receiver.bodies == [] and 1.5 < wait <= 2.0
        assert "503" in AlertService(db).alerts()[0].notify_error
        clock.tick(wait)
        rec.notify()
        clock.tick(4)
        rec.notify()
        assert receiver.attempts == 3 and receiver.statuses() == ["firing"]
        assert AlertService(db).alerts()[0].notify_error == ""
    finally:
        receiver.close()


def test_a_restart_repeats_no_acknowledged_notification_and_finishes_the_rest(db, receiver):
    clock, series = Clock(), Series(db)
    AlertService(db, clock=clock).put_rule({**RULE, "for": 0})
    dead = "http://127.0.0.1:9/never"  # nothing listens: this one keeps failing
    rec = make(db, [receiver.url, dead], clock, series)
    series.values = {("web", "0"): 1.0}
    rec.evaluate()
    rec.notify()
    assert receiver.statuses() == ["firing"]
    # a new control plane process on the same store, now with only the working webhook
    rec2 = make(db, [receiver.url], clock, series)
    clock.tick(5)
    rec2.notify()
    assert receiver.statuses() == ["firing"]  # not told twice


def test_deleting_a_rule_resolves_its_alerts_and_bad_rules_are_refused(db, receiver):
    clock, series = Clock(), Series(db)
    svc = AlertService(db, clock=clock)
    svc.put_rule({**RULE, "for": 0})
    rec = make(db, [receiver.url], clock, series)
    series.values = {("web", "0"): 1.0}
    rec.evaluate()
    svc.delete_rule("web-slow")
    assert svc.alerts() == [] and svc.alerts(states=["resolved"])[0].evidence["resolved"] == "its rule 'web-slow' was deleted"
    from cumulo.core.errors import InvalidSpec
    with pytest.raises(InvalidSpec, match="threshold"):
        svc.put_rule({**RULE, "threshold": {}})
    with pytest.raises(InvalidSpec, match="state 'open' is not an alert state"):
        svc.alerts(states=["open"])
