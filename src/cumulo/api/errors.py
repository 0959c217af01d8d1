"""Every error leaves as application/problem+json with a message a person can act on."""

from __future__ import annotations

import logging
import uuid

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from cumulo.core.errors import CumuloError
from cumulo.core.specs import describe_errors, field_errors

log = logging.getLogger(__name__)


def problem(status: int, title: str, detail: str, *, errors: list[dict] | None = None, headers=None) -> JSONResponse:
    body = {"type": "about:blank", "title": title, "status": status, "detail": detail}
    if errors:
        body["errors"] = errors
    return JSONResponse(body, status_code=status, media_type="application/problem+json", headers=headers)


def install(app: FastAPI) -> None:
    @app.exception_handler(CumuloError)
    async def _cumulo(_req: Request, exc: CumuloError) -> JSONResponse:
        headers = {"WWW-Authenticate": 'Bearer realm="cumulo"'} if exc.status == 401 else None
        return problem(exc.status, exc.title, exc.message, errors=exc.errors, headers=headers)

    @app.exception_handler(RequestValidationError)
    async def _validation(_req: Request, exc: RequestValidationError) -> JSONResponse:
        errors = field_errors(list(exc.errors()), strip=("body", "query", "path"))
        return problem(422, "Invalid request", describe_errors(errors), errors=errors)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_req: Request, exc: StarletteHTTPException) -> JSONResponse:
        detail = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
        if exc.status_code == 404 and detail == "Not Found":
            detail = "no such endpoint; the API is described at /docs"
        return problem(exc.status_code, detail if exc.status_code != 404 else "Not found", detail,
                       headers=getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def _unexpected(req: Request, exc: Exception) -> JSONResponse:
        # the exception's text may hold anything (paths, SQL, values): it goes to the log only
        error_id = uuid.uuid4().hex[:12]
        log.exception("unhandled error %s in %s %s", error_id, req.method, req.url.path)
        return problem(500, "Internal error", f"an internal error occurred (error id {error_id}); the control "
                       "plane's log (server.log in CUMULO_HOME) has the details under that id")
