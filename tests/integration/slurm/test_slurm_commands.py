"""Reading Slurm's output, and Slurm missing or hung: no Slurm needed (fake commands on PATH)."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from cumulo.runtimes.base import LaunchSpec, RuntimeUnavailable, WorkerResources
from cumulo.runtimes.slurm import SlurmRuntime
from cumulo.runtimes.slurm.commands import (
    expand_hostlist,
    gres_gpus,
    node_dead,
    node_lost,
    parse_fields,
    tres_gpus,
)
from cumulo.runtimes.slurm.script import sbatch_options

NODE = ("NodeName=gpu01 Arch=x86_64 CoresPerSocket=8 CPUAlloc=6 CPUEfctv=32 CPUTot=32 CPULoad=0.67 "
        "AvailableFeatures=ib,a100 ActiveFeatures=ib,a100 Gres=gpu:a100:4(S:0-1) NodeAddr=10.0.0.7 "
        "NodeHostName=gpu01 Version=22.05.8 OS=Linux 6.1.0 #1 SMP PREEMPT_DYNAMIC  RealMemory=256000 "
        "AllocMem=64000 FreeMem=17851 State=MIXED ThreadsPerCore=1 Partitions=gpu,all "
        "CfgTRES=cpu=32,mem=250G,billing=32,gres/gpu=4 AllocTRES=cpu=6,mem=62.50G,gres/gpu=1,gres/gpu:a100=1")


def test_scontrol_fields_keep_values_with_spaces():
    f = parse_fields(NODE)
    assert f["OS"] == "Linux 6.1.0 #1 SMP PREEMPT_DYNAMIC"
    assert f["Gres"] == "gpu:a100:4(S:0-1)" and f["NodeAddr"] == "10.0.0.7"
    assert f["AllocTRES"] == "cpu=6,mem=62.50G,gres/gpu=1,gres/gpu:a100=1"


def test_gpus_from_gres_and_tres():
    assert gres_gpus("gpu:a100:4(S:0-1)") == (4, "a100")
    assert gres_gpus("gpu:2,gpu:v100:1") == (3, "v100")
    assert gres_gpus("(null)") == (0, None)
    assert tres_gpus("cpu=6,mem=62.50G,gres/gpu=1,gres/gpu:a100=1") == 1


def test_hostlists_expand():
    assert expand_hostlist("n[1-3,5],gpu01") == ["n1", "n2", "n3", "n5", "gpu01"]
    assert expand_hostlist("node[08-10]") == ["node08", "node09", "node10"]
    assert expand_hostlist("localhost") == ["localhost"]
    assert expand_hostlist("") == []


@pytest.mark.parametrize("state,dead,lost", [
    ("IDLE", False, False), ("MIXED", False, False), ("ALLOCATED", False, False), ("DOWN", True, True),
    ("IDLE*", True, True), ("MIXED+DRAIN", True, False), ("ALLOCATED+FAIL", True, False),
    ("DOWN+NOT_RESPONDING", True, True)])
def test_node_states(state, dead, lost):
    assert node_dead(state) is dead, "takes no new work"
    assert node_lost(state) is lost, "what runs there is gone"


def _fake(tmp_path, monkeypatch, script: str):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name in ("scontrol", "squeue", "sinfo", "sbatch", "scancel"):
        (bin_dir / name).write_text(f"#!/bin/sh\n{script}\n")
        (bin_dir / name).chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:/usr/bin:/bin")


def test_nodes_parsed_from_scontrol(tmp_path, monkeypatch):
    _fake(tmp_path, monkeypatch, f"echo '{NODE}'")
    (node,) = SlurmRuntime(tmp_path / "runs", partition="gpu").nodes()
    assert (node.id, node.address, node.cpu, node.memory) == ("gpu01", "10.0.0.7", 32.0, 256000 * 2**20)
    assert (node.gpus, node.gpu_type, node.gpus_free) == (4, "a100", 3)
    assert (node.cpu_free, node.memory_free) == (26.0, (256000 - 64000) * 2**20)
    assert node.labels == {"ib": "true", "a100": "true"} and node.alive
    with pytest.raises(RuntimeUnavailable, match="no nodes in partition 'cpu'"):
        SlurmRuntime(tmp_path / "runs", partition="cpu").nodes()


def test_slurm_not_installed_is_named_with_the_fix(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # no Slurm command anywhere
    with pytest.raises(RuntimeUnavailable, match="scontrol.*not installed.*slurm-client"):
        SlurmRuntime(tmp_path / "runs").nodes()


def test_a_hung_slurmctld_costs_at_most_a_few_seconds(tmp_path, monkeypatch):
    _fake(tmp_path, monkeypatch, "exec sleep 60")
    rt = SlurmRuntime(tmp_path / "runs")
    h = rt.handle_for("job/attempt-1")
    os.makedirs(h.data["dir"])
    Path(h.data["dir"], "claim").write_text("submit")
    t0 = time.monotonic()
    with pytest.raises(RuntimeUnavailable, match="did not answer.*scontrol ping"):
        rt.observe(h)
    with pytest.raises(RuntimeUnavailable, match="did not answer"):
        rt.observe(h)  # the failure is shared for the cache's life too: no second wait
    assert time.monotonic() - t0 < 20


def test_a_finished_job_is_known_from_its_files_while_slurm_is_unreachable(tmp_path, monkeypatch):
    _fake(tmp_path, monkeypatch, "echo 'squeue: error: Unable to contact slurm controller (connect failure)' >&2; exit 1")
    rt = SlurmRuntime(tmp_path / "runs")
    h = rt.handle_for("job/attempt-1")
    run = Path(h.data["dir"])
    run.mkdir(parents=True)
    (run / "claim").write_text("submit")
    (run / "spec.json").write_text('{"workers": 2}')
    (run / "rank-0.exit").write_text("0 10.0\n")
    with pytest.raises(RuntimeUnavailable, match="Unable to contact slurm controller"):
        rt.observe(h)  # still running, or not: only Slurm can say
    (run / "rank-1.exit").write_text("3 11.0\n")
    (run / "batch.exit").write_text("3\n")
    rt._queue.invalidate()
    obs = rt.observe(h)
    assert (obs.phase, obs.exit_code, obs.exit_codes) == ("exited", 3, (0, 3))


def test_a_running_job_on_a_node_that_stopped_responding_names_it(tmp_path, monkeypatch):
    rt = SlurmRuntime(tmp_path / "runs")
    h = rt.handle_for("job/attempt-1")
    name = h.data["name"]
    node = NODE.replace("NodeName=gpu01", "NodeName=n2")
    _fake(tmp_path, monkeypatch, f"""case "$(basename "$0")" in
  squeue) echo '7|RUNNING|n[1-2]|None|{name}' ;;
  scontrol) echo '{NODE}'; echo '{node.replace("State=MIXED", "State=MIXED*")}' ;;
