"""Machines launched for a Ray cluster join it: local-vm machines on the CI Ray cluster (`bash .ci/ray.sh`),
through a real control plane. Whether a machine joined is asserted from Ray's own view (its state
API), never from cumulo's. Every machine a test starts is killed at teardown by its session's PIDs."""

from __future__ import annotations

import json
import os
import signal
import socket
import textwrap
from urllib.parse import urlparse

import pytest

from cumulo.providers.local_vm import LocalVMProvider
from cumulo.sdk.client import Client
from cumulo.sdk.resources import ResourceManager
from tests.engines.ray import alive_nodes
from tests.helpers import Server, kill_leftovers, kill_machines, wait_until

pytestmark = pytest.mark.slow


def gcs_address(ray_cluster: str) -> str:
    return os.environ.get("CUMULO_TEST_RAY_GCS_ADDRESS", f"{urlparse(ray_cluster).hostname}:6390")


def ray_node_labelled(ray_cluster: str, node_id: str) -> dict | None:
    mine = [n for n in alive_nodes(ray_cluster) if (n.get("labels") or {}).get("cumulo.io/node-id") == node_id]
    return mine[0] if mine else None


def start_server(home, ray_cluster: str, join: str, **env) -> tuple[Server, Client]:
    s = Server(home, f"sqlite:///{home / 'cumulo.db'}", extra_env=env).start()
    c = Client(s.url, token=s.token)
    c.add_cluster("ray", ray=ray_cluster, artifacts=str(home / "ray-artifacts"), join=join)
    info = wait_until(lambda: (i := c.cluster("ray")).state != "Unknown" and i, timeout=30, what="Ray asked")
    assert info.state == "Ready", info.reason
    return s, c


def stop(server: Server, client: Client) -> None:
    client.close()
    server.kill(signal.SIGTERM)
    kill_leftovers(server.home)  # every machine it launched, by PID: their Ray nodes leave the cluster


@pytest.fixture
def joined(tmp_path, ray_cluster):
    server, client = start_server(tmp_path / "home", ray_cluster, gcs_address(ray_cluster))
    yield server, client
    stop(server, client)


def test_a_local_vm_machine_joins_ray_with_its_labels_is_ready_then_and_leaves_ray_when_released(joined, ray_cluster):
    server, client = joined
    assert client.cluster("ray").join_address == gcs_address(ray_cluster)
    rm = ResourceManager(client)
    (node,) = rm.create_resources({"nodes": [{"cpu": 2}], "providers": ["local-vm"], "cluster": "ray"}, wait=False)
    ready = rm.wait_pool(node.pool, timeout=180).nodes[0]
    assert ready.state == "Ready" and ready.instance_type == "lvm.c2"  # the cheapest 2-CPU shape, on demand
    # Ray's own view: a node labelled with the cumulo node's id, the shape's resources, on its own address
    seen = ray_node_labelled(ray_cluster, node.id)
    assert seen is not None, [n.get("labels") for n in alive_nodes(ray_cluster)]
    assert seen["labels"]["cumulo.io/instance-type"] == "lvm.c2" and seen["labels"]["cumulo.io/market"] == "on-demand"
    assert seen["labels"]["cumulo.io/zone"] == ready.zone and seen["labels"]["cumulo.io/provider"] == "local-vm"
    assert seen["resources_total"]["CPU"] == 2 and seen["resources_total"]["memory"] == 4 * 2**30
    ip = seen["node_ip"]
    assert ip.startswith("127.0.0.") and int(ip.rsplit(".", 1)[1]) >= 10
    # cumulo's view: one row, the machine's, linked to the engine's node, with what it is and costs
    row = wait_until(lambda: [n for n in client.nodes("ray") if n.name == node.id], timeout=10, what="the node row")[0]
    assert row.engine_id == seen["node_id"] and row.address == ip and row.state == "Ready"
    assert row.provider == "local-vm" and row.instance_type == "lvm.c2" and row.price_per_hour == ready.price_per_hour
    assert row.labels["cumulo.io/node-id"] == node.id
    assert not [n for n in client.nodes("ray") if n.engine_id == seen["node_id"] and n.name != node.id]
    # Ready only once joined: the node was Joining first
    reasons = [e.reason for e in client.events(kind="Node", name=node.id, limit=100)]
    assert reasons.index("Joining") < reasons.index("Ready"), reasons
    table = server.cli("nodes", "--cluster", "ray", check=True).stdout
    assert node.id in table and "lvm.c2" in table and "on-demand" in table
    # released: the machine stops, and its node leaves Ray
    machine = ready.machine_id
    pids = LocalVMProvider(server.home / "providers" / "local-vm").pids(machine)
    assert pids
    rm.release(node.id)
    wait_until(lambda: [n for n in rm.list(all=True) if n.id == node.id][0].state == "Terminated", timeout=60,
               what="terminated")
    wait_until(lambda: ray_node_labelled(ray_cluster, node.id) is None, timeout=60, what="the node gone from Ray")
    assert LocalVMProvider(server.home / "providers" / "local-vm").pids(machine) == []


