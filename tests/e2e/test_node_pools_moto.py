"""Node pools through a real control plane, with EC2 played by moto's server: `cumulo apply` of a
pool and the work it is for, the machine the pool launches (seen in EC2), a limit that stops a
scale-up named in the job's Pending reason, `cumulo pool ...`, bad input, and a control plane
killed in the middle of a scale-up (no second machine, no orphan).

The pool's cluster is the CI Ray cluster (`bash .ci/ray.sh`: 2 CPUs per node, no GPU); the jobs ask
for a T4 GPU, which none of its nodes (nor another test's local-vm machine) has. A moto machine
never joins, so every job stays Pending and each decision is the pool's alone (the machine stays
Joining); the pool with machines that join and run the work is tests/e2e/test_node_pools_ray.py.
"""

from __future__ import annotations

import json
import signal
import time

import boto3
import pytest

from cumulo.sdk.client import Client
from tests.helpers import Server, kill_leftovers, wait_until

POOL = {"kind": "NodePool", "name": "cpu", "cluster": "ray", "providers": ["aws"], "regions": ["us-east-1"],
        "instance_types": ["t3.medium", "g4dn.xlarge", "g4dn.2xlarge", "g5.xlarge"], "max_nodes": 1,
        "idle_ttl": "10m"}


def job(name: str) -> dict:
    return {"kind": "Job", "name": name, "cluster": "ray", "command": "true",
            "resources": {"cpu": 3, "memory": "1Gi", "gpu": 1, "gpu_type": "T4"}}


def yaml_docs(*docs: dict) -> str:
    return "\n---\n".join(json.dumps(d) for d in docs) + "\n"  # JSON is YAML


def instances(**tags) -> list[dict]:
    ec2 = boto3.client("ec2", region_name="us-east-1")
    flt = [{"Name": f"tag:{k}", "Values": [v]} for k, v in tags.items()]
    out = []
    for r in ec2.describe_instances(Filters=flt)["Reservations"]:
        out += [i for i in r["Instances"] if i["State"]["Name"] not in ("terminated", "shutting-down")]
    return out


def start(tmp_path, ray_cluster: str, **env) -> Server:
    s = Server(tmp_path / "home", f"sqlite:///{tmp_path / 'cumulo.db'}", extra_env=env).start()
    with Client(s.url, token=s.token) as c:
        c.add_cluster("ray", ray=ray_cluster, artifacts=str(tmp_path / "ray-artifacts"))
        info = wait_until(lambda: (i := c.cluster("ray")).state != "Unknown" and i, timeout=30, what="Ray asked")
        assert info.state == "Ready", info.reason
    return s


@pytest.fixture
def server(tmp_path, aws_env, ray_cluster):
    s = start(tmp_path, ray_cluster)
    yield s
    s.kill()
    kill_leftovers(s.home)


@pytest.mark.slow
def test_apply_launches_the_cheapest_machine_and_a_limit_is_named_in_the_pending_reason(server, tmp_path):
    spec = tmp_path / "pool.yaml"
    spec.write_text(yaml_docs(job("big"), POOL))
    r = server.cli("apply", str(spec), "--json", check=True)
    assert [(x["kind"], x["name"], x["action"]) for x in json.loads(r.stdout)] == [
        ("NodePool", "cpu", "created"), ("Job", "big", "created")]  # the pool first: the job needs its machines
    c = Client(server.url, token=server.token)
    pool = wait_until(lambda: (p := c.node_pool("cpu")).nodes and p.nodes[0].machine_id and p, timeout=60,
                      what="the pool's machine launched")
    node = pool.nodes[0]
    # 3 CPUs and a T4: g4dn.xlarge ($0.526/h) is the cheapest allowed type that holds it (g4dn.2xlarge
    # costs more, g5.xlarge has an A10G, t3.medium no GPU)
    assert (node.id, node.instance_type, node.provider, node.price_per_hour) == ("cpu-1", "g4dn.xlarge", "aws", 0.526)
    ec2 = instances(**{"cumulo:node-id": "cpu-1"})
    assert [(i["InstanceId"], i["InstanceType"]) for i in ec2] == [(node.machine_id, "g4dn.xlarge")]
    ups = [e for e in c.events(kind="NodePool", name="cpu") if e.reason == "ScaleUp"]
    assert len(ups) == 1 and "g4dn.xlarge" in ups[0].message and "$0.526/h" in ups[0].message
    assert "job big" in ups[0].message

    # a second job: max_nodes 1 stops its machine, and its Pending reason says so
    c.submit_job(job("big2"))
    held = wait_until(lambda: "max_nodes" in (j := c.get_job("big2")).reason and j, timeout=30, what="reason")
    assert held.state == "Pending"
    assert "node pool cpu: max_nodes 1 reached (1 up or launching, this needs 1 more)" in held.reason
    assert "max_nodes 1 reached" in c.node_pool("cpu").notes["job big2"]
    blocked = [e for e in c.events(kind="NodePool", name="cpu") if e.reason == "ScaleUpBlocked"]
    assert blocked and "max_nodes 1" in blocked[-1].message
    assert len(instances(**{"cumulo:install": (server.home / "install-id").read_text().strip()})) == 1

    # applying the same file again changes nothing; raising max_nodes updates the pool and launches
    r = server.cli("apply", str(spec), check=True)
    assert r.stdout.split("\n")[:2] == ["nodepool/cpu unchanged", "job/big unchanged"]
    spec.write_text(yaml_docs({**POOL, "max_nodes": 2}))
    assert server.cli("apply", str(spec), check=True).stdout.strip() == "nodepool/cpu updated (max_nodes)"
    wait_until(lambda: len([n for n in c.node_pool("cpu").nodes if n.machine_id]) == 2, timeout=60,
               what="a second machine")
    assert len(instances(**{"cumulo:install": (server.home / "install-id").read_text().strip()})) == 2

    listed = json.loads(server.cli("pool", "list", "--json", check=True).stdout)
    assert [(p["name"], p["cluster"], p["nodes_up"]) for p in listed] == [("cpu", "ray", 2)]
    assert listed[0]["price_per_hour"] == 2 * 0.526
    out = server.cli("pool", "status", "cpu", check=True).stdout
    assert "cpu-1" in out and "cpu-2" in out and "g4dn.xlarge" in out

    # delete: every machine is released, then the pool goes
    server.cli("pool", "delete", "cpu", check=True)
    wait_until(lambda: not instances(**{"cumulo:install": (server.home / "install-id").read_text().strip()}),
               timeout=60, what="machines terminated")
    wait_until(lambda: server.api("GET", "/nodepools/cpu").status_code == 404, timeout=30, what="pool gone")


