"""The console over plain HTTP (no browser): sign-in, cookie, CSRF, roles, and that every page and
its live fragment render. Runs everywhere, Chromium or not."""

from __future__ import annotations

import re

import httpx
import pytest

from tests.e2e.console.conftest import DEPLOYMENT, TRAINED, seeded_plane, unique
from tests.helpers import Server, wait_until

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def console_server(module_database_url, tmp_path_factory):
    """Here on SQLite and on PostgreSQL (the console's own listing queries run on both)."""
    yield from seeded_plane(tmp_path_factory.mktemp("console"), module_database_url)

PAGES = ["/", "/jobs", "/jobs?state=Succeeded&q=train", f"/jobs/{TRAINED}", "/jobs/new", f"/jobs/new?again={TRAINED}",
         "/deployments", f"/deployments/{DEPLOYMENT}", "/deployments/new", f"/deployments/new?update={DEPLOYMENT}",
         "/nodes", "/events", "/events?kind=Job&name=" + TRAINED, "/alerts"]


def client(server: Server, token: str | None = None) -> httpx.Client:
    c = httpx.Client(base_url=server.url, timeout=30)
    if token:
        r = c.post("/login", data={"token": token, "next": "/"})
        assert r.status_code == 303, r.text
    return c


def csrf_of(c: httpx.Client, path: str = "/jobs/new") -> str:
    return re.search(r'name="csrf" value="([0-9a-f]+)"', c.get(path).text).group(1)


def test_signing_in(console_server: Server):
    c = client(console_server)
    r = c.get("/jobs?state=Running")
    assert r.status_code == 303 and r.headers["location"] == "/login?next=%2Fjobs%3Fstate%3DRunning"
    poll = c.get("/jobs", headers={"hx-request": "true", "hx-target": "live"})  # a live poll of an ended session
    assert poll.status_code == 204 and poll.headers["hx-redirect"].startswith("/login")
    bad = c.post("/login", data={"token": "cumulo_nope", "next": "/"})
    assert bad.status_code == 401 and "unknown token" in bad.text and "cumulo_console" not in bad.headers.get("set-cookie", "")
    good = c.post("/login", data={"token": console_server.token, "next": "//evil.example/x"})
    assert good.status_code == 303 and good.headers["location"] == "/"  # never off this site
    cookie = good.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/" in cookie
    assert c.get("/").status_code == 200
    out = c.post("/logout", data={"csrf": csrf_of(c)})
    assert out.status_code == 303 and 'cumulo_console=""' in out.headers["set-cookie"]


def test_every_page_and_its_live_fragment_render(console_server: Server):
    c = client(console_server, console_server.token)
    for path in PAGES:
        r = c.get(path)
        assert r.status_code == 200, f"{path}: {r.status_code} {r.text[-600:]}"
        assert r.headers["content-security-policy"].startswith("default-src 'self'")
        live = c.get(path, headers={"hx-request": "true", "hx-target": "live"})
        assert live.status_code == 200
        if 'id="live"' in r.text:  # only the live region comes back, and it polls again
            assert live.text.lstrip().startswith('<div id="live"') and "<html" not in live.text, path
    assert c.get("/jobs/no-such-job").status_code == 404
    assert "is not a job state" in c.get("/jobs?state=Bogus").text
    chunk = c.get(f"/jobs/{TRAINED}/logs", params={"rank": 0}, headers={"accept": "application/json"}).json()
    assert chunk["complete"] and "done" in chunk["data"]
    charts = c.get(f"/jobs/{TRAINED}/charts").json()["charts"]
    assert [ch["title"] for ch in charts] == ["loss", "accuracy", "steps/s"]
    assert c.get(f"/jobs/{TRAINED}/logs", params={"rank": 7}, headers={"accept": "application/json"}).status_code == 404
    # vendored files with their licenses; the console is not part of the API's OpenAPI document
    for f in ("vendor/htmx-2.0.11.min.js", "vendor/uPlot-1.6.32.iife.min.js", "vendor/LICENSE.htmx",
              "vendor/LICENSE.uPlot", "console.js", "console.css"):
        assert c.get(f"/static/{f}").status_code == 200, f
    paths = httpx.get(console_server.url + "/openapi.json").json()["paths"]
    assert all(p.startswith("/api/") or p == "/metrics" for p in paths), sorted(paths)


