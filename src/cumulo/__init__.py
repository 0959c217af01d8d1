"""cumulo: one control plane for AI workloads.

    import cumulo
    client = cumulo.Client()                 # CUMULO_URL or http://127.0.0.1:8200
    job = client.submit_job("examples/digits/job.yaml")
    cumulo.report(step=3, loss=0.1)          # inside a job: training metrics

    class Model(cumulo.Service):             # an inference service: `cumulo serve file.py:Model`
        @cumulo.handler
        def predict(self, x: list[float]) -> float: ...

Attributes load on first use, so `import cumulo` stays cheap inside training processes.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

__all__ = ["Batch", "Client", "JobSpec", "ResourceManager", "Service", "handler", "load_spec", "report"]

_LAZY = {
    "Client": "cumulo.sdk.client",
    "report": "cumulo.sdk.report",
    "load_spec": "cumulo.sdk.specs",
    "JobSpec": "cumulo.core.specs",
    "ResourceManager": "cumulo.sdk.resources",
    "Service": "cumulo.serving",
    "handler": "cumulo.serving",
    "Batch": "cumulo.serving",
}

if TYPE_CHECKING:
    from cumulo.core.specs import JobSpec
    from cumulo.serving import Batch, Service, handler
    from cumulo.sdk.client import Client
    from cumulo.sdk.report import report
    from cumulo.sdk.resources import ResourceManager
    from cumulo.sdk.specs import load_spec


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'cumulo' has no attribute {name!r}")
