"""Jobs on a real Slurm (`bash .ci/slurm.sh`) through a real control plane: sbatch, squeue, scancel.

The same specs as on this machine with only `cluster:` changed (crash safety on both engines is in
test_clusters_crash.py).
"""

from __future__ import annotations

import json
import signal
import subprocess
from pathlib import Path

import pytest

from cumulo.sdk.client import Client
from tests.helpers import Server, kill_leftovers, wait_until

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.slow

def _server(home: Path, slurm_cluster: str, **env) -> Server:
    s = Server(home, f"sqlite:///{home / 'cumulo.db'}", extra_env=env).start()
    return s


def _add_slurm(s: Server, partition: str) -> None:
    with Client(s.url, token=s.token) as c:
        if "slurm" not in {x.name for x in c.clusters()}:
            c.add_cluster("slurm", slurm=True, partition=partition, artifacts=str(s.home / "slurm-artifacts"))
        info = wait_until(lambda: (i := c.cluster("slurm")).state != "Unknown" and i, timeout=30, what="Slurm asked")
        assert info.state == "Ready" and info.nodes_ready >= 1, info.reason


@pytest.fixture(scope="module")
def server(tmp_path_factory, slurm_cluster):
    home = tmp_path_factory.mktemp("home")
    s = _server(home, slurm_cluster)
    _add_slurm(s, slurm_cluster)
    yield s
    s.kill(signal.SIGTERM)
    kill_leftovers(s.home)


@pytest.fixture
def client(server):
    with Client(server.url, token=server.token) as c:
        yield c


def _spec(tmp_path: Path, name: str, **fields) -> Path:
    path = tmp_path / f"{name}.yaml"
    path.write_text(json.dumps({"kind": "Job", "name": name, "workdir": str(tmp_path), **fields}))
    return path


def _in_queue(name_part: str) -> list[str]:
    out = subprocess.run(["squeue", "-h", "-o", "%j"], capture_output=True, text=True, timeout=10).stdout
    return [j for j in out.split() if name_part in j]


def test_digits_succeeds_through_sbatch_with_its_metrics_and_logs(server, client, tmp_path):
    spec = _spec(tmp_path, "digits-slurm", command="python train.py --epochs 3", cluster="slurm",
                 resources={"cpu": 1, "memory": "1Gi"})
    body = json.loads(spec.read_text())
    body["workdir"] = str(REPO / "examples" / "digits")
    spec.write_text(json.dumps(body))
    r = server.cli("job", "submit", str(spec), "--follow", timeout=300)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    job = client.get_job("digits-slurm")
    assert job.state == "Succeeded" and job.cluster == "slurm"
    assert job.metrics["accuracy"] > 0.5 and "test accuracy" in client.job_logs("digits-slurm").data
    assert job.artifacts.startswith(str(server.home / "slurm-artifacts"))
    assert (Path(job.artifacts) / "checkpoints").is_dir()


def test_cancel_stops_the_slurm_job(server, client, tmp_path):
    client.submit_job(_spec(tmp_path, "sleeper", command="sleep 300", cluster="slurm"))
    wait_until(lambda: client.get_job("sleeper").state == "Running", timeout=60, what="running")
    client.cancel_job("sleeper")
    job = client.wait_job("sleeper", timeout=60)
    assert job.state == "Cancelled", job.reason
    wait_until(lambda: not _in_queue(job.id[:8]), timeout=30, what="the Slurm job gone from the queue")


def test_a_timeout_and_a_failing_exit_code(server, client, tmp_path):
    client.submit_job(_spec(tmp_path, "slow", command="sleep 300", cluster="slurm", timeout="3s"))
    client.submit_job(_spec(tmp_path, "bad", command="exit 3", cluster="slurm"))
    slow, bad = client.wait_job("slow", timeout=90), client.wait_job("bad", timeout=90)
    assert slow.state == "Failed" and "timed out" in slow.reason, slow.reason
    assert bad.state == "Failed" and bad.exit_code == 3, (bad.reason, bad.exit_code)
    assert bad.attempt_list[-1].workers[0].exit_code == 3


def test_the_same_spec_runs_on_local_and_slurm_with_only_cluster_changed(server, client, tmp_path):
    for cluster in ("local", "slurm"):
        client.submit_job(_spec(tmp_path, f"env-{cluster}", cluster=cluster, workers=2,
                                command='echo "rank=$RANK world=$WORLD_SIZE master=$MASTER_ADDR nodes=$CUMULO_NUM_NODES"'))
    for cluster in ("local", "slurm"):
        job = client.wait_job(f"env-{cluster}", timeout=90)
        assert job.state == "Succeeded", job.reason
        for rank in (0, 1):
            assert f"rank={rank} world=2 master=" in client.job_logs(f"env-{cluster}", rank=rank).data
