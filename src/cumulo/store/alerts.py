"""Alert rules and alerts: rows in, rows out (the decisions are policy/alerts.py)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from cumulo.core.errors import NotFound
from cumulo.policy.alerts import FIRING, PENDING, RESOLVED, fingerprint
from cumulo.store import events
from cumulo.store.models import Alert, AlertRule

#: resolved alerts kept this many per workspace (the newest); firing ones are always kept
KEEP_RESOLVED = 1000


# -- rules ---------------------------------------------------------------------------------------
def rules(s: Session, workspace: str | None = None) -> list[AlertRule]:
    stmt = select(AlertRule).order_by(AlertRule.workspace, AlertRule.name)
    if workspace is not None:
        stmt = stmt.where(AlertRule.workspace == workspace)
    return list(s.scalars(stmt))


def rule(s: Session, workspace: str, name: str) -> AlertRule:
    row = s.scalars(select(AlertRule).where(AlertRule.workspace == workspace, AlertRule.name == name)).first()
    if row is None:
        raise NotFound(f"alert rule {name!r} not found; `cumulo alerts rules` lists them")
    return row


def put_rule(s: Session, workspace: str, name: str, spec: dict[str, Any], now: datetime) -> tuple[AlertRule, bool]:
    """Create or replace; True when it was created."""
    row = s.scalars(select(AlertRule).where(AlertRule.workspace == workspace, AlertRule.name == name)).first()
    if row is None:
        row = AlertRule(workspace=workspace, name=name, spec=spec, created_at=now, updated_at=now)
        s.add(row)
        s.flush()
        return row, True
    row.spec, row.updated_at = spec, now
    return row, False


def delete_rule(s: Session, workspace: str, name: str, now: datetime) -> None:
    row = rule(s, workspace, name)
    for a in open_alerts(s, workspace=workspace, rule_name=name):
        resolve(s, a, now, why=f"its rule {name!r} was deleted")
    s.delete(row)


# -- alerts --------------------------------------------------------------------------------------
def open_alerts(s: Session, *, workspace: str | None = None, rule_name: str | None = None,
                target: str | None = None) -> list[Alert]:
    stmt = select(Alert).where(Alert.state.in_((PENDING, FIRING)))
    if workspace is not None:
        stmt = stmt.where(Alert.workspace == workspace)
    if rule_name is not None:
        stmt = stmt.where(Alert.rule == rule_name)
    if target is not None:
        stmt = stmt.where(Alert.target == target)
    return list(s.scalars(stmt.order_by(Alert.id)))


def listing(s: Session, *, workspace: str | None, states: tuple[str, ...], limit: int = 500) -> list[Alert]:
    stmt = select(Alert).where(Alert.state.in_(states))
    if workspace is not None:
        stmt = stmt.where(Alert.workspace == workspace)
    return list(s.scalars(stmt.order_by(Alert.id.desc()).limit(limit)))


def open_by_fingerprint(s: Session, fp: str) -> Alert | None:
    """The open (pending or firing) alert of one rule on one subject, if any (one indexed read)."""
    return s.scalars(select(Alert).where(Alert.fingerprint == fp, Alert.state.in_((PENDING, FIRING)))).first()


def open_one(s: Session, *, workspace: str, rule_name: str, target: str, obj: str, instance: str, severity: str,
             summary: str, evidence: dict[str, Any], now: datetime, firing: bool) -> Alert:
    fp = fingerprint(workspace, rule_name, target, obj, instance)
    row = Alert(workspace=workspace, fingerprint=fp, rule=rule_name, target=target, object=obj, instance=instance,
                severity=severity, state=FIRING if firing else PENDING, summary=summary, evidence=evidence,
                started_at=now, fired_at=now if firing else None, updated_at=now, delivered={},
                notify_attempts=0, notify_next_at=now if firing else None, notify_error="")
    s.add(row)
    s.flush()
    if firing:
        _told(s, row, now)
    return row


def fire(s: Session, row: Alert, now: datetime, *, summary: str, evidence: dict[str, Any]) -> None:
    row.state, row.fired_at, row.updated_at = FIRING, now, now
    row.summary, row.evidence = summary, evidence
    row.notify_attempts, row.notify_next_at, row.notify_error = 0, now, ""
    _told(s, row, now)


def resolve(s: Session, row: Alert, now: datetime, *, why: str) -> None:
    """A firing alert is resolved (and told); a pending one never fired: it is dropped."""
    if row.state == PENDING:
        s.delete(row)
        return
    row.state, row.resolved_at, row.updated_at = RESOLVED, now, now
    row.evidence = {**(row.evidence or {}), "resolved": why}
    row.notify_attempts, row.notify_next_at, row.notify_error = 0, now, ""
    _told(s, row, now)


def _told(s: Session, row: Alert, now: datetime) -> None:
    """Every alert that fires or resolves is also an event on its subject."""
    firing = row.state == FIRING
    msg = (f"[{row.severity}] {row.rule}: {row.summary}" if firing
           else f"{row.rule} resolved ({(row.evidence or {}).get('resolved', 'no longer breached')}): {row.summary}")
    events.record(s, now=now, kind={"job": "Job", "deployment": "Deployment", "node": "Node"}.get(row.target, "Alert"),
                  name=row.object, object_id=row.fingerprint, type="Warning" if firing else "Normal",
                  reason="AlertFiring" if firing else "AlertResolved", message=msg, workspace=row.workspace)


def due_notifications(s: Session, now: datetime) -> list[Alert]:
    return list(s.scalars(select(Alert).where(Alert.notify_next_at.is_not(None), Alert.notify_next_at <= now)
                          .order_by(Alert.notify_next_at).limit(100)))


def next_notification(s: Session) -> datetime | None:
    return s.scalars(select(Alert.notify_next_at).where(Alert.notify_next_at.is_not(None))
                     .order_by(Alert.notify_next_at).limit(1)).first()


def prune(s: Session) -> None:
    """Keep the newest KEEP_RESOLVED resolved alerts of each workspace."""
    for ws in s.scalars(select(Alert.workspace).distinct()):
        cut = s.scalars(select(Alert.id).where(Alert.workspace == ws, Alert.state == RESOLVED)
                        .order_by(Alert.id.desc()).offset(KEEP_RESOLVED).limit(1)).first()
        if cut is not None:
            s.execute(delete(Alert).where(Alert.workspace == ws, Alert.state == RESOLVED, Alert.id <= cut))
