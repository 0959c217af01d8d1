"""Canary rollouts end to end: a real control plane, real replicas, real HTTP load through its gateway.

A new version that answers 500 to one request in five is rolled out as a canary under steady load:
the analysis rolls it back by itself, few requests fail, and the events say why. A good version is
promoted step by step to all the traffic. A rollout survives a control-plane restart.
"""

from __future__ import annotations

import json
import signal
import textwrap
import threading
import time
from pathlib import Path

import httpx
import pytest

from tests.helpers import Server, kill_leftovers, wait_until

pytestmark = pytest.mark.slow

HERE = Path(__file__).parent

SPEC = """\
kind: Deployment
name: {name}
command: [python, {server}]
workdir: {workdir}
replicas: 2
resources: {{cpu: 0.1, memory: 64Mi}}
health: {{path: /healthz, period: 0.5, failure_threshold: 2}}
env: {{VERSION: "{version}", FAIL_EVERY: "{fail_every}"}}
rollout:
  strategy: canary
  steps: {steps}
  interval: {interval}
  analysis: {{max_error_rate: 0.01, max_p99_ms: 500, min_requests: {min_requests}}}
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory, sqlite_module_url):
    s = Server(tmp_path_factory.mktemp("home"), sqlite_module_url).start()
    yield s
    s.kill(signal.SIGTERM)
    kill_leftovers(s.home)


def spec_file(folder: Path, name: str, version: str, *, fail_every: int = 0, steps=(10, 50, 100),
              interval: str = "2s", min_requests: int = 20) -> Path:
    path = folder / f"{name}-{version}.yaml"
    path.write_text(SPEC.format(name=name, server=HERE / "flaky_server.py", workdir=folder, version=version,
                                fail_every=fail_every, steps=list(steps), interval=interval, min_requests=min_requests))
    return path


def cli_json(server, *args):
    r = server.cli(*args, "--json")
    assert r.returncode == 0, r.stderr + server.log()
    return json.loads(r.stdout)


def rollout(server, name):
    """The rollout through the REST API (polling; the CLI's own output is checked where it matters)."""
    r = server.api("GET", f"/deployments/{name}/rollout")
    assert r.status_code == 200, r.text
    return r.json()


def deployment(server, name):
    r = server.api("GET", f"/deployments/{name}")
    assert r.status_code == 200, r.text
    return r.json()


def assert_share(answers, version: str, low: float, high: float) -> None:
    """Between the canary's first and last answer, its share of all answers is within [low, high]."""
    times = [x[0] for x in answers if x[2] in (version, "boom")]
    serving = [x for x in answers if times[0] <= x[0] <= times[-1]]
    share = len(times) / len(serving)
    assert low < share < high, (len(times), len(serving))


def events(server, name):
    return [e for e in reversed(cli_json(server, "events", "--limit", "500")) if e["name"] == name]


class Load:
    """`clients` threads calling a URL back to back; counts answers by status and body, with time."""

    def __init__(self, url: str, clients: int = 4) -> None:
        self.url = url
        self.log: list[tuple[float, int, str]] = []  # (monotonic time, status or 0 for a transport error, body)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(clients)]

    def _run(self) -> None:
        with httpx.Client(timeout=10) as c:
            while not self._stop.is_set():
                try:
                    r = c.get(self.url)
                    got = (time.monotonic(), r.status_code, r.text)
                except httpx.HTTPError as exc:
                    got = (time.monotonic(), 0, repr(exc))
                with self._lock:
                    self.log.append(got)

    def between(self, t0: float, t1: float = float("inf")) -> list[tuple[float, int, str]]:
        with self._lock:
            return [x for x in self.log if t0 <= x[0] <= t1]

    @property
    def ok(self) -> int:
        with self._lock:
            return sum(1 for x in self.log if x[1] == 200)

    def __enter__(self) -> Load:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(15)


def test_a_bad_canary_under_load_is_rolled_back_by_itself_and_says_why(server, tmp_path):
    server.cli("deploy", str(spec_file(tmp_path, "shaky", "1")), check=True)
    with Load(f"{server.url}/d/shaky/") as load:
        wait_until(lambda: load.ok > 50, what="load to flow")
        t0 = time.monotonic()
        r = server.cli("deploy", str(spec_file(tmp_path, "shaky", "2", fail_every=5)), "--no-wait", "--json")
        assert r.returncode == 0, r.stderr
        assert json.loads(r.stdout)["generation"] == 2
        ro = wait_until(lambda: (x := rollout(server, "shaky"))["phase"]
                        == "RolledBack" and x, timeout=90, what="the rollback")
        # the canary's replicas are gone and version 1 serves everything again
        d = wait_until(lambda: (x := deployment(server, "shaky"))["state"] == "Available"
                       and all(r["generation"] == 1 for r in x["replicas"]) and x, timeout=30, what="canary drained")
        t1 = time.monotonic()
        seen = load.ok
        wait_until(lambda: load.ok > seen + 50, what="load after the rollback")
    during = load.between(t0, t1)
    assert_share(during, "v2", 0.04, 0.2)  # the canary got about its 10 % while it served
    failed = [x for x in during if x[1] != 200]
    assert len(during) > 200, len(during)
    assert len(failed) / len(during) < 0.03, (len(failed), len(during))
    assert all(x[1] == 500 and x[2] == "boom" for x in failed), failed[:5]  # only the canary's own answers
    after = load.between(t1)
    assert after and all(x[1] == 200 and x[2] == "v1" for x in after), [x for x in after if x[1] != 200][:5]
    # why, with the evidence: both versions' numbers over the same window
    assert d["generation"] == 1 and d["spec"]["env"]["VERSION"] == "1"
    a = ro["analysis"]
    assert a["canary"]["generation"] == 2 and a["stable"]["generation"] == 1
    assert a["canary"]["requests"] >= 20 and a["canary"]["error_rate"] > 0.01
    assert a["stable"]["requests"] > a["canary"]["requests"] and a["stable"]["errors"] == 0
    assert "error rate" in ro["reason"] and "rolled back to version 1" in ro["reason"]
    rolled = [e for e in events(server, "shaky") if e["reason"] == "RolloutRolledBack"]
    assert len(rolled) == 1 and "error rate" in rolled[0]["message"] and "version 2" in rolled[0]["message"]
    assert "RolledBack" in server.cli("deployment", "rollout", "status", "shaky", check=True).stdout
    told = json.loads(server.cli("alerts", "--json", check=True).stdout)  # and an alert with the evidence
    assert [a["rule"] for a in told if a["object"] == "shaky"] == ["DeploymentRolledBack"]
    assert "error rate" in [a for a in told if a["object"] == "shaky"][0]["summary"]
    server.cli("deployment", "delete", "shaky", check=True)


def test_a_good_canary_is_promoted_step_by_step_to_all_the_traffic(server, tmp_path):
    server.cli("deploy", str(spec_file(tmp_path, "steady", "1")), check=True)
    with Load(f"{server.url}/d/steady/") as load:
        wait_until(lambda: load.ok > 50, what="load to flow")
        r = server.cli("deploy", str(spec_file(tmp_path, "steady", "2")), "--timeout", "120")
        assert r.returncode == 0, r.stderr + server.log()
        ro = cli_json(server, "deployment", "rollout", "status", "steady")
        assert ro["phase"] == "Succeeded" and ro["weight"] == 100, ro
        wait_until(lambda: all(r["generation"] == 2 for r in deployment(server, "steady")["replicas"]),
                   timeout=30, what="old replicas replaced")
        seen = load.ok
        wait_until(lambda: load.ok > seen + 50, what="load after the rollout")
    assert [x for x in load.log if x[1] != 200] == []
    bodies = [x[2] for x in load.log]
    assert "v1" in bodies and "v2" in bodies and bodies[-1] == "v2"
    reasons = [e["reason"] for e in events(server, "steady")]
    assert reasons.count("RolloutPromoted") == 1 and reasons.count("RolloutSucceeded") == 1, reasons
    promoted = [e for e in events(server, "steady") if e["reason"] == "RolloutPromoted"][0]
    assert "analysis passed" in promoted["message"] and "50%" in promoted["message"]
    server.cli("deployment", "delete", "steady", check=True)


def test_a_rollout_survives_a_control_plane_restart_and_can_be_promoted_and_aborted(server, tmp_path):
    server.cli("deploy", str(spec_file(tmp_path, "durable", "1")), check=True)
    # a long interval and no load: the rollout waits at its first step until told
    server.cli("deploy", str(spec_file(tmp_path, "durable", "2", steps=(10, 50, 100), interval="1h")),
               "--no-wait", check=True)
    wait_until(lambda: rollout(server, "durable")["window_start"],
               timeout=60, what="the canary serving")
    server.kill(signal.SIGKILL)
    server.start()
    ro = cli_json(server, "deployment", "rollout", "status", "durable")
    assert ro["phase"] == "Progressing" and ro["step"] == 1 and ro["canary_generation"] == 2, ro
    ro = cli_json(server, "deployment", "rollout", "promote", "durable")
    ro = wait_until(lambda: (x := rollout(server, "durable"))["step"] == 2 and x, timeout=90,
                    what="promotion")  # a loaded machine: the restarted plane's replicas come back first
    assert ro["weight"] == 50 and ro["phase"] == "Progressing"
    cli_json(server, "deployment", "rollout", "abort", "durable")
    ro = wait_until(lambda: (x := rollout(server, "durable"))["phase"]
                    == "RolledBack" and x, what="abort")
    assert "aborted" in ro["reason"]
    d = wait_until(lambda: (x := deployment(server, "durable"))["state"] == "Available"
                   and all(r["generation"] == 1 for r in x["replicas"]) and x, timeout=30, what="back to version 1")
    assert httpx.get(f"{server.url}/d/durable/").text == "v1"
    # nothing in progress: promote and abort are a 409 naming why
    r = server.cli("deployment", "rollout", "promote", "durable")
    assert r.returncode == 1 and "no canary rollout in progress" in r.stderr
    reasons = [e["reason"] for e in events(server, "durable")]
    assert {"RolloutPromoteRequested", "RolloutPromoted", "RolloutAbortRequested", "RolloutAborted"} <= set(reasons)
    server.cli("deployment", "delete", "durable", check=True)


@pytest.fixture
def standalone_gateway(server):
    """`cumulo gateway` (two worker processes) synced with the control plane."""
    import subprocess
    import sys

    from tests.helpers import free_port

    port = free_port()
    log = open(server.home / "gateway.log", "ab")
    proc = subprocess.Popen([sys.executable, "-m", "cumulo.cli.main", "gateway", "--port", str(port),
                             "--control-plane", server.url, "--workers", "2"],
                            env=server.env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"

    def answers() -> bool:
        try:
            return httpx.get(f"{url}/metrics", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        wait_until(answers, timeout=30, what="the standalone gateway")
        yield url
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)


def test_a_standalone_gateway_splits_the_traffic_and_its_counts_judge_the_canary(server, standalone_gateway, tmp_path):
    """All the load goes through `cumulo gateway` (none through the control plane's own gateway):
    it honours the split it syncs, and the per-version counts it reports are what rolls back a bad
    canary."""
    server.cli("deploy", str(spec_file(tmp_path, "remote", "1")), check=True)
    url = f"{standalone_gateway}/d/remote/"
    wait_until(lambda: httpx.get(url).status_code == 200, what="the gateway routing to version 1")
    with Load(url) as load:
        wait_until(lambda: load.ok > 50, what="load to flow")
        t0 = time.monotonic()
        server.cli("deploy", str(spec_file(tmp_path, "remote", "2", fail_every=5, steps=(10, 100), interval="1h",
                                           min_requests=40)), "--no-wait", check=True)
        ro = wait_until(lambda: (x := rollout(server, "remote"))["phase"]
                        == "RolledBack" and x, timeout=90, what="the rollback")
        t1 = time.monotonic()
    a = ro["analysis"]
    assert a["canary"]["requests"] >= 40 and a["canary"]["errors"] > 0 and a["stable"]["requests"] > 0
    assert "error rate" in ro["reason"]
    # the control plane's own gateway served none of it: these numbers came through the sync
    own = server.api("GET", "/deployments/remote/metrics").json()
    assert own["requests_total"] == 0
    # while the canary served, it got about its 10 %, not the third its one replica of three would get
    # without the split (every answer says which version gave it)
    assert_share(load.between(t0, t1), "v2", 0.04, 0.2)
    server.cli("deployment", "delete", "remote", check=True)


def test_rollout_api_errors_say_what_is_wrong_and_stay_in_the_workspace(server, tmp_path):
    base = {"kind": "Deployment", "name": "plain", "command": f"python {HERE / 'flaky_server.py'}",
            "workdir": str(tmp_path), "resources": {"cpu": 0.1, "memory": "64Mi"}, "health": {"path": "/healthz"}}
    for rollout, message in (({"strategy": "canary", "steps": [50, 10, 100]}, "steps must increase"),
                             ({"strategy": "canary", "steps": [10, 50]}, "the last step must be 100"),
                             ({"strategy": "canary", "interval": "0s"}, "greater than 0"),
                             ({"steps": [10, 100]}, "only apply to strategy: canary")):
        r = server.api("POST", "/deployments", json={**base, "rollout": rollout})
        assert r.status_code == 422 and r.headers["content-type"].startswith("application/problem+json"), r.text
        assert message in r.json()["detail"] and r.json()["errors"][0]["field"].startswith("rollout"), r.json()
    assert server.api("GET", "/deployments/plain").status_code == 404  # nothing was created
    assert server.api("POST", "/deployments", json=base).status_code == 201
    r = server.api("GET", "/deployments/plain/rollout")
    assert r.status_code == 404 and "strategy: canary" in r.json()["detail"]
    r = server.api("POST", "/deployments/plain/rollout/abort")
    assert r.status_code == 409 and "no canary rollout in progress" in r.json()["detail"]
    assert server.api("GET", "/deployments/ghost/rollout").status_code == 404
    # another workspace's member does not see it, nor act on it
    assert server.api("POST", "/workspaces", json={"name": "elsewhere"}).status_code == 201
    other = server.api("POST", "/tokens", json={"name": "else-member", "role": "member", "workspace": "elsewhere"}).json()
    hdr = {"authorization": f"Bearer {other['token']}"}
    assert httpx.get(f"{server.url}/api/v1/deployments/plain/rollout", headers=hdr).status_code == 404
    assert httpx.post(f"{server.url}/api/v1/deployments/plain/rollout/promote", headers=hdr).status_code == 404
    server.api("DELETE", "/deployments/plain")
