"""Live autoscaling: gateway load -> policy -> replicas, scale to zero, and back from zero."""

from __future__ import annotations

import json
import shutil
import signal
import textwrap
import time
from pathlib import Path

import httpx
import pytest

from tests.e2e.test_deployments_cli import Load, status
from tests.helpers import Server, kill_leftovers, wait_until

HERE = Path(__file__).parent


@pytest.fixture
def server(tmp_path, database_url):
    s = Server(tmp_path / "home", database_url).start()
    yield s
    s.kill(signal.SIGTERM)
    kill_leftovers(s.home)


def deploy(server, folder: Path, autoscaling: str) -> None:
    shutil.copy(HERE / "slow_server.py", folder / "slow_server.py")
    spec = folder / "elastic.yaml"
    spec.write_text(textwrap.dedent(f"""
        kind: Deployment
        name: elastic
        command: python slow_server.py
        replicas: 1
        resources: {{cpu: 0.1, memory: 64Mi}}
        health: {{period: 0.5}}
        autoscaling: {autoscaling}
    """))
    r = server.cli("deploy", str(spec))
    assert r.returncode == 0, r.stderr + server.log()


def test_kpa_scales_up_under_load_down_to_zero_when_idle_and_back_from_zero(server, tmp_path):
    deploy(server, tmp_path, "{policy: kpa, target: 1, min: 0, max: 3, scale_to_zero_after: 3s, "
                             "options: {stable_window: 6}}")
    with Load(f"{server.url}/d/elastic/", clients=3) as load:
        d = wait_until(lambda: (x := status(server, "elastic"))["ready"] >= 3 and x, timeout=30, what="scale up")
    assert load.failed == 0, load.errors[:3]
    assert d["desired"] == 3 and "kpa" in d["autoscaling"]
    wait_until(lambda: (x := status(server, "elastic"))["desired"] == 0 and x["ready"] == 0 and not x["replicas"],
               timeout=60, what="scale to zero")
    t0 = time.monotonic()
    r = httpx.get(f"{server.url}/d/elastic/", timeout=60)  # held by the gateway while a replica starts
    assert r.status_code == 200 and r.text == "ok"
    assert time.monotonic() - t0 < 30
    events = json.loads(server.cli("events", "--json", "--limit", "200", check=True).stdout)
    scaled = [e["message"] for e in events if e["reason"] == "Autoscaled"]
    assert any("-> 3 replicas (kpa)" in m for m in scaled) and any("-> 0 replicas" in m for m in scaled)
    assert any(m.startswith("0 -> 1 replicas") for m in scaled)
    assert "Autoscaled" in server.cli("deployment", "status", "elastic", check=True).stdout


def test_impossible_autoscaling_settings_are_rejected_with_the_field(server, tmp_path):
    shutil.copy(HERE / "slow_server.py", tmp_path / "slow_server.py")
    cases = [
        ("{min: 5, max: 2}", "min (5) must not exceed max (2)"),
        ("{target: -1}", "autoscaling.target"),
        ("{policy: magic}", "autoscaling.policy"),
        ("{policy: kpa, options: {stabel_window: 5}}", "autoscaling.options.stabel_window"),
        ("{min: 1, scale_to_zero_after: 5s}", "scale_to_zero_after needs min: 0"),
    ]
    for i, (block, message) in enumerate(cases):
        spec = tmp_path / f"bad{i}.yaml"
        spec.write_text(f"kind: Deployment\nname: bad{i}\ncommand: python slow_server.py\nautoscaling: {block}\n")
        r = server.cli("deploy", str(spec))
        assert r.returncode == 1 and message in r.stderr, (block, r.stderr)
    deploy(server, tmp_path, "{min: 1, max: 2}")
    r = server.cli("deployment", "scale", "elastic", "--replicas", "5")
    assert r.returncode == 1 and "is autoscaled" in r.stderr
