"""Alerts and alert rules: list, create or replace, delete (evaluation is control/alerts.py)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from cumulo.core.errors import InvalidSpec
from cumulo.core.specs import AlertRuleSpec, parse_spec
from cumulo.core.tokens import Scope
from cumulo.core.views import AlertRuleView, AlertView
from cumulo.policy.alerts import FIRING, PENDING, RESOLVED
from cumulo.store import alerts as store
from cumulo.store import events
from cumulo.store.db import Database
from cumulo.store.models import Alert, AlertRule

SYSTEM = Scope()
STATES = (PENDING, FIRING, RESOLVED)


def utcnow() -> datetime:
    return datetime.now(UTC)


class AlertService:
    def __init__(self, db: Database, *, wake: Callable[[str], None] = lambda key: None,
                 clock: Callable[[], datetime] = utcnow) -> None:
        self.db = db
        self.wake = wake
        self.clock = clock

    def alerts(self, *, states: list[str] | None = None, limit: int = 500, scope: Scope = SYSTEM) -> list[AlertView]:
        """Firing alerts by default; `states` picks others (pending, resolved). Newest first."""
        wanted = tuple(states or (FIRING,))
        for st in wanted:
            if st not in STATES:
                raise InvalidSpec(f"state {st!r} is not an alert state; use one of: {', '.join(STATES)}",
                                  errors=[{"field": "state", "message": f"must be one of: {', '.join(STATES)}"}])
        with self.db.tx() as s:
            return [_alert_view(a) for a in store.listing(s, workspace=scope.workspace, states=wanted, limit=limit)]

    def rules(self, scope: Scope = SYSTEM) -> list[AlertRuleView]:
        with self.db.tx() as s:
            opened = store.open_alerts(s, workspace=scope.workspace)
            return [_rule_view(r, opened) for r in store.rules(s, scope.workspace)]

    def put_rule(self, data: Any, scope: Scope = SYSTEM) -> tuple[AlertRuleView, bool]:
        spec = data if isinstance(data, AlertRuleSpec) else parse_spec(data, source="alert rule", kind="AlertRule")
        now = self.clock()
        with self.db.tx() as s:
            row, created = store.put_rule(s, scope.workspace, spec.name, spec.model_dump(mode="json", by_alias=True), now)
            events.record(s, now=now, kind="AlertRule", name=spec.name, object_id=spec.name, type="Normal",
                          reason="Created" if created else "Updated", message=f"alert rule {spec.name} "
                          f"{'created' if created else 'updated'}", workspace=scope.workspace, actor=scope.actor)
            view = _rule_view(row, [])
        self.wake("rules")
        return view, created

    def delete_rule(self, name: str, scope: Scope = SYSTEM) -> None:
        now = self.clock()
        with self.db.tx() as s:
            store.delete_rule(s, scope.workspace, name, now)
            events.record(s, now=now, kind="AlertRule", name=name, object_id=name, type="Normal", reason="Deleted",
                          message=f"alert rule {name} deleted; its open alerts resolved", workspace=scope.workspace,
                          actor=scope.actor)
        self.wake("notify")


def _alert_view(a: Alert) -> AlertView:
    return AlertView(id=a.id, workspace=a.workspace, rule=a.rule, target=a.target, object=a.object,
                     instance=a.instance, severity=a.severity, state=a.state, summary=a.summary,
                     evidence=a.evidence or {}, started_at=a.started_at, fired_at=a.fired_at,
                     resolved_at=a.resolved_at, fingerprint=a.fingerprint, notify_error=a.notify_error or "")


def _rule_view(r: AlertRule, opened: list[Alert]) -> AlertRuleView:
    mine = [a for a in opened if a.rule == r.name and a.workspace == r.workspace]
    return AlertRuleView(name=r.name, workspace=r.workspace, spec=r.spec, created_at=r.created_at,
                         updated_at=r.updated_at, firing=sum(a.state == FIRING for a in mine),
                         pending=sum(a.state == PENDING for a in mine))
