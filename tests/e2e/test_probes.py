"""Health probes never block the deployment loop: a deployment whose replicas accept connections
and never answer holds up nothing but itself (tests/integration/test_api.py: the timeout's cap)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import textwrap
import time
from pathlib import Path

import pytest

from tests.e2e.test_deployments_cli import replica_pid
from tests.helpers import Server, kill_leftovers, wait_until

HERE = Path(__file__).parent


@pytest.fixture
def server(tmp_path, database_url):
    s = Server(tmp_path / "home", database_url).start()
    yield s
    s.kill(signal.SIGTERM)
    kill_leftovers(s.home)


def status(server, name):
    return json.loads(server.cli("deployment", "status", name, "--json", check=True).stdout)


def test_replicas_that_never_answer_their_probe_do_not_delay_another_deployment(server, tmp_path):
    shutil.copy(HERE / "mute_server.py", tmp_path / "mute_server.py")
    (tmp_path / "mute.yaml").write_text(textwrap.dedent("""
        kind: Deployment
        name: mute
        command: python mute_server.py
        replicas: 3
        resources: {cpu: 0.1, memory: 64Mi}
        health: {path: /readyz, timeout: 60, period: 0.5, startup_timeout: 600}
    """))
    server.cli("deploy", str(tmp_path / "mute.yaml"), "--no-wait", check=True)
    # every mute replica is up and being probed: a probe of each hangs for up to 60 s
    wait_until(lambda: len([r for r in status(server, "mute")["replicas"] if r["state"] == "Starting"]) == 3,
               timeout=30, what="mute replicas")
    time.sleep(1.0)
    (tmp_path / "web.yaml").write_text(textwrap.dedent("""
        kind: Deployment
        name: web
        command: python -m http.server $PORT --bind 127.0.0.1
        replicas: 2
        resources: {cpu: 0.1, memory: 64Mi}
        health: {period: 0.5, failure_threshold: 2}
    """))
    t0 = time.monotonic()
    # inline probes held the deployment loop 60 s per mute replica on every pass: web waited minutes
    r = server.cli("deploy", str(tmp_path / "web.yaml"), "--timeout", "40", "--json")
    assert r.returncode == 0, r.stderr + server.log()
    assert json.loads(r.stdout)["ready"] == 2
    took = time.monotonic() - t0
    mute = status(server, "mute")
    assert [r["state"] for r in mute["replicas"]] == ["Starting"] * 3  # still waiting on their answers
    # web stays probed while mute's probes hang: a web replica that stops answering is replaced
    victim = status(server, "web")["replicas"][0]
    pid = replica_pid(victim["port"])
    os.kill(pid, signal.SIGSTOP)  # alive, its port accepting, never answering
    try:
        d = wait_until(lambda: (x := status(server, "web"))["state"] == "Available"
                       and victim["id"] not in [r["id"] for r in x["replicas"] if r["state"] == "Ready"] and x,
                       timeout=30, what="the stopped web replica to be replaced")
    finally:
        try:
            os.kill(pid, signal.SIGCONT)
        except ProcessLookupError:
            pass
    assert d["ready"] == 2, (took, d)
