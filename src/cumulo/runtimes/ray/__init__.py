"""The Ray runtime: each launch is a Ray job whose driver places the workers with a placement group.

Importing this package does not import ray: the control plane talks to the cluster over Ray's public
REST APIs (Jobs, state); only the driver and worker modules, which run on the cluster, import ray.
"""

from cumulo.runtimes.ray.runtime import RayRuntime

__all__ = ["RayRuntime"]
