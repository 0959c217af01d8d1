"""The Service runtime: what runs inside every replica.

    import cumulo

    class Echo(cumulo.Service):
        def setup(self): ...
        @cumulo.handler
        def echo(self, text: str) -> str:
            return text

Run it: `cumulo serve service.py:Echo` (or `python -m cumulo.serving service.py:Echo --port 8000`).
`import cumulo.serving` stays light (standard library only). The HTTP side is
`cumulo.serving.app.create_app(ServiceClass)` (FastAPI, Prometheus) and `cumulo.serving.runner`.
"""

from __future__ import annotations

from cumulo.serving.service import Batch, HandlerConfig, Service, handler

__all__ = ["Batch", "HandlerConfig", "Service", "handler"]
