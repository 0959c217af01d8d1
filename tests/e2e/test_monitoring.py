"""Monitoring end to end: a real control plane sampling every 0.5 s, a real job that reports its
steps with cumulo.report(total_steps=...), a deployment of two real replicas under a little load;
read back through the CLI (`cumulo job|deployment|node metrics`, `cumulo monitor`, `cumulo job
status`) and /metrics, parsed with prometheus_client's parser."""

from __future__ import annotations

import json
import signal
import textwrap
import threading
import time

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.helpers import Server, kill_leftovers, wait_until

TRAIN = """\
import time
import cumulo
total = 100000
for step in range(1, total + 1):
    x = 0
    for i in range(20000):  # busy: the sampler sees its CPU
        x += i
    cumulo.report(step=step, total_steps=total, loss=1.0 / step)
    time.sleep(0.02)
"""

WEB = """\
kind: Deployment
name: web
command: python -m http.server $PORT --bind 127.0.0.1
replicas: 2
resources: {cpu: 0.1, memory: 64Mi}
health: {period: 0.5, failure_threshold: 2}
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory, sqlite_module_url):
    s = Server(tmp_path_factory.mktemp("home"), sqlite_module_url,
               extra_env={"CUMULO_METRICS_INTERVAL": "0.5"}).start()
    yield s
    s.kill(signal.SIGTERM)
    kill_leftovers(s.home)


@pytest.fixture(scope="module")
def workload(server, tmp_path_factory):
    """A running training job and a loaded deployment (load stops at the end of the module)."""
    folder = tmp_path_factory.mktemp("work")
    (folder / "train.py").write_text(TRAIN)
    (folder / "job.yaml").write_text(textwrap.dedent(f"""\
        kind: Job
        name: train
        command: python train.py
        workdir: {folder}
        resources: {{cpu: 0.5, memory: 256Mi}}
    """))
    (folder / "web.yaml").write_text(WEB)
    server.cli("job", "submit", str(folder / "job.yaml"), check=True)
    server.cli("deploy", str(folder / "web.yaml"), check=True)
    stop = threading.Event()
    sent = {"n": 0}

    def load() -> None:
        with httpx.Client(timeout=5) as c:
            while not stop.is_set():
                c.get(f"{server.url}/d/web/")
                sent["n"] += 1
                time.sleep(0.02)

    loader = threading.Thread(target=load, daemon=True)
    loader.start()
    # a few samples with the job reporting and requests flowing
    wait_until(lambda: _job_series(server).get(("", "steps_per_second")), timeout=60, what="steps/s sampled")
    wait_until(lambda: sent["n"] > 50, timeout=30, what="load")
    time.sleep(2)
    yield sent
    stop.set()
    loader.join(10)
    server.cli("job", "cancel", "train")


def _job_series(server) -> dict:
    r = server.cli("job", "metrics", "train", "--system", "--since", "5m", "--json")
    if r.returncode != 0:
        return {}
    report = json.loads(r.stdout)
    return {(s["instance"], s["metric"]): s["points"] for s in report["series"] if s["points"]}


def test_job_series_per_rank_and_progress(server, workload):
    series = _job_series(server)
    cpu = series[("0", "cpu_percent")]
    assert max(p[2] for p in cpu) > 5, cpu  # the busy worker's CPU, measured on its process tree
    rss = series[("0", "memory_bytes")]
    assert 5e6 < rss[-1][1] < 2e9
    assert series[("", "steps_per_second")][-1][1] > 1
    assert 0 < series[("", "progress")][-1][1] < 1
    assert series[("", "eta_seconds")][-1][1] > 0
    # the reported points take the same range: all within the last hour, none older than an hour
    recent = json.loads(server.cli("job", "metrics", "train", "--since", "1h", "--json", check=True).stdout)
    assert recent and all("loss" in p["values"] for p in recent)
    assert json.loads(server.cli("job", "metrics", "train", "--until", "1h", "--json", check=True).stdout) == []
    # the human view names the metrics
    out = server.cli("job", "metrics", "train", "--system", check=True).stdout
    assert "cpu_percent" in out and "steps_per_second" in out


def test_job_status_shows_progress_and_eta(server, workload):
    job = json.loads(server.cli("job", "status", "train", "--json", check=True).stdout)
    p = job["progress"]
    assert p["total_steps"] == 100000 and 0 < p["step"] < 100000
    assert p["steps_per_second"] > 1 and p["eta_seconds"] > 0 and 0 < p["fraction"] < 1
    out = server.cli("job", "status", "train", check=True).stdout
    assert "of 100000" in out and "steps/s" in out and "ETA" in out


def test_deployment_series_under_load(server, workload):
    report = json.loads(server.cli("deployment", "metrics", "web", "--since", "5m", "--step", "1", "--json",
                                   check=True).stdout)
    got = {(s["instance"], s["metric"]): s["points"] for s in report["series"]}
    assert max(p[1] for p in got[("", "request_rate")]) > 5
    assert got[("", "latency_p99_seconds")][-1][1] > 0
    assert got[("", "error_rate")][-1][1] == 0
    assert got[("", "replicas_ready")][-1][1] == 2
    replicas = {i for (i, m) in got if i and m == "memory_bytes"}
    assert len(replicas) == 2


def test_node_series_and_time_range_errors(server, workload):
    report = json.loads(server.cli("node", "metrics", "local", "--since", "1m", "--json", check=True).stdout)
    metrics = {s["metric"] for s in report["series"]}
    assert {"cpu_percent", "memory_used_bytes", "memory_total_bytes"} <= metrics
    # an ISO range in the future holds nothing; a reversed range is a clear 422
    r = server.cli("node", "metrics", "--since", "2h", "--until", "3h")
    assert r.returncode == 1 and "must be before until" in r.stderr
    r = server.cli("node", "metrics", "--since", "yesterday")
    assert r.returncode == 1 and "neither a duration" in r.stderr
    assert server.api("GET", "/nodes/ghost/series").status_code == 404
    assert server.api("GET", "/jobs/ghost/series").status_code == 404


def test_monitor_once_and_json(server, workload):
    data = json.loads(server.cli("monitor", "--json", check=True).stdout)
    job = next(j for j in data["jobs"] if j["name"] == "train")
    assert job["state"] == "Running" and job["steps_per_second"] > 1 and job["eta_seconds"] > 0
    assert job["loss"] is not None and job["cpu_percent"] is not None
    dep = next(d for d in data["deployments"] if d["name"] == "web")
    assert dep["ready"] == 2 and dep["request_rate"] > 1
    assert data["alerts"]["available"] is True and data["alerts"]["firing"] == []  # alerts are evaluated here
    assert data["nodes"][0]["values"]["cpu_percent"] >= 0
    assert data["events"]
    out = server.cli("monitor", "--once", check=True).stdout
    for section in ("nodes", "jobs", "deployments", "firing alerts", "latest events", "train", "web"):
        assert section in out, out


def test_prometheus_exposition_parses_and_a_scrape_token_reads_only_it(server, workload):
    admin = {"authorization": f"Bearer {server.token}"}
    text = httpx.get(server.url + "/metrics", headers=admin).text
    families = {f.name: f for f in text_string_to_metric_families(text)}
    for name in ("cumulo_node_cpu_percent", "cumulo_job_cpu_percent", "cumulo_job_steps_per_second",
                 "cumulo_deployment_request_rate", "cumulo_deployment_memory_bytes", "cumulo_gateway_requests"):
        assert name in families, name
    steps = families["cumulo_job_steps_per_second"].samples[0]
    assert steps.labels == {"workspace": "default", "job": "train", "rank": ""} and steps.value > 1
    token = server.api("POST", "/tokens", json={"name": "prometheus", "role": "metrics"}).json()["token"]
    scrape = {"authorization": f"Bearer {token}"}
    assert httpx.get(server.url + "/metrics", headers=scrape).status_code == 200
    assert httpx.get(server.url + "/api/v1/jobs", headers=scrape).status_code == 403


def test_monitor_refreshes_in_place_on_a_terminal(server, workload):
    """On a terminal the view redraws itself (cursor moved back up) until Ctrl-C, which exits 0."""
    import os
    import pty
    import subprocess
    import sys

    leader, follower = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "cumulo.cli.main", "monitor", "--refresh", "0.5"],
                            env={**server.env, "COLUMNS": "200", "LINES": "60", "TERM": "xterm"},
                            stdin=follower, stdout=follower, stderr=follower, start_new_session=True)
    os.close(follower)
    out = b""
    deadline = time.monotonic() + 60
    try:
        while time.monotonic() < deadline and out.count(b"cumulo monitor") < 3:
            try:
                chunk = os.read(leader, 65536)
            except OSError:
                break
            out += chunk
        proc.send_signal(signal.SIGINT)
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        os.close(leader)
    text = out.decode(errors="replace")
    assert text.count("cumulo monitor") >= 3, text[-2000:]
    assert "\x1b[2K" in text or "\x1b[1A" in text or "\x1b[A" in text  # redrawn in place, not appended
    assert "train" in text and "web" in text
