"""The console's pages: each reads through the same services the API uses, in the caller's workspace.

Every page is server-rendered; its `#live` region is re-fetched every 2 s by htmx (only that block
is rendered for the poll). Writes are plain HTML forms (POST + CSRF token, then a redirect), so
they also work without JavaScript; an error is shown on the page in the API's words.
"""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import parse_qs, quote

import yaml
from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from cumulo.console import series
from cumulo.console.queries import Queries, deployment_rows
from cumulo.console.render import HEADERS, ConsoleRoute, SignInRequired, Templates
from cumulo.console.session import COOKIE, CSRF_FIELD, MAX_AGE, Sessions, safe_next
from cumulo.core.errors import CumuloError, InvalidSpec, NotFound
from cumulo.core.states import JobState
from cumulo.core.tokens import Role, Scope, route_key
from cumulo.services.tokens import Principal

MAX_FORM = 1 << 20  # a YAML spec is small; more is refused before parsing
JOBS_PER_PAGE = 200
EVENT_KINDS = ("Job", "Deployment", "Node", "Cluster", "Pool", "Alert", "AlertRule", "Workspace")

public = APIRouter(route_class=ConsoleRoute, include_in_schema=False)


def signed_in(request: Request) -> Principal:
    sessions: Sessions = request.app.state.console_sessions
    p = sessions.principal(request)
    if p is None:
        raise SignInRequired()
    request.state.console_context = {"principal": p, "csrf": sessions.csrf(request), "auth": request.app.state.auth,
                                     "nav": request.url.path.split("/")[1] if request.url.path != "/" else "overview"}
    return p


pages = APIRouter(route_class=ConsoleRoute, include_in_schema=False, dependencies=[Depends(signed_in)])
Caller = Annotated[Principal, Depends(signed_in)]


def _scope(p: Principal) -> Scope:
    return Scope(p.workspace, p.name)


def _t(request: Request) -> Templates:
    return request.app.state.console_templates


async def _form(request: Request) -> dict[str, str]:
    body = await request.body()
    if len(body) > MAX_FORM:
        raise InvalidSpec(f"the form is {len(body)} bytes; at most {MAX_FORM} are accepted")
    return {k: v[-1] for k, v in parse_qs(body.decode("utf-8", errors="replace"), keep_blank_values=True).items()}


async def _write(request: Request, p: Principal) -> dict[str, str]:
    """A POST from our own page by a member: its form fields."""
    form = await _form(request)
    request.app.state.console_sessions.check_write(request, form.get(CSRF_FIELD))
    p.require(Role.MEMBER)
    return form


def _back(path: str) -> RedirectResponse:
    return RedirectResponse(path, status_code=303)


# -- sign in / out -----------------------------------------------------------------------------------
@public.get("/login")
def login_page(request: Request, next: str = "/") -> Response:  # noqa: A002
    sessions: Sessions = request.app.state.console_sessions
    if sessions.principal(request) is not None:
        return _back(safe_next(next))
    request.state.console_context = {"principal": None, "csrf": "", "nav": "login", "auth": request.app.state.auth}
    return _t(request).page(request, "login.html", {"next": safe_next(next), "error": None})


@public.post("/login")
async def login(request: Request) -> Response:
    form = await _form(request)
    sessions: Sessions = request.app.state.console_sessions
    target = safe_next(form.get("next"))
    try:
        await run_in_threadpool(sessions.check, request, form.get("token") or "")
    except CumuloError as exc:
        request.state.console_context = {"principal": None, "csrf": "", "nav": "login", "auth": request.app.state.auth}
        return _t(request).page(request, "login.html", {"next": target, "error": exc.message}, exc.status)
    resp = _back(target)
    resp.set_cookie(COOKIE, (form.get("token") or "").strip(), max_age=MAX_AGE, path="/", httponly=True,
                    samesite="strict", secure=request.url.scheme == "https")
    return resp


@public.post("/logout")
async def logout(request: Request) -> Response:
    form = await _form(request)
    request.app.state.console_sessions.check_write(request, form.get(CSRF_FIELD))
    resp = _back("/login")
    resp.delete_cookie(COOKIE, path="/", httponly=True, samesite="strict", secure=request.url.scheme == "https")
    return resp


# -- overview ----------------------------------------------------------------------------------------
@pages.get("/")
def overview(request: Request, p: Caller) -> Response:
    st, scope = request.app.state, _scope(p)
    q: Queries = st.console_queries
    running = st.jobs.list([JobState.RUNNING.value, JobState.STARTING.value], 50, scope)
    costs = st.costs.report(by="workspace", scope=scope)
    nodes = st.cluster.nodes()
    return _t(request).page(request, "overview.html", {
        "jobs": q.job_counts(p.workspace), "running": running,
        "replicas": q.replicas(p.workspace), "deployments": deployment_rows(q.db, p.workspace, limit=20),
        "nodes": nodes, "ready_nodes": sum(n.state == "Ready" for n in nodes),
        "per_hour": sum(c.price_per_hour for c in costs.lines), "month": costs.total, "since": costs.since,
        "alerts": st.alerts.alerts(limit=20, scope=scope),
        "events": list(reversed(st.cluster.events(limit=15, workspace=p.workspace))),
    })


