"""Alerts as pure functions (policy/alerts.py)."""

import math
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cumulo.policy.alerts import (
    DELIVERY_ATTEMPTS, FIRING, PENDING, RESOLVED, RETRY_MAX, AlertState, advance, breached, fingerprint, retry_delay,
    webhook_body,
)

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def at(s: float) -> datetime:
    return T0 + timedelta(seconds=s)


@pytest.mark.parametrize("value,above,below,expected", [
    (5, 4, None, True), (4, 4, None, False), (3, None, 4, True), (4, None, 4, False), (math.nan, 4, None, True),
    (math.inf, 4, None, True), (-math.inf, None, 0, True),
])
def test_breached(value, above, below, expected):
    assert breached(value, above=above, below=below) is expected


def test_a_breach_is_pending_until_it_has_lasted_for_then_fires_once_then_resolves():
    s, told = advance(None, True, at(0), hold=30)
    assert s.state == PENDING and told is None
    s, told = advance(s, True, at(29), hold=30)
    assert s.state == PENDING and told is None
    s, told = advance(s, True, at(30), hold=30)
    assert s.state == FIRING and told == FIRING and s.fired_at == at(30) and s.since == at(0)
    s, told = advance(s, True, at(40), hold=30)
    assert s.state == FIRING and told is None
    s, told = advance(s, False, at(50), hold=30)
    assert s.state == RESOLVED and told == RESOLVED and s.resolved_at == at(50)
    s2, told = advance(s, False, at(60), hold=30)
    assert s2 is None and told is None  # resolved stays told once


def test_a_pending_breach_that_ends_before_for_never_fires():
    s, _ = advance(None, True, at(0), hold=30)
    assert advance(s, False, at(10), hold=30) == (None, None)


def test_for_zero_fires_on_the_first_breach_and_a_new_breach_after_resolve_is_a_new_episode():
    s, told = advance(None, True, at(0), hold=0)
    assert told == FIRING
    s, told = advance(s, False, at(1), hold=0)
    assert told == RESOLVED
    s, told = advance(s, True, at(2), hold=0)
    assert told == FIRING and s.since == at(2)


@given(st.lists(st.booleans(), max_size=60), st.integers(min_value=0, max_value=20))
def test_transitions_alternate_firing_resolved_and_every_firing_had_its_hold(breaches, hold):
    s, told_all = None, []
    for i, b in enumerate(breaches):
        s, told = advance(s, b, at(i), hold)
        if told:
            told_all.append((told, i, s))
    kinds = [t for t, _, _ in told_all]
    assert all(a != b for a, b in zip(kinds, kinds[1:])) and (not kinds or kinds[0] == FIRING)
    for t, i, st_ in told_all:
        if t == FIRING:
            assert (at(i) - st_.since).total_seconds() >= hold


def test_retries_back_off_and_are_capped():
    delays = [retry_delay(n) for n in range(1, DELIVERY_ATTEMPTS + 3)]
    assert delays[0] == 2 and delays == sorted(delays) and max(delays) == RETRY_MAX


def test_the_webhook_body_is_alertmanagers_format():
    a = {"rule": "web-slow", "workspace": "team", "target": "deployment", "object": "web", "instance": "2",
         "severity": "critical", "summary": "p99 is 1.2", "description": "value 1.2; threshold above 0.5",
         "started_at": at(0), "resolved_at": at(60), "fingerprint": fingerprint("team", "web-slow", "deployment", "web", "2")}
    firing = webhook_body(a, status=FIRING, external_url="http://127.0.0.1:8200")
    assert firing["version"] == "4" and firing["status"] == "firing" and firing["receiver"] == "cumulo"
    one = firing["alerts"][0]
    assert one["labels"] == {"alertname": "web-slow", "severity": "critical", "workspace": "team",
                             "deployment": "web", "instance": "2"}
    assert one["annotations"]["summary"] == "p99 is 1.2" and one["startsAt"] == "2026-01-01T00:00:00Z"
    assert one["endsAt"] == "0001-01-01T00:00:00Z"  # Alertmanager's zero time while firing
    resolved = webhook_body(a, status=RESOLVED, external_url="http://127.0.0.1:8200")
    assert resolved["alerts"][0]["endsAt"] == "2026-01-01T00:01:00Z"
    assert len({one["fingerprint"], fingerprint("team", "web-slow", "deployment", "web", "3")}) == 2
