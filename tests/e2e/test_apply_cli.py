"""`cumulo apply FILE` with Jobs and Deployments on this machine, through a real control plane: create,
apply again (unchanged), a changed deployment (updated, naming what changed), a changed job (refused:
a job's spec never changes), several documents validated before anything is applied."""

from __future__ import annotations

import json

import pytest

from cumulo.sdk.client import Client
from tests.helpers import Server, kill_leftovers, wait_until


@pytest.fixture
def server(tmp_path):
    s = Server(tmp_path / "home", f"sqlite:///{tmp_path / 'cumulo.db'}").start()
    yield s
    s.kill()
    kill_leftovers(s.home)


def docs(*items: dict) -> str:
    return "\n---\n".join(json.dumps(d) for d in items) + "\n"


JOB = {"kind": "Job", "name": "hello", "command": "echo hello", "resources": {"cpu": 0.1, "memory": "64Mi"}}
DEP = {"kind": "Deployment", "name": "web", "command": "python -m http.server $PORT --bind 127.0.0.1",
       "replicas": 1, "resources": {"cpu": 0.1, "memory": "64Mi"}}


def test_apply_creates_then_leaves_unchanged_then_updates_and_refuses_a_changed_job(server, tmp_path):
    f = tmp_path / "app.yaml"
    f.write_text(docs(JOB, DEP))
    out = json.loads(server.cli("apply", str(f), "--json", check=True).stdout)
    assert [(r["kind"], r["name"], r["action"]) for r in out] == [("Job", "hello", "created"),
                                                                  ("Deployment", "web", "created")]
    c = Client(server.url, token=server.token)
    assert c.wait_job("hello", timeout=60).state == "Succeeded"
    assert c.get_deployment("web").spec.workdir == str(tmp_path)  # relative to the file, as `cumulo deploy`

    assert server.cli("apply", str(f), check=True).stdout.splitlines() == ["job/hello unchanged", "deployment/web unchanged"]
    f.write_text(docs(JOB, {**DEP, "replicas": 2}))
    assert server.cli("apply", str(f), check=True).stdout.splitlines() == [
        "job/hello unchanged", "deployment/web updated (replicas)"]
    wait_until(lambda: c.get_deployment("web").spec.replicas == 2, timeout=10, what="the update")

    f.write_text(docs({**JOB, "command": "echo bye"}))
    r = server.cli("apply", str(f))
    assert r.returncode != 0
    assert "job 'hello' exists with a different command" in r.stderr and "cumulo job delete hello" in r.stderr

    # a bad second document: nothing from the file is applied, and the error names the document and field
    f.write_text(docs({**JOB, "name": "other"}, {**DEP, "name": "web2", "replicas": -1}))
    r = server.cli("apply", str(f))
    assert r.returncode != 0 and "document 2" in r.stderr and "replicas" in r.stderr
    assert [j.name for j in c.list_jobs()] == ["hello"]
    c.delete_deployment("web")


def test_apply_takes_alert_rules_too(server, tmp_path):
    rule = {"kind": "AlertRule", "name": "busy", "target": "node", "metric": "cpu_percent",
            "threshold": {"above": 95}, "for": "5m", "severity": "warning"}
    f = tmp_path / "rules.yaml"
    f.write_text(docs(rule))
    out = json.loads(server.cli("apply", str(f), "--json", check=True).stdout)
    assert [(r["kind"], r["name"], r["action"]) for r in out] == [("AlertRule", "busy", "created")]
    assert json.loads(server.cli("apply", str(f), "--json", check=True).stdout)[0]["action"] == "unchanged"
    f.write_text(docs({**rule, "for": "10m"}))
    again = json.loads(server.cli("apply", str(f), "--json", check=True).stdout)[0]
    assert again["action"] == "updated" and again["changed"] == ["for"]
    rules = json.loads(server.cli("alerts", "rules", "--json", check=True).stdout)
    assert [(r["name"], r["spec"]["for"]) for r in rules] == [("busy", 600.0)]
