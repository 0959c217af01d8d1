"""Authorization over the real HTTP API: every operation of the OpenAPI document x every kind of
caller gets the expected status; tokens from the CLI; what `cumulo up` refuses."""

from __future__ import annotations

import json
import os
import re
import signal
import ssl
import stat
import subprocess
import sys
import time

import httpx
import pytest

from cumulo.core.tokens import workload_token
from tests.helpers import Server, free_port, kill_leftovers

READ = {"get", "head"}


@pytest.fixture(scope="module")
def server(tmp_path_factory, module_database_url):
    s = Server(tmp_path_factory.mktemp("home"), module_database_url).start()
    yield s
    s.kill(signal.SIGTERM)
    kill_leftovers(s.home)


def bearer(token: str | None) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"} if token else {}


@pytest.fixture(scope="module")
def callers(server, tmp_path_factory):
    """A token of each kind, made through the API by the admin token of the first start."""
    def make(name, role, expires=None):
        r = server.api("POST", "/tokens", json={"name": name, "role": role, "expires": expires})
        assert r.status_code == 201, r.text
        return r.json()

    viewer, member, admin = make("viewer-1", "viewer"), make("member-1", "member"), make("admin-2", "admin")
    assert server.api("POST", "/workspaces", json={"name": "team-b"}).status_code == 201
    other = server.api("POST", "/tokens", json={"name": "b-member", "role": "member", "workspace": "team-b"}).json()
    other_viewer = server.api("POST", "/tokens", json={"name": "b-viewer", "role": "viewer", "workspace": "team-b"}).json()
    revoked = make("revoked-1", "member")
    assert server.api("POST", f"/tokens/{revoked['id']}/revoke").status_code == 200
    expired = make("expired-1", "member", expires="1s")
    folder = tmp_path_factory.mktemp("job")
    job = server.api("POST", "/jobs", json={"kind": "Job", "name": "tiny", "command": "true", "workdir": str(folder)})
    assert job.status_code == 201, job.text
    key = (server.home / "server.key").read_bytes()
    time.sleep(1.2)  # the 1 s token has expired
    return {
        "none": None, "garbage": "cumulo_not-a-real-token", "revoked": revoked["token"], "expired": expired["token"],
        "viewer": viewer["token"], "member": member["token"], "admin": admin["token"],
        "other-member": other["token"], "other-viewer": other_viewer["token"],
        "workload": workload_token(key, job.json()["id"], 1),
        "forged-workload": workload_token(b"x" * 32, job.json()["id"], 1),
    }


def operations(server) -> list[tuple[str, str]]:
    doc = httpx.get(server.url + "/openapi.json").json()
    ops = [(m, p) for p, item in doc["paths"].items() for m in item if m in {"get", "post", "put", "patch", "delete"}]
    assert len(ops) >= 20, ops  # the document lists the whole API
    return ops


def concrete(path: str) -> str:
    # names no object has: an authorized caller gets a 404 or 422, never 401/403
    return re.sub(r"\{[^}]+\}", "no-such-thing", path)


def expected(caller: str, method: str, path: str) -> set[int] | None:
    """The statuses allowed for this caller, or None for 'anything but 401/403'."""
    if path == "/api/v1/health":
        return {200}
    if caller in {"none", "garbage", "revoked", "expired", "forged-workload"}:
        return {401}
    if caller == "workload":  # reads like a viewer; posts only its own job's metrics
        if (method, path) == ("post", "/api/v1/jobs/{name}/metrics"):
            return None
        caller = "viewer"
    if path.startswith(("/api/v1/tokens", "/api/v1/workspaces", "/api/v1/gateway", "/metrics")) or path == "/api/v1/secrets/rotate-key":
        return None if caller == "admin" else {403}
    if path.startswith("/api/v1/clusters") and method not in READ:  # clusters are installation-wide
        return None if caller == "admin" else {403}
    # node pools and cordoning a node: installation-wide capacity, for admins
    if (path.startswith("/api/v1/nodepools") or path.endswith(("/cordon", "/uncordon"))) and method not in READ:
        return None if caller == "admin" else {403}
    if caller in ("viewer", "other-viewer") and method not in READ:
        return {403}
    return None


