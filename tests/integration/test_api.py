"""The REST API over real HTTP against a real control plane: every bad input is a clear 4xx."""

from __future__ import annotations

import pytest

import httpx

from cumulo.core.errors import Conflict, NotFound, Unschedulable
from cumulo.sdk.client import Client
from tests.helpers import Server, kill_leftovers, wait_until


@pytest.fixture(scope="module")
def server(tmp_path_factory, module_database_url):
    s = Server(tmp_path_factory.mktemp("home"), module_database_url).start()
    yield s
    s.kill()
    kill_leftovers(s.home)


@pytest.fixture
def http(server):
    with httpx.Client(base_url=server.url + "/api/v1", timeout=10, headers=server.headers) as c:
        yield c


def problem(r: httpx.Response, status: int) -> dict:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    body = r.json()
    assert body["status"] == status and body["detail"]
    return body


@pytest.mark.parametrize(
    "body, field",
    [
        ({"kind": "Job", "name": "Bad Name", "command": "x"}, "name"),
        ({"kind": "Job", "name": "a", "command": "x", "resources": {"memory": "lots"}}, "resources.memory"),
        ({"kind": "Job", "name": "a", "command": "x", "bogus": 1}, "bogus"),
        ({"kind": "Job", "name": "a"}, "command"),
        ({"kind": "Deployment", "name": "a"}, "kind"),
        ({"kind": "Job", "name": "a", "command": "x", "workdir": "relative/dir"}, "workdir"),
        ({"kind": "Job", "name": "a", "command": "x", "workdir": "/does/not/exist"}, "workdir"),
        # numbers no store column or clock can hold (found by the API fuzz test's kind of input)
        ({"kind": "Job", "name": "a", "command": "x", "resources": {"memory": 2**70}}, "resources.memory"),
        ({"kind": "Job", "name": "a", "command": "x", "timeout": 1e308}, "timeout"),
        ({"kind": "Job", "name": "a", "command": "x", "resources": {"gpu": 2**40}}, "resources.gpu"),
    ],
)
def test_invalid_specs_are_422_naming_the_field_and_create_nothing(http, body, field):
    p = problem(http.post("/jobs", json=body), 422)
    assert field in [e["field"] for e in p["errors"]]
    assert http.get("/jobs/a").status_code == 404


@pytest.mark.parametrize(
    "health, field",
    [
        ({"timeout": "1000h"}, "health.timeout"),  # a probe that may hang for weeks stalls nothing, but is refused
        ({"timeout": 61}, "health.timeout"),
        ({"timeout": 0}, "health.timeout"),
        ({"period": -1}, "health.period"),
    ],
)
def test_health_settings_out_of_range_are_422_naming_the_field(http, tmp_path, health, field):
    body = {"kind": "Deployment", "name": "probed", "command": "python -m http.server $PORT",
            "workdir": str(tmp_path), "health": health}
    p = problem(http.post("/deployments", json=body), 422)
    assert field in [e["field"] for e in p["errors"]], p
    assert http.get("/deployments/probed").status_code == 404


def test_a_health_timeout_up_to_the_cap_is_accepted(http, tmp_path):
    body = {"kind": "Deployment", "name": "patient", "command": "python -m http.server $PORT",
            "workdir": str(tmp_path), "replicas": 0, "health": {"timeout": 60}}
    assert http.post("/deployments", json=body).status_code == 201
    assert http.delete("/deployments/patient").status_code == 202


@pytest.mark.parametrize(
    "content, ctype",
    [(b"{not json", "application/json"), (b"[1, 2]", "application/json"), (b"", "application/json"),
     (b"name=a", "application/x-www-form-urlencoded"),
     (b'{"name": "a", "command": "x", "resources": {"cpu": NaN}}', "application/json"),
     (b'{"name": "a", "command": "x", "resources": {"memory": Infinity}}', "application/json")],
)
def test_malformed_bodies_are_4xx_never_500(http, content, ctype):
    r = http.post("/jobs", content=content, headers={"content-type": ctype})
    assert 400 <= r.status_code < 500, r.text
    assert r.json()["detail"]


@pytest.mark.parametrize(
    "method, path, params",
    [("GET", "/jobs", {"limit": "many"}), ("GET", "/jobs", {"limit": 0}), ("GET", "/jobs", {"state": "Sleeping"}),
     ("GET", "/events", {"after": -1}), ("GET", "/jobs/x/logs", {"rank": -1}), ("GET", "/nope", {}),
     ("GET", "/events", {"after": 2**63}), ("GET", "/jobs/x/logs", {"attempt": 2**40}),
     ("GET", "/jobs/x/logs", {"offset": 2**64}), ("GET", "/deployments/x/logs", {"replica": 2**40}),
     ("PATCH", "/jobs", {})],
)
def test_bad_queries_and_routes_are_4xx(http, method, path, params):
    r = http.request(method, path, params=params)
    assert 400 <= r.status_code < 500, r.text


