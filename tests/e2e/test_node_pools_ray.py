"""A node pool of local-vm machines on the CI Ray cluster (`bash .ci/ray.sh`: three nodes of 2 CPUs),
through a real control plane: work that no node holds makes the pool launch the cheapest shape
that fits; the machine joins Ray (asserted from Ray's own state API); the job runs there (its
worker's node, from the engine) and succeeds; idle for `idle_ttl`, the machine is released and
leaves Ray; `max_nodes`, `max_price_per_hour` and the budget hold, with the limit in the job's
Pending reason. Every machine is killed at teardown by its session's PIDs."""

from __future__ import annotations

import json
import os
import signal
from urllib.parse import urlparse

import pytest

from cumulo.sdk.client import Client
from tests.engines.ray import alive_nodes
from tests.helpers import Server, kill_leftovers, kill_machines, wait_until

pytestmark = pytest.mark.slow

POOL = {"kind": "NodePool", "name": "elastic", "cluster": "ray", "providers": ["local-vm"],
        "instance_types": ["lvm.c2", "lvm.c2g1", "lvm.c4", "lvm.c4g1"], "spot": "allowed", "max_nodes": 1,
        "idle_ttl": "20s"}


def gcs_address(ray_cluster: str) -> str:
    return os.environ.get("CUMULO_TEST_RAY_GCS_ADDRESS", f"{urlparse(ray_cluster).hostname}:6390")


def labelled(ray_cluster: str, node_id: str) -> dict | None:
    mine = [n for n in alive_nodes(ray_cluster) if (n.get("labels") or {}).get("cumulo.io/node-id") == node_id]
    return mine[0] if mine else None


def job(name: str, seconds: int = 6) -> dict:
    # 3 CPUs and a GPU: more than any node of the CI cluster has (2 CPUs, no GPU), and a shape no
    # other test's machine on the shared cluster is likely to have
    return {"kind": "Job", "name": name, "cluster": "ray", "command": f"sleep {seconds}",
            "resources": {"cpu": 3, "memory": "512Mi", "gpu": 1}}


@pytest.fixture
def plane(tmp_path, ray_cluster):
    home = tmp_path / "home"
    s = Server(home, f"sqlite:///{home / 'cumulo.db'}").start()
    c = Client(s.url, token=s.token)
    c.add_cluster("ray", ray=ray_cluster, artifacts=str(home / "ray-artifacts"), join=gcs_address(ray_cluster))
    info = wait_until(lambda: (i := c.cluster("ray")).state != "Unknown" and i, timeout=30, what="Ray asked")
    assert info.state == "Ready", info.reason
    yield s, c
    c.close()
    s.kill(signal.SIGTERM)
    kill_leftovers(s.home)
    assert kill_machines(s.home) == []  # the pool released every machine it launched


def test_a_pool_launches_the_cheapest_fitting_machine_runs_the_job_there_and_releases_it(plane, ray_cluster, tmp_path):
    server, c = plane
    spec = tmp_path / "elastic.yaml"
    spec.write_text("\n---\n".join(json.dumps(d) for d in (job("wide", seconds=8), POOL)))
    assert server.cli("apply", str(spec), check=True).stdout.split("\n")[:2] == [
        "nodepool/elastic created", "job/wide created"]

    # the cheapest machine with 3+ CPUs and a GPU the pool may launch: lvm.c4g1 on spot in local-1b at
    # $0.23/h (on demand $0.75/h; spot in local-1a $0.25/h)
    node = wait_until(lambda: (p := c.node_pool("elastic")).nodes and p.nodes[0], timeout=30, what="a launch")
    assert (node.id, node.instance_type, node.zone, node.price_per_hour, node.spot) == (
        "elastic-1", "lvm.c4g1", "local-1b", 0.23, True)
    up = [e for e in c.events(kind="NodePool", name="elastic") if e.reason == "ScaleUp"]
    assert len(up) == 1 and "job wide" in up[0].message and "$0.230/h" in up[0].message

    # a second wide job while the first holds the machine: max_nodes 1 holds, the reason says so
    c.submit_job(job("wide2", seconds=1))
    held = wait_until(lambda: "max_nodes" in (j := c.get_job("wide2")).reason and j, timeout=60, what="max_nodes")
    assert held.state == "Pending" and "node pool elastic: max_nodes 1 reached" in held.reason

    # the machine joins Ray with the shape's CPUs; the job's worker runs on that Ray node
    seen = wait_until(lambda: labelled(ray_cluster, "elastic-1"), timeout=180, what="the machine in Ray")
    assert seen["resources_total"]["CPU"] == 4 and seen["resources_total"]["GPU"] == 1
    running = wait_until(lambda: (j := c.get_job("wide")).attempt_list and j.attempt_list[-1].workers
                         and j.attempt_list[-1].workers[0].node_id and j, timeout=120, what="the job placed")
    assert running.attempt_list[-1].workers[0].node_id == seen["node_id"]
    assert c.wait_job("wide", timeout=120).state == "Succeeded"
    # the second one runs there too once the first is done: still one machine
    assert c.wait_job("wide2", timeout=120).state == "Succeeded"
    assert [n.id for n in c.node_pool("elastic").nodes] == ["elastic-1"]

    # idle for idle_ttl: released, and gone from Ray
    # (the CI cluster is shared: another test's Ray work may land on the machine meanwhile, and a
    # machine the engine reports in use is not idle; hence the long wait)
    down = wait_until(lambda: [e for e in c.events(kind="NodePool", name="elastic") if e.reason == "ScaleDown"],
                      timeout=300, what="scale down")
    assert "idle for 20s" in down[0].message and "$0.230/h" in down[0].message
    wait_until(lambda: labelled(ray_cluster, "elastic-1") is None, timeout=90, what="the machine gone from Ray")
    wait_until(lambda: c.node_pool("elastic").nodes_up == 0, timeout=60, what="no machine up")

    # max_price_per_hour below the cheapest fitting machine's price: the job waits, naming the limit
    spec.write_text(json.dumps({**POOL, "max_price_per_hour": 0.1}))
    server.cli("apply", str(spec), check=True)
    c.submit_job(job("priced"))
    j = wait_until(lambda: "max_price_per_hour" in (j := c.get_job("priced")).reason and j, timeout=60, what="price")
    assert "max_price_per_hour $0.100" in j.reason and j.state == "Pending"
    # a budget that one more hour of the machine would pass: the same
    spec.write_text(json.dumps({**POOL, "budget_per_month": 0.15}))
    server.cli("apply", str(spec), check=True)
    j = wait_until(lambda: "budget_per_month" in (j := c.get_job("priced")).reason and j, timeout=60, what="budget")
    assert "budget_per_month $0.15" in j.reason and j.state == "Pending"
    assert c.node_pool("elastic").nodes_up == 0
    c.cancel_job("priced")
    server.cli("pool", "delete", "elastic", check=True)
    wait_until(lambda: server.api("GET", "/nodepools/elastic").status_code == 404, timeout=60, what="pool gone")
