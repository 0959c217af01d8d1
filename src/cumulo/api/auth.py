"""Every API request carries a token (except /health): who is calling, and may they do this.

Reads (GET) need the viewer role, writes the member role, token management the admin role. A
workload token (a job's CUMULO_TOKEN) may only post that job's metrics. With `--no-auth` (loopback
only) every request acts as an admin of the default workspace.
"""

from __future__ import annotations

from fastapi import Request

from cumulo.core.tokens import Role
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
    tokens = request.app.state.tokens
    p = ANONYMOUS_ADMIN if tokens is None else tokens.verify(_bearer(request))
    request.state.principal = p
    return p


def authorize(request: Request) -> Principal:
    """The router-wide check: viewer to read, member to write."""
    p = principal(request)
    p.require(Role.VIEWER if request.method in _READ else Role.MEMBER)
    return p


def admin(request: Request) -> Principal:
    p = principal(request)
    p.require(Role.ADMIN)
    return p


def reporter(request: Request) -> Principal:
    """Posting a job's metrics: a member, or a workload token (whose job the route checks)."""
    p = principal(request)
    if p.role is not None:
        p.require(Role.MEMBER)
    return p
