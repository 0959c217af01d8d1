"""Clusters through the REST API against a real control plane: add, list, status, remove, and what
submits do with `cluster:`. The engines themselves are in tests/integration/ray and .../slurm and
tests/e2e/test_clusters_*.py; here a Ray address that answers nothing is a real unreachable cluster."""

from __future__ import annotations

import socket

import httpx
import pytest

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


def _closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def problem(r: httpx.Response, status: int) -> dict:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    return r.json()


def test_local_always_exists_and_cannot_be_added_or_removed(http):
    rows = http.get("/clusters").json()
    local = next(c for c in rows if c["name"] == "local")
    assert local["kind"] == "local" and local["state"] == "Ready" and local["nodes_ready"] == 1 and local["cpu"] > 0
    assert "always exists" in problem(http.post("/clusters", json={"name": "local", "kind": "slurm"}), 409)["detail"]
    assert "cannot be removed" in problem(http.delete("/clusters/local"), 409)["detail"]
    nodes = http.get("/nodes", params={"cluster": "local"}).json()
    assert [n["name"] for n in nodes] == ["local"] and nodes[0]["cluster"] == "local"
    assert problem(http.get("/nodes", params={"cluster": "nosuch"}), 404)


@pytest.mark.parametrize("body, field", [
    ({"name": "Bad_Name", "kind": "slurm"}, "name"),
    ({"name": "r1", "kind": "k8s"}, "kind"),
    ({"name": "r1", "kind": "ray"}, "address"),
    ({"name": "r1", "kind": "ray", "address": "127.0.0.2:8265"}, "address"),
    ({"name": "r1", "kind": "ray", "address": "ftp://127.0.0.2:8265"}, "address"),
    ({"name": "r1", "kind": "ray", "address": "http://127.0.0.2:99999"}, "address"),
    ({"name": "r1", "kind": "slurm", "address": "http://127.0.0.2:8265"}, "address"),
    ({"name": "r1", "kind": "ray", "address": "http://127.0.0.2:8265", "partition": "debug"}, "partition"),
    ({"name": "r1", "kind": "slurm", "artifacts": "relative/dir"}, "artifacts"),
    ({"name": "r1", "kind": "slurm", "bogus": 1}, "bogus"),
])
def test_bad_cluster_input_is_a_422_naming_the_field_and_adds_nothing(http, body, field):
    p = problem(http.post("/clusters", json=body), 422)
    assert field in " ".join([e["field"] for e in p.get("errors", [])] + [p["detail"]])
    assert http.get("/clusters/r1").status_code == 404


def test_only_an_admin_adds_or_removes_clusters(server, http):
    member = http.post("/tokens", json={"name": "m1", "role": "member"}).json()["token"]
    h = {"authorization": f"Bearer {member}"}
    r = httpx.post(server.url + "/api/v1/clusters", json={"name": "r9", "kind": "slurm"}, headers=h)
    assert r.status_code == 403
    assert httpx.get(server.url + "/api/v1/clusters", headers=h).status_code == 200  # reading is fine


def test_an_unreachable_ray_cluster_shows_why_holds_its_work_pending_and_cannot_be_removed_under_it(http, tmp_path):
    address = f"http://127.0.0.1:{_closed_port()}"
    r = http.post("/clusters", json={"name": "far", "kind": "ray", "address": address, "artifacts": str(tmp_path / "a")})
    assert r.status_code == 201, r.text
    assert problem(http.post("/clusters", json={"name": "far", "kind": "slurm"}), 409)
    info = wait_until(lambda: (c := http.get("/clusters/far").json())["state"] != "Unknown" and c, timeout=30,
                      what="the cluster to be asked for its nodes")
    assert info["state"] == "Unreachable" and info["reason"]
    assert (tmp_path / "a").is_dir()
    # the local cluster is unaffected
    assert next(c for c in http.get("/clusters").json() if c["name"] == "local")["state"] == "Ready"
    events = http.get("/events", params={"kind": "Cluster", "name": "far"}).json()
    assert [e["reason"] for e in events][:2] == ["Added", "ClusterUnreachable"]

    job = {"kind": "Job", "name": "on-far", "command": "true", "workdir": str(tmp_path), "cluster": "far"}
    r = http.post("/jobs", json=job)
    assert r.status_code == 201, r.text
    j = wait_until(lambda: "far" in (v := http.get("/jobs/on-far").json())["reason"] and v, timeout=30,
                   what="the job's reason to name the cluster")
    assert j["state"] == "Pending" and "unreachable" in j["reason"]
    p = problem(http.delete("/clusters/far"), 409)
    assert "job on-far" in p["detail"]
    assert http.post("/jobs/on-far/cancel").status_code == 200
    wait_until(lambda: http.delete("/clusters/far").status_code == 204 or None, timeout=30,
               what="the cluster to be removable once its work is gone")
    assert http.get("/clusters/far").status_code == 404