def test_bad_node_pools_are_refused_naming_the_field_and_the_fix(server, tmp_path):
    cases = [
        ({**POOL, "cluster": "nope"}, "cluster", "cumulo cluster add"),
        ({**POOL, "providers": ["gcp"]}, "providers", "no driver"),
        ({**POOL, "providers": ["local"]}, "providers", "use local-vm"),
        ({**POOL, "min_nodes": 3, "max_nodes": 2}, "(spec)", "lower min_nodes or raise max_nodes"),
        ({**POOL, "spot": "maybe"}, "spot", "'allowed', 'required' or 'never'"),
        ({k: v for k, v in POOL.items() if k != "cluster"}, "cluster", "field required"),
    ]
    for body, field, fix in cases:
        r = server.api("POST", "/nodepools", json=body)
        assert r.status_code == 422, (body, r.text)
        problem = r.json()
        assert fix in problem["detail"], problem
        assert field in [e["field"] for e in problem.get("errors", [])], problem
    assert server.api("GET", "/nodepools").json() == []
    # an unknown kind in a file: nothing is applied, and the error names the kinds apply takes
    spec = tmp_path / "bad.yaml"
    spec.write_text(yaml_docs(POOL, {"kind": "AlertRul", "name": "x"}))
    r = server.cli("apply", str(spec))
    assert r.returncode != 0 and "use one of: Job, Deployment, NodePool" in r.stderr and "document 2" in r.stderr
    assert server.api("GET", "/nodepools").json() == []
    # a member token reads node pools but cannot write them
    member = Client(server.url, token=server.token).create_token("dev", role="member").token
    r = server.api("POST", "/nodepools", json=POOL, headers={"authorization": f"Bearer {member}"})
    assert r.status_code == 403
    assert server.api("GET", "/nodepools", headers={"authorization": f"Bearer {member}"}).status_code == 200


@pytest.mark.slow
@pytest.mark.parametrize("fault", ["nodepool-before-commit", "nodepool-after-commit"])
def test_a_control_plane_killed_mid_scale_up_makes_one_machine_and_leaves_no_orphan(tmp_path, aws_env, ray_cluster,
                                                                                       fault):
    """SIGKILL (os._exit(137)) with the scale-up's rows written but not committed, or committed
    with nothing launched yet: after a restart there is exactly one machine for the decision."""
    s = start(tmp_path, ray_cluster, CUMULO_FAULT=fault)
    try:
        c = Client(s.url, token=s.token)
        c.apply_node_pool(POOL)
        c.submit_job(job("big"))
        assert s.proc.wait(60) == 137, s.log()
        s.extra_env = {}
        s.start()
        c = Client(s.url, token=s.token)
        pool = wait_until(lambda: (p := c.node_pool("cpu")).nodes and p.nodes[0].machine_id and p, timeout=60,
                          what="the machine after the restart")
        install = (s.home / "install-id").read_text().strip()
        assert [n.id for n in pool.nodes] == ["cpu-1"]
        assert [i["InstanceId"] for i in instances(**{"cumulo:install": install})] == [pool.nodes[0].machine_id]
        # after the orphan sweep (every 10 s) the one machine is still there, and nothing was an orphan
        time.sleep(11)
        assert [i["InstanceId"] for i in instances(**{"cumulo:install": install})] == [pool.nodes[0].machine_id]
        assert [e for e in c.events(limit=500) if e.reason == "OrphanTerminated"] == []
    finally:
        s.kill(signal.SIGKILL)
        kill_leftovers(s.home)
