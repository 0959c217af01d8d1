"""Run a real control plane (python -m cumulo.app) and the real CLI as subprocesses."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from cumulo.runtimes.local.procs import start_time


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Server:
    home: Path
    database_url: str
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen | None = None
    extra_env: dict[str, str] = field(default_factory=dict)  # the control plane's own environment, on top

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def token(self) -> str | None:
        """The admin token the server wrote on its first start (the CLI finds it by itself)."""
        path = self.home / "token"
        return path.read_text().strip() if path.exists() else None

    @property
    def headers(self) -> dict[str, str]:
        return {"authorization": f"Bearer {self.token}"} if self.token else {}

    @property
    def env(self) -> dict[str, str]:
        env = {**os.environ, **self.extra_env, "CUMULO_HOME": str(self.home), "CUMULO_URL": self.url}
        env.pop("CUMULO_TOKEN", None)  # the test's own environment must not choose the token
        return env

    def api(self, method: str, path: str, **kwargs) -> httpx.Response:
        """One call to the REST API (path under /api/v1) with the admin token."""
        return httpx.request(method, f"{self.url}/api/v1{path}", headers={**self.headers, **kwargs.pop("headers", {})},
                             timeout=kwargs.pop("timeout", 30), **kwargs)

    def start(self, timeout: float = 30.0) -> Server:
        self.home.mkdir(parents=True, exist_ok=True)
        log = open(self.home / "test-server.log", "ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "cumulo.app", "--port", str(self.port), "--db", self.database_url],
            env=self.env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited {self.proc.returncode}:\n{self.log()}")
            try:
                if httpx.get(self.url + "/api/v1/health", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"server not ready after {timeout}s:\n{self.log()}")

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(30)

    def log(self) -> str:
        p = self.home / "test-server.log"
        return p.read_text(errors="replace")[-4000:] if p.exists() else ""

    def cli(self, *args: str, check: bool = False, timeout: float = 180) -> subprocess.CompletedProcess:
        r = subprocess.run([sys.executable, "-m", "cumulo.cli.main", *args], env={**self.env, "COLUMNS": "200"},
                           capture_output=True, text=True, timeout=timeout)
        if check and r.returncode != 0:
            raise AssertionError(f"cumulo {' '.join(args)} exited {r.returncode}:\n{r.stdout}\n{r.stderr}")
        return r


def wait_until(predicate, timeout: float = 30.0, interval: float = 0.1, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def kill_leftovers(home: Path) -> None:
    """Kill supervisors a test left running under `home`: job attempts and deployment replicas
    outlive their control plane by design (a restarted one re-adopts them); and local-vm machines."""
    import json

    if (home / "providers" / "local-vm").is_dir():
        kill_machines(home)

    claims = [*home.glob("jobs/*/attempt-*/supervisor.json"), *home.glob("deployments/*/replica-*/supervisor.json")]
    for claim in claims:
        try:
            info = json.loads(claim.read_text())
            pid = info.get("pid")
            if pid and start_time(pid) == info.get("start"):  # never a recycled pid
                os.kill(pid, signal.SIGTERM)
        except (ValueError, OSError):
            pass


class WebhookReceiver:
    """A real HTTP endpoint on loopback that records the JSON bodies POSTed to it; the first
    `fail_first` requests are answered 503 (to exercise retries)."""

    def __init__(self, fail_first: int = 0) -> None:
        import json
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        self.bodies: list[dict] = []
        self.attempts = 0
        self.fail_first = fail_first
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                receiver.attempts += 1
                if receiver.attempts <= receiver.fail_first:
                    self.send_response(503)
                    self.end_headers()
                    return
                receiver.bodies.append(json.loads(body))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args):
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/hook"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def statuses(self, alertname: str | None = None) -> list[str]:
        return [b["status"] for b in self.bodies if alertname is None or b["groupLabels"]["alertname"] == alertname]

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def kill_machines(home: Path) -> list[int]:
    """SIGKILL every local-vm machine a control plane under `home` launched (by the PIDs of each
    machine's session, never by name): their Ray nodes leave the shared cluster. Returns the pids."""
    from cumulo.providers.local_vm import LocalVMProvider

    provider = LocalVMProvider(home / "providers" / "local-vm")
    killed: list[int] = []
    for m in provider.describe():
        killed += provider.kill(m.id)
    return killed
