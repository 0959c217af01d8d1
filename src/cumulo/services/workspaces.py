"""Workspaces (admin): the tenants that jobs, deployments, pools, secrets, events and tokens
belong to. `default` always exists."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

from cumulo.core.errors import Conflict, InvalidSpec, NotFound
from cumulo.core.specs import validate_name
from cumulo.core.tokens import DEFAULT_WORKSPACE
from cumulo.core.views import WorkspaceView
from cumulo.store import events
from cumulo.store import workspaces as store
from cumulo.store.db import Database
from cumulo.store.models import Workspace


class WorkspaceService:
    def __init__(self, db: Database, *, now: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.db = db
        self.now = now
        self._known: set[str] = {DEFAULT_WORKSPACE}

    def exists(self, name: str) -> bool:
        if name in self._known:
            return True
        with self.db.tx() as s:
            found = store.get(s, name) is not None
        if found:
            self._known.add(name)
        return found

    def create(self, name: str, *, quota: dict | None = None, actor: str = "system") -> WorkspaceView:
        try:
            validate_name(name)
        except ValueError as exc:
            raise InvalidSpec(f"name: {exc}", errors=[{"field": "name", "message": str(exc)}]) from None
        with self.db.tx() as s:
            if store.get(s, name) is not None:
                raise Conflict(f"a workspace named {name!r} exists")
            row = Workspace(name=name, created_at=self.now(), quota=_clean(quota), spent_month="", spent=0.0, alerted=0)
            s.add(row)
            events.record(s, now=row.created_at, kind="Workspace", name=name, object_id=name, type="Normal",
                          reason="Created", message="workspace created", workspace=name, actor=actor)
            s.flush()
            return _view(row)

    def set_quota(self, name: str, quota: dict | None, *, actor: str = "system") -> WorkspaceView:
        with self.db.tx() as s:
            row = store.get(s, name)
            if row is None:
                raise NotFound(f"no workspace named {name!r}; `cumulo workspace list` shows them")
            row.quota = _clean(quota)
            events.record(s, now=self.now(), kind="Workspace", name=name, object_id=name, type="Normal",
                          reason="QuotaSet", message=f"quota {row.quota or 'removed'}", workspace=name, actor=actor)
            return _view(row)

    def list(self) -> list[WorkspaceView]:
        with self.db.tx() as s:
            jobs, deps = store.object_counts(s)
            return [_view(w, jobs.get(w.name, 0), deps.get(w.name, 0)) for w in store.every(s)]

    def delete(self, name: str) -> None:
        """Only an empty workspace goes (its tokens and secrets with it); never `default`."""
        if name == DEFAULT_WORKSPACE:
            raise Conflict("the default workspace cannot be deleted")
        with self.db.tx() as s:
            row = store.get(s, name)
            if row is None:
                raise NotFound(f"no workspace named {name!r}; `cumulo workspace list` shows them")
            held = store.holdings(s, name)
            if held:
                raise Conflict(f"workspace {name!r} still holds {', '.join(f'{v} {k}' for k, v in held.items())}; "
                               "delete them first")
            store.remove(s, row)
        self._known.discard(name)


def _clean(quota: dict | None) -> dict | None:
    out = {k: v for k, v in (quota or {}).items() if v is not None}
    return out or None


def _view(w: Workspace, jobs: int = 0, deployments: int = 0) -> WorkspaceView:
    return WorkspaceView(name=w.name, created_at=w.created_at, jobs=jobs, deployments=deployments,
                         quota=w.quota or {}, spent_this_month=w.spent or 0.0)
