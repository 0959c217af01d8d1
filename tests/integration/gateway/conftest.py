"""Real replicas (uvicorn processes) and a real gateway (uvicorn in a thread) on loopback."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
import uvicorn

from cumulo.gateway import Endpoint
from cumulo.gateway.proxy import Gateway
from cumulo.gateway.server import uvicorn_config

ROOT = Path(__file__).resolve().parents[3]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listening on {port} after {timeout} s")


class Replica:
    def __init__(self, name: str) -> None:
        self.name = name
        self.port = free_port()
        env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT / "src"), str(ROOT)]))
        self.proc = subprocess.Popen([sys.executable, "-m", "tests.integration.gateway.backend", str(self.port), name],
                                     cwd=ROOT, env=env)
        wait_port(self.port)

    def endpoint(self, ready: bool = True) -> Endpoint:
        return Endpoint(self.name, "127.0.0.1", self.port, ready)

    def kill9(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
def replicas():
    made: list[Replica] = []

    def make(n: int) -> list[Replica]:
        new = [Replica(f"r{len(made) + i}") for i in range(n)]
        made.extend(new)
        return new

    yield make
    for r in made:
        r.stop()


class RunningGateway:
    def __init__(self, gateway: Gateway, fast: bool) -> None:
        self.gateway = gateway
        self.port = free_port()
        if fast:
            config = uvicorn_config(gateway, host="127.0.0.1", port=self.port)
        else:
            config = uvicorn.Config(gateway.asgi(), host="127.0.0.1", port=self.port, loop="uvloop",
                                    http="httptools", log_level="warning", access_log=False, lifespan="off",
                                    proxy_headers=False)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        wait_port(self.port)
        self.url = f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)


@pytest.fixture(params=["fast", "asgi"])
def start_gateway(request):
    """start_gateway(**Gateway kwargs) -> RunningGateway; runs both the fast path and plain ASGI."""
    running: list[RunningGateway] = []

    def start(**kwargs) -> RunningGateway:
        g = RunningGateway(Gateway(**kwargs), fast=request.param == "fast")
        running.append(g)
        return g

    yield start
    for g in running:
        g.stop()


@pytest.fixture
def client():
    with httpx.Client(timeout=10) as c:
        yield c


def raw_exchange(port: int, data: bytes, timeout: float = 5.0) -> bytes:
    """Send `data` on a fresh connection and read until the server closes it (or `timeout`)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(data)
        out = b""
        try:
            while chunk := s.recv(65536):
                out += chunk
        except TimeoutError:
            pass
        return out


def wait_until(cond, timeout: float = 5.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = cond()
        if got:
            return got
        time.sleep(0.02)
    raise AssertionError(f"{what} not reached within {timeout} s")
