"""Live autoscaling: gateway load -> policy -> replicas, scale to zero, and back from zero; every
policy scales a saturated deployment up on its arrivals (the completions stay at its capacity)."""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import signal
import textwrap
import threading
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
    def scaled() -> list[str]:
        events = server.api("GET", "/events", params={"kind": "Deployment", "name": "elastic", "limit": 1000}).json()
        return [e["message"] for e in events if e["reason"] == "Autoscaled"]

    # the held request is served as soon as the replica is ready; the decision's event may trail it
    wait_until(lambda: any(m.startswith("0 -> 1 replicas") for m in scaled()), timeout=20,
               what="the scale-from-zero decision's event")
    assert any("-> 3 replicas (kpa)" in m for m in scaled()) and any("-> 0 replicas" in m for m in scaled())
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


# -- every policy, on a saturated deployment ---------------------------------------------------------
#: each replica serves one request at a time in 0.2 s: 5 requests/s; 12/s arrive (open loop)
CAPACITY, RATE, TARGET_RPS = 5.0, 12.0, 8.0
FAST = {  # windows and delays shortened so that each policy decides within seconds
    "kpa": "{stable_window: 6}",
    "hpa": "{sync_period: 2}",
    "rayserve": "{upscale_delay_s: 2, look_back_period_s: 3}",
    "skyserve": "{decision_interval: 2, upscale_delay: 2, qps_window: 4}",
    "predictive": "{tick: 2, rate_window: 4, reactive_window: 4}",
}
#: where each rate policy's reason states the arrival rate it was handed
RATE_IN_REASON = {"skyserve": r"([\d.]+) req/s / 8 per replica", "predictive": r"L=([\d.]+) "}


class OpenLoad:
    """`rate` requests/s sent on a fixed schedule whatever the answers (open loop: demand does not
    wait for capacity, as a closed loop of clients would); counts answers by status."""

    def __init__(self, url: str, rate: float) -> None:
        self.url, self.rate = url, rate
        self.codes: dict[int, int] = {}
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._run()), daemon=True)

    async def _one(self, client: httpx.AsyncClient) -> None:
        try:
            r = await client.get(self.url)
            self.codes[r.status_code] = self.codes.get(r.status_code, 0) + 1
        except httpx.HTTPError as exc:
            self.errors.append(repr(exc))

    async def _run(self) -> None:
        limits = httpx.Limits(max_connections=None, max_keepalive_connections=None)
        async with httpx.AsyncClient(timeout=60, limits=limits) as client:
            tasks, t0, n = set(), time.monotonic(), 0
            while not self._stop.is_set():
                n += 1
                task = asyncio.ensure_future(self._one(client))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
                await asyncio.sleep(max(0.0, t0 + n / self.rate - time.monotonic()))
            for t in list(tasks):
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    def __enter__(self) -> "OpenLoad":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(30)


@pytest.fixture(scope="module")
def shared(tmp_path_factory, module_database_url):
    s = Server(tmp_path_factory.mktemp("home"), module_database_url).start()
    yield s
    s.kill(signal.SIGTERM)
    kill_leftovers(s.home)


@pytest.mark.parametrize("policy", list(FAST))
def test_every_policy_scales_a_saturated_deployment_up_on_its_arrivals(shared, tmp_path, policy):
    shutil.copy(HERE / "slow_server.py", tmp_path / "slow_server.py")
    spec = tmp_path / "busy.yaml"
    spec.write_text(textwrap.dedent(f"""
        kind: Deployment
        name: busy-{policy}
        command: python slow_server.py
        env: {{DELAY: "0.2", SLOTS: "1"}}
        replicas: 1
        resources: {{cpu: 0.1, memory: 64Mi}}
        health: {{period: 0.5, path: /healthz}}
        autoscaling: {{policy: {policy}, target: 1, target_rps: {TARGET_RPS:g}, min: 1, max: 3, cold_start: 2s,
                      options: {FAST[policy]}}}
    """))
    shared.cli("deploy", str(spec), check=True)
    name = f"busy-{policy}"
    try:
        with OpenLoad(f"{shared.url}/d/{name}/", RATE) as load:
            d = wait_until(lambda: (x := status(shared, name))["desired"] >= 2 and x, timeout=45,
                           what=f"{policy} to scale up")
            if policy in RATE_IN_REASON:
                # what it is handed: the arrivals, above what one replica completes. Its latest
                # reason (written at every decision) is read, not the first scale-up's: that one may
                # come from another signal (in-flight requests) before a rate window has filled.
                def seen() -> float:
                    m = re.search(RATE_IN_REASON[policy], status(shared, name)["autoscaling"] or "")
                    return float(m.group(1)) if m else 0.0
                wait_until(lambda: seen() > CAPACITY + 1, timeout=30,
                           what=f"{policy} to be handed an arrival rate above one replica's capacity")
        assert not load.errors and set(load.codes) <= {200}, (load.codes, load.errors[:3])
        events = json.loads(shared.cli("events", "--json", "--limit", "500", check=True).stdout)
        up = [e["message"] for e in events if e["reason"] == "Autoscaled" and e["name"] == name
              and e["message"].startswith("1 -> ")]
        assert up, d
    finally:
        shared.cli("deployment", "delete", name)