# -- jobs --------------------------------------------------------------------------------------------
@pages.get("/jobs")
def jobs_page(request: Request, p: Caller, state: Annotated[list[str] | None, Query()] = None, q: str = "",
              limit: Annotated[int, Query(ge=1, le=10000)] = JOBS_PER_PAGE) -> Response:
    states = [s for s in (state or []) if s]
    bad = [s for s in states if s not in {x.value for x in JobState}]
    if bad:
        raise InvalidSpec(f"state {bad[0]!r} is not a job state; use one of: {', '.join(s.value for s in JobState)}")
    page = request.app.state.console_queries.jobs(p.workspace, states=states, search=q.strip()[:63], limit=limit)
    return _t(request).page(request, "jobs.html", {"page": page, "states": states, "q": q, "limit": limit,
                                                   "all_states": [s.value for s in JobState]})


def _submit_page(request: Request, kind: str, text: str, error: CumuloError | None = None) -> Response:
    return _t(request).page(request, "submit.html", {"kind": kind, "text": text, "error": error},
                            error.status if error else 200)


JOB_TEMPLATE = """kind: Job
name: my-job
command: python train.py
workdir: /absolute/path/on/the/control/plane/machine
resources: {cpu: 1, memory: 1Gi}
max_retries: 2
"""
DEPLOYMENT_TEMPLATE = """kind: Deployment
name: my-service
service: service.py:MyService
workdir: /absolute/path/on/the/control/plane/machine
replicas: 2
resources: {cpu: 0.5, memory: 512Mi}
"""


def _spec_yaml(spec: Any, **changes: Any) -> str:
    data = {**spec.model_dump(mode="json", exclude_defaults=True, by_alias=True), **changes}
    ordered = {k: data.pop(k) for k in ("kind", "name") if k in data} | data
    return yaml.safe_dump(ordered, sort_keys=False)


@pages.get("/jobs/new")
def new_job_page(request: Request, p: Caller, again: str | None = None) -> Response:
    text = JOB_TEMPLATE
    if again:
        job = request.app.state.jobs.get(again, _scope(p))
        text = _spec_yaml(job.spec, kind="Job", name=_next_name(job.name))
    return _submit_page(request, "job", text)


def _next_name(name: str) -> str:
    head, _, tail = name.rpartition("-")
    return f"{head}-{int(tail) + 1}" if head and tail.isdigit() else f"{name}-2"


def _parse_yaml(text: str, source: str) -> Any:
    """The text as data; a YAML syntax error names the line (as `cumulo.load_spec` words it)."""
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise InvalidSpec(f"{source}:{where}: invalid YAML: {problem}",
                          errors=[{"field": "yaml", "message": f"{where.strip() or 'syntax'}: {problem}"}]) from None


@pages.post("/jobs/new")
async def submit_job(request: Request, p: Caller) -> Response:
    form = await _write(request, p)
    text = form.get("spec", "")
    try:
        data = _parse_yaml(text, "job")
        job = await run_in_threadpool(request.app.state.jobs.submit, data, _scope(p))
    except CumuloError as exc:
        return _submit_page(request, "job", text, exc)
    return _back(f"/jobs/{quote(job.name)}")


@pages.get("/jobs/{name}")
def job_page(request: Request, name: str, p: Caller) -> Response:
    st, scope = request.app.state, _scope(p)
    job = st.jobs.get(name, scope)
    return _t(request).page(request, "job.html", {
        "job": job, "terminal": job.state.terminal,
        "timeline": st.cluster.events(kind="Job", name=name, limit=200, workspace=p.workspace),
        "charts": series.training_charts(st.jobs.metrics(name, None, scope)),
        "process_charts": series.process_series(request.app, p.workspace, name),
        "ranks": list(range(job.spec.workers)),
    })


@pages.get("/jobs/{name}/charts")
def job_charts(request: Request, name: str, p: Caller) -> Response:
    """The job's training charts as JSON (console.js redraws them every 2 s while it runs)."""
    points = request.app.state.jobs.metrics(name, None, _scope(p))
    return JSONResponse({"charts": series.training_charts(points)}, headers=HEADERS)


@pages.get("/jobs/{name}/logs")
def job_logs(request: Request, name: str, p: Caller, attempt: Annotated[int | None, Query(ge=1, le=2**31 - 1)] = None,
             rank: Annotated[int, Query(ge=0, le=255)] = 0, offset: Annotated[int, Query(ge=0, le=2**62)] = 0) -> Response:
    """One chunk of a rank's log from `offset` (console.js follows it), as the API's LogChunk."""
    chunk = request.app.state.jobs.logs(name, attempt=attempt, rank=rank, offset=offset, scope=_scope(p))
    return JSONResponse(chunk.model_dump(mode="json"), headers=HEADERS)


