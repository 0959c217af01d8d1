"""The gateway: one URL per deployment (`/d/<name>/<path>`), balanced over ready replicas.

This package's top level is light (the pure routing types only) so the CLI can import
`cumulo.gateway.cli` cheaply; the data plane is `cumulo.gateway.proxy.Gateway`.
"""

from cumulo.gateway.routing import Endpoint, RouteTable, parse_routes, pick

__all__ = ["Endpoint", "RouteTable", "parse_routes", "pick"]
