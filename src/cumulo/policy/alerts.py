"""Alerts as pure functions: is a value a breach, how an alert moves between pending, firing and
resolved, when a failed notification is tried again, and the webhook body (Alertmanager's format).

An alert is one rule on one subject (a job, deployment or node, and an instance of it). A breach
starts it `pending`; a breach that has lasted the rule's `for` makes it `firing`; the first
evaluation without a breach ends it (`resolved` if it fired, gone if it was only pending).
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

PENDING, FIRING, RESOLVED = "pending", "firing", "resolved"

#: a notification that failed is tried again after 2, 4, 8 ... seconds, at most this long apart ...
RETRY_MAX = 300.0
#: ... this many times in all, then given up (an event says so)
DELIVERY_ATTEMPTS = 10


def breached(value: float, *, above: float | None, below: float | None) -> bool:
    """A NaN is a breach of either side: a metric that stopped being a number is worth a look."""
    if math.isnan(value):
        return True
    return (above is not None and value > above) or (below is not None and value < below)


@dataclass(frozen=True)
class AlertState:
    state: str  # pending | firing | resolved
    since: datetime  # when the breach began
    fired_at: datetime | None = None
    resolved_at: datetime | None = None


def advance(prev: AlertState | None, breach: bool, now: datetime, hold: float) -> tuple[AlertState | None, str | None]:
    """The alert after one evaluation, and the transition to tell ("firing", "resolved") or None.

    ``prev`` None or resolved: no open alert. A pending alert whose breach ends is simply dropped."""
    open_ = prev is not None and prev.state != RESOLVED
    if not breach:
        if open_ and prev.state == FIRING:
            return AlertState(RESOLVED, prev.since, prev.fired_at, now), RESOLVED
        return None, None
    if not open_:
        prev = AlertState(PENDING, now)
    if prev.state == PENDING and now - prev.since >= timedelta(seconds=hold):
        return AlertState(FIRING, prev.since, now), FIRING
    return prev, None


def retry_delay(attempts: int) -> float:
    """Seconds before delivery attempt ``attempts + 1`` after ``attempts`` failed ones."""
    return min(RETRY_MAX, 2.0 ** max(1, attempts))


def fingerprint(workspace: str, rule: str, target: str, obj: str, instance: str) -> str:
    return hashlib.sha256("\x00".join((workspace, rule, target, obj, instance)).encode()).hexdigest()[:16]


def webhook_body(alert: dict[str, Any], *, status: str, external_url: str, receiver: str = "cumulo") -> dict[str, Any]:
    """The JSON body Alertmanager's webhook receiver sends (version 4), for one alert, so anything
    that takes Alertmanager's webhooks (Alertmanager itself, Slack or PagerDuty adapters) takes ours.

    ``alert`` holds: rule, workspace, target, object, instance, severity, summary, description,
    started_at, resolved_at (datetimes or None), fingerprint."""
    labels = {"alertname": alert["rule"], "severity": alert["severity"], "workspace": alert["workspace"],
              alert["target"]: alert["object"]}
    if alert.get("instance"):
        labels["instance"] = alert["instance"]
    annotations = {"summary": alert["summary"], "description": alert.get("description") or alert["summary"]}
    ends = alert.get("resolved_at")
    one = {
        "status": status,
        "labels": labels,
        "annotations": annotations,
        "startsAt": _rfc3339(alert["started_at"]),
        "endsAt": _rfc3339(ends) if ends is not None and status == RESOLVED else "0001-01-01T00:00:00Z",
        "generatorURL": f"{external_url}/api/v1/alerts/{alert['fingerprint']}",
        "fingerprint": alert["fingerprint"],
    }
    return {
        "version": "4",
        "groupKey": f'{{}}:{{alertname="{alert["rule"]}"}}',
        "truncatedAlerts": 0,
        "status": status,
        "receiver": receiver,
        "groupLabels": {"alertname": alert["rule"]},
        "commonLabels": labels,
        "commonAnnotations": annotations,
        "externalURL": external_url,
        "alerts": [one],
    }


def _rfc3339(t: datetime) -> str:
    return t.isoformat().replace("+00:00", "Z")