@pages.post("/jobs/{name}/cancel")
async def cancel_job(request: Request, name: str, p: Caller) -> Response:
    await _write(request, p)
    await run_in_threadpool(request.app.state.jobs.cancel, name, _scope(p))
    return _back(f"/jobs/{quote(name)}")


@pages.post("/jobs/{name}/delete")
async def delete_job(request: Request, name: str, p: Caller) -> Response:
    await _write(request, p)
    await run_in_threadpool(request.app.state.jobs.delete, name, _scope(p))
    return _back("/jobs")


# -- deployments -------------------------------------------------------------------------------------
@pages.get("/deployments")
def deployments_page(request: Request, p: Caller) -> Response:
    rows = deployment_rows(request.app.state.console_queries.db, p.workspace)
    return _t(request).page(request, "deployments.html", {"rows": rows})


@pages.get("/deployments/new")
def new_deployment_page(request: Request, p: Caller, update: str | None = None) -> Response:
    text = DEPLOYMENT_TEMPLATE
    if update:
        d = request.app.state.deployments.get(update, _scope(p))
        text = _spec_yaml(d.spec, kind="Deployment")
    return _submit_page(request, "deployment", text)


@pages.post("/deployments/new")
async def submit_deployment(request: Request, p: Caller) -> Response:
    form = await _write(request, p)
    text = form.get("spec", "")
    try:
        data = _parse_yaml(text, "deployment")
        view, _created = await run_in_threadpool(request.app.state.deployments.deploy, data, _scope(p))
    except CumuloError as exc:
        return _submit_page(request, "deployment", text, exc)
    return _back(f"/deployments/{quote(view.name)}")


@pages.get("/deployments/{name}")
def deployment_page(request: Request, name: str, p: Caller) -> Response:
    st = request.app.state
    d = st.deployments.get(name, _scope(p))
    stats = st.gateway.stats(route_key(name, p.workspace))
    current = [r for r in d.replicas if r.generation == d.generation]
    return _t(request).page(request, "deployment.html", {
        "d": d, "stats": stats, "current": current, "old": [r for r in d.replicas if r.generation != d.generation],
        "events": st.cluster.events(kind="Deployment", name=name, limit=100, workspace=p.workspace),
        "charts": series.deployment_series(request.app, p.workspace, name),
    })


@pages.post("/deployments/{name}/scale")
async def scale_deployment(request: Request, name: str, p: Caller) -> Response:
    form = await _write(request, p)
    raw = form.get("replicas", "").strip()
    if not raw.isdigit():
        raise InvalidSpec(f"replicas: {raw!r} is not a whole number; give 0 to 256",
                          errors=[{"field": "replicas", "message": "must be a whole number"}])
    await run_in_threadpool(request.app.state.deployments.scale, name, int(raw), _scope(p))
    return _back(f"/deployments/{quote(name)}")


@pages.post("/deployments/{name}/rollout/{command}")
async def rollout_command(request: Request, name: str, command: str, p: Caller) -> Response:
    """A canary rollout in progress: promote it to its next step, or abort it (roll back)."""
    await _write(request, p)
    if command not in ("promote", "abort"):
        raise NotFound(f"no rollout command {command!r}; use promote or abort")
    await run_in_threadpool(request.app.state.deployments.rollout_command, name, command, _scope(p))
    return _back(f"/deployments/{quote(name)}")


@pages.post("/deployments/{name}/delete")
async def delete_deployment(request: Request, name: str, p: Caller) -> Response:
    await _write(request, p)
    await run_in_threadpool(request.app.state.deployments.delete, name, _scope(p))
    return _back("/deployments")


# -- nodes, events, alerts ---------------------------------------------------------------------------
@pages.get("/nodes")
def nodes_page(request: Request, p: Caller) -> Response:
    st, scope = request.app.state, _scope(p)
    costs = {c.key: c for c in st.costs.report(by="node", scope=scope).lines}
    return _t(request).page(request, "nodes.html", {
        "clusters": st.cluster.list(), "nodes": st.cluster.nodes(), "costs": costs,
        "machines": st.resources.list(include_ended=False, scope=scope),
    })


@pages.get("/events")
def events_page(request: Request, p: Caller, kind: str = "", name: str = "",
                limit: Annotated[int, Query(ge=1, le=10000)] = 200) -> Response:
    rows = request.app.state.cluster.events(kind=kind or None, name=name.strip() or None, limit=limit,
                                            workspace=p.workspace)
    return _t(request).page(request, "events.html", {"events": list(reversed(rows)), "kind": kind, "name": name,
                                                     "kinds": EVENT_KINDS, "limit": limit})


@pages.get("/alerts")
def alerts_page(request: Request, p: Caller) -> Response:
    st, scope = request.app.state, _scope(p)
    return _t(request).page(request, "alerts.html", {
        "open": st.alerts.alerts(states=["firing", "pending"], scope=scope),
        "resolved": st.alerts.alerts(states=["resolved"], limit=50, scope=scope),
        "rules": st.alerts.rules(scope),
    })
