"""Services as deployments: train digits, serve it behind the gateway, call it through the SDK."""

from __future__ import annotations

import json
import signal
import textwrap
from pathlib import Path

import pytest
from sklearn.datasets import load_digits

from cumulo.core.errors import InvalidSpec
from cumulo.sdk.client import Client
from tests.e2e.test_deployments_cli import Load
from tests.helpers import Server, kill_leftovers, wait_until

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    home = tmp_path_factory.mktemp("home")
    s = Server(home, f"sqlite:///{home / 'cumulo.db'}").start()
    yield s
    s.kill(signal.SIGTERM)
    kill_leftovers(s.home)


@pytest.mark.slow
def test_train_then_serve_digits_through_the_gateway(server, tmp_path):
    job = tmp_path / "train.yaml"
    job.write_text(f"kind: Job\nname: digits-small\nworkdir: {REPO / 'examples/digits'}\n"
                   "command: python train.py --epochs 8\n")
    server.cli("job", "submit", str(job), "--follow", check=True)
    spec = tmp_path / "serve.yaml"
    spec.write_text(textwrap.dedent(f"""
        kind: Deployment
        name: digits
        workdir: {REPO / 'examples/digits'}
        service: service.py:Digits
        replicas: 2
        resources: {{cpu: 0.25, memory: 256Mi}}
        env: {{DIGITS_JOB: digits-small}}
    """))
    r = server.cli("deploy", str(spec), "--json")
    assert r.returncode == 0, r.stderr + server.log()
    assert json.loads(r.stdout)["ready"] == 2
    x, y = load_digits(return_X_y=True)
    with Client(server.url, token=server.token) as client, client.deployment("digits") as digits:
        assert set(digits.methods()) == {"predict"}
        right = sum(digits.predict(pixels=x[i].tolist())["digit"] == y[i] for i in range(100))
        assert right >= 80
        with pytest.raises(InvalidSpec, match="pixels: List should have at least 64 items"):
            digits.predict(pixels=[1, 2, 3])
    # a rolling update of a real service under load drops nothing
    spec.write_text(spec.read_text().replace("memory: 256Mi", "memory: 300Mi"))
    with Load(f"{server.url}/d/digits/openapi.json", clients=3) as load:
        wait_until(lambda: load.ok > 10, what="load")
        server.cli("deploy", str(spec), check=True)
        seen = load.ok
        wait_until(lambda: load.ok > seen + 10, what="load after the update")
    assert load.failed == 0, load.errors[:3]
    server.cli("deployment", "delete", "digits", check=True)


def test_a_service_whose_setup_raises_shows_the_error_and_backs_off(server, tmp_path):
    (tmp_path / "broken.py").write_text(textwrap.dedent("""
        import cumulo

        class Broken(cumulo.Service):
            def setup(self):
                raise RuntimeError("no weights at /models/v3")

            @cumulo.handler
            def predict(self, x: float) -> float:
                return x
    """))
    spec = tmp_path / "broken.yaml"
    spec.write_text("kind: Deployment\nname: broken\nservice: broken.py:Broken\nresources: {cpu: 0.1, memory: 64Mi}\n")
    r = server.cli("deploy", str(spec), "--timeout", "8")
    assert r.returncode == 1
    d = wait_until(lambda: (x := json.loads(server.cli("deployment", "status", "broken", "--json").stdout))["state"]
                   == "CrashLoopBackOff" and x, timeout=40, what="crash loop")
    assert "replicas keep failing: exit code 1: RuntimeError: no weights at /models/v3" in d["reason"]
    assert len(d["replicas"]) + len(d["ended"]) <= 6  # backing off, not a restart storm
    server.cli("deployment", "delete", "broken", check=True)
