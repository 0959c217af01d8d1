"""Every API request carries a token (except /health): who is calling, and may they do this.

Reads (GET) need the viewer role, writes the member role, token management the admin role. A
workload token (the CUMULO_TOKEN of a job's or a replica's processes) reads its workspace like a
viewer; a job's may also post that job's metrics. With `--no-auth` (loopback
only) every request acts as an admin of the default workspace.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from cumulo.core.errors import Forbidden, InvalidSpec, NotFound
from cumulo.core.tokens import Role, Scope
from cumulo.services.tokens import ANONYMOUS_ADMIN, Principal

_READ = frozenset({"GET", "HEAD", "OPTIONS"})


def _bearer(request: Request) -> str | None:
    header = request.headers.get("authorization")
    if not header:
        return None
    scheme, _, value = header.partition(" ")
    return value.strip() if scheme.lower() == "bearer" else None


def principal(request: Request) -> Principal:
    """Who calls (any valid token, workload tokens included); 401 without one."""
    p = request.app.state.tokens.verify(_bearer(request)) if request.app.state.auth else ANONYMOUS_ADMIN
    request.state.principal = p
    _no_nul(request)
    return p


def _no_nul(request: Request) -> None:
    """A NUL byte in a path or query parameter is a 422 here: no name holds one, and PostgreSQL
    refuses it in text (it would have been a 500 further down)."""
    for where, params in (("path", request.path_params), ("query", request.query_params)):
        for key, value in params.items():
            if "\x00" in str(value):
                raise InvalidSpec(f"{where} parameter {key!r} contains a NUL byte; remove it",
                                  errors=[{"field": key, "message": "contains a NUL byte"}])


def authorize(request: Request) -> Principal:
    """The router-wide check: viewer to read, member to write."""
    p = principal(request)
    p.require(Role.VIEWER if request.method in _READ else Role.MEMBER)
    return p


def admin(request: Request) -> Principal:
    p = principal(request)
    p.require(Role.ADMIN)
    return p


def scraper(request: Request) -> Principal:
    """/metrics (every workspace's numbers): an admin, or a token made with `--role metrics`."""
    p = principal(request)
    if p.role != Role.METRICS:
        p.require(Role.ADMIN)
    return p


def reporter(request: Request) -> Principal:
    """Posting a job's metrics: a member, or that job's workload token (the route checks the job)."""
    p = principal(request)
    if p.job_id is None:
        p.require(Role.MEMBER)
    return p


WORKSPACE_HEADER = "x-cumulo-workspace"


def scope(request: Request, caller: Annotated[Principal, Depends(authorize)]) -> Scope:
    """The workspace a request acts in: its token's, or (admins only) the one named by the
    X-Cumulo-Workspace header (`--workspace`, CUMULO_WORKSPACE)."""
    return _scope(request, caller)


def reporter_scope(request: Request, caller: Annotated[Principal, Depends(reporter)]) -> Scope:
    return _scope(request, caller)


def _scope(request: Request, caller: Principal) -> Scope:
    asked = request.headers.get(WORKSPACE_HEADER)
    if not asked or asked == caller.workspace:
        return Scope(caller.workspace, caller.name)
    if caller.role != Role.ADMIN:
        raise Forbidden(f"the token {caller.name!r} belongs to workspace {caller.workspace!r} and cannot act in "
                        f"{asked!r}; unset CUMULO_WORKSPACE / --workspace, or use a token of that workspace")
    workspaces = request.app.state.workspaces
    if not workspaces.exists(asked):
        raise NotFound(f"no workspace named {asked!r}; `cumulo workspace list` shows them")
    return Scope(asked, caller.name)
