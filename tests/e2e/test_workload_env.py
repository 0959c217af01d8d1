"""A control plane whose own environment holds cloud credentials and a database URL starts jobs
and replicas that see neither."""

from __future__ import annotations

import json
import signal
import textwrap
from pathlib import Path

import pytest

from tests.helpers import Server, kill_leftovers, wait_until

SECRETS = {
    "AWS_ACCESS_KEY_ID": "AKIAEXAMPLECUMULO",
    "AWS_SECRET_ACCESS_KEY": "aws-secret-value-0123456789",
    "OPERATOR_PRIVATE_VAR": "operator-only-value",
}
DUMP = "import json, os, pathlib, sys; pathlib.Path(sys.argv[1]).write_text(json.dumps(dict(os.environ)))"


@pytest.fixture(scope="module")
def server(tmp_path_factory, module_database_url):
    s = Server(tmp_path_factory.mktemp("home"), module_database_url,
               extra_env={**SECRETS, "CUMULO_DATABASE_URL": module_database_url}).start()
    yield s
    s.kill(signal.SIGTERM)
    kill_leftovers(s.home)


def assert_clean(env: dict, database_url: str) -> None:
    leaked = {k for k, v in env.items() if v in SECRETS.values() or database_url in v}
    assert not leaked, f"the control plane's environment leaked into a workload: {sorted(leaked)}"
    assert not set(SECRETS) & set(env) and "CUMULO_DATABASE_URL" not in env
    assert env["HOME"] and env["PATH"]


def test_a_job_gets_its_spec_env_and_cumulo_variables_and_nothing_of_the_control_planes(server, tmp_path,
                                                                                          module_database_url):
    out = tmp_path / "job-env.json"
    spec = tmp_path / "job.yaml"
    spec.write_text(textwrap.dedent(f"""
        kind: Job
        name: envdump
        command: [python, -c, {json.dumps(DUMP)}, {out}]
        env: {{MINE: "from-the-spec"}}
    """))
    server.cli("job", "submit", str(spec), "--follow", check=True)
    env = json.loads(out.read_text())
    assert_clean(env, module_database_url)
    assert env["MINE"] == "from-the-spec" and env["CUMULO_JOB"] == "envdump" and env["RANK"] == "0"


def test_a_replica_gets_nothing_of_the_control_planes_environment(server, tmp_path, module_database_url):
    out = tmp_path / "replica-env.json"
    spec = tmp_path / "dep.yaml"
    spec.write_text(textwrap.dedent(f"""
        kind: Deployment
        name: envdump
        command: python -c '{DUMP}' {out} && exec python -m http.server $PORT --bind 127.0.0.1
        replicas: 1
        env: {{MINE: "from-the-spec"}}
    """))
    server.cli("deploy", str(spec), check=True)
    wait_until(out.exists, what="the replica's environment dump")
    env = json.loads(Path(out).read_text())
    assert_clean(env, module_database_url)
    assert env["MINE"] == "from-the-spec" and env["CUMULO_DEPLOYMENT"] == "envdump" and env["PORT"].isdigit()
    server.cli("deployment", "delete", "envdump", check=True)