esac""")
    run = Path(h.data["dir"])
    run.mkdir(parents=True)
    (run / "claim").write_text("submit")
    (run / "jobid").write_text("7\n")
    (run / "spec.json").write_text('{"workers": 2}')
    obs = rt.observe(h)
    assert obs.phase == "running" and obs.node_lost == "n2" and "n2" in obs.detail


def _opts(**kw):
    workers = kw.pop("workers", 1)
    one_node = kw.pop("one_node", True)
    res = kw.pop("resources", WorkerResources(cpu=1.5, memory=3 * 2**30, gpu=0))
    spec = LaunchSpec(key="k", command="true", workdir="/w", env={}, worker_env=({},) * workers, resources=res, **kw)
    return sbatch_options(spec, job_name="cumulo-k", run_dir="/r", partition=kw.get("partition"), one_node=one_node)


def test_sbatch_shape_resources_and_time():
    o = _opts(workers=2, timeout=61)
    assert {"--ntasks=2", "--cpus-per-task=2", "--mem-per-cpu=1536M", "--nodes=1", "--time=2", "--no-requeue",
            "--export=NONE", "--output=/r/batch.log", "--chdir=/w"} <= set(o)
    spread = _opts(workers=3, placement="spread", resources=WorkerResources(cpu=1, memory=2**30, gpu=2))
    assert {"--nodes=3", "--ntasks-per-node=1", "--gres=gpu:2"} <= set(spread)
    packed = _opts(workers=2, resources=WorkerResources(cpu=1, memory=2**30, gpu=2))
    assert "--gres=gpu:4" in packed, "pack on one node: the node's GPUs for both workers"
    wide = _opts(workers=8, one_node=False, resources=WorkerResources(cpu=1, memory=2**30, gpu=1))
    assert "--gpus-per-task=1" in wide and not any(x.startswith("--nodes") for x in wide)
    typed = _opts(workers=2, resources=WorkerResources(cpu=1, memory=2**30, gpu=1, gpu_type="a100"))
    assert "--gres=gpu:a100:2" in typed, "a GPU type is Slurm's gres type"
    assert "--time=1" in _opts(timeout=0.5), "at least a minute"
    assert not any(x.startswith("--time") for x in _opts())
