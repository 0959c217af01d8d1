"""Self-repair of replicas end to end: of three replicas under steady load, one turns 10x slower
than its peers; it is replaced by itself (a new replica first, then a drain) and no request fails."""

from __future__ import annotations

import signal
import sys
import textwrap

import pytest

from tests.e2e.test_deployments_cli import Load
from tests.helpers import Server, kill_leftovers, wait_until

SERVER = textwrap.dedent("""
    import http.server, os, time
    PORT = int(os.environ["PORT"])
    MARK = os.environ["SLOW_MARK"]
    class H(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            if self.path != "/healthz":
                time.sleep(0.2 if os.path.exists(f"{MARK}.{PORT}") else 0.02)
            self.send_response(200); self.send_header("content-length", "2"); self.end_headers()
            self.wfile.write(b"ok")
        def log_message(self, *a): pass
    class S(http.server.ThreadingHTTPServer):
        request_queue_size = 1024
    S(("127.0.0.1", PORT), H).serve_forever()
""")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    home = tmp_path_factory.mktemp("home")
    s = Server(home, f"sqlite:///{home}/cumulo.db").start()
    yield s
    s.kill(signal.SIGTERM)
    kill_leftovers(s.home)


def deployment(server, name):
    return server.api("GET", f"/deployments/{name}").json()


@pytest.mark.slow
def test_a_replica_ten_times_slower_than_its_peers_is_replaced_without_failing_a_request(server, tmp_path):
    script = tmp_path / "server.py"
    script.write_text(SERVER)
    mark = tmp_path / "slow"
    spec = {"kind": "Deployment", "name": "web", "replicas": 3, "command": [sys.executable, str(script)],
            "workdir": str(tmp_path), "env": {"SLOW_MARK": str(mark)},
            "resources": {"cpu": 0.1, "memory": "128Mi"}, "health": {"path": "/healthz", "period": "1s"}}
    assert server.api("POST", "/deployments", json=spec).status_code == 201
    wait_until(lambda: deployment(server, "web")["ready"] == 3, timeout=60, what="3 ready replicas")
    victim = deployment(server, "web")["replicas"][1]
    with Load(f"{server.url}/d/web/", clients=6) as load:
        wait_until(lambda: load.ok > 200, timeout=30, what="load to flow")
        (tmp_path / f"slow.{victim['port']}").touch()  # this replica turns 10x slower
        wait_until(lambda: any(e["reason"] == "ReplicaOutlier" for e in
                               server.api("GET", "/events", params={"name": "web", "limit": 500}).json()),
                   timeout=60, what="the slow replica to be found out")
        wait_until(lambda: (lambda d: d["ready"] == 3 and all(r["id"] != victim["id"] for r in d["replicas"]))(
            deployment(server, "web")), timeout=60, what="the slow replica to be replaced")
        settled = load.ok
        wait_until(lambda: load.ok > settled + 100, timeout=30, what="load to go on after the repair")
    assert load.failed == 0, load.errors[:5]
    outlier = [e for e in server.api("GET", "/events", params={"name": "web", "limit": 500}).json()
               if e["reason"] == "ReplicaOutlier"]
    assert len(outlier) == 1 and f"replica {victim['id']}:" in outlier[0]["message"]
    assert "mean latency" in outlier[0]["message"] and "evidence" in outlier[0]["message"]
    ended = [r for r in deployment(server, "web")["ended"] if r["id"] == victim["id"]]
    assert ended and "peers" in ended[0]["reason"], ended
    # the repair is an alert too, with the same evidence
    alerts = server.api("GET", "/alerts", params={"state": ["firing", "resolved"]}).json()
    repaired = [a for a in alerts if a["rule"] == "DeploymentReplicaReplaced" and a["object"] == "web"]
    assert len(repaired) == 1 and "mean latency" in repaired[0]["summary"]
