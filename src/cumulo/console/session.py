"""How a browser signs in to the console: the API's own tokens, carried in a cookie.

A person pastes a token (`cumulo token create`, or the admin token `cumulo up` wrote to
$CUMULO_HOME/token) into /login. The console verifies it exactly as the API does
(`TokenService.verify`: unknown, revoked and expired tokens are refused with the API's words) and
sets it as the cookie `cumulo_console`: HttpOnly (page scripts never see it), SameSite=Strict (no
other site's page can make the browser send it), Path=/, Secure when served over HTTPS. Every
console page verifies the cookie on every request, so a revoked token stops working at once (within
the API's 5 s cache). With `--no-auth` every visitor is the anonymous admin and no login is asked.

Writes (POST) also need a CSRF token: a hidden form field (or an `X-CSRF-Token` header, which
htmx sends from the page's <meta>) equal to HMAC-SHA256(key, cookie). The key is this
installation's server.key-derived secret when one is given, else a per-process random one. A POST
whose Origin header names another origin is refused too. Workload tokens (a job's or a replica's
CUMULO_TOKEN) and deployment-invoke tokens cannot sign in: they are for processes, not people.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from urllib.parse import urlsplit

from fastapi import Request

from cumulo.core.errors import CumuloError, Forbidden, Unauthorized
from cumulo.core.tokens import Role
from cumulo.services.tokens import ANONYMOUS_ADMIN, Principal

COOKIE = "cumulo_console"
CSRF_FIELD = "csrf"
CSRF_HEADER = "x-csrf-token"
#: how long the browser keeps the cookie (the token's own expiry still applies)
MAX_AGE = 12 * 3600


class Sessions:
    def __init__(self, key: bytes | None = None) -> None:
        self._key = hashlib.sha256(b"cumulo-console-csrf\0" + (key or os.urandom(32))).digest()

    # -- who is this -------------------------------------------------------------------------------
    def principal(self, request: Request) -> Principal | None:
        """The signed-in caller, or None (no cookie, or a token no longer valid)."""
        if not request.app.state.auth:
            return ANONYMOUS_ADMIN
        raw = request.cookies.get(COOKIE)
        if not raw:
            return None
        try:
            return self.check(request, raw)
        except CumuloError:
            return None

    @staticmethod
    def check(request: Request, raw: str) -> Principal:
        """Verify a pasted token as the API would; refuse tokens that are not a person's."""
        p: Principal = request.app.state.tokens.verify(raw.strip())
        if p.job_id is not None or p.name.startswith("deployment/"):
            raise Unauthorized("this is a workload token (a job's or a replica's CUMULO_TOKEN); sign in with a "
                               "person's token: `cumulo token create NAME --role viewer`")
        if not p.role.may(Role.VIEWER):
            raise Forbidden(f"the token {p.name!r} has the {p.role.value} role, which only calls a deployment; "
                            "the console needs viewer, member or admin")
        return p

    # -- CSRF --------------------------------------------------------------------------------------
    def csrf(self, request: Request) -> str:
        return hmac.new(self._key, (request.cookies.get(COOKIE) or "").encode(), hashlib.sha256).hexdigest()

    def check_write(self, request: Request, sent: str | None) -> None:
        """A POST must come from one of our own pages: same origin, and the page's CSRF token."""
        origin = request.headers.get("origin")
        if origin and origin != "null" and _origin(origin) != _origin(str(request.base_url)):
            raise Forbidden(f"this request comes from another site ({origin}); act from the console's own pages")
        sent = sent or request.headers.get(CSRF_HEADER) or ""
        if not hmac.compare_digest(sent, self.csrf(request)):
            raise Forbidden("the form is out of date (its CSRF token does not match this session); reload the page "
                            "and try again")


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}".lower()


def safe_next(target: str | None) -> str:
    """Where to go after signing in: a path on this site only (never //host or a full URL)."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target