def test_a_machine_that_does_not_join_in_time_is_replaced_with_an_event(tmp_path, ray_cluster):
    """The join address is a port that accepts connections and never answers: the machine runs
    (its `ray start` waits) but never joins. With a 10 s join timeout it is terminated and replaced."""
    hole = socket.socket()
    hole.bind((urlparse(ray_cluster).hostname, 0))
    hole.listen(0)
    server, client = start_server(tmp_path / "home", ray_cluster, f"{hole.getsockname()[0]}:{hole.getsockname()[1]}",
                                  CUMULO_JOIN_TIMEOUT="10")
    try:
        rm = ResourceManager(client)
        r = server.cli("resources", "create", "lvm.c1", "--provider", "local-vm", "--cluster", "ray", "--no-wait",
                       "--json", check=True)  # as the README shows
        (node,) = [n for n in rm.list() if n.id == json.loads(r.stdout)[0]["id"]]
        first = wait_until(lambda: (n := [x for x in rm.list(all=True) if x.id == node.id][0]).machine_id and n,
                           timeout=30, what="a machine").machine_id
        event = wait_until(lambda: [e for e in client.events(kind="Node", name=node.id, limit=100)
                                    if e.reason == "JoinTimeout"], timeout=90, what="the join timeout")[0]
        assert event.type == "Warning" and first in event.message
        assert "did not join cluster ray within 10s" in event.message
        provider = LocalVMProvider(server.home / "providers" / "local-vm")
        wait_until(lambda: provider.pids(first) == [], timeout=30, what="the first machine stopped")
        # ... and another machine is launched for the same node
        second = wait_until(lambda: (m := [x for x in rm.list(all=True) if x.id == node.id][0].machine_id)
                            and m != first and m, timeout=30, what="a replacement machine")
        assert {m.id: m.state for m in provider.describe()}[first] == "terminated"
        assert [x for x in rm.list(all=True) if x.id == node.id][0].state in ("Provisioning", "Joining")
        rm.release(node.id)
        wait_until(lambda: [n for n in rm.list(all=True) if n.id == node.id][0].state == "Terminated", timeout=60,
                   what="released")
        wait_until(lambda: provider.pids(second) == [], timeout=30, what="the second machine stopped")
    finally:
        hole.close()
        stop(server, client)
        assert kill_machines(server.home) == []  # nothing was left running


STEPPER = textwrap.dedent("""
    import os, pathlib, time
    import cumulo
    ckpt = pathlib.Path(os.environ["CUMULO_ARTIFACTS"]) / "step"
    step = int(ckpt.read_text()) if ckpt.exists() else 0
    print("resuming at", step, "on", os.environ.get("CUMULO_NODE_IPS"), flush=True)
    while step < 30:
        step += 1
        time.sleep(0.5)
        tmp = ckpt.with_suffix(".tmp"); tmp.write_text(str(step)); tmp.replace(ckpt)
        cumulo.report(step=step, loss=1.0 / step)
""")


def test_a_job_on_a_spot_machine_that_is_taken_back_resumes_elsewhere_without_using_a_retry(joined, tmp_path):
    """max_retries is 0: only because a preemption is not counted does the job get a second attempt.
    The job asks for 4 CPUs and 12 GiB: no node of the shared cluster has both (its own have 2 or 3
    CPUs, other tests' lvm.c4 machines 8 GiB), only the lvm.c4g1 machines launched here."""
    server, client = joined
    rm = ResourceManager(client)
    shape = {"nodes": [{"cpu": 4, "memory_gib": 12}], "providers": ["local-vm"], "cluster": "ray"}
    (spot,) = rm.create_resources({**shape, "spot": True}, timeout=180)
    assert spot.state == "Ready" and spot.spot and spot.instance_type == "lvm.c4g1"  # the cheapest that fits
    ip = [n for n in client.nodes("ray") if n.name == spot.id][0].address
    (tmp_path / "stepper.py").write_text(STEPPER)
    job = tmp_path / "stepper.yaml"
    job.write_text(json.dumps({"kind": "Job", "name": "stepper", "command": "python stepper.py", "workdir": str(tmp_path),
                               "cluster": "ray", "resources": {"cpu": 4, "memory": "12Gi"}, "max_retries": 0}))
    client.submit_job(job)
    wait_until(lambda: any((p.step or 0) >= 4 for p in client.job_metrics("stepper")), timeout=180,
               what="a few steps on the spot machine")
    assert [w.address for w in client.get_job("stepper").attempt_list[-1].workers] == [ip]
    LocalVMProvider(server.home / "providers" / "local-vm").kill(spot.machine_id)  # the cloud takes it back
    gone = wait_until(lambda: (n := [x for x in rm.list(all=True) if x.id == spot.id][0]).state == "Preempted" and n,
                      timeout=30, what="the node preempted")
    assert "spot machine was taken back" in gone.reason
    ended = wait_until(lambda: (j := client.get_job("stepper")).attempt_list[0].state == "Failed" and j,
                       timeout=120, what="the attempt to end")
    first = ended.attempt_list[0]
    assert first.reason.startswith(f"NodePreempted: node {ip} was preempted (spot machine {spot.machine_id}"), first.reason
    assert ended.state in ("Pending", "Starting", "Running"), (ended.state, ended.reason)  # not Failed: no retry used
    # new capacity (on demand this time): the retry runs there and resumes from the newest checkpoint
    (od,) = rm.create_resources(shape, timeout=180)
    done = client.wait_job("stepper", timeout=240)
    assert done.state == "Succeeded" and done.attempts == 2, done.reason
    od_ip = [n for n in client.nodes("ray") if n.name == od.id][0].address
    assert [w.address for w in done.attempt_list[-1].workers] == [od_ip]
    points = client.job_metrics("stepper")
    first_steps = sorted(p.step for p in points if p.attempt == 1)
    retry_steps = sorted(p.step for p in points if p.attempt == 2)
    # resumed from the newest checkpoint: at most the one step in flight is redone (the first step the
    # retry reports is the one after its checkpoint, which is at least the last step reported before)
    assert retry_steps[0] > 1 and retry_steps[0] >= first_steps[-1], (first_steps, retry_steps)
    assert retry_steps[-1] == 30
    reasons = [e.reason for e in client.events(kind="Job", name="stepper", limit=100)]
    assert "NodePreempted" in reasons and "NodeLost" not in reasons and "AttemptFailed" not in reasons, reasons
    rm.release(od.id)
