"""The web console: server-rendered pages at `/` over the same services as the API.

`install(app, db)` adds the pages, the sign-in routes and the static files (htmx, uPlot and the
console's own CSS/JS, shipped in this package: no network at run time, no build step). Pages
read `app.state` (jobs, deployments, cluster, costs, alerts, resources, tokens, gateway), which
app.py sets up. Authentication: see session.py.
"""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from cumulo.console.pages import pages, public
from cumulo.console.queries import Queries
from cumulo.console.render import HERE, Templates
from cumulo.console.session import Sessions
from cumulo.store.db import Database

__all__ = ["install"]


def install(app: FastAPI, db: Database, *, key: bytes | None = None) -> None:
    """Serve the console on `app`. `key` (the installation's server key) keeps CSRF tokens valid
    across restarts; without it they last for the life of the process."""
    app.state.console_sessions = Sessions(key)
    app.state.console_templates = Templates()
    app.state.console_queries = Queries(db)
    app.include_router(public)
    app.include_router(pages)
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="console-static")
