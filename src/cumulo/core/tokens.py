"""API tokens: how they look, how they are stored, what each role may do.

A user token is `cumulo_` + 43 random URL-safe characters (256 bits). The server keeps only its
SHA-256 (a token is random, so a fast hash is enough: there is nothing to guess). A workload token
(`cumulo_w.<job id>.<attempt>.<signature>`) is handed to a job's processes so that
`cumulo.report()` can post that job's metrics; it is an HMAC with the server's key, so it needs no
row and dies with the key.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from dataclasses import dataclass
from enum import StrEnum

__all__ = ["Role", "Scope", "DEFAULT_WORKSPACE", "route_key", "new_token", "token_hash", "workload_token",
           "parse_workload_token", "PREFIX"]

DEFAULT_WORKSPACE = "default"


@dataclass(frozen=True)
class Scope:
    """Where a request acts (its workspace) and who acts (the token's name, for audit events)."""

    workspace: str = DEFAULT_WORKSPACE
    actor: str = "system"


def route_key(name: str, workspace: str) -> str:
    """How the gateway names a deployment: `name` in the default workspace, `name.workspace` in
    another (names hold no dots, so this never collides), e.g. /d/digits.team-a/predict."""
    return name if workspace == DEFAULT_WORKSPACE else f"{name}.{workspace}"

PREFIX = "cumulo_"
WORKLOAD_PREFIX = "cumulo_w."


class Role(StrEnum):
    ADMIN = "admin"  # everything, including workspaces and tokens
    MEMBER = "member"  # create and change inside the workspace
    VIEWER = "viewer"  # read only
    INVOKE = "invoke"  # a deployment-scoped token: calls one deployment's handlers, no API
    METRICS = "metrics"  # a scrape token: reads /metrics (Prometheus), no API

    def may(self, needed: Role) -> bool:
        return _RANK[self] >= _RANK[needed]


_RANK = {Role.INVOKE: -1, Role.METRICS: -1, Role.VIEWER: 0, Role.MEMBER: 1, Role.ADMIN: 2}


def new_token() -> str:
    return PREFIX + secrets.token_urlsafe(32)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _sign(key: bytes, job_id: str, attempt: int) -> str:
    mac = hmac.new(key, f"job:{job_id}:{attempt}".encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(mac[:24]).decode().rstrip("=")


def workload_token(key: bytes, job_id: str, attempt: int) -> str:
    return f"{WORKLOAD_PREFIX}{job_id}.{attempt}.{_sign(key, job_id, attempt)}"


def parse_workload_token(key: bytes, token: str) -> tuple[str, int] | None:
    """(job id, attempt) of a valid workload token, else None."""
    if not token.startswith(WORKLOAD_PREFIX):
        return None
    parts = token[len(WORKLOAD_PREFIX):].split(".")
    if len(parts) != 3 or not parts[1].isdigit() or len(parts[1]) > 9:
        return None
    job_id, attempt, sig = parts[0], int(parts[1]), parts[2]
    if not hmac.compare_digest(sig, _sign(key, job_id, attempt)):
        return None
    return job_id, attempt
