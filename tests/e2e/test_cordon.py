"""`cumulo node cordon|uncordon` on a real control plane: no new work lands on a cordoned node (a
job waits with the reason), and it runs once the node is uncordoned."""

from __future__ import annotations

import json
import signal

import pytest

from tests.helpers import Server, kill_leftovers, wait_until


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    home = tmp_path_factory.mktemp("home")
    s = Server(home, f"sqlite:///{home}/cumulo.db").start()
    yield s
    s.kill(signal.SIGTERM)
    kill_leftovers(s.home)


def test_a_cordoned_node_takes_no_new_work_until_uncordoned(server):
    out = json.loads(server.cli("node", "cordon", "local", "--reason", "disk check", "--json", check=True).stdout)
    assert out["cordoned"] == "disk check"
    assert "cordoned: disk check" in server.cli("nodes", check=True).stdout
    r = server.api("POST", "/jobs", json={"name": "later", "command": "echo hi", "resources": {"cpu": 0.1}})
    assert r.status_code == 201  # accepted: a cordon is for a while, not a refusal
    wait_until(lambda: "cordoned" in server.api("GET", "/jobs/later").json()["reason"], timeout=15,
               what="the job to wait with the cordon as its reason")
    assert server.api("GET", "/jobs/later").json()["state"] == "Pending"
    server.cli("node", "uncordon", "local", check=True)
    wait_until(lambda: server.api("GET", "/jobs/later").json()["state"] == "Succeeded", timeout=30,
               what="the job to run once the node is uncordoned")
    reasons = [e["reason"] for e in json.loads(server.cli("events", "--json", check=True).stdout) if e["name"] == "local"]
    assert reasons[-2:] == ["NodeCordoned", "NodeUncordoned"]


def test_cordon_needs_an_admin_and_a_known_node(server):
    assert server.api("POST", "/nodes/nope/cordon", json={"reason": "x"}).status_code == 404
    token = json.loads(server.cli("token", "create", "dev", "--role", "member", "--json", check=True).stdout)["token"]
    r = server.api("POST", "/nodes/local/cordon", json={}, headers={"authorization": f"Bearer {token}"})
    assert r.status_code == 403
