"""Events: every decision and transition, with its reason (what `cumulo events` shows)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from cumulo.store.models import Event


def record(
    session: Session, *, now: datetime, kind: str, name: str, object_id: str, type: str, reason: str, message: str,
    workspace: str = "default", actor: str | None = None,
) -> None:
    """An event; `actor` names the token behind a write made through the API (the audit trail)."""
    session.add(
        Event(time=now, kind=kind, name=name, object_id=object_id, type=type, reason=reason, message=message,
              workspace=workspace, actor=actor)
    )


def query(
    session: Session, *, workspace: str = "default", kind: str | None = None, name: str | None = None,
    after_id: int = 0, limit: int = 100,
) -> list[Event]:
    """The newest `limit` events of a workspace (oldest first), optionally for one object, after an id."""
    stmt = select(Event).where(Event.workspace == workspace, Event.id > after_id)
    if kind:
        stmt = stmt.where(Event.kind == kind)
    if name:
        stmt = stmt.where(Event.name == name)
    rows = session.scalars(stmt.order_by(Event.id.desc()).limit(limit)).all()
    return list(reversed(rows))
