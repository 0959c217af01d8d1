"""A secret reaches the job that refers to it, and nothing else: not an API answer, a CLI output,
an event, a log or any file cumulo writes, nor the database in plain text; key rotation keeps it."""

from __future__ import annotations

import hashlib
import json
import secrets as pysecrets
import signal
import textwrap

import pytest
from sqlalchemy import MetaData, create_engine, select

from tests.helpers import Server, kill_leftovers

HASH_IT = "import hashlib, os, pathlib, sys; pathlib.Path(sys.argv[1]).write_text(hashlib.sha256(os.environ['HF_TOKEN'].encode()).hexdigest())"


@pytest.fixture(scope="module")
def server(tmp_path_factory, module_database_url):
    s = Server(tmp_path_factory.mktemp("home"), module_database_url).start()
    yield s
    s.kill(signal.SIGTERM)
    kill_leftovers(s.home)


def job_spec(folder, name: str, out) -> str:
    path = folder / f"{name}.yaml"
    path.write_text(textwrap.dedent(f"""
        kind: Job
        name: {name}
        command: [python, -c, {json.dumps(HASH_IT)}, {out}]
        env: {{HF_TOKEN: {{secret: hf-token}}, PLAIN: visible}}
    """))
    return str(path)


def database_rows(url: str) -> str:
    engine = create_engine(url)
    meta = MetaData()
    meta.reflect(engine)
    out = []
    with engine.connect() as conn:
        for table in meta.sorted_tables:
            out += [repr(tuple(r)) for r in conn.execute(select(table))]
    engine.dispose()
    return "\n".join(out)


def test_a_secret_reaches_only_the_jobs_process(server, tmp_path):
    value = "hf_" + pysecrets.token_hex(20)
    outputs = [server.cli("secret", "create", "hf-token", "--from-literal", value, check=True).stdout]
    out = tmp_path / "seen"
    outputs.append(server.cli("job", "submit", job_spec(tmp_path, "uses-secret", out), "--follow", check=True).stdout)
    assert out.read_text() == hashlib.sha256(value.encode()).hexdigest()  # the job saw the value

    for args in (["job", "status", "uses-secret", "--json"], ["job", "list", "--json"], ["events", "--json"],
                 ["secret", "list", "--json"], ["job", "logs", "uses-secret"], ["job", "status", "uses-secret"]):
        outputs.append(server.cli(*args, check=True).stdout)
    for path in ("/jobs/uses-secret", "/jobs", "/events?limit=1000", "/secrets", "/system"):
        outputs.append(server.api("GET", path).text)
    assert '"secret": "hf-token"' in outputs[2] and "PLAIN" in outputs[2]  # the spec keeps the reference only
    leaks = [i for i, text in enumerate(outputs) if value in text]
    assert not leaks, f"the secret's value is in outputs {leaks}"
    files = [p for p in server.home.rglob("*") if p.is_file() and value.encode() in p.read_bytes()]
    assert not files, f"the secret's value is in files cumulo wrote: {files}"
    assert value not in database_rows(server.database_url)

    # a new key: the secret is re-sealed and still reaches the next job
    rotated = json.loads(server.cli("secret", "rotate-key", "--json", check=True).stdout)
    assert rotated == {"resealed": 1}
    assert len((server.home / "secret.key").read_text().split()) == 2
    again = tmp_path / "seen-again"
    server.cli("job", "submit", job_spec(tmp_path, "after-rotation", again), "--follow", check=True)
    assert again.read_text() == hashlib.sha256(value.encode()).hexdigest()
    assert value not in database_rows(server.database_url)


def test_a_missing_or_used_secret_is_refused_with_the_field(server, tmp_path):
    spec = tmp_path / "missing.yaml"
    spec.write_text("kind: Job\nname: needs-missing\ncommand: 'true'\nenv: {API_KEY: {secret: nope}}\n")
    r = server.cli("job", "submit", str(spec))
    assert r.returncode == 1 and "env.API_KEY" in r.stderr and "nope" in r.stderr
    assert "needs-missing" not in server.cli("job", "list", check=True).stdout  # nothing half-done
    server.cli("secret", "create", "in-use", "--from-literal", "v1", check=True)
    dep = tmp_path / "dep.yaml"
    dep.write_text("kind: Deployment\nname: holds-secret\ncommand: exec python -m http.server $PORT --bind 127.0.0.1\n"
                   "replicas: 1\nenv: {K: {secret: in-use}}\n")
    server.cli("deploy", str(dep), check=True)
    r = server.cli("secret", "delete", "in-use")
    assert r.returncode == 1 and "deployment holds-secret" in r.stderr
    assert server.cli("secret", "create", "in-use", "--from-literal", "v2").returncode == 1  # exists: 409
    server.cli("secret", "create", "in-use", "--from-literal", "v2", "--overwrite", check=True)
    server.cli("deployment", "delete", "holds-secret", check=True)
    r = server.cli("secret", "create", "x", "--from-literal", "a", "--from-file", "/etc/hostname")
    assert r.returncode == 1 and "exactly one" in r.stderr
