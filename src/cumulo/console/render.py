"""Templates (Jinja2, autoescaped), their filters, and the route class that turns errors into pages."""

from __future__ import annotations

import logging
import math
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

from fastapi import Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.routing import APIRoute
from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

from cumulo.core.errors import CumuloError

log = logging.getLogger("cumulo.console")
HERE = Path(__file__).parent

#: every console page: scripts and styles from this origin only, no inline script, no eval
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
       "frame-ancestors 'none'; base-uri 'self'; form-action 'self'")
HEADERS = {"content-security-policy": CSP, "x-content-type-options": "nosniff", "referrer-policy": "same-origin",
           "cache-control": "no-store"}


def _ago(t: datetime | None, now: datetime | None = None) -> str:
    if t is None:
        return ""
    s = ((now or datetime.now(UTC)) - t).total_seconds()
    if s < 0:
        return "just now" if s > -5 else f"in {_span(-s)}"
    return "just now" if s < 2 else f"{_span(s)} ago"


def _span(s: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if s >= size:
            return f"{int(s // size)} {unit}"
    return f"{int(s)} s"


def _duration(a: datetime | None, b: datetime | None = None) -> str:
    if a is None:
        return ""
    return _span(((b or datetime.now(UTC)) - a).total_seconds())


def _time(t: datetime | None) -> str:
    return t.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S") if t else ""


def _bytes(n: float | None) -> str:
    if n is None:
        return ""
    for unit, size in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if abs(n) >= size:
            return f"{n / size:.1f} {unit}"
    return f"{int(n)} B"


def _money(x: float | None) -> str:
    if x is None:
        return ""
    return f"${x:,.2f}" if abs(x) >= 0.01 or x == 0 else f"${x:.4f}"


def _num(x: float | None, digits: int = 3) -> str:
    if x is None:
        return ""
    if isinstance(x, float) and not math.isfinite(x):
        return str(x)
    return f"{x:.{digits}g}" if isinstance(x, float) else str(x)


def _state_class(state: str) -> str:
    s = (state or "").lower()
    if s in ("succeeded", "ready", "available", "resolved"):
        return "ok"
    if s in ("failed", "crashloopbackoff", "unreachable", "lost", "firing", "warning", "terminated"):
        return "bad"
    if s in ("cancelled", "stopped", "released", "deleting", "draining"):
        return "off"
    return "busy"


def environment() -> Environment:
    env = Environment(loader=FileSystemLoader(HERE / "templates"), autoescape=select_autoescape(default=True),
                      undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    env.filters.update(ago=_ago, time=_time, duration=_duration, bytes=_bytes, money=_money, num=_num,
                       state=_state_class, q=lambda v: quote(str(v), safe=""))
    # the macros are globals, so a page's `live` block renders alone (an htmx poll) as in the page
    macros = env.get_template("_macros.html").make_module()
    env.globals.update(badge=macros.badge, errors=macros.errors, csrf_field=macros.csrf_field,
                       chart_block=macros.chart_block)
    return env


class Templates:
    def __init__(self) -> None:
        self.env = environment()

    def page(self, request: Request, name: str, context: dict[str, Any], status: int = 200) -> HTMLResponse:
        """The whole page; or, for an htmx poll of the page's `#live` region, only that block."""
        tmpl = self.env.get_template(name)
        ctx = {**request.state.console_context, "request": request, **context}
        if request.headers.get("hx-request") and request.headers.get("hx-target") == "live" and "live" in tmpl.blocks:
            body = "".join(tmpl.blocks["live"](tmpl.new_context(ctx)))
        else:
            body = tmpl.render(ctx)
        return HTMLResponse(body, status_code=status, headers=HEADERS)


class SignInRequired(Exception):
    """The page needs a signed-in browser: send it to /login, then back here."""


def sign_in_redirect(request: Request) -> Response:
    here = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    target = f"/login?next={quote(here, safe='')}"
    if request.headers.get("hx-request"):  # a poll of a page whose session ended: reload into the login page
        return Response(status_code=204, headers={"HX-Redirect": target})
    return RedirectResponse(target, status_code=303)


class ConsoleRoute(APIRoute):
    """A console route: a CumuloError becomes the error page with the API's status and words (not
    problem+json), and an unsigned browser goes to /login."""

    def get_route_handler(self) -> Callable:
        handler = super().get_route_handler()

        async def run(request: Request) -> Response:
            t0 = time.perf_counter()
            response = await _handle(request)
            # how long the server took (reads + render), for the browser's devtools and bench/console.py
            response.headers["server-timing"] = f"app;dur={(time.perf_counter() - t0) * 1000:.1f}"
            return response

        async def _handle(request: Request) -> Response:
            try:
                return await handler(request)
            except SignInRequired:
                return sign_in_redirect(request)
            except CumuloError as exc:
                if "application/json" in request.headers.get("accept", ""):  # console.js's reads
                    return JSONResponse({"title": exc.title, "status": exc.status, "detail": exc.message},
                                        status_code=exc.status, headers=HEADERS)
                return error_page(request, exc.status, exc.title, exc.message)
            except Exception:  # same stance as the API: an id on the page, the details in the log
                error_id = uuid.uuid4().hex[:12]
                log.exception("unhandled error %s in console %s %s", error_id, request.method, request.url.path)
                return error_page(request, 500, "Internal error",
                                  f"an internal error occurred (error id {error_id}); the control plane's log has "
                                  "the details under that id")

        return run


def error_page(request: Request, status: int, title: str, message: str) -> HTMLResponse:
    templates: Templates = request.app.state.console_templates
    if not hasattr(request.state, "console_context"):
        request.state.console_context = {"principal": None, "csrf": "", "nav": "", "auth": request.app.state.auth}
    return templates.page(request, "error.html", {"status": status, "title": title, "message": message}, status)
