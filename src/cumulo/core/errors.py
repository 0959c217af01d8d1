"""Errors that carry an HTTP status and a message a person can act on.

The API turns them into RFC 9457 problem+json; the SDK turns problem+json back into them, so a
client sees the server's words.
"""

from __future__ import annotations


class CumuloError(Exception):
    """Base error. `status` is the HTTP status the API answers with."""

    status = 500
    title = "Internal error"

    def __init__(self, message: str, *, errors: list[dict] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.errors = errors or []

    def __str__(self) -> str:
        return self.message


class InvalidSpec(CumuloError):
    """A spec or request is malformed; `errors` names each field and what is wrong with it."""

    status = 422
    title = "Invalid request"


class NotFound(CumuloError):
    status = 404
    title = "Not found"


class Conflict(CumuloError):
    status = 409
    title = "Conflict"


class Unschedulable(CumuloError):
    """A request this platform can never satisfy (larger than any machine it has)."""

    status = 422
    title = "Cannot be scheduled"


class Unauthorized(CumuloError):
    """No token, or one that is unknown, expired or revoked."""

    status = 401
    title = "Unauthorized"


class Forbidden(CumuloError):
    """The token is valid but its role may not do this."""

    status = 403
    title = "Forbidden"


class OverQuota(CumuloError):
    """The workspace's quota or budget does not allow this; the message gives the numbers."""

    status = 403
    title = "Workspace quota exceeded"


class ServerUnavailable(CumuloError):
    """The client could not reach the control plane."""

    status = 503
    title = "Control plane unreachable"


class ProviderError(CumuloError):
    """A provider refused or failed a call. `scope` says what the failure rules out for failover:
    "zone", "region" or "provider" (or None when it rules out nothing, e.g. a bad request)."""

    status = 502
    title = "Provider error"

    def __init__(self, message: str, *, scope: str | None = None, errors: list[dict] | None = None) -> None:
        super().__init__(message, errors=errors)
        self.scope = scope


class CapacityError(ProviderError):
    """No capacity for that instance type there right now (e.g. InsufficientInstanceCapacity)."""

    title = "No capacity"


class QuotaError(ProviderError):
    """An account limit was hit (e.g. VcpuLimitExceeded, MaxSpotInstanceCountExceeded)."""

    title = "Quota exceeded"


class CredentialsError(ProviderError):
    """Missing or wrong credentials for a provider."""

    status = 401
    title = "Provider credentials"


_BY_STATUS_TITLE = {cls.title: cls for cls in (
    InvalidSpec, NotFound, Conflict, Unschedulable, Unauthorized, Forbidden, OverQuota, ServerUnavailable, ProviderError, CapacityError, QuotaError,
    CredentialsError,
)}


def from_problem(status: int, problem: dict) -> CumuloError:
    """Rebuild the error a server sent as problem+json."""
    cls = _BY_STATUS_TITLE.get(problem.get("title", ""), CumuloError)
    err = cls(problem.get("detail") or problem.get("title") or f"HTTP {status}", errors=problem.get("errors"))
    err.status = status
    return err
