"""The shipped Prometheus scrape config and Grafana dashboard against a real Prometheus
(`bash .ci/prometheus.sh`) scraping a live cumulo with a training job and a loaded deployment:
every query of the dashboard, and every template variable, returns data."""

from __future__ import annotations

import json
import os
import re
import signal
import textwrap
import threading
import time
from pathlib import Path

import httpx
import pytest

from cumulo.monitor.gpu import Gpus
from tests.engines.slurm import START as SLURM_START
from tests.engines.slurm import _partition
from tests.helpers import Server, kill_leftovers, wait_until

REPO = Path(__file__).resolve().parents[2]
DASHBOARD = REPO / "deploy/grafana/cumulo.json"

TRAIN = """\
import time
import cumulo
total = 1000000
for step in range(1, total + 1):
    cumulo.report(step=step, total_steps=total, loss=1.0 / step)
    time.sleep(0.05)
"""
WEB = """\
kind: Deployment
name: web
command: python -m http.server $PORT --bind 127.0.0.1
replicas: 2
resources: {cpu: 0.1, memory: 64Mi}
health: {period: 0.5, failure_threshold: 2}
"""
#: what a Grafana variable stands for when every value is selected
VARIABLES = {"$workspace": ".*", "$node": ".*", "$job": ".*", "$deployment": ".*", "$__rate_interval": "1m"}


def dashboard_queries() -> list[tuple[str, str]]:
    d = json.loads(DASHBOARD.read_text())
    out = []
    for p in d["panels"]:
        for t in p.get("targets", []):
            out.append((p["title"], t["expr"]))
    return out


def optional_reason(expr: str, gpus: bool, engine: bool) -> str | None:
    """Panels whose data exists only on some machines: GPUs (NVML) and engine clusters' nodes."""
    if "cumulo_job_gpu_" in expr:
        return "the test's job uses no GPU (a rank's GPU series exist only for processes with a GPU context)"
    if "_gpu_" in expr and not gpus:
        return "no NVIDIA GPU on this machine (NVML absent): cumulo exports no GPU series here"
    if "cumulo_node_cpu_free" in expr and not engine:
        return f"no engine cluster: Slurm is not running here ({SLURM_START})"
    return None


def instant(prom, expr: str) -> list:
    r = httpx.get(f"{prom.url}/api/v1/query", params={"query": expr}, timeout=10)
    body = r.json()
    assert r.status_code == 200 and body["status"] == "success", f"{expr}: {body}"
    return body["data"]["result"]


@pytest.fixture(scope="module")
def live(prometheus, tmp_path_factory):
    home = tmp_path_factory.mktemp("home")
    server = Server(home, f"sqlite:///{home / 'cumulo.db'}", port=prometheus.port,
                    extra_env={"CUMULO_METRICS_INTERVAL": "1"})
    try:
        httpx.get(f"http://{prometheus.target}/api/v1/health", timeout=2)
    except httpx.HTTPError:
        pass
    else:
        pytest.fail(f"something already serves {prometheus.target}, the address the scrape config targets; stop it")
    try:
        server.start(timeout=120)
    except RuntimeError as e:
        server.kill()
        pytest.fail(f"cannot start cumulo on {prometheus.target}, the address the scrape config targets: {e}")
    token = server.api("POST", "/tokens", json={"name": "prometheus", "role": "metrics"}).json()["token"]
    prometheus.token_file.write_text(token)
    work = tmp_path_factory.mktemp("work")
    (work / "train.py").write_text(TRAIN)
    (work / "job.yaml").write_text(textwrap.dedent(f"""\
        kind: Job
        name: train
        command: python train.py
        workdir: {work}
        resources: {{cpu: 0.2, memory: 256Mi}}
    """))
    (work / "web.yaml").write_text(WEB)
    partition = _partition()  # Slurm's nodes, when it runs here, fill the engine-node panel
    if partition is not None:
        r = server.api("POST", "/clusters", json={"name": "slurm", "kind": "slurm", "partition": partition,
                                                  "artifacts": str(home / "slurm-artifacts")})
        assert r.status_code == 201, r.text
    elif os.environ.get("CUMULO_TEST_SLURM"):
        pytest.fail(f"CUMULO_TEST_SLURM is set but Slurm does not answer: {SLURM_START}")
    server.engine = partition is not None
    server.cli("job", "submit", str(work / "job.yaml"), check=True)
    server.cli("deploy", str(work / "web.yaml"), check=True)
    stop = threading.Event()

    def load() -> None:
        with httpx.Client(timeout=5) as c:
            while not stop.is_set():
                c.get(f"{server.url}/d/web/")
                time.sleep(0.05)

    loader = threading.Thread(target=load, daemon=True)
    loader.start()
    yield server
    stop.set()
    loader.join(10)
    server.kill(signal.SIGTERM)
    kill_leftovers(server.home)


def test_the_shipped_config_scrapes_cumulo_with_a_metrics_token(prometheus, live):
    def up():
        res = instant(prometheus, f'up{{job="cumulo", instance="{prometheus.target}"}}')
        return res and res[0]["value"][1] == "1"

    wait_until(up, timeout=60, interval=1, what=f"Prometheus to scrape cumulo at {prometheus.target}")


def test_every_dashboard_query_returns_data(prometheus, live):
    gpus = Gpus()
    has_gpus = gpus.available
    gpus.close()
    queries = dashboard_queries()
    assert len(queries) >= 20
    skipped, pending = [], {}
    for title, expr in queries:
        concrete = expr
        for var, value in VARIABLES.items():
            concrete = concrete.replace(var, value)
        assert "$" not in concrete, f"{title}: unknown variable in {expr}"
        why = optional_reason(expr, has_gpus, live.engine)
        if why:
            skipped.append(f"{title}: {why}")
            instant(prometheus, concrete)  # still valid PromQL
            continue
        pending[title + " | " + expr] = concrete
    deadline = time.monotonic() + 120
    while pending and time.monotonic() < deadline:
        for name, concrete in list(pending.items()):
            if instant(prometheus, concrete):
                del pending[name]
        if pending:
            time.sleep(2)
    assert not pending, f"queries with no data after 120 s: {sorted(pending)}"
    if skipped:
        print("optional panels not checked here:\n  " + "\n  ".join(skipped))


def test_every_template_variable_has_values(prometheus, live):
    d = json.loads(DASHBOARD.read_text())
    for v in d["templating"]["list"]:
        if v["type"] != "query":
            continue
        m = re.fullmatch(r"label_values\((\w+), (\w+)\)", v["query"]["query"])
        assert m, v["query"]
        metric, label = m.groups()

        def values(metric=metric, label=label):
            r = httpx.get(f"{prometheus.url}/api/v1/label/{label}/values", params={"match[]": metric}, timeout=10)
            return [x for x in r.json()["data"] if x]

        wait_until(values, timeout=60, interval=1, what=f"values of ${v['name']}")
