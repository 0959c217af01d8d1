"""Tokens and workspaces in the store."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from cumulo.store.models import Token


def by_hash(s: Session, digest: str) -> Token | None:
    return s.scalars(select(Token).where(Token.hash == digest)).first()


def count(s: Session) -> int:
    return s.scalar(select(func.count()).select_from(Token)) or 0


def listed(s: Session, workspace: str | None = None) -> list[Token]:
    q = select(Token).order_by(Token.created_at, Token.id)
    if workspace is not None:
        q = q.where(Token.workspace == workspace)
    return list(s.scalars(q))


def add(s: Session, *, id: str, digest: str, name: str, workspace: str, role: str, now: datetime,  # noqa: A002
        expires_at: datetime | None, deployment: str | None = None) -> Token:
    row = Token(id=id, hash=digest, name=name, workspace=workspace, role=role, created_at=now, expires_at=expires_at,
                deployment=deployment)
    s.add(row)
    return row
