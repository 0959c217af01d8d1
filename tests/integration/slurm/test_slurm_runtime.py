"""The Slurm runtime against a real Slurm (`bash .ci/slurm.sh`): sbatch, srun workers, squeue, scancel."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from cumulo.core.states import ProcessPhase
from cumulo.runtimes.base import LaunchSpec, RuntimeUnavailable, WorkerResources
from cumulo.runtimes.slurm import SlurmRuntime

ENV = {"PATH": os.environ["PATH"]}
SMALL = WorkerResources(cpu=1, memory=64 * 2**20)


@pytest.fixture
def rt(slurm_cluster, tmp_path):
    runtime = SlurmRuntime(tmp_path / "runs", partition=slurm_cluster)
    yield runtime
    # cancel whatever this test left in Slurm: only its own jobs, by the ids its run folders hold
    for jobid in Path(runtime.root).rglob("jobid"):
        subprocess.run(["scancel", jobid.read_text().strip()], timeout=10, check=False)


def spec(key, command, workers=1, workdir="/tmp", **kw):
    kw.setdefault("resources", SMALL)
    return LaunchSpec(key=key, command=command, workdir=workdir, env={**ENV, **kw.pop("env", {})},
                      worker_env=tuple({"RANK": str(r), "MASTER_PORT": "1"} for r in range(workers)), **kw)


def wait_for(rt, handle, *phases, timeout=60.0):
    deadline = time.monotonic() + timeout
    obs = None
    while time.monotonic() < deadline:
        obs = rt.observe(handle)
        if obs.phase in phases:
            return obs
        time.sleep(0.2)
    raise AssertionError(f"never reached {phases}; last {obs}")


def wait_running(rt, handle, timeout=60.0):
    """RUNNING with every worker started (its pid known)."""
    deadline = time.monotonic() + timeout
    obs = None
    while time.monotonic() < deadline:
        obs = rt.observe(handle)
        if obs.phase == ProcessPhase.RUNNING and all(w.pid for w in obs.workers):
            return obs
        assert obs.phase in (ProcessPhase.BOOTING, ProcessPhase.QUEUED, ProcessPhase.RUNNING), obs
        time.sleep(0.2)
    raise AssertionError(f"never running; last {obs}")


def squeue_ids(name):
    out = subprocess.run(["squeue", "-h", "-t", "all", "-n", name, "-o", "%i"], capture_output=True, text=True,
                         timeout=10, check=False).stdout
    return out.split()


def test_two_workers_get_the_environment_contract_and_a_log_each(rt):
    cmd = ("echo RANK=$RANK WORLD_SIZE=$WORLD_SIZE LOCAL_RANK=$LOCAL_RANK LOCAL_WORLD_SIZE=$LOCAL_WORLD_SIZE "
           "MASTER_ADDR=$MASTER_ADDR MASTER_PORT=$MASTER_PORT NODE_RANK=$CUMULO_NODE_RANK "
           "NUM_NODES=$CUMULO_NUM_NODES NODE_IPS=$CUMULO_NODE_IPS SECRET=$SECRET; sleep 2")
    h = rt.launch(spec("two", cmd, workers=2, env={"SECRET": "hunter2"}))
    wait_running(rt, h)
    obs = wait_for(rt, h, ProcessPhase.EXITED)
    assert obs.exit_code == 0 and obs.exit_codes == (0, 0)
    assert [(w.rank, w.node, w.host) for w in obs.workers] == [(0, "localhost", "127.0.0.1"), (1, "localhost", "127.0.0.1")]
    logs = [Path(rt.log_path(h, r)).read_text().split() for r in (0, 1)]
    fields = [dict(item.split("=", 1) for item in log) for log in logs]
    for rank, f in enumerate(fields):
        assert f["RANK"] == f["LOCAL_RANK"] == str(rank)
        assert f["WORLD_SIZE"] == f["LOCAL_WORLD_SIZE"] == "2"
        assert f["MASTER_ADDR"] == "127.0.0.1" and f["NODE_IPS"] == "127.0.0.1"
        assert f["NODE_RANK"] == "0" and f["NUM_NODES"] == "1"
        assert f["SECRET"] == "hunter2"
    port = fields[0]["MASTER_PORT"]
    assert port == fields[1]["MASTER_PORT"] and port != "1", "Slurm's first node picks the port, not the control plane"
    run_dir = Path(h.data["dir"])
    assert not list(run_dir.glob("env*")), "the environment files (secrets) are deleted once read"
    for f in run_dir.iterdir():
        assert "hunter2" not in f.read_text(errors="replace") or f.name.startswith("rank-"), f


def test_a_failing_rank_decides_the_exit_code_and_stops_the_others(rt):
    h = rt.launch(spec("fail", '[ "$RANK" = 1 ] && exit 5; sleep 60', workers=2, stop_grace=2))
    obs = wait_for(rt, h, ProcessPhase.EXITED, timeout=40)
    assert obs.exit_code == 5
    assert obs.exit_codes == (143, 5), "rank 0 was stopped (SIGTERM) because rank 1 failed"


def test_stop_sends_sigterm_then_kills_after_the_grace(rt):
    polite = rt.launch(spec("polite", "sleep 60", stop_grace=30))
    stubborn = rt.launch(spec("stubborn", 'trap "" TERM; sleep 60 & wait; sleep 60', stop_grace=2))
    for h in (polite, stubborn):
        wait_running(rt, h)
    time.sleep(0.5)  # the stubborn one's trap is set
    rt.stop(polite)
    rt.stop(stubborn)
    assert wait_for(rt, polite, ProcessPhase.EXITED, timeout=25).exit_codes == (143,)
    assert wait_for(rt, stubborn, ProcessPhase.EXITED, timeout=40).exit_codes == (137,), "SIGKILL after the grace"


def test_a_second_launch_of_the_same_key_never_submits_again(rt, tmp_path):
    s = spec("once/attempt-1", "sleep 30")
    first = rt.launch(s)
    again = rt.launch(s)
    # a restarted control plane (a new runtime object) that died after sbatch, before the job id
    # was written, and (worse) a run folder that lost its claim file: Slurm's queue still knows
    Path(first.data["dir"], "jobid").unlink()
    restarted = SlurmRuntime(rt.root, partition=rt.partition).launch(s)
    Path(first.data["dir"], "claim").unlink()
    SlurmRuntime(rt.root, partition=rt.partition).launch(s)
    assert first.data["job_id"] == again.data["job_id"]
    assert squeue_ids(first.data["name"]) == [first.data["job_id"]]
    assert restarted.data["name"] == first.data["name"]
    rt.kill(first)
    wait_for(rt, first, ProcessPhase.EXITED)


def test_a_launch_that_died_before_sbatch_is_submitted_once_on_the_next_try(rt):
    s = spec("crashed/attempt-1", "sleep 30")
    h = rt.handle_for(s.key)
    Path(h.data["dir"]).mkdir(parents=True)
    Path(h.data["dir"], "claim").write_text("submit")  # claimed, then the control plane died
    assert rt.observe(h).phase == ProcessPhase.BOOTING
    first = rt.launch(s)
    second = SlurmRuntime(rt.root, partition=rt.partition).launch(s)
    assert first.data["job_id"] and second.data["job_id"] == first.data["job_id"]
    assert squeue_ids(h.data["name"]) == [first.data["job_id"]]
    rt.kill(first)
    wait_for(rt, first, ProcessPhase.EXITED)


def test_abandon_before_launch_means_it_never_runs(rt):
    h = rt.handle_for("never/attempt-1")
    assert rt.abandon(h) is True
    rt.launch(spec("never/attempt-1", "echo ran"))
    assert rt.observe(h).phase == ProcessPhase.LOST
    assert squeue_ids(h.data["name"]) == []
    assert not Path(rt.log_path(h)).exists()


def test_abandon_after_it_came_up_is_refused(rt):
    h = rt.launch(spec("up", "sleep 30"))
    wait_running(rt, h)
    assert rt.abandon(h) is False
    rt.kill(h)
    assert wait_for(rt, h, ProcessPhase.EXITED).exit_code in (137, 143)  # Slurm sends SIGTERM first


def test_queued_while_the_cpus_are_held_then_abandoned_before_it_starts(rt):
    cpus = int(min(n.cpu for n in rt.nodes()))
    hog = rt.launch(spec("hog", "sleep 60", resources=WorkerResources(cpu=cpus, memory=64 * 2**20)))
    wait_running(rt, hog)
    waiting = rt.launch(spec("waiting", "echo ran", env={"TOKEN": "s3cr3t"}))
    env_file = Path(waiting.data["dir"], "env")
    assert env_file.stat().st_mode & 0o777 == 0o600, "a queued job's environment is its owner's only"
    assert "s3cr3t" not in Path(waiting.data["dir"], "job.sh").read_text()
    obs = wait_for(rt, waiting, ProcessPhase.QUEUED, ProcessPhase.RUNNING, ProcessPhase.EXITED)
    assert obs.phase == ProcessPhase.QUEUED
    obs = wait_for(rt, waiting, ProcessPhase.QUEUED)  # Slurm's reason appears once it has looked
    deadline = time.monotonic() + 20
    while "Resources" not in obs.detail and "Priority" not in obs.detail and time.monotonic() < deadline:
        time.sleep(0.5)
        obs = rt.observe(waiting)
    assert obs.phase == ProcessPhase.QUEUED and ("Resources" in obs.detail or "Priority" in obs.detail), obs
    assert rt.abandon(waiting) is True
    rt.kill(hog)
    wait_for(rt, hog, ProcessPhase.EXITED)
    assert wait_for(rt, waiting, ProcessPhase.LOST).detail.startswith("the launch never came up")
    assert not Path(rt.log_path(waiting)).exists(), "the abandoned job never ran its command"
    assert not env_file.exists(), "nothing will read it now: deleted"


def test_a_serve_launch_answers_on_its_host_and_port(rt):
    h = rt.launch(spec("serve", "exec python3 -m http.server $PORT --bind $HOST", serve=True, stop_grace=5))
    obs = wait_for(rt, h, ProcessPhase.RUNNING)
    deadline = time.monotonic() + 20
    while not obs.workers[0].port and time.monotonic() < deadline:
        time.sleep(0.2)
        obs = rt.observe(h)
    w = obs.workers[0]
    assert w.host == "127.0.0.1" and w.port
    assert json.loads(Path(h.data["dir"], "serve.json").read_text()) == {"host": w.host, "port": w.port}
    body = None
    while body is None and time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://{w.host}:{w.port}/", timeout=2) as resp:
                body = resp.status
        except OSError:
            time.sleep(0.2)
    assert body == 200
    rt.stop(h)
    assert wait_for(rt, h, ProcessPhase.EXITED).exit_codes[0] in (143, -15, 0)


def test_nodes_report_the_machine(rt):
    (node,) = [n for n in rt.nodes() if n.id == "localhost"]
    assert node.address == "127.0.0.1" and node.alive
    assert node.cpu == os.cpu_count() and node.memory > 0
    assert node.cpu_free is not None and 0 <= node.cpu_free <= node.cpu


def test_observe_shares_one_squeue_call(rt, tmp_path, monkeypatch):
    shim = tmp_path / "bin"
    shim.mkdir()
    calls = tmp_path / "calls"
    real = subprocess.run(["bash", "-c", "command -v squeue"], capture_output=True, text=True, check=True).stdout.strip()
    (shim / "squeue").write_text(f'#!/bin/sh\necho x >> {calls}\nexec {real} "$@"\n')
    (shim / "squeue").chmod(0o755)
    monkeypatch.setenv("PATH", f"{shim}:{os.environ['PATH']}")
    handles = [rt.launch(spec(f"many-{i}", "sleep 20")) for i in range(3)]
    wait_for(rt, handles[-1], ProcessPhase.RUNNING, ProcessPhase.QUEUED)
    before = len(calls.read_text().splitlines())
    for _ in range(30):
        for h in handles:
            rt.observe(h)
    assert len(calls.read_text().splitlines()) - before <= 2, "90 observes within the cache's life share a call"
    for h in handles:
        rt.kill(h)


@pytest.mark.slow
def test_timeout_is_reported_as_a_failure_naming_the_limit(rt):
    h = rt.launch(spec("late", "sleep 300", timeout=30))  # Slurm's limit: 1 minute
    obs = wait_for(rt, h, ProcessPhase.EXITED, timeout=180)
    assert obs.exit_code != 0
    assert "time limit" in obs.detail and "1 min" in obs.detail


@pytest.mark.slow
def test_a_node_going_down_under_a_job_is_named(rt):
    h = rt.launch(spec("nodefail", "sleep 60"))
    node = wait_running(rt, h).workers[0].node
    subprocess.run(["scontrol", "update", f"NodeName={node}", "State=DOWN", "Reason=cumulo-test"], check=True,
                   timeout=10)
    try:
        obs = wait_for(rt, h, ProcessPhase.EXITED)
    finally:
        subprocess.run(["scontrol", "update", f"NodeName={node}", "State=RESUME"], timeout=10, check=False)
    assert obs.node_lost == node and node in obs.detail
    assert obs.exit_code != 0


def test_a_shape_slurm_cannot_run_is_refused_with_its_reason(rt):
    if any(n.gpus for n in rt.nodes()):
        pytest.skip("this cluster has GPUs: the test asks for one where there is none")
    s = spec("gpu", "true", resources=WorkerResources(cpu=1, memory=2**26, gpu=1))
    with pytest.raises(RuntimeUnavailable, match="sbatch refused"):
        rt.launch(s)
    h = rt.handle_for(s.key)
    assert rt.abandon(h) is True  # what the control plane does after a failed launch
    obs = rt.observe(h)
    assert obs.phase == ProcessPhase.LOST and obs.detail.startswith("sbatch refused the job: ")
    assert not list(Path(h.data["dir"]).glob("env*"))


@pytest.mark.slow
def test_digits_trains_data_parallel_across_two_slurm_workers(rt, tmp_path):
    repo = Path(__file__).resolve().parents[3]
    env = {"PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}", "PYTHONUNBUFFERED": "1",
           "CUMULO_ARTIFACTS": str(tmp_path / "artifacts"), "PYTHONPATH": os.environ.get("PYTHONPATH", "")}
    h = rt.launch(spec("digits", "python train.py --epochs 2", workers=2, env=env, workdir=str(repo / "examples/digits"),
                       resources=WorkerResources(cpu=1, memory=1 << 30)))
    obs = wait_for(rt, h, ProcessPhase.EXITED, timeout=240)
    assert obs.exit_codes == (0, 0), Path(rt.log_path(h, 0)).read_text() + Path(rt.log_path(h, 1)).read_text()
    assert "epoch   2" in Path(rt.log_path(h, 0)).read_text()
    assert sorted(p.name for p in (tmp_path / "artifacts/checkpoints").iterdir())
