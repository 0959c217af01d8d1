"""The local runtime with real processes: exit codes, workers, stop, kill, re-adoption."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import psutil
import pytest

from cumulo.core.states import ProcessPhase
from cumulo.runtimes.base import LaunchSpec
from cumulo.runtimes.local import LocalRuntime
from cumulo.runtimes.local.procs import start_time

ENV = {"PATH": os.environ["PATH"]}


def wait_for(rt, handle, phase, timeout=15.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        obs = rt.observe(handle)
        if obs.phase == phase:
            return obs
        time.sleep(0.05)
    raise AssertionError(f"never reached {phase}; last {obs}")


@pytest.fixture
def rt(tmp_path):
    return LocalRuntime(tmp_path / "runs", gpus=())


def launch(rt, key, command, workers=1, **kw):
    return rt.launch(LaunchSpec(key=key, command=command, workdir="/tmp", env=ENV,
                                worker_env=tuple({"RANK": str(r)} for r in range(workers)), **kw))


def test_records_exit_code_and_output(rt):
    h = launch(rt, "a", "echo out; echo err >&2; exit 3")
    obs = wait_for(rt, h, ProcessPhase.EXITED)
    assert obs.exit_code == 3 and obs.exit_codes == (3,)
    assert Path(rt.log_path(h)).read_text() == "out\nerr\n"


def test_workers_get_their_rank_and_live_and_die_together(rt):
    # rank 1 fails at once; rank 0 would sleep for a minute but is stopped because of it
    h = launch(rt, "b", 'echo "rank $RANK"; if [ "$RANK" = 1 ]; then exit 5; fi; sleep 60', workers=2, stop_grace=2)
    t0 = time.monotonic()
    obs = wait_for(rt, h, ProcessPhase.EXITED)
    assert time.monotonic() - t0 < 30
    assert obs.exit_code == 5, "the first failure decides the exit code, not the worker stopped for it"
    assert obs.exit_codes == (143, 5)
    assert Path(rt.log_path(h, 1)).read_text() == "rank 1\n"


def test_each_worker_is_its_own_process_group(rt):
    h = launch(rt, "c", "sleep 30", workers=2)
    obs = wait_for(rt, h, ProcessPhase.RUNNING)
    pids = [w.pid for w in obs.workers]
    assert all(os.getpgid(p) == p for p in pids)
    assert os.getpgid(pids[0]) != os.getpgid(os.getpid())
    rt.kill(h)
    assert wait_for(rt, h, ProcessPhase.EXITED).exit_codes == (137, 137)


def test_stop_sends_sigterm_and_the_process_can_clean_up(rt, tmp_path):
    marker = tmp_path / "cleaned"
    h = launch(rt, "d", f"trap 'touch {marker}; exit 0' TERM; sleep 30 & wait")
    wait_for(rt, h, ProcessPhase.RUNNING)
    time.sleep(0.2)
    rt.stop(h)
    obs = wait_for(rt, h, ProcessPhase.EXITED)
    assert obs.exit_code == 0 and marker.exists()


def test_stop_escalates_to_sigkill_after_the_grace(rt):
    h = launch(rt, "e", "trap '' TERM; sleep 30", stop_grace=1)
    wait_for(rt, h, ProcessPhase.RUNNING)
    time.sleep(0.2)
    rt.stop(h)
    assert wait_for(rt, h, ProcessPhase.EXITED).exit_code == 137


def test_a_new_runtime_instance_readopts_running_work(rt, tmp_path):
    """What a restarted control plane does: same files, no memory of the launch."""
    h = launch(rt, "f", "sleep 1; exit 4")
    wait_for(rt, h, ProcessPhase.RUNNING)
    fresh = LocalRuntime(tmp_path / "runs", gpus=())
    assert fresh.observe(h).phase == ProcessPhase.RUNNING
    assert wait_for(fresh, h, ProcessPhase.EXITED).exit_code == 4


def test_a_recycled_pid_is_not_mistaken_for_the_supervisor(rt):
    h = launch(rt, "g", "sleep 30")
    wait_for(rt, h, ProcessPhase.RUNNING)
    claim = Path(h.data["dir"]) / "supervisor.json"
    info = json.loads(claim.read_text())
    assert info["start"] == start_time(info["pid"])
    # same pid, different start time: as if the supervisor died and its pid was reused
    claim.write_text(json.dumps({"pid": info["pid"], "start": info["start"] - 1}))
    obs = rt.observe(h)
    assert obs.phase == ProcessPhase.LOST and "without recording an exit status" in obs.detail
    os.kill(info["pid"], signal.SIGKILL)


def test_a_killed_supervisor_is_lost_and_its_workers_do_not_outlive_it(rt):
    h = launch(rt, "h", "sleep 30")
    obs = wait_for(rt, h, ProcessPhase.RUNNING)
    worker = psutil.Process(obs.workers[0].pid)
    sup = json.loads((Path(h.data["dir"]) / "supervisor.json").read_text())["pid"]
    os.kill(sup, signal.SIGKILL)
    obs = wait_for(rt, h, ProcessPhase.LOST)
    worker.wait(timeout=5)  # killed by observe()
    assert not worker.is_running()


def test_abandon_wins_before_the_supervisor_starts(rt):
    h = rt.handle_for("never")
    assert rt.abandon(h)
    obs = rt.observe(h)
    assert obs.phase == ProcessPhase.LOST and "abandoned" in obs.detail


def test_abandon_loses_once_the_supervisor_is_up(rt):
    h = launch(rt, "i", "sleep 0.5")
    wait_for(rt, h, ProcessPhase.RUNNING)
    assert not rt.abandon(h)
    assert wait_for(rt, h, ProcessPhase.EXITED).exit_code == 0


def test_an_abandoned_launch_never_runs_even_if_the_supervisor_starts_late(rt, tmp_path):
    h = rt.handle_for("late")
    assert rt.abandon(h)
    marker = tmp_path / "ran"
    launch(rt, "late", f"touch {marker}")
    time.sleep(1.0)
    assert not marker.exists()
    assert rt.observe(h).phase == ProcessPhase.LOST


def test_a_command_that_cannot_start_exits_127(rt):
    h = rt.launch(LaunchSpec(key="j", command=["/nonexistent/binary"], workdir="/tmp", env=ENV))
    obs = wait_for(rt, h, ProcessPhase.EXITED)
    assert obs.exit_code == 127
    assert "No such file or directory" in Path(rt.log_path(h)).read_text()


def test_usage_reports_cpu_and_memory_of_a_busy_worker(rt):
    h = launch(rt, "k", "python3 -c 'while True: pass'")
    wait_for(rt, h, ProcessPhase.RUNNING)
    time.sleep(0.5)
    rt.observe(h)
    time.sleep(0.5)
    w = rt.observe(h).workers[0]
    assert w.cpu_percent > 20 and w.memory_bytes > 1_000_000
    rt.kill(h)
    wait_for(rt, h, ProcessPhase.EXITED)


def test_capacity_is_this_machine(tmp_path):
    res = LocalRuntime(tmp_path, gpus=((0, "Some GPU"),)).resources()
    assert res.cpu == psutil.cpu_count() and res.memory == psutil.virtual_memory().total and res.gpus == (0,)
