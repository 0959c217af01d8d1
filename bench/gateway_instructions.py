"""Instructions per proxied request in the gateway process, counted by valgrind's callgrind: the
same count for the same code whatever else the machine is doing (wall-clock ratios on the shared
2-core machine moved by 10-20 % between runs). Prints JSON.

    python bench/gateway_instructions.py [--requests 2000] [--modes fast,fast_token,asgi]

Each mode is a gateway process (bench/gateway.py --serve-gateway) under callgrind in front of a raw
ASGI backend; after a warm-up the counters are zeroed, N keep-alive requests are sent over 4
connections, and the counters dumped. `fast_token`: the deployment sets `auth: token` and every
request carries a valid deployment token (the gateway hashes and checks it); `fast_header`: no auth,
but the requests carry the same header (what the check itself costs is fast_token - fast_header).
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
from gateway import RAW_APP, TOKEN, free_port, wait_port  # noqa: E402


def send(port: int, n: int, token: bool, conns: int = 4) -> None:
    socks = [socket.create_connection(("127.0.0.1", port)) for _ in range(conns)]
    auth = f"Authorization: Bearer {TOKEN}\r\n".encode() if token else b""
    req = b"GET /d/b/x HTTP/1.1\r\nHost: t\r\n" + auth + b"\r\n"
    for _ in range(n // conns):
        for s in socks:
            s.sendall(req)
        for s in socks:
            buf = b""
            while not buf.endswith(b"ok"):
                buf += s.recv(65536)
            assert buf.startswith(b"HTTP/1.1 200"), buf[:200]
    for s in socks:
        s.close()


def count(mode: str, n: int, backend_port: int, tmp: Path) -> float:
    port = free_port()
    out = tmp / f"cg.{mode}"
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"), PYTHONMALLOC="malloc")
    gw = subprocess.Popen(["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}.%p", "--collect-atstart=yes",
                           sys.executable, str(ROOT / "bench/gateway.py"), "--serve-gateway", str(port), mode,
                           str(backend_port)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_port(port, 300)
        send(port, 400, mode in ("fast_token", "fast_header"))
        subprocess.run(["callgrind_control", "--zero", str(gw.pid)], check=True, capture_output=True)
        send(port, n, mode in ("fast_token", "fast_header"))
        subprocess.run(["callgrind_control", "--dump=measured", str(gw.pid)], check=True, capture_output=True)
        time.sleep(1)
        text = Path(sorted(glob.glob(f"{out}.{gw.pid}.*"))[-1]).read_text()
        return int(re.search(r"^(?:summary|totals): (\d+)", text, re.M).group(1)) / n
    finally:
        gw.terminate()
        gw.wait(60)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--requests", type=int, default=2000)
    p.add_argument("--modes", default="fast,fast_header,fast_token")
    a = p.parse_args()
    if not shutil.which("valgrind"):
        sys.exit("valgrind is needed: apt-get install -y valgrind")
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        (tmp / "raw_app.py").write_text(RAW_APP)
        bport = free_port()
        back = subprocess.Popen([sys.executable, "-m", "uvicorn", "raw_app:app", "--port", str(bport), "--loop",
                                 "uvloop", "--http", "httptools", "--log-level", "warning", "--no-access-log"],
                                cwd=tmp, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            wait_port(bport)
            per = {m: round(count(m, a.requests, bport, tmp)) for m in a.modes.split(",")}
        finally:
            back.terminate()
            back.wait(10)
    out = {"instructions_per_request": per, "requests": a.requests}
    if "fast" in per and "fast_token" in per:
        out["fast_token_vs_fast"] = round(per["fast_token"] / per["fast"], 4)
    if "fast_header" in per and "fast_token" in per:
        out["fast_token_vs_fast_header"] = round(per["fast_token"] / per["fast_header"], 4)
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