def test_a_job_naming_no_such_cluster_is_a_422_on_cluster(http, tmp_path):
    p = problem(http.post("/jobs", json={"kind": "Job", "name": "x1", "command": "true", "workdir": str(tmp_path),
                                        "cluster": "nosuch"}), 422)
    assert [e["field"] for e in p["errors"]] == ["cluster"] and "local" in p["detail"]
    assert http.get("/jobs/x1").status_code == 404
    p = problem(http.post("/deployments", json={"kind": "Deployment", "name": "d1", "command": "true",
                                               "workdir": str(tmp_path), "cluster": "nosuch"}), 422)
    assert [e["field"] for e in p["errors"]] == ["cluster"]


def test_a_gpu_type_without_gpus_is_a_422(http, tmp_path):
    p = problem(http.post("/jobs", json={"kind": "Job", "name": "t", "command": "true", "workdir": str(tmp_path),
                                        "resources": {"gpu_type": "A100"}}), 422)
    assert [e["field"] for e in p["errors"]] == ["resources"] and "gpu: 1 or more" in p["detail"]


def test_work_larger_than_every_cluster_is_refused_naming_each(http, tmp_path):
    body = {"kind": "Job", "name": "huge", "command": "true", "workdir": str(tmp_path), "workers": 2,
            "placement": "spread"}
    p = problem(http.post("/jobs", json=body), 422)
    assert "local" in p["detail"] and "spread" in p["detail"]
    body = {"kind": "Job", "name": "huge", "command": "true", "workdir": str(tmp_path),
            "resources": {"cpu": 100000}}
    assert "local" in problem(http.post("/jobs", json=body), 422)["detail"]
    assert http.get("/jobs/huge").status_code == 404


def test_a_ray_cluster_has_a_join_address_and_cannot_be_removed_while_a_machine_launched_for_it_lives(http, tmp_path):
    """The machine's `ray start` waits on a port that accepts and never answers: it lives, never joins."""
    port = _closed_port()
    r = http.post("/clusters", json={"name": "j1", "kind": "ray", "address": f"http://127.0.0.1:{port}",
                                     "artifacts": str(tmp_path / "a")})
    assert r.status_code == 201 and r.json()["join_address"] == "127.0.0.1:6379", r.text  # Ray's default GCS port
    for bad in ("127.0.0.1", "http://127.0.0.1:6379", "h:99999"):
        p = problem(http.post("/clusters", json={"name": "j2", "kind": "ray", "address": "http://127.0.0.1:1",
                                                 "join": bad}), 422)
        assert [e["field"] for e in p["errors"]] == ["join"] and "HOST:PORT" in p["detail"]
    assert [e["field"] for e in problem(http.post("/clusters", json={"name": "j2", "kind": "slurm", "join": "h:1"}),
                                        422)["errors"]] == ["join"]
    p = problem(http.post("/resources", json={"nodes": [{"instance_type": "lvm.c1"}], "providers": ["local-vm"],
                                              "cluster": "nosuch"}), 422)
    assert [e["field"] for e in p["errors"]] == ["cluster"] and "j1" in p["detail"]
    with socket.socket() as hole:
        hole.bind(("127.0.0.2", 0))
        hole.listen(0)
        r = http.post("/clusters", json={"name": "j3", "kind": "ray", "address": f"http://127.0.0.1:{port}",
                                         "join": f"127.0.0.2:{hole.getsockname()[1]}", "artifacts": str(tmp_path / "b")})
        assert r.status_code == 201, r.text
        r = http.post("/resources", json={"nodes": [{"instance_type": "lvm.c1"}], "providers": ["local-vm"],
                                          "cluster": "j3"})
        assert r.status_code in (200, 201), r.text
        node = r.json()["nodes"][0]["id"]
        wait_until(lambda: http.get(f"/pools/{r.json()['id']}").json()["nodes"][0]["state"] == "Joining", timeout=30,
                   what="the machine running, not joined")
        p = problem(http.delete("/clusters/j3"), 409)
        assert f"node {node}" in p["detail"] and "cumulo resources release" in p["detail"]
        assert http.post("/resources/release", json={"ids": [node]}).status_code == 200
        wait_until(lambda: http.delete("/clusters/j3").status_code == 204 or None, timeout=60,
                   what="the cluster removable once its machine is gone")
