"""Jobs on a real Slurm (`bash .ci/slurm.sh`) through a real control plane: sbatch, squeue, scancel.

The same specs as on this machine with only `cluster:` changed; the control plane SIGKILLed on
both sides of a launch: the work is re-adopted, never submitted twice.
"""

from __future__ import annotations

import json
import signal
import subprocess
import textwrap
from pathlib import Path

import pytest

from cumulo.sdk.client import Client
from tests.helpers import Server, kill_leftovers, wait_until

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.slow

MARKED = textwrap.dedent("""
    import os, sys, time
    from pathlib import Path
    import cumulo
    marker = Path(sys.argv[1])
    with marker.open("a") as f:  # one line per process start: a duplicate launch would show
        f.write(f"start attempt={os.environ['CUMULO_ATTEMPT']} host={os.environ.get('CUMULO_NODE_IPS')}\\n")
    for step in range(1, int(sys.argv[2]) + 1):
        cumulo.report(step=step)
        time.sleep(0.5)
""")


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


@pytest.mark.parametrize("side", ["after-launch", "before-launch"])
def test_sigkill_of_the_control_plane_on_either_side_of_a_launch_neither_loses_nor_duplicates(
        tmp_path, slurm_cluster, side):
    home = tmp_path / "home"
    marker = tmp_path / "starts.txt"
    (tmp_path / "job.py").write_text(MARKED)
    s = _server(home, slurm_cluster, **({"CUMULO_FAULT": "before-launch"} if side == "before-launch" else {}))
    try:
        _add_slurm(s, slurm_cluster)
        with Client(s.url, token=s.token) as c:
            c.submit_job(_spec(tmp_path, "once", command=f"python job.py {marker} 8", cluster="slurm",
                               max_retries=1, backoff={"initial": "1s"}))
            if side == "after-launch":
                wait_until(lambda: marker.exists(), timeout=60, what="the job to start on Slurm")
                s.kill(signal.SIGKILL)
            else:  # the control plane died by itself between recording the attempt and launching it
                s.proc.wait(60)
                assert s.proc.returncode == 137
        s.extra_env.pop("CUMULO_FAULT", None)
        s.start()
        with Client(s.url, token=s.token) as c:
            job = c.wait_job("once", timeout=180)
        assert job.state == "Succeeded", job.reason
        starts = marker.read_text().splitlines()
        assert len(starts) == 1, starts  # exactly one process ever ran the job
        if side == "after-launch":
            assert job.attempts == 1  # re-adopted
        else:
            assert job.attempts == 2 and job.attempt_list[0].state == "Failed"  # abandoned, then retried
    finally:
        s.kill()
        kill_leftovers(home)
