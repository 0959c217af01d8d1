"""`cumulo gateway`: run the gateway alone, following a control plane's route table.

Light on purpose (the CLI imports it): the gateway itself runs in `python -m cumulo.gateway`, which
this command execs, as `cumulo up` execs `python -m cumulo.app`.
"""

from __future__ import annotations

import os
import sys


def gateway(
    port: int = 8300,
    control_plane: str = "http://127.0.0.1:8200",
    host: str = "127.0.0.1",
    workers: int = 1,
) -> None:
    """Serve /d/<deployment>/<path> on its own port, in sync with the control plane: its routes and
    hold list in, this gateway's traffic out (the autoscaler and replica drains count it).
    --workers N runs N processes on the port (SO_REUSEPORT)."""
    args = [sys.executable, "-m", "cumulo.gateway", "--port", str(port), "--control-plane", control_plane,
            "--host", host, "--workers", str(workers)]
    os.execv(sys.executable, args)
