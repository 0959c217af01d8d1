"""Deployments end to end through the CLI: replicas as real processes, replaced, rolled, re-adopted."""

from __future__ import annotations

import json
import os
import signal
import textwrap
from pathlib import Path

import httpx
import pytest

from tests.helpers import Server, kill_leftovers, wait_until

WEB = """\
kind: Deployment
name: {name}
command: python -m http.server $PORT --bind 127.0.0.1
replicas: {replicas}
resources: {{cpu: 0.1, memory: 64Mi}}
health: {{period: 0.5, failure_threshold: 2}}
env: {{VERSION: "{version}"}}
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory, module_database_url):
    s = Server(tmp_path_factory.mktemp("home"), module_database_url).start()
    yield s
    s.kill(signal.SIGTERM)
    kill_leftovers(s.home)


def spec_file(folder: Path, name: str, replicas: int = 2, version: str = "1", text: str | None = None) -> Path:
    path = folder / f"{name}-{version}.yaml"
    path.write_text(textwrap.dedent(text) if text else WEB.format(name=name, replicas=replicas, version=version))
    return path


def status(server, name):
    return json.loads(server.cli("deployment", "status", name, "--json", check=True).stdout)


def replica_pid(port: int) -> int:
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        parts = line.split()
        if parts[1].endswith(f":{port:04X}") and parts[3] == "0A":
            inode = parts[9]
            for pid in filter(str.isdigit, os.listdir("/proc")):
                try:
                    if any(os.readlink(f"/proc/{pid}/fd/{fd}") == f"socket:[{inode}]" for fd in os.listdir(f"/proc/{pid}/fd")):
                        return int(pid)
                except OSError:
                    continue
    raise AssertionError(f"nobody listens on {port}")


def test_deploy_serves_every_replica_and_reports_the_documented_shape(server, tmp_path):
    r = server.cli("deploy", str(spec_file(tmp_path, "web")), "--json")
    assert r.returncode == 0, r.stderr + server.log()
    d = json.loads(r.stdout)
    assert d["state"] == "Available" and d["ready"] == 2 and d["url"] == f"{server.url}/d/web"
    assert {"name", "state", "replicas", "url"} <= d.keys()
    assert [x["state"] for x in d["replicas"]] == ["Ready", "Ready"]
    for x in d["replicas"]:
        assert httpx.get(f"http://127.0.0.1:{x['port']}/").status_code == 200
    listed = json.loads(server.cli("deployment", "list", "--json", check=True).stdout)
    assert [x["name"] for x in listed if x["name"] == "web"] == ["web"]
    assert "Available" in server.cli("deployment", "status", "web", check=True).stdout


def test_a_killed_replica_is_replaced(server, tmp_path):
    server.cli("deploy", str(spec_file(tmp_path, "phoenix")), check=True)
    victim = status(server, "phoenix")["replicas"][0]
    os.kill(replica_pid(victim["port"]), signal.SIGKILL)
    d = wait_until(lambda: (x := status(server, "phoenix"))["state"] == "Available"
                   and victim["id"] not in [r["id"] for r in x["replicas"]] and x, timeout=30, what="replacement")
    failed = [r for r in d["ended"] if r["id"] == victim["id"]][0]
    assert failed["state"] == "Failed" and failed["exit_code"] == 137
    events = json.loads(server.cli("events", "--json", "--limit", "200", check=True).stdout)
    assert any(e["name"] == "phoenix" and e["reason"] == "ReplicaFailed" for e in events)


def test_a_crash_loop_shows_the_last_log_lines_and_backs_off(server, tmp_path):
    path = spec_file(tmp_path, "crashy", text="""
        kind: Deployment
        name: crashy
        command: [python, -c, "import sys; print('loading model'); print('ValueError: bad config', file=sys.stderr); sys.exit(3)"]
        resources: {cpu: 0.1, memory: 64Mi}
    """)
    r = server.cli("deploy", str(path), "--timeout", "6")
    assert r.returncode == 1 and "CrashLoopBackOff" in r.stderr, r.stderr
    d = wait_until(lambda: (x := status(server, "crashy"))["state"] == "CrashLoopBackOff" and x, timeout=30,
                   what="crash loop")
    assert "ValueError: bad config" in d["reason"] and "exit code 3" in d["reason"]
    # 1 + 2 + 4 s between restarts: far from a restart storm
    created = len(d["replicas"]) + len(d["ended"])
    assert 3 <= created <= 6, d
    server.cli("deployment", "delete", "crashy", check=True)


def test_update_rolls_replicas_to_the_new_version_and_scale_and_delete(server, tmp_path):
    server.cli("deploy", str(spec_file(tmp_path, "roll", version="1")), check=True)
    before = {r["id"] for r in status(server, "roll")["replicas"]}
    r = server.cli("deploy", str(spec_file(tmp_path, "roll", version="2")), "--json")
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    assert d["generation"] == 2 and d["state"] == "Available"
    wait_until(lambda: all(x["generation"] == 2 for x in status(server, "roll")["replicas"]), what="old drained")
    assert not before & {x["id"] for x in status(server, "roll")["replicas"]}
    events = [e["reason"] for e in json.loads(server.cli("events", "--json", "--limit", "500").stdout)]
    assert "RolloutStarted" in events
    server.cli("deployment", "scale", "roll", "--replicas", "3", check=True)
    wait_until(lambda: status(server, "roll")["ready"] == 3, what="scale up")
    server.cli("deployment", "delete", "roll", check=True)
    assert server.cli("deployment", "status", "roll").returncode == 1


def test_replicas_are_readopted_after_a_control_plane_sigkill(server, tmp_path):
    server.cli("deploy", str(spec_file(tmp_path, "steady")), check=True)
    before = status(server, "steady")["replicas"]
    pids = {replica_pid(r["port"]) for r in before}
    server.kill(signal.SIGKILL)
    server.start()
    d = wait_until(lambda: (x := status(server, "steady"))["state"] == "Available" and x, what="re-adoption")
    assert [r["id"] for r in d["replicas"]] == [r["id"] for r in before]
    assert {replica_pid(r["port"]) for r in d["replicas"]} == pids


def test_bad_deployment_specs_are_rejected_with_the_field(server, tmp_path):
    path = spec_file(tmp_path, "bad", text="""
        kind: Deployment
        name: bad
        service: model.py:Model
        command: python -m http.server
    """)
    r = server.cli("deploy", str(path))
    assert r.returncode == 1 and "exactly one of 'service'" in r.stderr
    path = spec_file(tmp_path, "bad2", text="""
        kind: Deployment
        name: bad2
        service: missing.py:Model
    """)
    r = server.cli("deploy", str(path))
    assert r.returncode == 1 and "'missing.py' is not a file" in r.stderr
    r = server.cli("deployment", "status", "ghost")
    assert r.returncode == 1 and "no deployment named 'ghost'" in r.stderr


class Load:
    """`clients` threads calling a URL back to back until stopped; counts what failed."""

    def __init__(self, url: str, clients: int = 4) -> None:
        import threading

        self.url, self.ok, self.failed, self.errors = url, 0, 0, []
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(clients)]

    def _run(self) -> None:
        with httpx.Client(timeout=10) as c:
            while not self._stop.is_set():
                try:
                    r = c.get(self.url)
                    good, err = r.status_code == 200, f"HTTP {r.status_code}"
                except httpx.HTTPError as exc:
                    good, err = False, repr(exc)
                with self._lock:
                    self.ok += good
                    if not good:
                        self.failed += 1
                        self.errors.append(err)

    def __enter__(self) -> "Load":
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(15)


def test_an_update_under_continuous_load_fails_no_request(server, tmp_path):
    server.cli("deploy", str(spec_file(tmp_path, "live", version="1")), check=True)
    with Load(f"{server.url}/d/live/") as load:
        wait_until(lambda: load.ok > 20, what="load to flow")
        r = server.cli("deploy", str(spec_file(tmp_path, "live", version="2")))
        assert r.returncode == 0, r.stderr
        wait_until(lambda: all(x["generation"] == 2 for x in status(server, "live")["replicas"]), what="old drained")
        seen = load.ok
        wait_until(lambda: load.ok > seen + 20, what="load after the rollout")
    assert load.failed == 0, load.errors[:5]
    assert load.ok > 60


def test_kill_9_under_load_is_routed_around_and_the_replica_comes_back(server, tmp_path):
    server.cli("deploy", str(spec_file(tmp_path, "sturdy", replicas=3)), check=True)
    victim = status(server, "sturdy")["replicas"][0]
    clients = 4
    with Load(f"{server.url}/d/sturdy/", clients=clients) as load:
        wait_until(lambda: load.ok > 20, what="load to flow")
        os.kill(replica_pid(victim["port"]), signal.SIGKILL)
        seen = load.ok
        wait_until(lambda: load.ok > seen + 100, what="load after the kill")
        wait_until(lambda: (x := status(server, "sturdy"))["ready"] == 3
                   and victim["id"] not in [r["id"] for r in x["replicas"]], timeout=30, what="replacement")
    # at most the requests that were in flight to the victim when it died
    assert load.failed <= clients, load.errors
    metrics = server.api("GET", "/deployments/sturdy/metrics").json()
    assert metrics["requests_total"] >= load.ok and metrics["status_codes"].get("200", 0) >= load.ok
