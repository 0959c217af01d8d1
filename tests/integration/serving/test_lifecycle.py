"""The replica contract: health before readiness, setup failures, SIGTERM drains, exit codes."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import threading
import time

import httpx
import pytest

from tests.helpers import free_port
from tests.integration.serving.conftest import replica_env

GATED = '''
import asyncio, os, time
from pathlib import Path

from cumulo.serving import Service, handler

GATE = Path(os.environ["GATE"])


class SyncSetup(Service):
    def setup(self):
        while not GATE.exists():
            time.sleep(0.02)

    @handler
    def ping(self) -> str:
        return "pong"


class AsyncSetup(Service):
    async def setup(self):
        while not GATE.exists():
            await asyncio.sleep(0.02)

    @handler
    async def ping(self) -> str:
        return "pong"
'''


@pytest.mark.parametrize("cls", ["SyncSetup", "AsyncSetup"])
def test_healthz_at_once_readyz_only_after_setup(start_replica, tmp_path, cls):
    gate = tmp_path / f"gate-{cls}"
    r = start_replica(GATED, cls, wait="healthy", env={"GATE": str(gate)})
    with httpx.Client(base_url=r.url) as c:
        assert c.get("/healthz").json() == {"status": "alive"}
        for _ in range(3):  # setup() is still running: alive, not ready, handlers refuse
            res = c.get("/readyz")
            assert res.status_code == 503 and res.json() == {"status": "starting"}
            res = c.post("/ping")
            assert res.status_code == 503 and res.headers["retry-after"] == "1"
            assert "not ready" in res.json()["detail"]
            time.sleep(0.05)
        assert "cumulo_serving_ready 0.0" in c.get("/metrics").text
        gate.touch()
        r.wait_ready(timeout=10)
        assert c.get("/readyz").json() == {"status": "ready"}
        assert c.post("/ping").json() == "pong"
        assert "cumulo_serving_ready 1.0" in c.get("/metrics").text


FAILING = '''
import os
from cumulo.serving import Service, handler

if os.environ.get("FAIL_AT_IMPORT"):
    import a_module_that_does_not_exist


class Broken(Service):
    def setup(self):
        raise FileNotFoundError("no checkpoint in /models/digits: train first")

    @handler
    def ping(self) -> str:
        return "pong"


class BrokenAsync(Service):
    async def setup(self):
        raise RuntimeError("CUDA out of memory.\\nTried to allocate 2 GiB")

    @handler
    async def ping(self) -> str:
        return "pong"


class NotAService:
    pass
'''


@pytest.mark.parametrize(("cls", "env", "last_line"), [
    ("Broken", {}, "FileNotFoundError: no checkpoint in /models/digits: train first"),
    ("BrokenAsync", {}, "RuntimeError: CUDA out of memory. Tried to allocate 2 GiB"),  # one line
    ("Broken", {"FAIL_AT_IMPORT": "1"}, "ModuleNotFoundError: No module named 'a_module_that_does_not_exist'"),
    ("Missing", {}, "AttributeError: svc.py has no class Missing"),
    ("NotAService", {}, "TypeError: svc.py:NotAService is not a cumulo.Service subclass"),
])
def test_import_or_setup_failure_exits_1_with_the_error_as_last_stderr_line(start_replica, cls, env, last_line):
    r = start_replica(FAILING, cls, wait=None, env=env)
    assert r.wait_exit(timeout=20) == 1
    lines = r.stderr().rstrip("\n").splitlines()
    assert lines[-1] == last_line
    assert any(line.startswith("Traceback") for line in lines)  # the whole traceback is there too


def test_missing_file_and_port_in_use(tmp_path):
    env = replica_env()
    res = subprocess.run([sys.executable, "-m", "cumulo.serving", "nope.py:X", "--port", str(free_port())],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=30)
    assert res.returncode == 1
    assert res.stderr.splitlines()[-1].startswith("FileNotFoundError: service file not found: nope.py")

    (tmp_path / "svc.py").write_text("from cumulo.serving import Service\nclass S(Service):\n    pass\n")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        res = subprocess.run([sys.executable, "-m", "cumulo.serving", "svc.py:S", "--port", str(port)],
                             cwd=tmp_path, env=env, capture_output=True, text=True, timeout=30)
    assert res.returncode == 1
    assert res.stderr.splitlines()[-1] == "OSError: [Errno 98] Address already in use"


SLOW = '''
import asyncio, time
from cumulo.serving import Service, handler


class Slow(Service):
    @handler
    async def work(self, seconds: float) -> str:
        await asyncio.sleep(seconds)
        return "done"

    @handler
    def work_sync(self, seconds: float) -> str:
        time.sleep(seconds)
        return "done"

    def teardown(self):
        open("teardown-ran", "w").close()
'''


def test_sigterm_stops_accepting_finishes_in_flight_and_exits_0(start_replica):
    r = start_replica(SLOW, "Slow")
    results: list[tuple[str, int, str]] = []

    def call(path: str) -> None:
        res = httpx.post(r.url + path, json={"seconds": 1.0}, timeout=10)
        results.append((path, res.status_code, res.json()))

    threads = [threading.Thread(target=call, args=(p,)) for p in ("/work", "/work", "/work_sync", "/work_sync")]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 5
    while True:  # all four in flight before the signal, or the test would race the drain
        text = httpx.get(r.url + "/metrics").text
        if all(f'cumulo_serving_in_flight_requests{{handler="{h}"}} 2.0' in text for h in ("work", "work_sync")):
            break
        assert time.monotonic() < deadline, "the four requests never were in flight together"
        time.sleep(0.02)
    sent = time.monotonic()
    r.proc.send_signal(signal.SIGTERM)
    time.sleep(0.3)
    with pytest.raises(httpx.ConnectError):  # stopped accepting
        httpx.get(r.url + "/healthz", timeout=1)
    for t in threads:
        t.join(10)
    assert sorted(results) == [("/work", 200, "done")] * 2 + [("/work_sync", 200, "done")] * 2
    assert r.wait_exit(timeout=10) == 0
    assert time.monotonic() - sent < 5
    assert (r.folder / "teardown-ran").exists()  # teardown() ran after the drain


def test_drain_is_bounded_by_drain_timeout(start_replica):
    r = start_replica(SLOW, "Slow", args=["--drain-timeout", "0.5"])
    box: list[BaseException | int] = []

    def call() -> None:
        try:
            box.append(httpx.post(r.url + "/work", json={"seconds": 30}, timeout=20).status_code)
        except httpx.HTTPError as exc:
            box.append(exc)

    t = threading.Thread(target=call)
    t.start()
    time.sleep(0.5)
    sent = time.monotonic()
    r.proc.send_signal(signal.SIGTERM)
    assert r.wait_exit(timeout=10) == 0
    assert time.monotonic() - sent < 4  # not the 30 s the request wanted
    t.join(10)
    assert box and not box[0] == 200


def test_cumulo_serve_command_runs_the_replica_entry_point(tmp_path):
    (tmp_path / "svc.py").write_text(
        "from cumulo.serving import Service, handler\n"
        "class S(Service):\n"
        "    @handler\n"
        "    def hello(self, name: str) -> str:\n"
        "        return 'hello ' + name\n")
    port = free_port()
    code = f"from cumulo.serving.cli import serve; serve('svc.py:S', port={port})"
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=tmp_path, env=replica_env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 20
        while True:
            assert proc.poll() is None, proc.stderr.read().decode()
            try:
                if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline
            time.sleep(0.02)
        assert httpx.post(f"http://127.0.0.1:{port}/hello", json={"name": "you"}).json() == "hello you"
        proc.send_signal(signal.SIGTERM)  # the same process (exec), so the same drain and exit 0
        assert proc.wait(10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_importing_the_service_api_stays_light():
    code = ("import sys, cumulo.serving, cumulo.serving.cli; "
            "heavy = [m for m in ('fastapi', 'uvicorn', 'prometheus_client', 'pydantic') if m in sys.modules]; "
            "assert not heavy, heavy")
    subprocess.run([sys.executable, "-c", code], env=replica_env(), check=True, timeout=30)
