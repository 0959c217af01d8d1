"""server.serve(reuse_port=True): several gateway processes share one port."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import httpx

from .conftest import ROOT, free_port, wait_port

# a gateway process whose fallback app answers with its pid (so a test can tell the processes apart)
SERVER = """
import os, sys
from cumulo.gateway.proxy import Gateway
from cumulo.gateway.server import serve

async def who(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            msg = await receive()
            await send({"type": msg["type"] + ".complete"})
            if msg["type"] == "lifespan.shutdown":
                return
    body = str(os.getpid()).encode()
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})

serve(Gateway(), who, host="127.0.0.1", port=int(sys.argv[1]), reuse_port=sys.argv[2] == "1")
"""


def start(port: int, reuse: bool) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"))
    return subprocess.Popen([sys.executable, "-c", SERVER, str(port), "1" if reuse else "0"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def test_two_gateways_share_one_port_with_reuse_port():
    port = free_port()
    procs = [start(port, True), start(port, True)]
    try:
        wait_port(port)
        pids = {str(p.pid) for p in procs}
        seen: set[str] = set()
        deadline = time.monotonic() + 10
        while seen != pids and time.monotonic() < deadline:  # the kernel spreads new connections
            for p in procs:
                assert p.poll() is None, p.communicate(timeout=5)  # both bound the port and serve
            with httpx.Client() as c:  # a fresh connection each time
                seen.add(c.get(f"http://127.0.0.1:{port}/who").text)
        assert seen == pids
        # without the option the port is taken
        plain = start(port, False)
        assert plain.wait(15) != 0
        assert b"address already in use" in plain.stderr.read().lower()
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait(10)
