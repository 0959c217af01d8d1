"""The Service runtime: what runs inside every replica.

    import cumulo

    class Echo(cumulo.Service):
        def setup(self): ...
        @cumulo.handler
        def echo(self, text: str) -> str:
            return text

Run it: `cumulo serve service.py:Echo` (or `python -m cumulo.serving service.py:Echo --port 8000`).
`import cumulo.serving` stays light; `create_app` (FastAPI, Prometheus) loads on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from cumulo.serving.service import Batch, HandlerConfig, Service, handler

__all__ = ["Batch", "HandlerConfig", "Service", "create_app", "handler"]

if TYPE_CHECKING:
    from cumulo.serving.app import create_app


def __getattr__(name: str) -> Any:
    if name == "create_app":
        from cumulo.serving.app import create_app

        return create_app
    raise AttributeError(f"module 'cumulo.serving' has no attribute {name!r}")
