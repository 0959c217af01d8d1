"""Row leases: a reconciler pass claims a row for a while; its writes are guarded by the token.

A claim succeeds only if nobody holds an unexpired lease. A worker whose lease expired (it was
slow or presumed dead) and was taken over writes zero rows when it tries to apply: its stale
decision is dropped.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import or_, update
from sqlalchemy.orm import Session

from typing import Any


def _pk(model: Any):
    return model.__mapper__.primary_key[0]


def claim(session: Session, model: Any, key: str, token: str, now: datetime, ttl: float) -> bool:
    stmt = (
        update(model)
        .where(_pk(model) == key, or_(model.lock_expires.is_(None), model.lock_expires < now))
        .values(lock_token=token, lock_expires=now + timedelta(seconds=ttl))
    )
    return session.execute(stmt).rowcount == 1


def guarded_update(session: Session, model: Any, key: str, token: str, **values: object) -> bool:
    """Write status columns only if we still hold the lease. Releases the lease. False if stale."""
    stmt = (
        update(model)
        .where(_pk(model) == key, model.lock_token == token)
        .values(lock_token=None, lock_expires=None, **values)
    )
    return session.execute(stmt).rowcount == 1


def release(session: Session, model: Any, key: str, token: str) -> None:
    session.execute(
        update(model).where(_pk(model) == key, model.lock_token == token).values(lock_token=None, lock_expires=None)
    )
