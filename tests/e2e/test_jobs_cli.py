"""End to end through the CLI against a real control plane in a temporary CUMULO_HOME."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from datetime import datetime
from pathlib import Path

import psutil
import pytest

from tests.helpers import Server, free_port, kill_leftovers, wait_until

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def server(tmp_path_factory, module_database_url):
    s = Server(tmp_path_factory.mktemp("home"), module_database_url).start()
    yield s
    s.kill(signal.SIGTERM)
    kill_leftovers(s.home)


def job_json(server, name):
    return json.loads(server.cli("job", "status", name, "--json", check=True).stdout)


def write_spec(folder: Path, text: str) -> Path:
    path = folder / "job.yaml"
    path.write_text(textwrap.dedent(text))
    return path


@pytest.mark.slow
def test_train_digits_to_success_and_read_its_metrics(server, tmp_path):
    r = server.cli("job", "submit", str(REPO / "examples/digits/job.yaml"), "--follow")
    assert r.returncode == 0, r.stderr + server.log()
    assert "epoch  30" in r.stdout and "Succeeded" in r.stderr
    job = job_json(server, "digits")
    assert job["state"] == "Succeeded" and job["attempts"] == 1 and job["exit_code"] == 0
    assert job["metrics"]["step"] == 30 and job["metrics"]["accuracy"] > 0.9 and job["metrics"]["loss"] < 0.5
    assert sorted(p.name for p in Path(job["artifacts"], "checkpoints").glob("*.pt"))[:2] == ["epoch-1.pt", "epoch-10.pt"]
    series = json.loads(server.cli("job", "metrics", "digits", "--json", check=True).stdout)
    assert [p["step"] for p in series] == list(range(1, 31))
    listed = json.loads(server.cli("job", "list", "--json", check=True).stdout)
    assert any(j["name"] == "digits" and j["state"] == "Succeeded" for j in listed)
    human = server.cli("job", "status", "digits", check=True).stdout
    assert "Succeeded" in human and "accuracy=" in human


@pytest.mark.slow
def test_two_workers_train_with_torch_distributed_and_a_retry_resumes_from_the_checkpoint(server, tmp_path):
    spec = write_spec(tmp_path, f"""
        kind: Job
        name: ddp
        workdir: {REPO / 'examples/digits'}
        command: python train.py --epochs 4 --fail-at-epoch 2
        workers: 2
        max_retries: 1
        backoff: {{initial: 0.1}}
    """)
    r = server.cli("job", "submit", str(spec), "--follow")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "resuming from epoch-2.pt" in r.stdout
    job = job_json(server, "ddp")
    assert job["state"] == "Succeeded" and job["attempts"] == 2
    assert [a["state"] for a in job["attempt_list"]] == ["Failed", "Succeeded"]
    steps = [p["step"] for p in json.loads(server.cli("job", "metrics", "ddp", "--json").stdout)]
    assert steps == [1, 2, 3, 4], "attempt 2 resumed at epoch 3 instead of starting over"
    rank1 = server.cli("job", "logs", "ddp", "--rank", "1", "--attempt", "2", check=True).stdout
    assert "resuming from epoch-2.pt" in rank1


def test_a_failing_command_is_retried_then_fails_with_its_exit_code(server, tmp_path):
    spec = write_spec(tmp_path, """
        kind: Job
        name: flaky
        command: echo "try $CUMULO_ATTEMPT of job $CUMULO_JOB"; exit 3
        max_retries: 2
        backoff: {initial: 0.1, factor: 2}
    """)
    r = server.cli("job", "submit", str(spec), "--follow")
    assert r.returncode == 1
    assert "try 1 of job flaky" in r.stdout and "try 3 of job flaky" in r.stdout
    job = job_json(server, "flaky")
    assert job["state"] == "Failed" and job["attempts"] == 3 and job["exit_code"] == 3
    assert job["reason"] == "failed after 3 attempts: exit code 3"
    events = json.loads(server.cli("events", "--job", "flaky", "--json", check=True).stdout)
    reasons = [e["reason"] for e in events]
    assert reasons.count("AttemptFailed") == 2 and reasons.count("Starting") == 3 and reasons[-1] == "Failed"
    assert server.cli("job", "logs", "flaky", "--attempt", "2", check=True).stdout == "try 2 of job flaky\n"


def test_every_job_gets_its_identity_artifacts_and_env(server, tmp_path):
    spec = write_spec(tmp_path, """
        kind: Job
        name: envy
        command: 'echo "$CUMULO_JOB $CUMULO_ATTEMPT $GREETING $WORLD_SIZE $RANK [$CUDA_VISIBLE_DEVICES]" > "$CUMULO_ARTIFACTS/out.txt"; pwd >> "$CUMULO_ARTIFACTS/out.txt"'
        workdir: sub
        env: {GREETING: hello}
    """)
    (tmp_path / "sub").mkdir()
    server.cli("job", "submit", str(spec), "--follow", check=True)
    job = job_json(server, "envy")
    out = Path(job["artifacts"], "out.txt").read_text().splitlines()
    assert out == ["envy 1 hello 1 0 []", str(tmp_path / "sub")]


def test_invalid_spec_exits_non_zero_names_the_field_and_creates_nothing(server, tmp_path):
    spec = write_spec(tmp_path, """
        kind: Job
        name: broken
        command: "true"
        resources: {memory: plenty}
        retries: 3
    """)
    r = server.cli("job", "submit", str(spec))
    assert r.returncode == 1
    assert "resources.memory: 'plenty' is not a memory size" in r.stderr
    assert "retries: unknown field" in r.stderr
    assert server.cli("job", "status", "broken").returncode == 1
    bad_yaml = tmp_path / "bad.yaml"
    bad_yaml.write_text("kind: Job\nname: x\ncommand: a: b\n")
    r = server.cli("job", "submit", str(bad_yaml))
    assert r.returncode == 1 and "line 3" in r.stderr and "invalid YAML" in r.stderr
    r = server.cli("job", "submit", str(tmp_path / "missing.yaml"))
    assert r.returncode == 1 and "no such file" in r.stderr


def test_a_request_larger_than_the_machine_is_rejected_with_its_capacity(server, tmp_path):
    spec = write_spec(tmp_path, """
        kind: Job
        name: giant
        command: "true"
        resources: {memory: 4Ti}
    """)
    r = server.cli("job", "submit", str(spec))
    assert r.returncode == 1
    assert "can never run" in r.stderr and "this machine has" in r.stderr and "memory" in r.stderr
    assert server.cli("job", "status", "giant").returncode == 1


def test_a_job_waits_in_pending_while_the_machine_is_full(server, tmp_path):
    cpus = json.loads(server.cli("nodes", "--json", check=True).stdout)[0]["cpu"]
    big = write_spec(tmp_path, f"""
        kind: Job
        name: hog
        command: sleep 120
        resources: {{cpu: {cpus}}}
    """)
    server.cli("job", "submit", str(big), check=True)
    wait_until(lambda: job_json(server, "hog")["state"] == "Running", what="hog to run")
    small = tmp_path / "small.yaml"
    small.write_text("kind: Job\nname: small\ncommand: 'true'\nresources: {cpu: 1}\n")
    server.cli("job", "submit", str(small), check=True)
    job = job_json(server, "small")
    assert job["state"] == "Pending" and job["reason"].startswith("waiting for resources: needs 1 CPU")
    # hog ends (however long the checks above took on a busy machine: a fixed short sleep raced them)
    server.cli("job", "cancel", "hog", check=True)
    done = wait_until(lambda: (j := job_json(server, "small"))["state"] == "Succeeded" and j, timeout=30,
                      what="small to run after hog")
    hog_finished = job_json(server, "hog")["finished_at"]
    assert done["started_at"] >= hog_finished
    # woken by hog's end, not found by the periodic pass 10 s later
    waited = datetime.fromisoformat(done["started_at"]) - datetime.fromisoformat(hog_finished)
    assert waited.total_seconds() < 5


def test_a_job_waiting_for_room_starts_when_a_deployment_gives_it_back(server, tmp_path):
    cpus = json.loads(server.cli("nodes", "--json", check=True).stdout)[0]["cpu"]
    dep = tmp_path / "hog-dep.yaml"
    dep.write_text(f"kind: Deployment\nname: hogdep\ncommand: python -m http.server $PORT --bind 127.0.0.1\n"
                   f"replicas: 1\nresources: {{cpu: {cpus}}}\n")
    server.cli("deploy", str(dep), check=True)
    wait_until(lambda: json.loads(server.cli("deployment", "status", "hogdep", "--json", check=True).stdout)["state"]
               == "Available", what="hogdep available")
    job = tmp_path / "after-dep.yaml"
    job.write_text("kind: Job\nname: after-dep\ncommand: 'true'\nresources: {cpu: 1}\n")
    server.cli("job", "submit", str(job), check=True)
    assert job_json(server, "after-dep")["reason"].startswith("waiting for resources")
    server.cli("deployment", "delete", "hogdep", check=True)
    done = wait_until(lambda: (j := job_json(server, "after-dep"))["state"] == "Succeeded" and j, timeout=30,
                      what="the job to run once the deployment is gone")
    events = json.loads(server.cli("events", "--json", "--limit", "500", check=True).stdout)
    freed = max(datetime.fromisoformat(e["time"]) for e in events if e["name"] == "hogdep")
    # woken by the replica's end, not found by the periodic pass up to 10 s later
    assert (datetime.fromisoformat(done["started_at"]) - freed).total_seconds() < 3


def test_cancel_stops_a_running_job(server, tmp_path):
    spec = write_spec(tmp_path, "kind: Job\nname: sleeper\ncommand: sleep 60\n")
    server.cli("job", "submit", str(spec), check=True)
    job = wait_until(lambda: (j := job_json(server, "sleeper"))["state"] == "Running" and j["attempt_list"][0]["workers"]
                     and j, what="sleeper to run")
    pid = job["attempt_list"][0]["workers"][0]["pid"]
    assert "processes" in server.cli("job", "status", "sleeper", check=True).stdout  # CPU % and memory shown
    server.cli("job", "cancel", "sleeper", check=True)
    job = wait_until(lambda: (j := job_json(server, "sleeper"))["state"] == "Cancelled" and j, what="cancel")
    assert job["attempt_list"][0]["exit_code"] == 143
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE


def test_timeout_fails_the_attempt(server, tmp_path):
    spec = write_spec(tmp_path, "kind: Job\nname: slow\ncommand: sleep 60\ntimeout: 1s\n")
    server.cli("job", "submit", str(spec), check=True)
    job = wait_until(lambda: (j := job_json(server, "slow"))["state"] == "Failed" and j, what="timeout")
    assert job["reason"] == "failed after 1 attempt: timed out after 1s"


def test_follow_logs_streams_output_as_it_is_written(server, tmp_path):
    spec = write_spec(tmp_path, "kind: Job\nname: talker\ncommand: 'for i in 1 2 3; do echo line $i; sleep 0.3; done'\n")
    server.cli("job", "submit", str(spec), check=True)
    r = server.cli("job", "logs", "talker", "--follow", check=True)
    assert r.stdout == "line 1\nline 2\nline 3\n"


def test_unknown_job_and_unreachable_server_say_what_to_do(server, tmp_path):
    r = server.cli("job", "status", "nobody")
    assert r.returncode == 1 and "no job named 'nobody'" in r.stderr
    env = {**server.env, "CUMULO_URL": f"http://127.0.0.1:{free_port()}"}
    r = subprocess.run([sys.executable, "-m", "cumulo.cli.main", "job", "list"], env=env, capture_output=True, text=True)
    assert r.returncode == 1 and "cannot reach the cumulo control plane" in r.stderr and "cumulo up" in r.stderr


def test_up_detach_then_down(tmp_path):
    port = free_port()
    env = {**os.environ, "CUMULO_HOME": str(tmp_path / "home"), "CUMULO_URL": f"http://127.0.0.1:{port}"}

    def cli(*args):
        return subprocess.run([sys.executable, "-m", "cumulo.cli.main", *args], env=env, capture_output=True,
                              text=True, timeout=90)

    r = cli("up", "--detach", "--port", str(port))
    assert r.returncode == 0 and "cumulo is running" in r.stdout, r.stdout + r.stderr
    assert (tmp_path / "home" / "cumulo.db").exists()
    assert "already running" in cli("up", "--detach", "--port", str(port)).stdout
    assert cli("job", "list").returncode == 0
    assert cli("down").stdout.strip().endswith("cumulo stopped")
    assert "no cumulo control plane is running" in cli("down").stdout