def test_every_operation_answers_every_caller_as_its_role_allows(server, callers):
    failures = []
    for method, path in operations(server):
        for caller, token in callers.items():
            url = server.url + concrete(path)
            kwargs = {"json": {}} if method in {"post", "put", "patch"} else {}
            r = httpx.request(method.upper(), url, headers=bearer(token), timeout=30, **kwargs)
            want = expected(caller, method, path)
            ok = r.status_code in want if want is not None else r.status_code not in {401, 403}
            ok = ok and r.status_code < 500
            if not ok:
                failures.append(f"{caller:>15} {method.upper():6} {path}: {r.status_code} (want {want or 'not 401/403'})")
            if r.status_code == 401:
                assert r.headers["www-authenticate"].startswith("Bearer")
                assert r.headers["content-type"] == "application/problem+json"
    assert not failures, "\n".join(failures)


def test_refusals_say_why(server, callers):
    r = httpx.get(server.url + "/api/v1/jobs", headers=bearer(callers["expired"]))
    assert r.status_code == 401 and "expired" in r.json()["detail"]
    r = httpx.get(server.url + "/api/v1/jobs", headers=bearer(callers["revoked"]))
    assert r.status_code == 401 and "revoked" in r.json()["detail"]
    r = httpx.get(server.url + "/api/v1/jobs")
    assert r.status_code == 401 and "CUMULO_TOKEN" in r.json()["detail"]
    r = httpx.post(server.url + "/api/v1/jobs", json={}, headers=bearer(callers["viewer"]))
    assert r.status_code == 403 and "member role" in r.json()["detail"] and "viewer" in r.json()["detail"]


def test_a_workload_token_reports_only_its_own_jobs_metrics(server, callers):
    point = {"points": [{"step": 1, "values": {"loss": 0.5}}]}
    r = httpx.post(server.url + "/api/v1/jobs/tiny/metrics", json=point, headers=bearer(callers["workload"]))
    assert r.status_code == 200, r.text
    folder = server.home / "other"
    folder.mkdir(exist_ok=True)
    assert server.api("POST", "/jobs", json={"kind": "Job", "name": "other", "command": "true",
                                             "workdir": str(folder)}).status_code == 201
    r = httpx.post(server.url + "/api/v1/jobs/other/metrics", json=point, headers=bearer(callers["workload"]))
    assert r.status_code == 403 and "another job" in r.json()["detail"]


def test_health_says_only_ok_and_details_need_a_token(server):
    assert httpx.get(server.url + "/api/v1/health").json() == {"status": "ok"}
    assert httpx.get(server.url + "/api/v1/system").status_code == 401
    system = server.api("GET", "/system").json()
    assert system["auth"] is True and system["home"] == str(server.home)


def test_tokens_from_the_cli_list_without_values_and_revoke(server):
    made = json.loads(server.cli("token", "create", "ci-bot", "--role", "viewer", "--expires", "30d", "--json",
                                 check=True).stdout)
    assert made["token"].startswith("cumulo_") and made["role"] == "viewer" and made["expires_at"]
    listed = server.cli("token", "list", "--json", check=True).stdout
    assert made["id"] in listed and made["token"] not in listed
    as_viewer = {**server.env, "CUMULO_TOKEN": made["token"], "COLUMNS": "200"}
    cli = [sys.executable, "-m", "cumulo.cli.main"]
    r = subprocess.run([*cli, "job", "list", "--json"], env=as_viewer, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    r = subprocess.run([*cli, "job", "cancel", "tiny"], env=as_viewer, capture_output=True, text=True)
    assert r.returncode == 1 and "member role" in r.stderr
    server.cli("token", "revoke", made["id"], check=True)
    r = subprocess.run([*cli, "job", "list"], env=as_viewer, capture_output=True, text=True)
    assert r.returncode == 1 and "revoked" in r.stderr
    bad = server.cli("token", "create", "Bad Name!", "--role", "owner", "--expires", "soon")
    assert bad.returncode == 1 and "role" in bad.stderr and "expires" in bad.stderr and "name" in bad.stderr


def test_the_admin_token_is_private_to_its_owner_and_survives_a_restart(server):
    path = server.home / "token"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(server.home / "server.key").st_mode) == 0o600
    assert server.token not in (server.home / "test-server.log").read_text()


