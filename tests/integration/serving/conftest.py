"""Real replicas: `python -m cumulo.serving FILE:Class` in a subprocess, on loopback."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.helpers import free_port

SRC = Path(__file__).resolve().parents[3] / "src"


def replica_env(**extra: str) -> dict[str, str]:
    path = os.pathsep.join(filter(None, [str(SRC), os.environ.get("PYTHONPATH", "")]))
    return {**os.environ, "PYTHONPATH": path, "PYTHONUNBUFFERED": "1", **extra}


@dataclass
class Replica:
    proc: subprocess.Popen
    port: int
    folder: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def wait_healthy(self, timeout: float = 20.0) -> None:
        self._wait("/healthz", timeout)

    def wait_ready(self, timeout: float = 30.0) -> None:
        self._wait("/readyz", timeout)

    def _wait(self, path: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"replica exited {self.proc.returncode}:\n{self.stderr()}")
            try:
                if httpx.get(self.url + path, timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.02)
        raise AssertionError(f"{path} not 200 after {timeout}s:\n{self.stderr()}")

    def stderr(self) -> str:
        return (self.folder / "stderr.log").read_text(errors="replace")

    def wait_exit(self, timeout: float = 20.0) -> int:
        return self.proc.wait(timeout)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)


@pytest.fixture
def start_replica(tmp_path: Path) -> Iterator:
    """start_replica(source, "Class", wait="ready"|"healthy"|None, env={...}) -> Replica."""
    started: list[Replica] = []

    def start(source: str, cls: str, wait: str | None = "ready", env: dict[str, str] | None = None,
              args: list[str] | None = None, port: int | None = None) -> Replica:
        folder = tmp_path / f"replica-{len(started)}"
        folder.mkdir()
        (folder / "svc.py").write_text(textwrap.dedent(source))
        port = port or free_port()
        with open(folder / "stderr.log", "wb") as err:
            proc = subprocess.Popen(
                [sys.executable, "-m", "cumulo.serving", f"svc.py:{cls}", "--port", str(port), *(args or [])],
                cwd=folder, env=replica_env(**(env or {})), stdout=subprocess.DEVNULL, stderr=err,
                stdin=subprocess.DEVNULL,
            )
        r = Replica(proc, port, folder)
        started.append(r)
        if wait == "ready":
            r.wait_ready()
        elif wait == "healthy":
            r.wait_healthy()
        return r

    yield start
    for r in started:
        r.stop()
