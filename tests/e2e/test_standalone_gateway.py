"""`cumulo gateway` in sync with the control plane: its routes and hold list in, its traffic out.

One standalone gateway with two worker processes (SO_REUSEPORT) in front of one control plane:
a deployment at zero replicas holds a request while the autoscaler, seeing only this gateway's
traffic, starts a replica; a drained replica's SIGTERM waits for what this gateway has in flight to
it; both workers' traffic reaches the autoscaler's view.
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import httpx
import pytest

from tests.helpers import Server, free_port, kill_leftovers, wait_until

HERE = Path(__file__).parent


@pytest.fixture(scope="module")
def server(tmp_path_factory, module_database_url):
    s = Server(tmp_path_factory.mktemp("home"), module_database_url).start()
    yield s
    s.kill(signal.SIGTERM)
    kill_leftovers(s.home)


@pytest.fixture(scope="module")
def gateway(server):
    port = free_port()
    log = open(server.home / "gateway.log", "ab")
    proc = subprocess.Popen([sys.executable, "-m", "cumulo.cli.main", "gateway", "--port", str(port),
                             "--control-plane", server.url, "--workers", "2"],
                            env=server.env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: _answers(url), timeout=30, what="the standalone gateway")
        yield url
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)


def _answers(url: str) -> bool:
    try:
        return httpx.get(f"{url}/metrics", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def metrics(server, name: str) -> dict:
    return server.api("GET", f"/deployments/{name}/metrics", timeout=5).json()


def status(server, name):
    return json.loads(server.cli("deployment", "status", name, "--json", check=True).stdout)


def deploy(server, folder: Path, text: str, *args: str) -> None:
    shutil.copy(HERE / "slow_server.py", folder / "slow_server.py")
    spec = folder / "spec.yaml"
    spec.write_text(textwrap.dedent(text))
    r = server.cli("deploy", str(spec), *args)
    assert r.returncode == 0, r.stderr + server.log()


def test_two_workers_serve_one_port_and_both_reach_the_autoscalers_view(server, gateway, tmp_path):
    deploy(server, tmp_path, """
        kind: Deployment
        name: pair
        command: python slow_server.py
        env: {DELAY: "0"}
        replicas: 1
        resources: {cpu: 0.1, memory: 64Mi}
        health: {period: 0.5}
    """)
    # both workers are up and syncing: the control plane has heard from two gateway ids
    wait_until(lambda: len(metrics(server, "pair")["load"]["standalone_gateways"]) == 2, timeout=30,
               what="two gateway workers")
    time.sleep(1.0)  # both synced the route to pair
    before = metrics(server, "pair")["load"]["arrivals_total"]
    n = 40
    for _ in range(n):  # a new connection each time: the kernel spreads them over the workers
        r = httpx.get(f"{gateway}/d/pair/", timeout=10)
        assert r.status_code == 200 and r.text == "ok"
    m = wait_until(lambda: (x := metrics(server, "pair"))["load"]["arrivals_total"] >= before + n and x,
                   timeout=10, what="the arrivals to reach the control plane")
    assert m["load"]["arrivals_total"] == before + n
    assert m["arrivals_total"] == 0  # none of it went through cumulo up's own gateway
    per_worker = m["load"]["standalone_gateways"]
    assert len(per_worker) == 2 and all(v > 0 for v in per_worker.values()), per_worker


def test_scale_from_zero_through_the_standalone_gateway(server, gateway, tmp_path):
    deploy(server, tmp_path, """
        kind: Deployment
        name: sleeper
        command: python slow_server.py
        env: {DELAY: "0"}
        replicas: 0
        resources: {cpu: 0.1, memory: 64Mi}
        health: {period: 0.5}
        autoscaling: {policy: kpa, target: 1, min: 0, max: 1, scale_to_zero_after: 60s, options: {stable_window: 6}}
    """, "--no-wait")
    wait_until(lambda: "sleeper" in httpx.get(f"{gateway}/metrics", timeout=5).text
               or server.api("GET", "/gateway/routes", timeout=5).json()["deployments"].get("sleeper") == [],
               timeout=10, what="sleeper in the routes")
    time.sleep(1.0)  # two syncs: both workers know sleeper and hold its requests
    assert status(server, "sleeper")["replicas"] == []
    r = httpx.get(f"{gateway}/d/sleeper/", timeout=60)  # held while the autoscaler starts a replica
    assert r.status_code == 200 and r.text == "ok", r.text
    events = json.loads(server.cli("events", "--json", "--limit", "500", check=True).stdout)
    scaled = [e["message"] for e in events if e["reason"] == "Autoscaled" and e["name"] == "sleeper"]
    assert any(m.startswith("0 -> 1 replicas (kpa)") for m in scaled), scaled
    assert metrics(server, "sleeper")["arrivals_total"] == 0  # only the standalone gateway saw it


def test_a_drained_replica_waits_for_requests_in_flight_through_the_standalone_gateway(server, gateway, tmp_path):
    text = """
        kind: Deployment
        name: steady
        command: python slow_server.py
        env: {{DELAY: "4", VERSION: "{v}"}}
        replicas: 1
        resources: {{cpu: 0.1, memory: 64Mi}}
        health: {{period: 0.5, path: /healthz}}
    """
    deploy(server, tmp_path, text.format(v=1))
    wait_until(lambda: server.api("GET", "/gateway/routes", timeout=5).json()["deployments"].get("steady"),
               timeout=10, what="steady in the routes")
    time.sleep(1.0)  # the workers synced the route
    results: list = []

    def call() -> None:
        try:
            r = httpx.get(f"{gateway}/d/steady/", timeout=30)
            results.append((r.status_code, r.text))
        except httpx.HTTPError as exc:
            results.append((0, repr(exc)))

    threads = [threading.Thread(target=call) for _ in range(3)]
    for t in threads:
        t.start()
        time.sleep(0.3)
    old = status(server, "steady")["replicas"][0]["id"]
    # a new version: the old replica is drained as soon as the new one is ready (~1-2 s), while the
    # three requests (4 s each) are still in flight to it through the standalone gateway
    deploy(server, tmp_path, text.format(v=2), "--no-wait")
    for t in threads:
        t.join(40)
    assert results == [(200, "ok")] * 3, results
    d = wait_until(lambda: (x := status(server, "steady"))["replicas"] and all(r["id"] != old for r in x["replicas"])
                   and x, timeout=30, what="the old replica to be gone")
    assert [e["state"] for e in d["ended"] if e["id"] == old] == ["Stopped"]