def test_writes_need_the_pages_csrf_token_and_the_member_role(console_server: Server):
    name = unique("csrf")
    r = console_server.api("POST", "/jobs", json={"kind": "Job", "name": name, "command": "sleep 120",
                                                  "workdir": str(console_server.work),
                                                  "resources": {"cpu": 0.1, "memory": "64Mi"}})
    assert r.status_code == 201, r.text
    admin = client(console_server, console_server.token)
    assert admin.post(f"/jobs/{name}/cancel").status_code == 403  # no CSRF token: a forged form
    forged = admin.post(f"/jobs/{name}/cancel", data={"csrf": csrf_of(admin)}, headers={"origin": "http://evil.example"})
    assert forged.status_code == 403 and "another site" in forged.text
    assert console_server.api("GET", f"/jobs/{name}").json()["cancel_requested"] is False

    viewer_token = console_server.api("POST", "/tokens", json={"name": "watcher", "role": "viewer"}).json()["token"]
    viewer = client(console_server, viewer_token)
    assert viewer.get(f"/jobs/{name}").status_code == 200
    denied = viewer.post(f"/jobs/{name}/cancel", data={"csrf": csrf_of(viewer)})
    assert denied.status_code == 403 and "needs the member role" in denied.text
    assert console_server.api("GET", f"/jobs/{name}").json()["cancel_requested"] is False

    ok = admin.post(f"/jobs/{name}/cancel", data={"csrf": csrf_of(admin)})
    assert ok.status_code == 303 and ok.headers["location"] == f"/jobs/{name}"
    wait_until(lambda: console_server.api("GET", f"/jobs/{name}").json()["state"] == "Cancelled", 60, what="cancel")
    events = console_server.api("GET", "/events", params={"kind": "Job", "name": name}).json()
    assert any(e["reason"] == "CancelRequested" and e["actor"] == "admin" for e in events)  # the audit trail

    # a revoked token's session ends at once
    tid = next(t["id"] for t in console_server.api("GET", "/tokens").json() if t["name"] == "watcher")
    console_server.api("POST", f"/tokens/{tid}/revoke")
    assert viewer.get("/").status_code == 303


def test_workload_tokens_cannot_sign_in(console_server: Server):
    name = unique("leak")
    r = console_server.api("POST", "/jobs", json={"kind": "Job", "name": name,
                                                  "command": f"printf %s \"$CUMULO_TOKEN\" > {name}.token",
                                                  "workdir": str(console_server.work),
                                                  "resources": {"cpu": 0.1, "memory": "64Mi"}})
    assert r.status_code == 201, r.text
    wait_until(lambda: console_server.api("GET", f"/jobs/{name}").json()["state"] == "Succeeded", 60, what="the job")
    token = (console_server.work / f"{name}.token").read_text()
    assert token.startswith("cumulo_w.")
    r = client(console_server).post("/login", data={"token": token, "next": "/"})
    assert r.status_code == 401 and "workload token" in r.text


