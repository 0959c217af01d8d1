"""Who is calling: API tokens (create, list, revoke, verify) and the tokens handed to workloads.

Verifying a token is on every request's path, so a verified token is remembered for a few seconds
(a revoke through this process forgets it at once; the cache only bounds how long another process's
revoke takes to be seen).
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cumulo.core.errors import Forbidden, InvalidSpec, NotFound, Unauthorized
from cumulo.core.files import write_private
from cumulo.core.specs import validate_name
from cumulo.core.tokens import WORKLOAD_PREFIX, Role, new_token, parse_workload_token, token_hash, workload_token
from cumulo.core.units import parse_duration
from cumulo.core.views import TokenView
from cumulo.store import deployments as deployments_store
from cumulo.store import tokens as store
from cumulo.store import workspaces as workspaces_store
from cumulo.store.db import Database
from cumulo.store.models import Deployment, Job, Token

__all__ = ["Principal", "TokenService", "ANONYMOUS_ADMIN"]

CACHE_SECONDS = 5.0
REPLICA = "d-"  # a replica's workload token names its deployment as d-<id>
ADMIN_TOKEN_FILE = "token"


@dataclass(frozen=True)
class Principal:
    """The caller of one request."""

    name: str  # the token's name: who acted, in audit events
    workspace: str
    role: Role
    token_id: str | None = None
    #: a job's workload token: the job whose metrics it may post (it reads like a viewer otherwise)
    job_id: str | None = None

    def require(self, needed: Role) -> None:
        if not self.role.may(needed):
            raise Forbidden(f"this needs the {needed.value} role; the token {self.name!r} has the "
                            f"{self.role.value} role (an admin can create a token with `cumulo token create --role ...`)")


#: every request when the server runs with --no-auth (loopback only)
ANONYMOUS_ADMIN = Principal(name="anonymous", workspace="default", role=Role.ADMIN)


class TokenService:
    def __init__(self, db: Database, key: bytes, *, now: Callable[[], datetime] = lambda: datetime.now(UTC),
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self.db = db
        self.key = key
        self.now = now
        self.monotonic = monotonic
        self._cache: dict[str, tuple[Principal, datetime | None, float]] = {}
        #: called when a deployment's tokens change (the app republishes the gateways' view)
        self.on_change: Callable[[], None] = lambda: None

    # -- verification (every request) -----------------------------------------------------------
    def verify(self, raw: str | None) -> Principal:
        if not raw:
            raise Unauthorized("this needs a token: send `Authorization: Bearer <token>`; the CLI and SDK read "
                               "CUMULO_TOKEN or $CUMULO_HOME/token (written by `cumulo up`)")
        if raw.startswith(WORKLOAD_PREFIX):
            return self._verify_workload(raw)
        digest = token_hash(raw)
        mono = self.monotonic()
        hit = self._cache.get(digest)
        if hit is None or hit[2] <= mono:
            with self.db.tx() as s:
                row = store.by_hash(s, digest)
                if row is None:
                    raise Unauthorized("unknown token: check CUMULO_TOKEN (or $CUMULO_HOME/token); "
                                       "`cumulo token create` makes a new one")
                if row.revoked_at is not None:
                    raise Unauthorized(f"the token {row.name!r} was revoked on {row.revoked_at:%Y-%m-%d %H:%M} UTC")
                principal = Principal(name=row.name, workspace=row.workspace, role=Role(row.role), token_id=row.id)
                hit = (principal, row.expires_at, mono + CACHE_SECONDS)
            if len(self._cache) > 10_000:
                self._cache.clear()
            self._cache[digest] = hit
        principal, expires_at, _ = hit
        if expires_at is not None and expires_at <= self.now():
            raise Unauthorized(f"the token {principal.name!r} expired at {expires_at:%Y-%m-%d %H:%M} UTC; "
                               "ask an admin for a new one")
        return principal

    def _verify_workload(self, raw: str) -> Principal:
        """A job attempt's or a replica's token: it reads its workspace like a viewer (e.g. a service
        finding the job that trained its model); a job's may also post that job's metrics."""
        parsed = parse_workload_token(self.key, raw)
        if parsed is None:
            raise Unauthorized("invalid workload token")
        subject, number = parsed
        with self.db.tx() as s:
            if subject.startswith(REPLICA):
                d = s.get(Deployment, subject[len(REPLICA):])
                if d is None:
                    raise Unauthorized("the deployment this workload token was made for no longer exists")
                return Principal(name=f"deployment/{d.name}#{number}", workspace=d.workspace, role=Role.VIEWER)
            job = s.get(Job, subject)
            if job is None:
                raise Unauthorized("the job this workload token was made for no longer exists")
            return Principal(name=f"job/{job.name}#{number}", workspace=job.workspace, role=Role.VIEWER,
                             job_id=subject)

    def for_workload(self, job_id: str, attempt: int) -> str:
        """The CUMULO_TOKEN of a job's processes: read the workspace, post this job's metrics."""
        return workload_token(self.key, job_id, attempt)

    def for_replica(self, deployment_id: str, ordinal: int) -> str:
        """The CUMULO_TOKEN of a replica's process: read its workspace."""
        return workload_token(self.key, REPLICA + deployment_id, ordinal)

    # -- management (admin) -----------------------------------------------------------------------
    def create(self, *, name: str, workspace: str = "default", role: str = "member",
               expires: str | float | None = None, deployment: str | None = None) -> TokenView:
        """A new token (its value only in the answer). With `deployment`, a token that opens that
        deployment's /d/ routes (when it sets `auth: token`) and nothing else."""
        if deployment is not None:
            role = Role.INVOKE.value
        errors = []
        for field, value in (("name", name), ("workspace", workspace), ("deployment", deployment)):
            try:
                if value is not None:
                    validate_name(value)
            except ValueError as exc:
                errors.append({"field": field, "message": str(exc)})
        try:
            role_ = Role(role)
            if role_ == Role.INVOKE and deployment is None:
                raise ValueError
        except ValueError:
            role_ = Role.VIEWER
            errors.append({"field": "role", "message": f"{role!r} is not a role: use admin, member, viewer or "
                                                       "metrics (Prometheus' scrape token), or --deployment D "
                                                       "for a deployment's token"})
        expires_at = None
        if expires is not None:
            try:
                seconds = parse_duration(expires)
                if seconds <= 0:
                    raise ValueError("an expiry must be in the future, e.g. '30d'")
                expires_at = self.now() + timedelta(seconds=seconds)
            except ValueError as exc:
                errors.append({"field": "expires", "message": str(exc)})
        if errors:
            raise InvalidSpec("; ".join(f"{e['field']}: {e['message']}" for e in errors), errors=errors)
        raw = new_token()
        with self.db.tx() as s:
            if workspaces_store.get(s, workspace) is None:
                raise NotFound(f"no workspace named {workspace!r}")
            if deployment is not None and deployments_store.find(s, deployment, workspace) is None:
                raise NotFound(f"no deployment named {deployment!r} in workspace {workspace!r}")
            row = store.add(s, id="tok_" + secrets.token_hex(6), digest=token_hash(raw), name=name,
                            workspace=workspace, role=role_.value, now=self.now(), expires_at=expires_at,
                            deployment=deployment)
            view = _view(row)
        if deployment is not None:
            self.on_change()
        return view.model_copy(update={"token": raw})

    def list(self, workspace: str | None = None) -> list[TokenView]:
        with self.db.tx() as s:
            return [_view(t) for t in store.listed(s, workspace)]

    def revoke(self, token_id: str) -> TokenView:
        with self.db.tx() as s:
            row = s.get(Token, token_id)
            if row is None:
                raise NotFound(f"no token with id {token_id!r}; `cumulo token list` shows them")
            if row.revoked_at is None:
                row.revoked_at = self.now()
            self._cache.pop(row.hash, None)
            view = _view(row)
        if view.deployment is not None:
            self.on_change()  # the gateways stop accepting it now, not at their next refresh
        return view

    def ensure_admin(self, home: Path) -> Path | None:
        """On first start (no token in the store), create an admin token and write it to
        $CUMULO_HOME/token (mode 0600). Returns the file's path when it was written."""
        with self.db.tx() as s:
            if store.count(s) > 0:
                return None
        view = self.create(name="admin", role="admin")
        path = home / ADMIN_TOKEN_FILE
        write_private(path, view.token + "\n")
        return path


def _view(t: Token) -> TokenView:
    return TokenView(id=t.id, name=t.name, workspace=t.workspace, role=t.role, deployment=t.deployment,
                     created_at=t.created_at, expires_at=t.expires_at, revoked_at=t.revoked_at)
