"""pytest plugin: a Ray cluster for the tests (start it with `bash .ci/ray.sh`).

`ray_cluster` is the dashboard URL from $CUMULO_TEST_RAY_ADDRESS (the tests skip without it).
`ray_extra_node` starts worker nodes of that cluster on loopback addresses of their own
(127.0.0.5, .6, ...) that a test may kill, like a machine dying: SIGKILL to exactly the processes
of that node (its raylet and everything under it, its log monitor), found by PID and command line.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from urllib.parse import urlparse

import psutil
import pytest

ADDRESS_ENV = "CUMULO_TEST_RAY_ADDRESS"
SKIP = ("Ray cluster not running: start one with `bash .ci/ray.sh` and export "
        f"{ADDRESS_ENV}=<its last line>")


def alive_nodes(address: str) -> list[dict]:
    with urllib.request.urlopen(f"{address}/api/v0/nodes?limit=1000&detail=false", timeout=5) as r:
        rows = json.load(r)["data"]["result"]["result"]
    return [n for n in rows if n.get("state") == "ALIVE"]


@pytest.fixture(scope="session")
def ray_cluster() -> str:
    address = os.environ.get(ADDRESS_ENV, "").strip().rstrip("/")
    if not address:
        pytest.skip(SKIP)
    try:
        alive_nodes(address)
    except OSError as e:
        pytest.fail(f"{ADDRESS_ENV}={address} does not answer ({e}): start the cluster with `bash .ci/ray.sh`")
    return address


class ExtraNode:
    """One worker node of the test cluster on its own loopback address."""

    def __init__(self, address: str, ip: str, out: Path, args: tuple[str, ...] = ()) -> None:
        self.address = address
        self.ip = ip
        self.out = out
        self.args = args  # more `ray start` options, e.g. --num-gpus=1 (declared, as Ray allows)
        self.node_id: str | None = None

    def start(self) -> None:
        head = urlparse(self.address).hostname
        gcs = os.environ.get("CUMULO_TEST_RAY_GCS_ADDRESS", f"{head}:6390")
        agent_port = 52400 + 10 + int(self.ip.rsplit(".", 1)[1])
        env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
        ray = str(Path(sys.executable).with_name("ray"))
        with open(self.out, "ab") as out:
            subprocess.run(
                [ray, "start", f"--address={gcs}", f"--node-ip-address={self.ip}",
                 f"--dashboard-agent-listen-port={agent_port}", "--num-cpus=2",
                 "--object-store-memory=100000000", "--disable-usage-stats", *self.args],
                env=env, stdout=out, stderr=subprocess.STDOUT, check=True, timeout=120,
            )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            mine = [n for n in alive_nodes(self.address) if n["node_ip"] == self.ip]
            if mine:
                self.node_id = mine[0]["node_id"]
                return
            time.sleep(0.5)
        raise AssertionError(f"the extra Ray node on {self.ip} did not join: see {self.out}")

    def pids(self) -> list[int]:
        """This node's processes: those naming its IP (raylet, log monitor) and all under them."""
        roots = []
        for p in psutil.process_iter(["pid", "cmdline"]):
            cmd = p.info["cmdline"] or []
            if any(a in (f"--node_ip_address={self.ip}", f"--node-ip-address={self.ip}") for a in cmd) and (
                "ray" in " ".join(cmd[:3])
            ):
                roots.append(p)
        found: dict[int, psutil.Process] = {}
        for p in roots:
            found[p.pid] = p
            try:
                for c in p.children(recursive=True):
                    found[c.pid] = c
            except psutil.Error:
                pass
        return sorted(found)

    def kill(self) -> list[int]:
        """SIGKILL every process of this node at once, as if its machine died."""
        pids = self.pids()
        procs = []
        for pid in pids:
            try:
                p = psutil.Process(pid)
                p.kill()
                procs.append(p)
            except psutil.Error:
                pass
        psutil.wait_procs(procs, timeout=10)
        return pids

    def wait_dead(self, timeout: float = 90.0) -> None:
        """Until Ray no longer lists this node alive (its health checks take a while)."""
        deadline = time.monotonic() + timeout
        while any(n["node_id"] == self.node_id for n in alive_nodes(self.address)):
            if time.monotonic() > deadline:
                raise AssertionError(f"Ray still lists the killed node {self.ip} alive after {timeout}s")
            time.sleep(1)


@pytest.fixture
def ray_extra_node(ray_cluster, tmp_path):
    """start(*ray_start_options) -> an ExtraNode joined to the cluster; every node started is
    killed at teardown, which waits until Ray knows it dead."""
    started: list[ExtraNode] = []

    def start(*args: str) -> ExtraNode:
        taken = {n["node_ip"] for n in alive_nodes(ray_cluster)} | {n.ip for n in started}
        ip = next(f"127.0.0.{i}" for i in range(5, 250) if f"127.0.0.{i}" not in taken)
        node = ExtraNode(ray_cluster, ip, tmp_path / f"ray-node-{ip}.out", args)
        started.append(node)
        node.start()
        return node

    yield start
    for node in started:
        node.kill()
    for node in started:  # leave the cluster as the next test expects it: dead nodes known dead
        if node.node_id is not None:
            node.wait_dead()
