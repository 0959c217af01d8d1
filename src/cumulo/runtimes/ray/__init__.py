"""The Ray runtime: each launch is a Ray job whose driver places the workers with a placement group.

Importing this package does not import ray: the control plane talks to the cluster over Ray's public
REST APIs (Jobs, state); only the driver and worker modules, which run on the cluster, import ray.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__all__ = ["RayRuntime"]

if TYPE_CHECKING:
    from cumulo.runtimes.ray.runtime import RayRuntime


def __getattr__(name: str) -> Any:
    """RayRuntime loads on first use: the driver and workers on the cluster import this package's
    other modules and never need httpx (~0.2 s of every launch's start)."""
    if name == "RayRuntime":
        from cumulo.runtimes.ray.runtime import RayRuntime  # noqa: PLC0415

        return RayRuntime
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
