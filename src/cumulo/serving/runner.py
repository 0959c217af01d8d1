"""The replica process: `python -m cumulo.serving FILE.py:ClassName --host H --port P`.

Contract (what the control plane relies on):
- the port opens first and `/healthz` answers 200 from then on; `setup()` runs after that,
  and `/readyz` answers 200 only once it has finished (503 before, and while draining);
- importing FILE, finding the class or `setup()` raising: the traceback goes to stderr and the
  process exits 1; the LAST line of stderr is `ExceptionType: message` (one line);
- SIGTERM (or SIGINT): stop accepting connections, finish in-flight requests (at most
  --drain-timeout seconds, default 20), run `teardown()`, exit 0.
"""

from __future__ import annotations

import argparse
import importlib.util
import logging
import os
import signal
import socket
import sys
import traceback
from pathlib import Path
from types import FrameType, ModuleType

import uvicorn

from cumulo.serving.app import create_app
from cumulo.serving.service import Service

log = logging.getLogger("cumulo.serving")

DRAIN_TIMEOUT_S = 20.0


def load_target(target: str, cwd: Path | None = None) -> type[Service]:
    """Import `FILE.py:ClassName` (FILE relative to cwd) and return the Service class."""
    file_part, sep, cls_name = target.rpartition(":")
    if not sep or not file_part or not cls_name:
        raise ValueError(f"expected FILE.py:ClassName, got {target!r}")
    path = ((cwd or Path.cwd()) / file_part).resolve()
    if not path.is_file():
        raise FileNotFoundError(f"service file not found: {file_part} (looked at {path})")
    folder = str(path.parent)
    if folder not in sys.path:
        sys.path.insert(0, folder)  # the service may import its neighbours (e.g. train.py)
    name = path.stem if path.stem not in sys.modules else f"cumulo_service_{path.stem}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot import {file_part}: not a Python file")
    module: ModuleType = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(name, None)
        raise
    cls = getattr(module, cls_name, None)
    if cls is None:
        raise AttributeError(f"{file_part} has no class {cls_name}")
    if not (isinstance(cls, type) and issubclass(cls, Service)):
        raise TypeError(f"{file_part}:{cls_name} is not a cumulo.Service subclass")
    return cls


def _fail(exc: BaseException) -> int:
    """Print the traceback, then make sure the last stderr line is `ExceptionType: message`."""
    sys.stdout.flush()
    text = "".join(traceback.format_exception(exc))
    last = " ".join(traceback.format_exception_only(type(exc), exc)[-1].split())  # one line
    if not text.rstrip("\n").endswith("\n" + last):
        text = text.rstrip("\n") + "\n" + last
    sys.stderr.write(text.rstrip("\n") + "\n")
    sys.stderr.flush()
    return 1


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    sock.set_inheritable(True)
    return sock


def run(target: str, host: str = "127.0.0.1", port: int = 8000, *,
        drain_timeout: float = DRAIN_TIMEOUT_S, log_level: str = "info", access_log: bool = False) -> int:
    """Serve `target` until SIGTERM; returns the process exit code."""
    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        stream=sys.stderr)
    try:
        cls = load_target(target)
        failure: list[BaseException] = []
        server: uvicorn.Server | None = None

        def on_setup_error(exc: BaseException) -> None:
            failure.append(exc)
            if server is not None:
                server.should_exit = True

        app = create_app(cls, on_setup_error=on_setup_error)
        sock = _bind(host, port)
    except BaseException as exc:  # noqa: BLE001 - the replica contract: report and exit 1
        if isinstance(exc, SystemExit | KeyboardInterrupt):
            raise
        return _fail(exc)

    try:
        import uvloop  # noqa: F401
        loop = "uvloop"
    except ImportError:  # pragma: no cover - uvicorn[standard] brings it
        loop = "asyncio"
    try:
        import httptools  # noqa: F401
        http = "httptools"
    except ImportError:  # pragma: no cover
        http = "h11"
    config = uvicorn.Config(
        app, loop=loop, http=http, lifespan="on", log_level=log_level, access_log=access_log,
        timeout_graceful_shutdown=drain_timeout, server_header=False,
    )
    rt = app.state.cumulo

    class ReplicaServer(uvicorn.Server):
        def handle_exit(self, sig: int, frame: FrameType | None) -> None:
            # like uvicorn's, but a SIGTERM ends in exit 0 (uvicorn would re-raise the signal)
            rt.drain()
            if self.should_exit and sig == signal.SIGINT:
                self.force_exit = True
            self.should_exit = True

    server = ReplicaServer(config)
    log.info("serving %s on http://%s:%d", target, host, port)
    server.run(sockets=[sock])
    if failure:
        return _fail(failure[0])
    return 0


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m cumulo.serving",
                                description="Run a cumulo Service as one replica.")
    p.add_argument("target", help="FILE.py:ClassName, FILE relative to the current folder")
    p.add_argument("--host", default=os.environ.get("HOST", "127.0.0.1"),
                   help="address to listen on (default $HOST, else 127.0.0.1)")
    p.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8000")), help="default $PORT, else 8000")
    p.add_argument("--drain-timeout", type=float, default=DRAIN_TIMEOUT_S,
                   help="seconds in-flight requests get to finish after SIGTERM (default 20)")
    p.add_argument("--log-level", default=os.environ.get("CUMULO_SERVING_LOG_LEVEL", "info"),
                   choices=["critical", "error", "warning", "info", "debug"])
    p.add_argument("--access-log", action="store_true", help="log every request (costs throughput)")
    a = p.parse_args(argv)
    code = run(a.target, a.host, a.port, drain_timeout=a.drain_timeout, log_level=a.log_level,
               access_log=a.access_log)
    sys.stdout.flush()
    sys.stderr.flush()
    # os._exit: a sync handler still running in a thread (cut by its timeout) must not hold the exit
    os._exit(code)