def test_unknown_job_is_404_everywhere(http):
    for method, path in [("GET", "/jobs/ghost"), ("POST", "/jobs/ghost/cancel"), ("DELETE", "/jobs/ghost"),
                         ("GET", "/jobs/ghost/logs"), ("GET", "/jobs/ghost/metrics")]:
        p = problem(http.request(method, path), 404)
        assert "no job named 'ghost'" in p["detail"]


def test_duplicate_name_is_409_and_larger_than_machine_is_rejected_with_capacity(server):
    with Client(server.url, token=server.token) as c:
        c.submit_job({"name": "one", "command": "sleep 30"})
        with pytest.raises(Conflict, match="a job named 'one' already exists"):
            c.submit_job({"name": "one", "command": "true"})
        with pytest.raises(Unschedulable, match=r"asks for 1000 CPU but this machine has \d+ CPU, .* in total"):
            c.submit_job({"name": "huge", "command": "true", "resources": {"cpu": 1000}})
        with pytest.raises(Unschedulable, match="GPU"):
            c.submit_job({"name": "gpu", "command": "true", "resources": {"gpu": 64}})
        with pytest.raises(NotFound):
            c.get_job("huge")
        with pytest.raises(Conflict, match="cancel it first"):
            c.delete_job("one")
        c.cancel_job("one")
        assert c.wait_job("one", timeout=30).state == "Cancelled"
        with pytest.raises(Conflict, match="already ended"):
            c.cancel_job("one")
        c.delete_job("one")
        assert "one" not in [j.name for j in c.list_jobs()]


def test_metrics_report_and_validation(server, http):
    with Client(server.url, token=server.token) as c:
        c.submit_job({"name": "m", "command": "sleep 0.1"})
    ok = http.post("/jobs/m/metrics", json={"attempt": 1, "points": [{"step": 1, "values": {"loss": 0.5}},
                                                                     {"step": 2, "values": {"loss": 0.25, "acc": 0.9}}]})
    assert ok.status_code == 200 and ok.json() == {"accepted": 3}
    problem(http.post("/jobs/m/metrics", json={"points": [{"values": {"loss": "high"}}]}), 422)
    problem(http.post("/jobs/m/metrics", json={"points": []}), 422)
    too_long = problem(http.post("/jobs/m/metrics", json={"points": [{"values": {"x" * 129: 1.0}}]}), 422)
    assert "128" in too_long["detail"]  # a name longer than the store's column: a 422, not a 500 on PostgreSQL
    problem(http.post("/jobs/m/metrics", json={"points": [{"step": 2**40, "values": {"loss": 1}}]}), 422)
    job = http.get("/jobs/m").json()
    assert job["metrics"] == {"step": 2, "loss": 0.25, "acc": 0.9}
    # a loss that went NaN or infinite reaches the store (health.on_nan acts on it) and reads back as
    # the JSON strings, whether it was sent as one ("NaN", what cumulo.report sends) or as a bare token
    for step, body in ((3, b'{"points": [{"step": 3, "values": {"loss": "Infinity"}}]}'),
                       (4, b'{"points": [{"step": 4, "values": {"loss": NaN, "acc": "-Infinity"}}]}')):
        r = http.post("/jobs/m/metrics", content=body, headers={"content-type": "application/json"})
        assert r.status_code == 200, r.text
    series = http.get("/jobs/m/metrics", params={"metric": "loss"}).json()
    assert [p["values"]["loss"] for p in series] == [0.5, 0.25, "Infinity", "NaN"]
    assert http.get("/jobs/m").json()["metrics"] == {"step": 4, "loss": "NaN", "acc": "-Infinity"}


def test_job_json_has_the_documented_shape(server):
    with Client(server.url, token=server.token) as c:
        c.submit_job({"name": "shape", "command": "echo hi"})
        wait_until(lambda: c.get_job("shape").state == "Succeeded", what="job to succeed")
    body = server.api("GET", "/jobs/shape").json()
    assert {"name", "state", "attempts", "exit_code", "metrics", "reason", "attempt_list"} <= body.keys()
    assert body["state"] == "Succeeded" and body["attempts"] == 1 and body["exit_code"] == 0


def test_openapi_is_served(http, server):
    spec = httpx.get(server.url + "/openapi.json").json()
    assert "/api/v1/jobs" in spec["paths"] and "/api/v1/jobs/{name}/logs" in spec["paths"]
    assert httpx.get(server.url + "/docs").status_code == 200


def test_release_refuses_ids_no_node_could_have(http):
    """A NUL byte in an id was a 500 on PostgreSQL (it refuses the byte): now a 422 naming the field."""
    for bad in ("a\u0000b", "", "x" * 200, "../etc"):
        r = http.post("/resources/release", json={"ids": [bad]})
        assert r.status_code == 422, (bad, r.status_code, r.text)
        assert "ids" in r.text
