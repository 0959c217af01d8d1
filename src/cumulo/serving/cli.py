"""`cumulo serve PATH:Class`: run a Service locally, exactly as a replica runs it.

Kept free of heavy imports (and of Typer itself): the command replaces the CLI process with
`python -m cumulo.serving`, the replica entry point the control plane runs.
"""

from __future__ import annotations

import os
import sys


def serve(target: str, port: int = 8000, host: str = "127.0.0.1") -> None:
    """Run a Service (FILE.py:ClassName) locally, exactly as a deployment replica runs it.

    /healthz answers once the port is open, /readyz once setup() has finished, /metrics has the
    Prometheus metrics and /docs the handlers' OpenAPI. Ctrl+C or SIGTERM drains and exits.
    """
    argv = [sys.executable, "-m", "cumulo.serving", target, "--host", host, "--port", str(port)]
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(sys.executable, argv)