def test_no_auth_is_refused_off_loopback_and_the_first_up_shows_the_token_once(tmp_path):
    env = {**os.environ, "CUMULO_HOME": str(tmp_path / "home")}
    env.pop("CUMULO_TOKEN", None)
    r = subprocess.run([sys.executable, "-m", "cumulo.app", "--host", "0.0.0.0", "--no-auth", "--port", "1"],
                       env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "loopback" in r.stderr and "--no-auth" in r.stderr
    port = free_port()
    env["CUMULO_URL"] = f"http://127.0.0.1:{port}"
    cli = [sys.executable, "-m", "cumulo.cli.main"]
    try:
        first = subprocess.run([*cli, "up", "--detach", "--port", str(port)], env=env, capture_output=True,
                               text=True, timeout=120)
        assert first.returncode == 0, first.stderr
        token = (tmp_path / "home" / "token").read_text().strip()
        assert token in first.stdout
        assert subprocess.run([*cli, "job", "list"], env=env, capture_output=True).returncode == 0
        subprocess.run([*cli, "down"], env=env, capture_output=True, timeout=60, check=True)
        again = subprocess.run([*cli, "up", "--detach", "--port", str(port)], env=env, capture_output=True,
                               text=True, timeout=120)
        assert again.returncode == 0 and token not in again.stdout
        assert (tmp_path / "home" / "token").read_text().strip() == token
    finally:
        subprocess.run([*cli, "down"], env=env, capture_output=True, timeout=60)


def test_a_workspace_sees_only_its_own_work(server, callers, tmp_path):
    """team-b's member never gets default's objects, names are unique per workspace, and only an
    admin may act in another workspace by naming it."""
    b = bearer(callers["other-member"])
    assert server.api("GET", "/jobs/tiny").status_code == 200
    assert httpx.get(server.url + "/api/v1/jobs/tiny", headers=b).status_code == 404
    listed = httpx.get(server.url + "/api/v1/jobs", headers=b).json()
    assert all(j["name"] != "tiny" for j in listed)
    # the same name in another workspace is another job
    made = httpx.post(server.url + "/api/v1/jobs", headers=b, timeout=30,
                      json={"kind": "Job", "name": "tiny", "command": "true", "workdir": str(tmp_path)})
    assert made.status_code == 201, made.text
    assert made.json()["id"] != server.api("GET", "/jobs/tiny").json()["id"]
    events_b = httpx.get(server.url + "/api/v1/events?limit=1000", headers=b).json()
    events_default = server.api("GET", "/events?limit=1000").json()
    assert {e["id"] for e in events_b}.isdisjoint({e["id"] for e in events_default})
    assert any(e["reason"] == "Submitted" and e["actor"] == "b-member" for e in events_b)  # the audit trail
    # naming another workspace: refused for a member, allowed for an admin
    r = httpx.get(server.url + "/api/v1/jobs", headers={**b, "x-cumulo-workspace": "default"})
    assert r.status_code == 403 and "team-b" in r.json()["detail"]
    r = server.api("GET", "/jobs/tiny", headers={"x-cumulo-workspace": "team-b"})
    assert r.status_code == 200 and r.json()["id"] == made.json()["id"]
    assert server.api("GET", "/jobs", headers={"x-cumulo-workspace": "nowhere"}).status_code == 404
    # an occupied workspace cannot be deleted; secrets stay per workspace
    r = server.api("DELETE", "/workspaces/team-b")
    assert r.status_code == 409 and "1 jobs" in r.json()["detail"]
    assert httpx.post(server.url + "/api/v1/secrets", headers=b, json={"name": "k", "value": "b-value"}).status_code == 201
    assert [x["name"] for x in server.api("GET", "/secrets").json()] == []
    listed = server.cli("--workspace", "team-b", "secret", "list", "--json", check=True).stdout
    assert json.loads(listed)[0]["name"] == "k"


def test_every_response_to_another_workspace_is_free_of_this_ones_data(server, callers):
    """Every GET of the API with team-b's token: no default-workspace object id appears."""
    ids = {j["id"] for j in server.api("GET", "/jobs").json()} | {"tiny"}
    ids.discard("tiny")
    assert ids
    b = bearer(callers["other-member"])
    for method, path in operations(server):
        if method != "get" or "{" in path:
            continue
        text = httpx.get(server.url + path, headers=b, timeout=30).text
        assert not [i for i in ids if i in text], path


def test_prometheus_metrics_need_an_admin_token(server, callers):
    assert httpx.get(server.url + "/metrics").status_code == 401
    assert httpx.get(server.url + "/metrics", headers=bearer(callers["member"])).status_code == 403
    r = httpx.get(server.url + "/metrics", headers=bearer(callers["admin"]))
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")


def test_https_with_a_certificate(tmp_path):
    """`--tls-cert/--tls-key`: the API answers over TLS, and a client that trusts the certificate gets in."""
    from datetime import UTC, datetime, timedelta

    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.now(UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - timedelta(minutes=1))
            .not_valid_after(now + timedelta(hours=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
            .sign(key, hashes.SHA256()))
    (tmp_path / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "key.pem").write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                         serialization.NoEncryption()))
    trust = ssl.create_default_context(cafile=str(tmp_path / "cert.pem"))
    port = free_port()
    env = {**os.environ, "CUMULO_HOME": str(tmp_path / "home")}
    proc = subprocess.Popen([sys.executable, "-m", "cumulo.app", "--port", str(port), "--tls-cert",
                             str(tmp_path / "cert.pem"), "--tls-key", str(tmp_path / "key.pem")],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        url = f"https://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                r = httpx.get(url + "/api/v1/health", verify=trust, timeout=2)
                break
            except httpx.HTTPError:
                assert time.monotonic() < deadline and proc.poll() is None, "the TLS server did not come up"
                time.sleep(0.2)
        assert r.json() == {"status": "ok"}
        token = (tmp_path / "home" / "token").read_text().strip()
        r = httpx.get(url + "/api/v1/system", headers=bearer(token), verify=trust)
        assert r.status_code == 200
        with pytest.raises(httpx.HTTPError):  # plain HTTP on the TLS port gets nothing
            httpx.get(f"http://127.0.0.1:{port}/api/v1/health", timeout=2).raise_for_status()
    finally:
        proc.terminate()
        proc.wait(30)
    r = subprocess.run([sys.executable, "-m", "cumulo.app", "--tls-cert", str(tmp_path / "cert.pem")],
                       env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "go together" in r.stderr


def test_nul_bytes_in_parameters_are_a_422_on_every_backend(server):
    """PostgreSQL refuses NUL in text: found by the fuzz on PostgreSQL as 500s."""
    for path in ("/jobs/a%00b", "/events?name=a%00b", "/tokens?workspace=a%00", "/deployments/x%00/metrics"):
        r = server.api("GET", path)
        assert r.status_code == 422 and "NUL" in r.json()["detail"], (path, r.status_code, r.text)
    r = server.api("POST", "/tokens", json={"name": "ok", "workspace": "a\u0000b"})
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "workspace"
    assert server.api("GET", f"/events?after={2**31}").status_code == 422  # events.id is an INTEGER there