def test_update_then_delete_a_deployment_and_delete_a_job_from_the_forms(console_server: Server):
    c = client(console_server, console_server.token)
    form = c.get(f"/deployments/new?update={DEPLOYMENT}").text
    spec = re.search(r'<textarea[^>]*>(.*?)</textarea>', form, re.S).group(1).replace("&#39;", "'").replace("&amp;", "&")
    assert f"name: {DEPLOYMENT}" in spec
    r = c.post("/deployments/new", data={"csrf": csrf_of(c), "spec": spec + "env: {GREETING: hello}\n"})
    assert r.status_code == 303 and r.headers["location"] == f"/deployments/{DEPLOYMENT}"
    d = console_server.api("GET", f"/deployments/{DEPLOYMENT}").json()
    assert d["generation"] == 2 and d["spec"]["env"] == {"GREETING": "hello"}
    assert "RolloutStarted" in c.get(f"/deployments/{DEPLOYMENT}").text
    r = c.post(f"/deployments/{DEPLOYMENT}/scale", data={"csrf": csrf_of(c), "replicas": "lots"})
    assert r.status_code == 422 and "replicas" in r.text
    r = c.post(f"/deployments/{DEPLOYMENT}/delete", data={"csrf": csrf_of(c)})
    assert r.status_code == 303
    wait_until(lambda: console_server.api("GET", f"/deployments/{DEPLOYMENT}").status_code == 404, 60,
               what="the deployment to be gone")

    again = c.get(f"/jobs/new?again={TRAINED}").text
    assert f"name: {TRAINED}-2" in again  # submit again: the same spec under the next free-looking name
    assert c.post(f"/jobs/{TRAINED}/delete", data={"csrf": csrf_of(c)}).headers["location"] == "/jobs"
    assert console_server.api("GET", f"/jobs/{TRAINED}").status_code == 404


def test_a_page_shows_only_the_tokens_workspace(console_server: Server):
    name = unique("mine")
    assert console_server.api("POST", "/jobs", json={"kind": "Job", "name": name, "command": "true",
                                                     "workdir": str(console_server.work)}).status_code == 201
    assert client(console_server, console_server.token).get(f"/jobs/{name}").status_code == 200
    assert console_server.api("POST", "/workspaces", json={"name": "team-b"}).status_code == 201
    token = console_server.api("POST", "/tokens", json={"name": "b-member", "workspace": "team-b",
                                                        "role": "member"}).json()["token"]
    c = client(console_server, token)
    assert "team-b" in c.get("/").text
    assert c.get(f"/jobs/{name}").status_code == 404  # another workspace's job is not there at all
    assert f"/jobs/{name}" not in c.get("/jobs").text and "No job matches" in c.get("/jobs").text
    assert c.post(f"/jobs/{name}/cancel", data={"csrf": csrf_of(c)}).status_code == 404
    assert name not in c.get("/events").text


def test_a_canary_in_progress_is_rolled_back_from_its_page(console_server: Server, tmp_path):
    name = unique("canary")
    spec = {"kind": "Deployment", "name": name, "replicas": 1, "workdir": str(tmp_path),
            "command": "python -m http.server $PORT --bind 127.0.0.1", "resources": {"cpu": 0.1, "memory": "64Mi"},
            "rollout": {"strategy": "canary", "steps": [10, 100], "interval": "1h"}}
    assert console_server.api("POST", "/deployments", json=spec).status_code == 201
    wait_until(lambda: console_server.api("GET", f"/deployments/{name}").json()["ready"] == 1, 60, what="v1 ready")
    assert console_server.api("POST", "/deployments", json={**spec, "env": {"V": "2"}}).status_code == 200
    c = client(console_server, console_server.token)
    wait_until(lambda: 'id="rollback"' in c.get(f"/deployments/{name}").text, 60, what="the canary in progress")
    r = c.post(f"/deployments/{name}/rollout/abort", data={"csrf": csrf_of(c)})
    assert r.status_code == 303 and r.headers["location"] == f"/deployments/{name}"
    wait_until(lambda: console_server.api("GET", f"/deployments/{name}/rollout").json()["phase"] == "RolledBack", 60,
               what="the rollback")
    assert c.post(f"/deployments/{name}/rollout/sideways", data={"csrf": csrf_of(c)}).status_code == 404
    console_server.api("DELETE", f"/deployments/{name}")
