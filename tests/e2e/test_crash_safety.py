"""SIGKILL the control plane at any moment: on restart, work is re-adopted, never duplicated."""

from __future__ import annotations

import json
import signal
import textwrap
import time
from pathlib import Path

import pytest

from tests.helpers import Server, kill_leftovers, wait_until

JOB = """\
import os, sys, time
from pathlib import Path
import cumulo

marker = Path(sys.argv[1])
with marker.open("a") as f:  # one line per process start: duplicates would show
    f.write(f"start attempt={os.environ['CUMULO_ATTEMPT']} pid={os.getpid()}\\n")
for step in range(1, int(sys.argv[2]) + 1):
    cumulo.report(step=step, progress=step)
    time.sleep(0.5)
Path(str(marker) + ".done").touch()
sys.exit(int(sys.argv[3]))
"""


@pytest.fixture
def server(tmp_path, database_url):
    s = Server(tmp_path / "home", database_url).start()
    yield s
    s.kill()
    kill_leftovers(s.home)


def submit(server, tmp_path, name, steps, exit_code=0):
    script = tmp_path / "job.py"
    script.write_text(JOB)
    marker = tmp_path / f"{name}.starts"
    spec = tmp_path / f"{name}.yaml"
    spec.write_text(textwrap.dedent(f"""
        kind: Job
        name: {name}
        command: python job.py {marker} {steps} {exit_code}
        max_retries: 2
        backoff: {{initial: 0.1}}
    """))
    server.cli("job", "submit", str(spec), check=True)
    return marker


def status(server, name):
    return json.loads(server.cli("job", "status", name, "--json", check=True).stdout)


def test_a_job_running_across_a_sigkill_finishes_exactly_once(server, tmp_path):
    marker = submit(server, tmp_path, "survivor", steps=10)
    wait_until(lambda: status(server, "survivor")["state"] == "Running", what="job to run")
    time.sleep(1.0)
    server.kill(signal.SIGKILL)
    time.sleep(1.5)  # the job keeps running (and reporting into a buffer) while nothing watches it
    assert not Path(str(marker) + ".done").exists()
    # its last step is done while the control plane is still down: at exit it waits to hand its points over
    wait_until(lambda: Path(str(marker) + ".done").exists(), timeout=30, what="the job's last step")
    server.start()
    job = wait_until(lambda: (j := status(server, "survivor"))["state"] in ("Succeeded", "Failed") and j,
                     timeout=60, what="job to finish")
    assert job["state"] == "Succeeded" and job["attempts"] == 1 and job["exit_code"] == 0
    assert len(marker.read_text().splitlines()) == 1, marker.read_text()
    steps = [p["step"] for p in json.loads(server.cli("job", "metrics", "survivor", "--json").stdout)]
    assert steps == list(range(1, 11)), "metrics reported while the control plane was down were lost"


@pytest.mark.parametrize("exit_code, state, attempts", [(0, "Succeeded", 1), (3, "Failed", 3)])
def test_exit_status_of_a_job_that_ended_while_the_control_plane_was_down(server, tmp_path, exit_code, state,
                                                                        attempts):
    marker = submit(server, tmp_path, "ender", steps=2, exit_code=exit_code)
    wait_until(lambda: status(server, "ender")["state"] == "Running", what="job to run")
    server.kill(signal.SIGKILL)
    wait_until(lambda: Path(str(marker) + ".done").exists(), timeout=30, what="job to end while down")
    time.sleep(0.3)
    server.start()
    job = wait_until(lambda: (j := status(server, "ender"))["attempt_list"][0]["state"] != "Running" and j,
                     timeout=30, what="the recorded exit to be read")
    first = job["attempt_list"][0]
    assert first["exit_code"] == exit_code
    assert first["state"] == ("Succeeded" if exit_code == 0 else "Failed")
    # a failed attempt is retried by policy (max_retries: 2): the job ends only when every try has
    job = wait_until(lambda: (j := status(server, "ender"))["state"] in ("Succeeded", "Failed") and j,
                     timeout=60, what="the job to end")
    assert job["state"] == state and job["attempts"] == attempts, job
    assert [a["exit_code"] for a in job["attempt_list"]] == [exit_code] * attempts
    if exit_code:
        assert "attempt 1 failed (exit code 3)" in "".join(
            e["message"] for e in json.loads(server.cli("events", "--job", "ender", "--json").stdout))


def test_pending_work_resumes_after_a_restart(server, tmp_path):
    server.kill(signal.SIGKILL)
    server.start()
    marker = submit(server, tmp_path, "later", steps=1)
    server.kill(signal.SIGKILL)  # possibly before the reconciler even started it
    server.start()
    job = wait_until(lambda: (j := status(server, "later"))["state"] == "Succeeded" and j, timeout=60,
                     what="job to finish after restart")
    assert len(marker.read_text().splitlines()) == job["attempts"] == 1
