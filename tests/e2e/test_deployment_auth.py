"""`auth: token` on a deployment: its /d/ routes open only to tokens made for it, the token never
reaches the replica, a revoke takes effect at once, and such a token opens nothing else."""

from __future__ import annotations

import json
import signal
import textwrap

import httpx
import pytest

from tests.helpers import Server, kill_leftovers, wait_until

ECHO = textwrap.dedent('''
    import json, os
    from http.server import BaseHTTPRequestHandler, HTTPServer

    class H(BaseHTTPRequestHandler):
        def do_GET(self):
            body = json.dumps({k.lower(): v for k, v in self.headers.items()}).encode()
            self.send_response(200)
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *a):
            pass

    HTTPServer(("127.0.0.1", int(os.environ["PORT"])), H).serve_forever()
''')


@pytest.fixture(scope="module")
def server(tmp_path_factory, module_database_url):
    s = Server(tmp_path_factory.mktemp("home"), module_database_url).start()
    yield s
    s.kill(signal.SIGTERM)
    kill_leftovers(s.home)


def deploy(server, folder, name: str, auth: str) -> None:
    (folder / "echo.py").write_text(ECHO)
    spec = folder / f"{name}.yaml"
    spec.write_text(f"kind: Deployment\nname: {name}\ncommand: python echo.py\nreplicas: 1\nauth: {auth}\n"
                    "resources: {cpu: 0.1, memory: 64Mi}\n")
    server.cli("deploy", str(spec), check=True)


def get(server, name: str, token: str | None = None) -> httpx.Response:
    headers = {"authorization": f"Bearer {token}"} if token else {}
    return httpx.get(f"{server.url}/d/{name}/", headers=headers, timeout=30)


def test_only_a_token_made_for_the_deployment_opens_it(server, tmp_path):
    deploy(server, tmp_path, "guarded", "token")
    deploy(server, tmp_path, "open", "none")
    deploy(server, tmp_path, "other", "token")
    r = get(server, "guarded")
    assert r.status_code == 401 and r.headers["www-authenticate"].startswith("Bearer")
    assert "cumulo token create NAME --deployment guarded" in r.json()["detail"]
    assert get(server, "guarded", server.token).status_code == 401  # an API token is not a deployment's token
    assert get(server, "open").status_code == 200  # auth is per deployment

    made = json.loads(server.cli("token", "create", "caller", "--deployment", "guarded", "--json", check=True).stdout)
    assert made["role"] == "invoke" and made["deployment"] == "guarded"
    r = get(server, "guarded", made["token"])
    assert r.status_code == 200, r.text
    assert "authorization" not in r.json()  # consumed by the gateway, never handed to the replica
    assert get(server, "other", made["token"]).status_code == 401  # made for another deployment
    # it opens no API route either
    r = httpx.get(f"{server.url}/api/v1/deployments", headers={"authorization": f"Bearer {made['token']}"})
    assert r.status_code == 403 and "invoke" in r.json()["detail"]

    server.cli("token", "revoke", made["id"], check=True)
    assert get(server, "guarded", made["token"]).status_code == 401  # at once, not at the next resync

    # switching auth off opens it again without a rollout
    deploy(server, tmp_path, "guarded", "none")
    wait_until(lambda: get(server, "guarded").status_code == 200, timeout=10, what="auth switched off")
    status = json.loads(server.cli("deployment", "status", "guarded", "--json", check=True).stdout)
    assert status["generation"] == 1
    for name in ("guarded", "open", "other"):
        server.cli("deployment", "delete", name, check=True)


def test_a_token_for_a_missing_deployment_is_refused(server):
    r = server.cli("token", "create", "x", "--deployment", "nope")
    assert r.returncode == 1 and "no deployment named 'nope'" in r.stderr
