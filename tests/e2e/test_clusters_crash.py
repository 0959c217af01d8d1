"""SIGKILL of the control plane on either side of a launch on Ray and on Slurm: the work is
re-adopted, never launched twice, never lost (as tests/e2e/test_crash_safety.py for this machine)."""

from __future__ import annotations

import json
import signal
import textwrap
from pathlib import Path

import pytest

from cumulo.sdk.client import Client
from tests.helpers import Server, kill_leftovers, wait_until

pytestmark = pytest.mark.slow

MARKED = textwrap.dedent("""
    import os, sys, time
    from pathlib import Path
    import cumulo
    marker = Path(sys.argv[1])
    with marker.open("a") as f:  # one line per process start: a duplicate launch would show
        f.write(f"start attempt={os.environ['CUMULO_ATTEMPT']} node={os.environ.get('CUMULO_NODE_IPS')}\\n")
    for step in range(1, int(sys.argv[2]) + 1):
        cumulo.report(step=step)
        time.sleep(0.5)
""")


def _add(s: Server, engine: str, target: str) -> None:
    with Client(s.url, token=s.token) as c:
        if engine not in {x.name for x in c.clusters()}:
            kw = {"ray": target} if engine == "ray" else {"slurm": True, "partition": target}
            c.add_cluster(engine, artifacts=str(s.home / f"{engine}-artifacts"), **kw)
        info = wait_until(lambda: (i := c.cluster(engine)).state != "Unknown" and i, timeout=30, what="engine asked")
        assert info.state == "Ready" and info.nodes_ready >= 1, info.reason


@pytest.mark.parametrize("side", ["after-launch", "before-launch"])
@pytest.mark.parametrize("engine", ["ray", "slurm"])
def test_sigkill_of_the_control_plane_on_either_side_of_a_launch_neither_loses_nor_duplicates(
        request, tmp_path, engine, side):
    target = request.getfixturevalue("ray_cluster" if engine == "ray" else "slurm_cluster")
    home = tmp_path / "home"
    marker = tmp_path / "starts.txt"
    (tmp_path / "job.py").write_text(MARKED)
    env = {"CUMULO_FAULT": "before-launch"} if side == "before-launch" else {}
    s = Server(home, f"sqlite:///{home / 'cumulo.db'}", extra_env=env).start()
    try:
        _add(s, engine, target)
        spec = {"kind": "Job", "name": "once", "command": f"python job.py {marker} 8", "workdir": str(tmp_path),
                "cluster": engine, "max_retries": 1, "backoff": {"initial": "1s"},
                "resources": {"cpu": 0.5, "memory": "256Mi"}}
        with Client(s.url, token=s.token) as c:
            c.submit_job(spec)
            if side == "after-launch":
                wait_until(lambda: marker.exists(), timeout=90, what="the job to start on the engine")
                s.kill(signal.SIGKILL)
            else:  # the control plane died by itself between recording the attempt and launching it
                s.proc.wait(60)
                assert s.proc.returncode == 137
                assert not marker.exists()
        s.extra_env.pop("CUMULO_FAULT", None)
        s.start()
        with Client(s.url, token=s.token) as c:
            job = c.wait_job("once", timeout=180)
        assert job.state == "Succeeded", job.reason
        starts = marker.read_text().splitlines()
        assert len(starts) == 1, starts  # exactly one process ever ran the job
        if side == "after-launch":
            assert job.attempts == 1  # re-adopted, not launched again
        else:  # the launch that never came up was abandoned (it never will), then retried once
            assert job.attempts == 2 and job.attempt_list[0].state == "Failed", json.dumps(
                [a.model_dump(mode="json") for a in job.attempt_list])
            assert starts[0].startswith("start attempt=2")
    finally:
        s.kill()
        kill_leftovers(home)
