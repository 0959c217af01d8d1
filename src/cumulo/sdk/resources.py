"""cumulo.ResourceManager: machines from the clouds (or this one), placed at the lowest price that fits.

    rm = cumulo.ResourceManager()
    nodes = rm.create_resources(["g4dn.xlarge"] * 4)     # returns once all 4 are ready
    rm.release(*[n.id for n in nodes])
"""

from __future__ import annotations

import time
from typing import Any

from cumulo.core.errors import CumuloError
from cumulo.core.resources import ResourcesRequest
from cumulo.core.views import NodeDetail, PoolView
from cumulo.sdk.client import Client


class ResourceManager:
    def __init__(self, client: Client | None = None) -> None:
        self.client = client or Client()

    def create_resources(
        self,
        types: list[str] | str | ResourcesRequest | dict[str, Any],
        *,
        count: int = 1,
        provider: str | list[str] | None = None,
        regions: list[str] | None = None,
        spot: bool = False,
        max_price: float | None = None,
        idle_ttl: float | None = None,
        cluster: str | None = None,
        wait: bool = True,
        timeout: float = 600.0,
    ) -> list[NodeDetail]:
        """Create machines: instance type names (a list, or one name with `count`) or a full request.

        With `wait`, returns once every machine is Ready; if any cannot be provisioned, the whole
        batch is rolled back (what was started is terminated) and the reason is raised.
        """
        if isinstance(types, ResourcesRequest):
            body: dict[str, Any] = types.model_dump(mode="json", exclude_defaults=True)
        elif isinstance(types, dict):
            body = dict(types)
        else:
            names = [types] * count if isinstance(types, str) else list(types)
            if not names:
                raise CumuloError("create_resources needs at least one instance type")
            body = {"nodes": [{"instance_type": n} for n in names]}
            if provider:
                body["providers"] = [provider] if isinstance(provider, str) else list(provider)
            if regions:
                body["regions"] = regions
            if spot:
                body["spot"] = True
            if max_price is not None:
                body["max_price"] = max_price
            if idle_ttl is not None:
                body["idle_ttl"] = idle_ttl
            if cluster is not None:
                body["cluster"] = cluster
        pool = PoolView.model_validate(self.client._call("POST", "/resources", json=body))
        if not wait:
            return pool.nodes
        return self.wait_pool(pool.id, timeout=timeout).nodes

    def wait_pool(self, pool_id: str, *, timeout: float = 600.0, poll: float = 0.5) -> PoolView:
        deadline = time.monotonic() + timeout
        while True:
            pool = self.pool(pool_id)
            if pool.state == "Ready":
                return pool
            if pool.state == "Failed":
                raise CumuloError(f"resources {pool_id} could not be provisioned and were rolled back: {pool.reason}")
            if time.monotonic() > deadline:
                raise CumuloError(f"resources {pool_id} are still {pool.state} after {timeout:g}s: {pool.reason}")
            time.sleep(poll)

    def pool(self, pool_id: str) -> PoolView:
        return PoolView.model_validate(self.client._call("GET", f"/pools/{pool_id}"))

    def list(self, *, all: bool = False) -> list[NodeDetail]:  # noqa: A002 - mirrors the CLI's --all
        """Nodes not yet ended (with `all`, ended ones too)."""
        return [NodeDetail.model_validate(n) for n in self.client._call("GET", "/resources", params={"all": all})]

    def release(self, *ids: str) -> list[NodeDetail]:
        """Terminate these nodes (idempotent); returns them as they stand."""
        rows = self.client._call("POST", "/resources/release", json={"ids": list(ids)})
        return [NodeDetail.model_validate(n) for n in rows]
